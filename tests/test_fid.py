"""FID (Inception and classifier feature spaces), precision / recall and the generation report, on real test
images: identical sets score 0, and damage (blur, noise) raises the distance step by step."""

import json
import subprocess
import sys

import pytest
import torch
from torch.nn import functional as F

from vaelab.analysis.generation import GENERATION, measure_generation
from vaelab.data import load_split, to_float
from vaelab.errors import VaelabError
from vaelab.evaluation.reference_classifier import classifier_outputs, load_or_train_classifier
from vaelab.evaluation.sample_metrics import (
    feature_statistics,
    frechet_distance,
    inception_features,
    load_inception,
    precision_recall,
    protocol_note,
)


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = int(3 * sigma) + 1
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    blurred = F.conv2d(F.pad(images, (radius, radius, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    return F.conv2d(F.pad(blurred, (0, 0, radius, radius), mode="reflect"), kernel.view(1, 1, -1, 1))


def with_noise(images: torch.Tensor, std: float) -> torch.Tensor:
    return (images + std * torch.randn(images.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)


@pytest.fixture(scope="module")
def real_images() -> torch.Tensor:
    return to_float(load_split("mnist", "test").images[:2000])


@pytest.fixture(scope="module")
def judge():
    return load_or_train_classifier("mnist", log=lambda m: None)


def features_of(judge, images: torch.Tensor) -> torch.Tensor:
    return classifier_outputs(judge, images)[0]


def fid_in_classifier_space(judge, a: torch.Tensor, b: torch.Tensor) -> float:
    return frechet_distance(feature_statistics(features_of(judge, a)),
                            feature_statistics(features_of(judge, b)))


def test_classifier_fid_of_a_set_with_itself_is_zero_and_of_disjoint_test_halves_is_small(judge, real_images):
    assert fid_in_classifier_space(judge, real_images, real_images) == pytest.approx(0.0, abs=1e-6)
    halves = fid_in_classifier_space(judge, real_images[:1000], real_images[1000:])
    blurred = fid_in_classifier_space(judge, real_images[:1000], gaussian_blur(real_images[1000:], 1.5))
    assert halves < 0.1 * blurred, (halves, blurred)


@pytest.mark.parametrize("damage, levels", [(gaussian_blur, [0.5, 1.0, 2.0]), (with_noise, [0.1, 0.25, 0.5])])
def test_classifier_fid_grows_with_each_level_of_blur_or_noise(judge, real_images, damage, levels):
    clean = real_images[:1000]
    distances = [fid_in_classifier_space(judge, clean, damage(real_images[1000:], level)) for level in levels]
    assert distances == sorted(distances) and distances[0] > fid_in_classifier_space(judge, clean, real_images[1000:])


@pytest.mark.slow  # 160 Inception passes; the features and the best-sampler FID stay in the fast tests
def test_inception_fid_is_zero_on_identical_sets_and_grows_with_blur(real_images):
    network = load_inception()
    real = real_images[:40]
    stats = [feature_statistics(inception_features(images, network))
             for images in (real, real_images[40:80], gaussian_blur(real_images[40:80], 1.0),
                            gaussian_blur(real_images[40:80], 2.0))]
    assert frechet_distance(stats[0], stats[0]) == pytest.approx(0.0, abs=1e-3)
    distances = [frechet_distance(stats[0], other) for other in stats[1:]]
    assert distances == sorted(distances), distances


def test_inception_features_are_2048_dimensional_and_the_same_for_replicated_grayscale(real_images):
    network = load_inception()
    gray = real_images[:3]
    features = inception_features(gray, network)
    assert features.shape == (3, 2048) and torch.isfinite(features).all()
    assert torch.allclose(features, inception_features(gray.expand(-1, 3, -1, -1), network), atol=1e-4)


def test_a_wrong_or_missing_inception_file_is_refused_before_it_is_loaded(tmp_path):
    impostor = tmp_path / "default_1.pt"
    impostor.write_bytes(b"not the FID network")
    with pytest.raises(VaelabError, match="fails its SHA-256 check.*--force-reinstall"):
        load_inception(impostor)
    with pytest.raises(VaelabError, match="is missing; install the Inception FID weights"):
        load_inception(tmp_path / "absent.pt")


def test_precision_and_recall_are_one_on_identical_sets_and_recall_drops_when_one_class_is_generated(judge):
    test = load_split("mnist", "test")
    real = features_of(judge, to_float(test.images[:1000]))
    assert precision_recall(real, real) == (1.0, 1.0)
    # "Generated" images that are all ones: realistic (high precision) but covering a tenth of the data (low recall).
    ones = features_of(judge, to_float(test.images[1000:][test.labels[1000:] == 1][:300]))
    precision, recall = precision_recall(real, ones)
    assert precision > 0.8 and recall < 0.3, (precision, recall)


def test_quick_fid_figures_are_flagged():
    assert protocol_note(10_000, 10_000).endswith("(published protocol)")
    assert protocol_note(2_000, 10_000).startswith("QUICK")


def test_generation_metrics_of_each_sampler_are_written_and_merged(trained_run):
    first = measure_generation(trained_run, ["prior"], samples=150, inception=False)
    measure_generation(trained_run, ["gmm"], samples=150, inception=False)
    stored = json.loads((trained_run / GENERATION).read_text())
    assert set(stored["samplers"]) == {"prior", "gmm"}
    entry = stored["samplers"]["prior"]
    assert entry == first["samplers"]["prior"]
    assert entry["samples"] == 150 and entry["fid_classifier"] > 0 and 0 <= entry["precision"] <= 1
    assert sum(entry["class_histogram"]) == pytest.approx(1.0) and 1 <= entry["classes_covered"] <= 10
    assert "fid_inception" not in entry and stored["classifier_test_accuracy"] > 0.95


def test_the_sample_seed_fixes_the_samples_and_another_seed_draws_others(trained_run):
    def prior_entry(seed: int) -> dict:
        result = measure_generation(trained_run, ["prior"], samples=100, inception=False, write=False, seed=seed)
        entry = result["samplers"]["prior"]
        entry.pop("seconds")
        return entry

    first, again, other = prior_entry(0), prior_entry(0), prior_entry(1)
    assert first == again and first["seed"] == 0
    assert other["seed"] == 1 and other["fid_classifier"] != first["fid_classifier"]


def test_a_conditional_run_draws_the_classes_in_turn_and_offers_only_the_prior(cvae_run):
    result = measure_generation(cvae_run, "all", samples=300, inception=False, write=False)
    assert list(result["samplers"]) == ["prior"]
    entry = result["samplers"]["prior"]
    assert entry["labels"] == "the classes in turn"
    assert entry["samples"] == 300 and entry["classes_covered"] >= 8  # 30 of each class, from a small cvae
    with pytest.raises(VaelabError, match="a cvae cannot use --sampler gmm; it offers: prior"):
        measure_generation(cvae_run, "gmm", samples=20, inception=False, write=False)


def test_inception_for_best_measures_only_the_sampler_with_the_lowest_classifier_fid(trained_run):
    # prior and gmm: the two-stage sampler's fit would cost minutes and prove nothing more here.
    result = measure_generation(trained_run, ["prior", "gmm"], samples=200, inception_samples=20, reference_images=20,
                                inception_for="best", write=False)
    samplers = result["samplers"]
    assert set(samplers) == {"prior", "gmm"}
    measured = [name for name, entry in samplers.items() if "fid_inception" in entry]
    assert measured == [min(samplers, key=lambda name: samplers[name]["fid_classifier"])]
    entry = samplers[measured[0]]
    assert entry["fid_inception"] > 0 and entry["inception_samples"] == 20
    assert entry["inception_chosen_by"] == "lowest classifier FID"
    with pytest.raises(VaelabError, match="unknown --inception-for 'some'; choose from: all, best"):
        measure_generation(trained_run, "prior", samples=20, inception=False, inception_for="some", write=False)


def test_generation_command_prints_a_table_and_refuses_an_unknown_sampler_and_its_old_name_still_works(trained_run):
    base = [sys.executable, "-m", "vaelab.cli", "generation", str(trained_run), "-n", "200", "--no-inception"]
    result = subprocess.run([*base, "--sampler", "prior"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "FID classifier" in result.stdout and "prior" in result.stdout and "warning" not in result.stderr
    bad = subprocess.run([*base, "--sampler", "flow"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "unknown sampler 'flow'" in bad.stderr
    old = subprocess.run([*base[:3], "fid", *base[4:], "--sampler", "prior"], capture_output=True, text=True)
    assert old.returncode == 0 and "`vaelab fid` is now `vaelab generation`" in old.stderr, old.stderr
    assert old.stdout == result.stdout
