"""Traversals, interpolations and smoothness on the real tiny model; the CLI commands that show them."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vaelab.analysis.interpolation import crossfade, interpolate_codes, interpolate_run, interpolation_grid
from vaelab.analysis.smoothness import smoothness_ratio, step_distances
from vaelab.analysis.traversal import (
    latent_usage,
    load_test_inputs,
    posterior_moments,
    save_traversal_gifs,
    select_dimensions,
    traversal_grid,
    traverse_from_bases,
    traverse_run,
)
from vaelab.config import DataConfig
from vaelab.data import load_split, to_float
from vaelab.errors import VaelabError
from vaelab.rundir import load_model

CELL = 28 + 2  # image + grid padding


def vaelab(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vaelab.cli", *args], cwd=cwd, capture_output=True, text=True)


@pytest.fixture(scope="module")
def model(trained_run):
    return load_model(trained_run)


@pytest.fixture(scope="module")
def mnist_test_images() -> torch.Tensor:
    return to_float(load_split("mnist", "test").images[:2])


# --- traversal -------------------------------------------------------------------------------------------------


def test_traversal_rows_are_the_chosen_dimensions_and_columns_increase_from_minus_to_plus_range(trained_run, model):
    traversal = traverse_run(trained_run, dims="5,0,3", radius=2.0, steps=5, base="prior")

    assert traversal.images.shape == (3, 5, 1, 28, 28)
    assert traversal.dims == [5, 0, 3]
    assert torch.all(traversal.values[1:] > traversal.values[:-1])
    assert traversal.values[0] == -2.0 and traversal.values[-1] == 2.0
    # Row 2, column 4 is the prior mean with dimension 3 set to +2 and nothing else changed.
    code = torch.zeros(1, model.latent_dim)
    code[0, 3] = 2.0
    torch.testing.assert_close(traversal.images[2, 4], model.decode(code)[0].detach(), atol=1e-6, rtol=0)
    grid = traversal_grid(traversal, labels=False)
    assert grid.shape == (3 * CELL + 2, 5 * CELL + 2)


def test_traverse_from_bases_sets_only_the_traversed_dimension_of_every_base(model):
    bases = torch.randn(3, model.latent_dim, generator=torch.Generator().manual_seed(0))
    values = torch.linspace(-3, 3, 4)
    images = traverse_from_bases(model, bases, dim=2, values=values)

    assert images.shape == (3, 4, 1, 28, 28)
    expected = bases[1].clone()
    expected[2] = values[3]
    torch.testing.assert_close(images[1, 3], model.decode(expected[None])[0].detach(), atol=1e-6, rtol=0)


def test_auto_dimensions_put_the_highest_kl_dimension_first_and_label_inactive_ones_off(trained_run):
    traversal = traverse_run(trained_run, dims="auto", steps=3, base="test:7")
    kl = traversal.usage.kl_per_dim

    assert sorted(traversal.dims) == list(range(len(kl)))
    assert traversal.dims[0] == int(np.argmax(kl))
    assert [kl[d] for d in traversal.dims] == sorted(kl, reverse=True)
    assert any(traversal.usage.active) and not all(traversal.usage.active)  # the tiny model leaves some unused
    labelled = traversal_grid(traversal)
    assert labelled.shape[0] == len(kl) * CELL + 2 and labelled.shape[1] > 3 * CELL + 2  # a label strip on the left


def test_kl_and_active_units_come_from_eval_json_when_the_run_has_one(trained_run, model, tmp_path):
    run = shutil.copytree(trained_run, tmp_path / "run")
    kl = [0.1 * d for d in range(model.latent_dim)]
    evaluation = {"dataset": "mnist", "split": "test", "images": 10_000, "input_mode": "binarized", "elbo": -100.0,
                  "recon": 90.0, "kl": 10.0, "bits_per_dim_elbo": 0.18, "mse": 0.05, "kl_per_dim": kl,
                  "active_units": 2, "active_dims": [1, 2], "latent_dim": model.latent_dim}  # what `vaelab eval` writes
    (run / "eval.json").write_text(json.dumps(evaluation))

    usage = latent_usage(run, model, torch.zeros(0))
    assert usage.kl_per_dim == kl and usage.source.endswith("eval.json")
    assert usage.active == [d in (1, 2) for d in range(model.latent_dim)]
    assert traverse_run(run, steps=2).dims[0] == model.latent_dim - 1


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("0,3,3", "lists dimension 3 more than once"),
        ("0,8", "dimension 8 does not exist; this model has dimensions 0 to 7"),
        ("-1", "dimension -1 does not exist"),
        ("first", "is not valid; use auto or dimension numbers separated by commas"),
        ("", "is not valid"),
    ],
)
def test_bad_dimension_lists_are_refused_with_the_fix(spec, message):
    with pytest.raises(VaelabError, match=message):
        select_dimensions(spec, [1.0] * 8)


def test_gifs_loop_from_minus_to_plus_range_and_back(trained_run, tmp_path):
    traversal = traverse_run(trained_run, dims="auto", radius=3.0, steps=6)
    top = traversal.dims[0]
    paths = save_traversal_gifs(traversal, tmp_path / "gifs", scale=2)

    assert [p.name for p in paths] == [f"dim{d:02d}.gif" for d in traversal.dims]
    with Image.open(tmp_path / "gifs" / f"dim{top:02d}.gif") as gif:
        assert gif.format == "GIF" and gif.size == (56, 56) and gif.info["loop"] == 0
        assert gif.n_frames == 2 * 6 - 2
        frames = []
        for index in range(gif.n_frames):
            gif.seek(index)
            frames.append(np.asarray(gif.convert("L")))
    expected_first = np.kron(traversal_grid(traversal, labels=False)[2:30, 2:30], np.ones((2, 2), dtype=np.uint8))
    np.testing.assert_array_equal(frames[0], expected_first)  # starts at −range, shown nearest-neighbour
    np.testing.assert_array_equal(frames[1], frames[-1])  # comes back the way it went


# --- interpolation ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["linear", "slerp"])
def test_interpolation_ends_are_exactly_the_endpoint_codes(mode):
    start, end = torch.tensor([0.3, -1.7, 2.2]), torch.tensor([-0.9, 0.4, 1.1])
    codes = interpolate_codes(start, end, steps=7, mode=mode)

    assert codes.shape == (7, 3) and codes.dtype == start.dtype
    assert torch.equal(codes[0], start) and torch.equal(codes[-1], end)


@pytest.mark.parametrize("mode", ["linear", "slerp"])
def test_real_interpolation_decodes_the_two_test_images_codes_at_its_ends(trained_run, model, mode):
    interpolation = interpolate_run(trained_run, "test:12", "test:345", steps=6, mode=mode)
    _, inputs = load_test_inputs(DataConfig(dataset="mnist", input_mode="binarized"))
    means, _ = posterior_moments(model, inputs[[12, 345]])

    torch.testing.assert_close(interpolation.codes[[0, -1]], means, atol=1e-6, rtol=0)
    torch.testing.assert_close(interpolation.decoded[[0, -1]], model.decode(means).detach(), atol=1e-6, rtol=0)
    test_images = to_float(load_split("mnist", "test").images[[12, 345]])
    assert torch.equal(interpolation.crossfade[[0, -1]], test_images)
    grid = interpolation_grid(interpolation, labels=False)
    assert grid.shape == (2 * CELL + 2, 6 * CELL + 2)  # latent row above the cross-fade row


def test_slerp_keeps_every_norm_between_the_endpoint_norms_and_turns_at_constant_speed():
    # Far apart (an obtuse angle) and of different norms: the straight line dips towards the origin here.
    start = torch.tensor([2.0, 0.5, 0.0, -1.0])
    end = torch.tensor([-3.0, 1.0, 1.5, 2.0])
    codes = interpolate_codes(start, end, steps=11, mode="slerp").double()
    norms = codes.norm(dim=1)
    low, high = sorted([start.norm().item(), end.norm().item()])

    assert torch.all(norms >= low - 1e-5) and torch.all(norms <= high + 1e-5)
    units = codes / norms[:, None]
    angles = torch.arccos((units[1:] * units[:-1]).sum(1).clamp(-1, 1))
    torch.testing.assert_close(angles, torch.full_like(angles, angles.mean().item()), atol=1e-5, rtol=0)
    assert interpolate_codes(start, end, steps=11, mode="linear").norm(dim=1).min() < low  # the line does dip


def test_unknown_interpolation_mode_is_refused():
    with pytest.raises(VaelabError, match="mode 'cubic' is not known; use one of: linear, slerp"):
        interpolate_codes(torch.zeros(2), torch.ones(2), steps=3, mode="cubic")


# --- smoothness ------------------------------------------------------------------------------------------------


def test_smoothness_ratio_is_one_on_a_linear_fade(mnist_test_images):
    frames = crossfade(mnist_test_images[0], mnist_test_images[1], steps=12)
    assert math.isclose(smoothness_ratio(frames), 1.0, abs_tol=1e-6)


def test_smoothness_ratio_is_large_when_the_sequence_jumps(mnist_test_images):
    frames = torch.stack([mnist_test_images[0]] * 5 + [mnist_test_images[1]] * 5)
    assert step_distances(frames).count_nonzero() == 1
    assert smoothness_ratio(frames) > 5  # one step of nine holds all the change: ratio 9


def test_a_sequence_that_does_not_change_counts_as_even():
    assert smoothness_ratio(torch.zeros(4, 1, 28, 28)) == 1.0


# --- command line ----------------------------------------------------------------------------------------------


def test_traverse_and_interpolate_commands_write_valid_pictures(trained_run, tmp_path):
    result = vaelab("traverse", str(trained_run), "--dims", "1,2", "--steps", "4", "--base", "test:3",
                    "--gif-dir", "gifs", "--out", "t.png", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "z1" in result.stdout and "KL" in result.stdout
    result = vaelab("interpolate", str(trained_run), "--from", "test:12", "--to", "test:345", "--steps", "5",
                    "--mode", "slerp", "--out", "i.png", "--scale", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "smoothness" in result.stdout
    with Image.open(tmp_path / "t.png") as traverse_png, Image.open(tmp_path / "i.png") as interpolate_png:
        assert traverse_png.format == interpolate_png.format == "PNG"
        assert traverse_png.height == 4 * (2 * CELL + 2)
        assert interpolate_png.height == 2 * (2 * CELL + 2)
    with Image.open(tmp_path / "gifs" / "dim02.gif") as gif:
        assert gif.format == "GIF"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["traverse", "--dims", "0,0"], "lists dimension 0 more than once"),
        (["traverse", "--dims", "12"], "dimension 12 does not exist"),
        (["traverse", "--base", "train:3"], "base 'train:3' is not valid; use prior or test:INDEX"),
        (["traverse", "--base", "test:10000"], "base 'test:10000' is out of range"),
        (["interpolate", "--from", "test:x", "--to", "test:1"], "from 'test:x' is not valid; write test:INDEX"),
    ],
)
def test_bad_dims_and_image_references_are_one_line_errors_with_exit_code_2(trained_run, tmp_path, args, message):
    command, *options = args
    result = vaelab(command, str(trained_run), *options, "--out", "x.png", cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert not (tmp_path / "x.png").exists()
