"""A run on a folder of 100 images (a test split of 10) gets its report and its factor analysis all the same: what
cannot be computed on so few images is skipped with its reason (in the terminal, the page and the JSON), every
count shown is the real one, the classifier cached for the folder has one plain file name, and a judge that cannot
tell the classes apart is flagged as too weak. Real PNG folders written in the test, real training."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vaelab.config import RunConfig
from vaelab.data.catalog import canonical_name
from vaelab.data.shapes import write_shapes_folder
from vaelab.evaluation.reference_classifier import (
    classifier_paths,
    classifier_summary,
    judge_or_reason,
    load_or_train_classifier,
)
from vaelab.evaluation.tables import eval_rows
from vaelab.report.html import build_report
from vaelab.training import train

# 16×16 images and a small model: 81 training images, 150 steps of 16 — seconds of CPU.
SMALL_RUN = {"image_size": 16, "channels": [8, 16], "hidden_dim": 32, "latent_dim": 4, "steps": 150,
             "batch_size": 16}


def vaelab(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vaelab.cli", *args], cwd=cwd, capture_output=True, text=True)


@pytest.fixture(scope="module")
def small_data_root(tmp_path_factory):
    """A data folder of this module's own (inherited by the commands it starts), so that the caches of its
    throw-away folders stay out of the user's."""
    with pytest.MonkeyPatch.context() as patch:
        root = tmp_path_factory.mktemp("data")
        patch.setenv("VAELAB_DATA", str(root))
        yield root


@pytest.fixture(scope="module")
def hundred_image_run(tmp_path_factory, small_data_root) -> Path:
    """A VAE trained on a folder of 100 shape images (3 classes, 16×16): 10 test images."""
    folder = write_shapes_folder(tmp_path_factory.mktemp("shapes") / "shapes", count=100, size=16)
    run = tmp_path_factory.mktemp("runs") / "hundred"
    config = RunConfig().with_overrides({"dataset": f"folder:{folder}", **SMALL_RUN})
    train(config, run, progress=False, log=lambda message: None)
    return run


def test_factors_of_a_100_image_folder_run_exit_0_and_record_the_metrics_they_skip(hundred_image_run):
    result = vaelab("factors", str(hundred_image_run), cwd=hundred_image_run)
    assert result.returncode == 0, result.stderr
    assert (hundred_image_run / "factors.json").is_file()
    scores = json.loads((hundred_image_run / "disentanglement.json").read_text())
    assert scores["all"] is None and scores["decorrelated"] is None
    assert "at least 20 images" in scores["skipped"]["all"] and "10 test images" in scores["skipped"]["all"]
    assert "200 images or more" in scores["skipped"]["all"]  # what would enable it
    assert "all           skipped: they need at least 20 images" in result.stdout


def test_report_of_a_100_image_folder_run_is_written_and_lists_what_it_skipped_and_why(hundred_image_run):
    result = vaelab("report", str(hundred_image_run), cwd=hundred_image_run)
    assert result.returncode == 0, result.stderr
    page = (hundred_image_run / "report.html").read_text()
    summary = json.loads((hundred_image_run / "report.json").read_text())
    reason = summary["skipped"]["disentanglement metrics (all)"]
    assert "at least 20 images" in reason and "10 test images" in reason
    assert "Skipped (not computed on this run)" in summary["sections"]
    assert "<h2>Skipped (not computed on this run)" in page and "part(s) skipped, listed at the end" in page
    for part, why in summary["skipped"].items():
        assert f"{part} skipped: {why}" in result.stderr  # one line each in the terminal too
    # The counts shown are those of the 10 test images, not the limits asked for.
    assert "first 2,000" not in page and "on the first 10 test images" in page
    assert "Reconstructions of the first 10 test images" in page
    assert "<h2>Latent maps" in page  # t-SNE on 10 points too


def test_the_classifier_cached_for_a_folder_is_one_plain_file_with_the_dataset_named_inside(
    hundred_image_run, small_data_root
):
    dataset = json.loads((hundred_image_run / "config.json").read_text())["data"]["dataset"]
    assert "?" in dataset and "&" in dataset  # the canonical name holds a path and the size
    load_or_train_classifier(dataset, log=lambda message: None)
    weights, summary = classifier_paths(dataset)
    assert weights.parent == summary.parent == small_data_root / "classifiers"
    assert re.fullmatch(r"folder-[0-9a-f]{16}\.safetensors", weights.name), weights.name
    assert weights.is_file() and summary.is_file() and summary.name == weights.name.replace(".safetensors", ".json")
    assert all(path.is_file() for path in weights.parent.iterdir())  # no folders made of the path's parts
    assert classifier_summary(dataset)["dataset"] == dataset
    short = dataset.split("?")[0]  # the folder alone means its default size, 64: another dataset, another cache
    assert classifier_paths(short)[0] != weights
    assert classifier_paths(f"{short}?channels=3&size=16") == (weights, summary)  # the same dataset, one cache
    assert classifier_paths("mnist")[0].name == "mnist.safetensors"  # the shipped classifiers' names are kept


def test_a_judge_that_cannot_tell_the_classes_apart_is_too_weak_and_its_metrics_say_so(tmp_path, small_data_root):
    # Two classes holding the very same pictures: no classifier can tell them apart.
    shapes = write_shapes_folder(tmp_path / "shapes", count=60, size=16)
    folder = tmp_path / "twins"
    for index, picture in enumerate(sorted(shapes.rglob("*.png"))):
        for twin in ("a", "b"):
            (folder / twin).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(picture, folder / twin / f"{index:03d}.png")
    dataset = canonical_name(f"folder:{folder}?size=16")
    judge, reason = judge_or_reason(dataset, log=lambda message: None)
    accuracy = classifier_summary(dataset)["test_accuracy"]
    assert judge is None and accuracy < 0.9
    assert f"too weak to judge (accuracy {accuracy:.0%} on its test split, below 90%)" in reason
    conditional = {"overall": 0.97, "per_class": [0.97, 0.97], "samples_per_class": 100,
                   "classifier_test_accuracy": accuracy}
    evaluation = {"dataset": dataset, "images": 8, "input_mode": "intensities", "elbo": -900.0, "recon": 880.0,
                  "kl": 20.0, "bits_per_dim_elbo": 1.7, "active_units": 4, "latent_dim": 4, "mse": 0.01,
                  "conditional_accuracy": conditional}
    rows = dict(eval_rows(evaluation))
    assert rows["conditional accuracy"].startswith("not judged: the reference classifier is too weak to judge")
    assert "97" not in rows["conditional accuracy"]


def test_report_of_a_folder_without_classes_skips_what_needs_a_judge_and_says_how_to_get_one(
    tmp_path, small_data_root
):
    shapes = write_shapes_folder(tmp_path / "shapes", count=100, size=16)
    folder = tmp_path / "loose"  # every picture at the top: no subfolders, so no classes
    folder.mkdir()
    for picture in shapes.rglob("*.png"):
        shutil.move(picture, folder / picture.name)
    run = tmp_path / "run"
    train(RunConfig().with_overrides({"dataset": f"folder:{folder}", **SMALL_RUN}), run, progress=False,
          log=lambda message: None)
    summary = json.loads(build_report(run).with_suffix(".json").read_text())
    reason = summary["skipped"]["confident frames (factor table, interpolations)"]
    assert "no classes" in reason and "one subfolder per class" in reason
    assert "What each dimension controls (measured on 10 test images)" in summary["sections"]
