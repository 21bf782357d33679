"""The conditional VAE: conditioning works on real images, its pictures have the right shapes, bad classes are
clear errors, it resumes bit-identically and `vaelab eval` measures it."""

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY, tiny_config, train_straight_and_with_a_stop
from tests.faults import identical_weights
from tests.test_cli import TINY_FLAGS, vaelab
from vaelab.analysis.conditional import class_grid, class_samples, conditional_accuracy, restyle
from vaelab.config import RunConfig
from vaelab.errors import VaelabError
from vaelab.evaluation import evaluate_run
from vaelab.evaluation.reference_classifier import load_or_train_classifier
from vaelab.models import ConditionalVAE, build_model
from vaelab.training import load_model, train

QUIET = {"progress": False, "log": lambda message: None}


@pytest.fixture(scope="module")
def cvae_run(tmp_path_factory) -> Path:
    """A small MNIST cvae trained on 4,096 real images: long enough (8 epochs) to use its labels."""
    run_dir = tmp_path_factory.mktemp("runs") / "tiny-cvae"
    config = RunConfig().with_overrides({**TINY, "train_limit": 4096, "epochs": 8, "lr": 3e-3, "kind": "cvae"})
    train(config, run_dir, **QUIET)
    return run_dir


def test_samples_for_each_class_are_classified_as_that_class_far_above_chance(cvae_run):
    model = load_model(cvae_run)
    accuracy = conditional_accuracy(model, load_or_train_classifier("mnist", log=lambda m: None), 100, seed=0)
    assert len(accuracy["per_class"]) == 10
    assert accuracy["overall"] == pytest.approx(sum(accuracy["per_class"]) / 10)
    # An unconditioned model's samples hit the asked class about 10% of the time; this one reached 0.88
    # (100 per class, 9 classes at ≥ 0.89; class 4 at 0).
    assert accuracy["overall"] >= 0.6
    assert sum(value >= 0.3 for value in accuracy["per_class"]) >= 8


def test_class_grid_decodes_the_same_z_down_each_column_as_every_class(cvae_run):
    model = load_model(cvae_run)
    grid = class_grid(model, columns=5, seed=3)
    assert grid.shape == (10, 5, 1, 28, 28)
    assert grid.min() >= 0.0 and grid.max() <= 1.0
    for label in (0, 7):  # class_samples draws the same z for the same seed
        assert torch.allclose(grid[label], class_samples(model, label, 5, seed=3), atol=1e-6)
    assert not torch.allclose(grid[0], grid[7], atol=1e-2)


def test_restyle_gives_one_image_per_class_and_its_own_class_is_the_reconstruction(cvae_run):
    model = load_model(cvae_run)
    inputs = torch.rand(3, 1, 28, 28).round()
    labels = torch.tensor([4, 1, 9])
    restyled = restyle(model, inputs, labels, index=2)
    assert restyled.shape == (10, 1, 28, 28)
    with torch.no_grad():
        own = model.reconstruct(inputs[2:3], labels[2:3])
    assert torch.allclose(restyled[9], own[0], atol=1e-6)


@pytest.mark.parametrize("label", [10, 12, -1])
def test_an_unknown_class_is_a_clear_error(cvae_run, label):
    model = load_model(cvae_run)
    with pytest.raises(VaelabError, match=f"class {label} is out of range; this model knows classes 0 to 9"):
        class_samples(model, label, 4)
    with pytest.raises(VaelabError, match="out of range"):
        model.sample(2, labels=torch.tensor([3, label]))


def test_class_pictures_of_an_unconditional_model_are_a_clear_error():
    model = build_model(tiny_config().model)
    for call in (lambda: class_samples(model, 3, 4), lambda: class_grid(model, 4)):
        with pytest.raises(VaelabError, match="needs a conditional run"):
            call()


def test_model_kind_is_validated_and_old_configs_load_as_plain_vaes():
    with pytest.raises(VaelabError, match="model kind 'gan' is unknown; choose one of: vae, cvae"):
        tiny_config(kind="gan")
    with pytest.raises(VaelabError, match="classes must be 10 for a cvae on mnist"):
        tiny_config(kind="cvae", classes=3)
    old = tiny_config().to_dict()
    del old["model"]["kind"], old["model"]["classes"]
    assert RunConfig.from_dict(old).model.kind == "vae"
    assert isinstance(build_model(tiny_config(kind="cvae").model), ConditionalVAE)
    assert not isinstance(build_model(tiny_config().model), ConditionalVAE)


def test_a_cvae_run_resumes_bit_identically(tmp_path):
    config = tiny_config(kind="cvae", epochs=1)  # 16 steps
    straight, resumed = train_straight_and_with_a_stop(config, tmp_path, stop_at=7)
    assert resumed.finished and resumed.steps == straight.steps == 16
    assert identical_weights(tmp_path / "straight" / "last.safetensors", tmp_path / "split" / "last.safetensors")


def test_eval_of_a_cvae_run_bounds_log_p_x_given_y_and_measures_conditional_accuracy(cvae_run):
    result = evaluate_run(cvae_run, iw_samples=10, iw_images=20, test_limit=200, write=False, class_samples=20)
    assert result["iwae"]["images_below_elbo"] == 0
    assert result["iwae"]["bound"] >= result["iwae"]["elbo_same_draws"]
    accuracy = result["conditional_accuracy"]
    assert len(accuracy["per_class"]) == 10 and 0.0 <= accuracy["overall"] <= 1.0
    assert accuracy["samples_per_class"] == 20
    assert accuracy["classifier_test_accuracy"] > 0.98  # the cached MNIST judge: 98.97%


def test_cli_samples_restyles_and_evaluates_a_cvae_run_and_refuses_bad_classes(tmp_path, trained_run):
    assert vaelab("train", "--out", "run", "--model", "cvae", *TINY_FLAGS, cwd=tmp_path).returncode == 0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["model"]["kind"] == "cvae"
    for args in (
        ["sample", "run", "--class", "7", "-n", "9", "--out", "seven.png"],
        ["sample", "run", "--grid-classes", "--columns", "4", "--out", "grid.png"],
        ["sample", "run", "-n", "4", "--out", "any.png"],
        ["restyle", "run", "--from", "test:5", "--out", "restyle.png"],
        ["reconstruct", "run", "-n", "4", "--out", "recon.png"],
    ):
        result = vaelab(*args, cwd=tmp_path)
        assert result.returncode == 0, (args, result.stderr)
        assert (tmp_path / args[-1]).is_file()
    result = vaelab("eval", "run", "--iw-samples", "5", "--iw-images", "10", "--test-limit", "100",
                    "--class-samples", "10", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "conditional accuracy" in result.stdout
    assert "conditional_accuracy" in json.loads((tmp_path / "run" / "eval.json").read_text())
    for args, message in (
        (["sample", "run", "--class", "12"], "class 12 is out of range; this model knows classes 0 to 9"),
        (["sample", str(trained_run), "--class", "3"], "needs a conditional run"),
        (["restyle", str(trained_run), "--from", "test:0"], "needs a conditional run"),
        (["restyle", "run", "--from", "test:99999"], "is out of range"),
        (["sample", "run", "--sampler", "gmm"], "--sampler gmm does not support conditional runs yet"),
        (["traverse", "run"], "vaelab traverse does not support conditional runs yet"),
        (["interpolate", "run", "--from", "test:0", "--to", "test:1"], "does not support conditional runs yet"),
    ):
        result = vaelab(*args, "--out", "bad.png", cwd=tmp_path)
        assert result.returncode == 2, args
        assert message in result.stderr, (args, result.stderr)
        assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert not (tmp_path / "bad.png").exists()
