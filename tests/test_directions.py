"""Directions in the latent space: fitted on codes, measured by edits, used by `vaelab edit`."""

import json
import shutil

import numpy as np
import pytest
import torch

from tests.test_cli import vaelab
from tests.test_report import with_small_analyses
from vaelab.analysis.directions import (
    EDIT_STEPS,
    analyse_directions,
    attribute_name,
    change_per_edit,
    class_normals,
    closed_form_directions,
    directions_picture,
    edit,
    project_out,
    ridge_direction,
)
from vaelab.analysis.factors import pooled_rank_correlation, within_rank_correlation
from vaelab.analysis.traversal import decode_codes, load_test_inputs
from vaelab.errors import VaelabError
from vaelab.models.base import posterior_moments
from vaelab.report.html import build_report
from vaelab.rundir import load_model, read_config


def test_ridge_finds_a_planted_direction_and_points_it_up_the_attribute():
    generator = np.random.default_rng(0)
    codes = generator.normal(size=(2000, 8))
    planted = np.array([0.0, 3.0, 0.0, -4.0, 0.0, 0.0, 0.0, 0.0]) / 5.0
    attribute = codes @ planted + 0.1 * generator.normal(size=2000)
    found = ridge_direction(codes, attribute)
    assert np.linalg.norm(found) == pytest.approx(1.0) and found @ planted > 0.99
    assert ridge_direction(codes, -attribute) @ planted < -0.99


def test_holding_the_class_removes_the_class_boundaries_normals_from_a_direction():
    generator = np.random.default_rng(1)
    labels = np.repeat(np.arange(3), 500)
    means = np.zeros((3, 6))
    means[1, 0], means[2, 1] = 4.0, 4.0  # the classes differ along dimensions 0 and 1
    codes = means[labels] + generator.normal(size=(1500, 6))
    normals = class_normals(codes, labels)
    assert normals.shape == (2, 6)
    assert np.abs(normals[:, 2:]).max() < 0.2  # the normals lie in the classes' plane
    direction = project_out(np.array([1.0, 0.0, 1.0, 0.0, 0.0, 0.0]) / np.sqrt(2), normals)
    assert np.abs(normals @ direction).max() < 1e-9 and np.linalg.norm(direction) == pytest.approx(1.0)
    assert direction[2] > 0.95  # what is left is the part the classes do not use


def test_an_edit_moving_its_attribute_one_spread_per_step_pools_to_0_82_but_is_sure_within_every_image():
    generator = np.random.default_rng(2)
    steps = np.asarray(EDIT_STEPS)
    start = generator.normal(size=(4000, 1))  # the attribute of the unedited images: spread 1
    measured = start + 1.0 * steps + 0.05 * generator.normal(size=(4000, len(steps)))
    measured[0, 1] = np.nan  # a blank frame has no value; the rest of its row still counts
    assert pooled_rank_correlation(steps, measured) == pytest.approx(0.82, abs=0.02)  # the between-image spread
    assert within_rank_correlation(steps, measured) > 0.99  # every edit moves it the right way
    assert change_per_edit(steps, measured) == pytest.approx(1.0, abs=0.05)
    doubled = start + 2.0 * steps
    assert pooled_rank_correlation(steps, doubled) > 0.94
    assert change_per_edit(steps, doubled) == pytest.approx(2.0, abs=0.05)
    assert within_rank_correlation(steps, -measured) < -0.99


def test_closed_form_directions_are_the_top_eigenvectors_of_the_decoders_first_weights():
    generator = np.random.default_rng(3)
    rotation, _ = np.linalg.qr(generator.normal(size=(6, 6)))
    output, _ = np.linalg.qr(generator.normal(size=(20, 6)))
    weight = output @ np.diag([5.0, 4.0, 3.0, 0.5, 0.2, 0.1]) @ rotation.T  # singular vectors: rotation's columns

    class Decoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.decoder_input = torch.nn.Sequential(torch.nn.Linear(6 + 2, 20), torch.nn.ReLU())
            with torch.no_grad():  # two label columns after the code's, as a conditional decoder has
                self.decoder_input[0].weight.copy_(torch.from_numpy(np.hstack([weight, np.ones((20, 2))])))

    codes = generator.normal(size=(500, 6))
    found = closed_form_directions(Decoder(), codes, count=3)
    assert [entry["component"] for entry in found] == [0, 1, 2]
    for entry, truth in zip(found, rotation.T[:3], strict=True):
        assert abs(entry["unit_vector"] @ truth) > 0.999
        assert entry["scale"] == pytest.approx(np.std(codes @ entry["unit_vector"]))
    assert closed_form_directions(torch.nn.Linear(6, 6), codes) == []  # no decoder_input: no closed form


def test_an_attribute_is_named_whole_or_by_one_of_its_words():
    names = ["ink_area", "stroke_length", "stroke_thickness", "slant"]
    assert attribute_name("thickness", names) == "stroke_thickness" == attribute_name("stroke_thickness", names)
    with pytest.raises(VaelabError, match="unknown attribute 'stroke'; choose one of: ink_area"):
        attribute_name("stroke", names)  # two attributes have that word


@pytest.fixture(scope="module")
def directions_run(trained_run, tmp_path_factory):
    run = tmp_path_factory.mktemp("directions") / "run"
    shutil.copytree(trained_run, run)
    result = analyse_directions(run, fit_images=600, edit_count=24, source="encoded")  # the training labels
    return run, result


def test_directions_json_holds_every_attribute_by_every_method_measured_beside_its_best_dimension(directions_run):
    run, result = directions_run
    written = json.loads((run / "directions.json").read_text())
    assert written["summary"] == result["summary"]
    latent_dim = read_config(run).model.latent_dim
    attributes = ["ink_area", "stroke_length", "stroke_thickness", "slant", "width", "height"]
    for method in ("ridge", "ridge-class-held", "per-class", "local"):
        entries = [d for d in written["directions"] if d["method"] == method]
        assert [d["name"] for d in entries] == attributes
        for entry in entries:
            assert len(entry["unit_vector"]) == latent_dim and entry["scale"] > 0
            assert np.linalg.norm(entry["unit_vector"]) == pytest.approx(1.0)
            assert set(entry["leakage"]) == set(attributes) - {entry["name"]}
    assert [row["attribute"] for row in written["summary"]] == attributes
    for row in written["summary"]:
        assert row["direction_is"] == ("better" if (row["rho"] or 0.0) > abs(row["dim_rho"] or 0.0) else "worse")
        assert 0 <= row["dim"] < latent_dim
    ridge = {d["name"]: d for d in written["directions"] if d["method"] == "ridge"}
    assert ridge["ink_area"]["rho"] > 0  # + along a fitted direction raises its attribute (the tiny model: weakly)
    assert {d["method"] for d in written["principal"]} == {"pca", "sefa"}
    for method in ("pca", "sefa"):
        assert 1 <= sum(d["method"] == method for d in written["principal"]) <= latent_dim
    for entry in written["directions"] + written["principal"]:
        assert entry["rho_within"] is None or -1 <= entry["rho_within"] <= 1
    assert written["edit"] == {"images": 24, "steps": list(EDIT_STEPS), "unsupervised_images": 24}


def test_directions_fitted_on_prior_samples_without_a_classifier_have_no_class_to_hold(trained_run, tmp_path):
    shutil.copytree(trained_run, tmp_path / "run")
    result = analyse_directions(tmp_path / "run", fit_images=300, edit_count=8)
    assert result["fit"] == {"source": "generated", "images": 300}
    assert {d["method"] for d in result["directions"]} == {"ridge", "local"}  # a path follows the attribute alone
    assert all(d["class_kept"] is None for d in result["directions"])
    with pytest.raises(VaelabError, match="unknown --source 'both'"):
        analyse_directions(tmp_path / "run", source="both")


def test_an_edit_of_zero_is_the_reconstruction_and_the_attribute_moves_with_the_amount(directions_run):
    run, _ = directions_run
    frames = edit(run, "test:3", "ink", amount=2.0, steps=5)
    assert frames.shape == (5, 1, 28, 28)
    model = load_model(run)
    test, inputs = load_test_inputs(read_config(run).data)
    code, _ = posterior_moments(model, inputs[3:4])
    assert torch.allclose(frames[0], decode_codes(model, code)[0], atol=1e-5)
    assert not torch.allclose(frames[-1], frames[0], atol=1e-3)  # the edit moves the picture (its sign: above)


def test_vaelab_edit_writes_a_strip_and_without_directions_names_the_command_that_writes_them(
        directions_run, trained_run, tmp_path):
    run, _ = directions_run
    done = vaelab("edit", str(run), "--image", "test:0", "--attribute", "slant", "--out", "e.png", cwd=tmp_path)
    assert done.returncode == 0 and (tmp_path / "e.png").is_file(), done.stderr
    bare = tmp_path / "bare"
    shutil.copytree(trained_run, bare)
    (bare / "directions.json").unlink(missing_ok=True)
    refused = vaelab("edit", str(bare), "--image", "test:0", "--attribute", "slant", cwd=tmp_path)
    assert refused.returncode == 2 and "run `vaelab directions" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_the_report_shows_the_directions_beside_the_best_dimensions_with_an_edit_row_per_attribute(
        directions_run, tmp_path):
    run, result = directions_run
    page = build_report(with_small_analyses(run), tmp_path / "report.html").read_text()
    section = page[page.index("<h2>Directions in the latent space (directions.json)"):]
    section = section[:section.index("<h2>", 4)]
    for row in result["summary"]:
        assert f"<td>{row['attribute']}</td><td>{row['method']}</td>" in section
    assert section.count("data:image/png;base64,") == len(result["summary"])  # one edit row per attribute


def test_the_directions_picture_has_a_labelled_row_of_edits_per_attribute(directions_run):
    run, result = directions_run
    picture = directions_picture(run, result, images=2)
    rows, steps = len(result["summary"]), len(EDIT_STEPS)
    assert picture.shape[0] == 2 + rows * (28 + 2)  # make_grid's rows: 28 pixels each, 2 of padding
    assert picture.shape[1] > 2 + 2 * steps * (28 + 2)  # the label strip on the left
    assert picture[:, :40].min() < 128  # the labels are drawn


def test_a_shipped_model_edits_out_of_the_box_along_its_own_directions():
    frames = edit("pretrained:mnist", "test:12", "thickness", amount=2.0, steps=3)
    assert frames.shape == (3, 1, 28, 28) and not torch.allclose(frames[0], frames[-1], atol=1e-3)
    with pytest.raises(VaelabError, match="--steps must be between 2 and 100"):
        edit("pretrained:mnist", "test:12", "thickness", steps=1)


def test_a_gan_has_no_codes_of_images_to_move_and_both_commands_say_so_in_one_line(gan_run, tmp_path):
    for args in (("directions", str(gan_run), "--no-classify"),
                 ("edit", str(gan_run), "--image", "test:0", "--attribute", "slant")):
        refused = vaelab(*args, cwd=tmp_path)
        assert refused.returncode == 2 and "has no encoder" in refused.stderr, refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
    assert not (gan_run / "directions.json").exists()
