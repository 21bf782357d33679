"""The reference classifier: trained on train images, judged on test images, cached, reproducible; and the
confident fraction it gives to sequences of frames."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from vaelab.analysis.smoothness import confident_fraction
from vaelab.data import data_root, load_split, to_float
from vaelab.errors import VaelabError
from vaelab.evaluation.reference_classifier import (
    classifier_paths,
    load_classifier,
    load_or_train_classifier,
    predict_probabilities,
    save_classifier,
    train_classifier,
)


@pytest.fixture(scope="module")
def small_classifier():
    """One epoch on the first 5,000 training images, tested on the first 1,000 test images (seconds)."""
    return train_classifier("mnist", epochs=1, train_limit=5000, test_limit=1000, log=lambda message: None)


def test_classifier_trained_on_train_images_is_far_above_chance_on_test_images(small_classifier):
    classifier, info = small_classifier
    assert info["test_accuracy"] > 0.7  # chance is 0.1
    assert (info["train_images"], info["test_images"], info["epochs"], info["seed"]) == (5000, 1000, 1, 0)
    assert not classifier.training


def test_training_is_reproducible_from_its_seed():
    def weights(seed: int) -> dict[str, torch.Tensor]:  # 3 epochs on 512 images
        classifier, _ = train_classifier("mnist", seed=seed, epochs=3, train_limit=512, test_limit=10,
                                         log=lambda m: None)
        return classifier.state_dict()

    first, again, other = weights(0), weights(0), weights(1)
    assert all(torch.equal(first[name], again[name]) for name in first)
    assert not all(torch.equal(first[name], other[name]) for name in first)


def test_a_cached_classifier_is_loaded_back_without_training(small_classifier, tmp_path):
    classifier, info = small_classifier
    save_classifier(classifier, info, tmp_path)
    weights, summary = classifier_paths("mnist", tmp_path)
    assert json.loads(summary.read_text())["test_accuracy"] == info["test_accuracy"]

    messages: list[str] = []
    loaded = load_or_train_classifier("mnist", log=messages.append, root=tmp_path)
    assert messages == [] and not loaded.training
    assert all(torch.equal(value, loaded.state_dict()[name]) for name, value in classifier.state_dict().items())

    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(VaelabError, match="truncated or corrupted"):
        load_classifier("mnist", tmp_path)


@pytest.mark.parametrize("command", ["reference-classifier", "classifier"])
def test_the_reference_classifier_command_reports_the_cached_classifier_and_its_old_name_says_the_new(
    small_classifier, tmp_path, command
):
    classifier, info = small_classifier
    (tmp_path / "mnist").symlink_to(data_root() / "mnist")  # the data stays where it is; the cache is new
    save_classifier(classifier, info, tmp_path / "classifiers")
    result = subprocess.run(
        [sys.executable, "-m", "vaelab.cli", command, "mnist"],
        capture_output=True, text=True, env={**os.environ, "VAELAB_DATA": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    assert f"test accuracy {info['test_accuracy']:.2%} on 1,000 test images" in result.stdout
    assert "training" not in result.stderr
    renamed = "`vaelab classifier` is now `vaelab reference-classifier`"
    assert (renamed in result.stderr) == (command == "classifier")


def test_confident_fraction_counts_frames_with_a_class_probability_at_or_above_the_threshold(small_classifier):
    classifier, _ = small_classifier
    frames = to_float(load_split("mnist", "test").images[2000:2050])
    top_probability = predict_probabilities(classifier, frames).max(dim=1).values

    assert confident_fraction(frames, classifier, 0.9) == pytest.approx((top_probability >= 0.9).double().mean().item())
    assert confident_fraction(frames, classifier, 0.5) > 0.5  # most real digits are recognised with confidence
    assert confident_fraction(frames, classifier, 0.1) == 1.0  # ten classes: the top one always has ≥ 0.1
    with pytest.raises(VaelabError, match="threshold must be in"):
        confident_fraction(frames, classifier, 1.5)


def test_unknown_dataset_is_refused_with_the_known_names():
    with pytest.raises(VaelabError, match="unknown dataset 'cifar'; choose one of: mnist, fashion-mnist, emoji"):
        load_or_train_classifier("cifar")


def test_training_called_under_no_grad_still_learns():
    """`vaelab eval` runs under no_grad and trains the judge on first use: that must not break its training."""
    with torch.no_grad():
        _, info = train_classifier("mnist", epochs=1, train_limit=512, test_limit=500, log=lambda message: None)
    assert info["test_accuracy"] > 0.2  # chance is 0.1
