"""MIG, DCI and SAP on synthetic codes whose answer is known: near one when each code dimension is a noisy copy of
one factor, near zero when the codes are a random rotation of the factors; and the decorrelating subsample."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.linalg import hadamard

from vaelab.analysis.attributes import attributes_for
from vaelab.analysis.disentanglement import measure_disentanglement
from vaelab.errors import VaelabError
from vaelab.evaluation.disentanglement_metrics import (
    dci,
    decorrelated_subset,
    disentanglement_scores,
    equal_width_bins,
    mean_absolute_correlation,
    mutual_information_gap,
    quantile_bins,
    sap,
)

IMAGES, FACTORS = 4000, 8


@pytest.fixture(scope="module")
def factors() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(IMAGES, FACTORS))


def noisy_copies(factors: np.ndarray, extra_dims: int = 4) -> np.ndarray:
    """One code per factor (shuffled order, rescaled, a little noise), plus pure-noise codes of a smaller scale:
    what a perfectly disentangled model with a few inactive dimensions gives."""
    rng = np.random.default_rng(1)
    order = rng.permutation(factors.shape[1])
    copies = factors[:, order] * rng.uniform(0.5, 2.0, size=factors.shape[1]) + 0.05 * rng.normal(size=factors.shape)
    return np.concatenate([copies, 0.01 * rng.normal(size=(len(factors), extra_dims))], axis=1)


def rotated(factors: np.ndarray) -> np.ndarray:
    """The factors in a random orthonormal basis: every code mixes every factor."""
    rotation, _ = np.linalg.qr(np.random.default_rng(2).normal(size=(factors.shape[1], factors.shape[1])))
    return factors @ rotation


def evenly_rotated(factors: np.ndarray) -> np.ndarray:
    """The factors in the Hadamard basis: every code holds every factor with the same weight, ±1/√K."""
    return factors @ (hadamard(factors.shape[1]) / np.sqrt(factors.shape[1]))


def test_every_metric_is_near_one_when_each_code_copies_one_factor(factors):
    scores = disentanglement_scores(noisy_copies(factors), factors)
    assert scores["mig"]["mig"] > 0.75
    assert scores["dci"]["disentanglement"] > 0.95 and scores["dci"]["completeness"] > 0.95
    assert scores["dci"]["informativeness"] > 0.99
    assert scores["sap"]["sap"] > 0.95
    assert scores["images"] == IMAGES and scores["mig"]["bins"] == 20


def test_every_metric_is_near_zero_when_the_codes_are_a_rotation_of_the_factors(factors):
    codes = rotated(factors)
    assert mutual_information_gap(codes, factors)["mig"] < 0.1
    result = dci(codes, factors)
    assert result["disentanglement"] < 0.3 and result["completeness"] < 0.3
    assert result["informativeness"] > 0.99  # rotated, the information is all still there
    # A random rotation leaves some code the largest share of each factor, which SAP's gap sees in part.
    assert sap(codes, factors)["sap"] < 0.35
    even = evenly_rotated(factors)
    assert mutual_information_gap(even, factors)["mig"] < 0.05
    assert dci(even, factors)["disentanglement"] < 0.05 and sap(even, factors)["sap"] < 0.05


def test_informativeness_holds_out_a_random_half_when_the_images_are_sorted_by_a_factor(factors):
    # A test split sorted by a binary factor (emoji: by vendor) leaves it constant on its second half; R² there
    # divided by almost nothing gave −3e32.
    group = (np.arange(IMAGES) >= IMAGES // 2).astype(np.float64)
    with_group = np.concatenate([factors, group[:, None]], axis=1)
    codes = noisy_copies(with_group)
    result = dci(codes, with_group)
    assert np.isfinite(result["informativeness_per_factor"]).all()
    assert result["informativeness"] > 0.99
    constant = np.concatenate([factors, np.zeros((IMAGES, 1))], axis=1)  # no R² anywhere: left out of the mean
    scores = dci(noisy_copies(constant), constant)
    assert np.isnan(scores["informativeness_per_factor"][-1]) and scores["informativeness"] > 0.99


def test_the_tree_regressor_agrees_with_the_lasso_on_both_cases(factors):
    assert dci(noisy_copies(factors)[:1500], factors[:1500], "gbt")["disentanglement"] > 0.9
    assert dci(rotated(factors)[:1500], factors[:1500], "gbt")["disentanglement"] < 0.4


def test_disentanglement_libs_boosted_classifier_on_binned_factors_agrees_and_reports_accuracy(factors):
    few = factors[:300, :3]  # sklearn's default classifier grows 100 × 20 trees per factor: a small case
    clean = dci(noisy_copies(few), few, "gbt-classifier")
    mixed = dci(rotated(few), few, "gbt-classifier")
    # 150 fitting images for 20 bins: the trees also split on the noise codes, so the clean case scores below 1
    assert clean["disentanglement"] > 0.7 and mixed["disentanglement"] < 0.3 and clean["regressor"] == "gbt-classifier"
    assert 0.2 < clean["informativeness"] <= 1.0  # an accuracy over 20 bins: chance is about 0.05-0.15


def test_bad_input_is_refused_in_one_line(factors):
    with pytest.raises(VaelabError, match=r"must have the same N"):
        sap(factors[:100], factors[:99])
    with pytest.raises(VaelabError, match="unknown regressor 'forest'; choose from: lasso, gbt"):
        dci(factors, factors, "forest")
    with pytest.raises(VaelabError, match="must be finite"):
        mutual_information_gap(np.full((50, 2), np.nan), factors[:50])


def test_the_decorrelated_subset_lowers_the_correlation_between_factors():
    rng = np.random.default_rng(3)
    shared = rng.normal(size=(IMAGES, 1))
    correlated = 0.8 * shared + 0.6 * rng.normal(size=(IMAGES, 3))  # pairwise ρ ≈ 0.64
    subset = decorrelated_subset(correlated, 800)
    assert len(np.unique(subset)) == 800
    before, after = mean_absolute_correlation(correlated), mean_absolute_correlation(correlated[subset])
    assert before > 0.5 and after < before / 2


def test_a_run_is_scored_against_the_attributes_measured_on_its_test_images(trained_run, gan_run, tmp_path):
    out = tmp_path / "scores.json"
    result = measure_disentanglement(trained_run, images=800, out=out)
    assert json.loads(out.read_text()) == result
    assert result["factors"] == list(attributes_for("mnist")) and result["images"] == 800
    assert result["objective"] == {"name": "beta", "beta": 1.0, "kl_warmup_steps": 0, "free_bits": 0.0}
    for part in ("all", "decorrelated"):
        scores = result[part]
        assert 0 <= scores["mig"]["mig"] <= 1 and 0 <= scores["sap"]["sap"] <= 1
        assert 0 <= scores["dci"]["disentanglement"] <= 1 and 0 <= scores["dci"]["completeness"] <= 1
    assert result["decorrelated"]["images"] == 200
    assert result["decorrelated"]["mean_abs_factor_correlation"] < result["all"]["mean_abs_factor_correlation"]
    with pytest.raises(VaelabError, match="a gan has no encoder: disentanglement metrics"):
        measure_disentanglement(gan_run, images=100, write=False)


def test_equal_width_bins_cut_the_range_evenly_as_disentanglement_lib_does_and_quantile_bins_the_population():
    values = np.concatenate([np.zeros(90), np.linspace(0.0, 10.0, 11)])  # most values at one end
    even = equal_width_bins(values, 5)
    reference = np.digitize(values, np.histogram(values, 5)[1][:-1]) - 1  # disentanglement_lib's discretisation
    assert np.array_equal(even, reference) and even.max() == 4
    assert np.bincount(quantile_bins(np.arange(100.0), 5)).tolist() == [20] * 5


def test_mig_with_equal_width_bins_scores_a_noisy_copy_high_and_a_rotation_low_and_names_its_binning(factors):
    copy = mutual_information_gap(noisy_copies(factors), factors, binning="equal-width")
    assert copy["mig"] > 0.5 and copy["binning"] == "equal-width"
    assert mutual_information_gap(rotated(factors), factors, binning="equal-width")["mig"] < 0.15
    with pytest.raises(VaelabError, match="unknown MIG binning 'log'; choose from: quantile, equal-width"):
        mutual_information_gap(factors, factors, binning="log")
