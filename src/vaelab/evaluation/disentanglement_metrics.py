"""Disentanglement metrics of codes against factors: MIG, DCI and SAP, as pure functions of two arrays.

`codes` `[N, D]` are a model's posterior means of N images; `factors` `[N, K]` are K numbers measured on the same
images (MNIST: width, slant, stroke thickness …; CelebA: its binary labels). The libraries of the field compute
these metrics on synthetic datasets whose factors are independent by construction (dSprites, Shapes3D). Measured
attributes of real images are not: a wide digit is also a heavier one, and both depend on the class. So the scores
here compare vaelab's runs with each other, on the same attributes; they are not to be set beside dSprites
figures. `decorrelated_subset` shows how much the correlation between attributes moves them.

- **MIG** (mutual information gap, Chen et al. 2018): for each factor, the gap between the two codes with the most
  mutual information with it, divided by the factor's entropy; averaged over factors. Codes and factors are both
  cut into `bins` equally populated bins (so a factor's entropy is about ln bins; `binning="quantile"`, the
  default) or into `bins` bins of equal width between each one's minimum and maximum (`"equal-width"`, as
  disentanglement_lib's `_histogram_discretize`, so that figures compare with the published ones); plug-in estimates
  in nats.
- **DCI** (Eastwood & Williams 2018): an importance matrix R[d, k] of code d for predicting factor k, from a lasso
  (|coefficients| on centred codes and standardised factors), gradient-boosted regression trees (their feature
  importances), or, as disentanglement_lib computes it (`gbt-classifier`), scikit-learn's gradient-boosted
  classifier with its default settings on the factor cut into `METRIC_BINS` equal-width bins (the library's factors
  are discrete already). Disentanglement: 1 − the entropy (base K) of each code's row, weighted by the code's share
  of all importance; completeness: 1 − the entropy (base D) of each factor's column, averaged; informativeness: the
  regressors' R² (the classifier's accuracy, as the library reports it) on held-out images (half of them, drawn by
  the seed; the models are fitted on the other half). A factor that is constant on the held-out half has no
  score: it is left out of the mean.
- **SAP** (separated attribute predictability, Kumar et al. 2018): S[d, k] = R² of a linear regression of factor k
  on code d alone (the squared correlation); the gap between the two largest S of each factor, averaged.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vaelab.errors import VaelabError

METRIC_BINS = 20
REGRESSORS = ("lasso", "gbt", "gbt-classifier")
LASSO_ALPHA = 0.01  # on standardised variables: small enough to keep weak real dependencies, large enough to zero
# the coefficients of codes that only carry noise
MIN_IMAGES = 20


def _check(codes: np.ndarray, factors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    codes, factors = np.asarray(codes, dtype=np.float64), np.asarray(factors, dtype=np.float64)
    if codes.ndim != 2 or factors.ndim != 2 or len(codes) != len(factors):
        raise VaelabError(f"codes [N, D] and factors [N, K] must have the same N, got {codes.shape} and "
                          f"{factors.shape}")
    if len(codes) < MIN_IMAGES:
        raise VaelabError(f"disentanglement metrics need at least {MIN_IMAGES} images, got {len(codes)}")
    if not (np.isfinite(codes).all() and np.isfinite(factors).all()):
        raise VaelabError("codes and factors must be finite; drop the images whose attributes are undefined")
    return codes, factors


def quantile_bins(values: np.ndarray, bins: int = METRIC_BINS) -> np.ndarray:
    """Bin index `[N]` in 0..bins−1 of each value, with edges at the quantiles of `values` (equally populated
    bins; ties stay together, so a variable with few values gets fewer, fuller bins)."""
    edges = np.quantile(values, np.linspace(0.0, 1.0, bins + 1)[1:-1])
    return np.searchsorted(edges, values, side="right")


def equal_width_bins(values: np.ndarray, bins: int = METRIC_BINS) -> np.ndarray:
    """Bin index `[N]` in 0..bins−1 of each value, the range from its minimum to its maximum cut into `bins` bins of
    equal width (disentanglement_lib's histogram discretisation: `np.digitize(values, np.histogram(values,
    bins)[1][:-1]) − 1`)."""
    edges = np.histogram_bin_edges(values, bins)[1:-1]
    return np.searchsorted(edges, values, side="right")


BINNINGS = {"quantile": quantile_bins, "equal-width": equal_width_bins}


def discrete_mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    """Plug-in mutual information in nats between two integer arrays `[N]`."""
    joint = np.zeros((int(a.max()) + 1, int(b.max()) + 1))
    np.add.at(joint, (a, b), 1.0)
    joint /= joint.sum()
    independent = joint.sum(axis=1, keepdims=True) * joint.sum(axis=0, keepdims=True)
    filled = joint > 0
    return float((joint[filled] * np.log(joint[filled] / independent[filled])).sum())


def discrete_entropy(a: np.ndarray) -> float:
    """Plug-in entropy in nats of an integer array `[N]`."""
    shares = np.bincount(a) / len(a)
    shares = shares[shares > 0]
    return float(-(shares * np.log(shares)).sum())


def mutual_information_matrix(
    codes: np.ndarray, factors: np.ndarray, bins: int = METRIC_BINS, binning: str = "quantile"
) -> np.ndarray:
    """I(code d; factor k) in nats, `[D, K]`, both sides cut into `bins` bins (`binning`: quantile or equal-width)."""
    codes, factors = _check(codes, factors)
    cut = _binner(binning)
    code_bins = [cut(column, bins) for column in codes.T]
    factor_bins = [cut(column, bins) for column in factors.T]
    return np.array([[discrete_mutual_information(c, f) for f in factor_bins] for c in code_bins])


def _mean_of_defined(values: Any) -> float:
    """The mean of the values that are not nan (nan when none is): a per-factor score a factor has no value of
    is left out."""
    values = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def _binner(binning: str) -> Any:
    if binning not in BINNINGS:
        raise VaelabError(f"unknown MIG binning '{binning}'; choose from: {', '.join(BINNINGS)}")
    return BINNINGS[binning]


def mutual_information_gap(
    codes: np.ndarray, factors: np.ndarray, bins: int = METRIC_BINS, binning: str = "quantile"
) -> dict[str, Any]:
    """MIG: per factor (top MI − second MI) / H(factor), and their mean. A factor with one value (entropy 0) gets
    nan and is left out of the mean."""
    information = mutual_information_matrix(codes, factors, bins, binning)
    cut = _binner(binning)
    entropy = np.array([discrete_entropy(cut(column, bins)) for column in np.asarray(factors, float).T])
    ordered = np.sort(information, axis=0)[::-1]
    second = ordered[1] if len(ordered) > 1 else np.zeros(information.shape[1])
    with np.errstate(invalid="ignore", divide="ignore"):
        gaps = np.where(entropy > 0, (ordered[0] - second) / entropy, np.nan)
    return {"mig": _mean_of_defined(gaps),
            "per_factor": gaps.tolist(), "top_code": information.argmax(axis=0).tolist(), "bins": bins,
            "binning": binning}


def _standardised(values: np.ndarray) -> np.ndarray:
    spread = values.std(axis=0)
    return (values - values.mean(axis=0)) / np.where(spread > 0, spread, 1.0)


def _fit_importance(train_x: np.ndarray, train_y: np.ndarray, regressor: str, seed: int):
    from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor
    from sklearn.linear_model import Lasso

    if regressor == "lasso":
        model = Lasso(alpha=LASSO_ALPHA, max_iter=10_000).fit(train_x, train_y)
        return model, np.abs(model.coef_)
    if regressor == "gbt-classifier":  # disentanglement_lib's `GradientBoostingClassifier()`
        model = GradientBoostingClassifier(random_state=seed).fit(train_x, train_y)
        return model, model.feature_importances_
    model = GradientBoostingRegressor(n_estimators=50, max_depth=3, subsample=0.8, random_state=seed)
    model.fit(train_x, train_y)
    return model, model.feature_importances_


def _one_minus_entropy(shares: np.ndarray, base: int) -> np.ndarray:
    """1 − H(shares) / ln(base) along the last axis, for rows of non-negative shares summing to one."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(shares > 0, shares * np.log(shares), 0.0)
    return 1.0 + terms.sum(axis=-1) / np.log(base)


def dci(codes: np.ndarray, factors: np.ndarray, regressor: str = "lasso", seed: int = 0) -> dict[str, Any]:
    """DCI disentanglement, completeness and informativeness (held-out R²) from one regressor per factor."""
    if regressor not in REGRESSORS:
        raise VaelabError(f"unknown regressor '{regressor}'; choose from: {', '.join(REGRESSORS)}")
    codes, factors = _check(codes, factors)
    # Factors are standardised; codes only centred, so a dimension the prior pinned near 0 (an inactive unit, whose
    # tiny wiggles still follow the image) needs large coefficients and the lasso leaves it out.
    codes, factors = codes - codes.mean(axis=0), _standardised(factors)
    if regressor == "gbt-classifier":
        factors = np.stack([equal_width_bins(column) for column in factors.T], axis=1)
    # A random half, not the first: a test split may be ordered by a factor (emoji: by vendor), and a factor that
    # barely varies on the held-out part makes R² divide by almost nothing.
    order = np.random.default_rng(seed).permutation(len(codes))
    fit, held_out = order[: len(codes) // 2], order[len(codes) // 2:]
    importance = np.zeros((codes.shape[1], factors.shape[1]))
    scores = []
    for k in range(factors.shape[1]):
        model, importance[:, k] = _fit_importance(codes[fit], factors[fit, k], regressor, seed)
        target = factors[held_out, k]
        varies = target.std() > 1e-6  # the factors are standardised (or bins): a spread of 1 over all images
        scores.append(float(model.score(codes[held_out], target)) if varies else float("nan"))
    informativeness = _mean_of_defined(scores)
    total = importance.sum()
    if total <= 0:  # no code predicts any factor
        return {"disentanglement": 0.0, "completeness": 0.0, "informativeness": informativeness,
                "informativeness_per_factor": scores, "regressor": regressor, "importance": importance.tolist()}
    code_weight = importance.sum(axis=1) / total
    used = code_weight > 0
    rows = importance[used] / importance[used].sum(axis=1, keepdims=True)
    disentanglement = float((code_weight[used] * _one_minus_entropy(rows, max(factors.shape[1], 2))).sum())
    column_sums = importance.sum(axis=0)
    columns = importance[:, column_sums > 0].T / column_sums[column_sums > 0, None]
    completeness = float(_one_minus_entropy(columns, max(codes.shape[1], 2)).mean())
    return {"disentanglement": disentanglement, "completeness": completeness,
            "informativeness": informativeness, "informativeness_per_factor": scores,
            "regressor": regressor, "importance": importance.tolist()}


def sap(codes: np.ndarray, factors: np.ndarray) -> dict[str, Any]:
    """SAP: per factor the gap between the two largest single-code R², and their mean."""
    codes, factors = _check(codes, factors)
    codes, factors = _standardised(codes), _standardised(factors)
    scores = (codes.T @ factors / len(codes)) ** 2  # squared correlations [D, K]; a constant column gives 0
    ordered = np.sort(scores, axis=0)[::-1]
    second = ordered[1] if len(ordered) > 1 else np.zeros(scores.shape[1])
    gaps = ordered[0] - second
    return {"sap": float(gaps.mean()), "per_factor": gaps.tolist()}


def disentanglement_scores(
    codes: np.ndarray, factors: np.ndarray, bins: int = METRIC_BINS, regressor: str = "lasso", seed: int = 0,
    binning: str = "quantile",
) -> dict[str, Any]:
    """MIG, DCI and SAP of one set of codes against one set of factors, with the settings that produced them."""
    return {"mig": mutual_information_gap(codes, factors, bins, binning), "dci": dci(codes, factors, regressor, seed),
            "sap": sap(codes, factors), "images": len(codes)}


def mean_absolute_correlation(factors: np.ndarray) -> float:
    """The mean |Spearman ρ| over all pairs of factors: how far they are from independent."""
    from scipy.stats import spearmanr

    matrix = np.atleast_2d(spearmanr(factors).statistic)
    upper = np.triu_indices(matrix.shape[0], 1)
    return float(np.abs(matrix[upper]).mean())


def decorrelated_subset(factors: np.ndarray, size: int, seed: int = 0) -> np.ndarray:
    """Indices of `size` images drawn so that their factors are closer to independent.

    Each factor is turned into normal scores (its ranks through the inverse normal CDF); with Σ their correlation
    matrix, an image is drawn with a weight ∝ N(s; 0, I) / N(s; 0, Σ), the ratio of the independent density to the
    correlated one (importance resampling without replacement). What remains keeps each factor's range but loses
    most of the pairwise correlation.
    """
    from scipy.stats import norm, rankdata

    factors = np.asarray(factors, dtype=np.float64)
    if not 2 <= size <= len(factors):
        raise VaelabError(f"the subset size must be between 2 and {len(factors)} images (got {size})")
    scores = norm.ppf((np.apply_along_axis(rankdata, 0, factors) - 0.5) / len(factors))
    covariance = np.corrcoef(scores, rowvar=False)
    precision = np.linalg.pinv(covariance)
    log_ratio = -0.5 * (scores**2).sum(1) + 0.5 * np.einsum("nk,kl,nl->n", scores, precision, scores)
    weights = np.exp(log_ratio - log_ratio.max())
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(len(factors), size=size, replace=False, p=weights / weights.sum()))
