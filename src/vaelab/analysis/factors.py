"""What each latent dimension controls, measured rather than eyeballed.

For every active dimension:

- **Attributes under traversal.** The dimension is swept over ±r prior standard deviations (others fixed) from
  many base codes — the posterior means of the first `bases` test images — and every attribute of
  `vaelab.analysis.attributes` is measured on the decoded images. ρ is the Spearman rank correlation between
  the swept value and the attribute, **pooled over all bases and steps** (undefined measurements, e.g. thickness
  without ink, are dropped; ties get their average rank). Pooling weighs the dimension's effect against how much
  the attribute differs between the base images: |ρ| is high only when the dimension moves the attribute more
  than the rest of the code does. (The median of per-base correlations was tried and rejected: a continuous
  attribute such as ink area or slant changes monotonically under almost any small change of the picture, so
  on a 32-d MNIST model nearly every dimension reached a per-base median |ρ| ≈ 1 and was named ink_area or slant.)
- **Mutual information with the class label.** The dimension's posterior means over the whole test split are
  cut into MI_BINS equally populated (quantile) bins, and I(bin; label) is the plug-in estimate from the joint
  counts, in **nats** (the upper bound is the label entropy, ln 10 ≈ 2.30 nats for ten balanced classes), above
  chance: less the 95th percentile of the same estimate with the labels shuffled (MI_SHUFFLES seeded
  permutations), and 0 below it. The plug-in estimate is biased upwards by about (bins − 1)(classes − 1)/(2N):
  0.009 nats on 10,000 MNIST images, but 0.3–0.4 nats on 60 test images of three classes, where dimensions that
  carry nothing looked class-informative. Subtracting the shuffled mean (the bias alone) still left pure noise at
  0.015 nats on average and up to 0.25 on those 60 images (200 draws, 1 in 10 above 0); the percentile leaves
  0.004 on average and 0.15 at most, at the cost of understating a real dependence by about two standard
  deviations of chance: 0.1 nats on 60 images, 0.001 on 10,000. (Few images cannot measure less: chance itself
  spreads by about 0.05 nats on 60 of them.)
  The result is capped at the dimension's KL (`class_information`): the means of an inactive dimension still
  follow the digit faintly (0.03–0.10 nats on 10,000 test images of a collapsed model), but the code drawn around
  them carries at most its KL, a few thousandths of a nat.
- **Per class.** The top attribute's ρ again, pooled over the bases of each class alone (`top_rho_per_class`),
  and the weakest of them along the pooled sign (`top_rho_weakest_class`, the signed ρ of the class where the
  dimension moves the attribute least). A style factor that is the same for every class keeps a large weakest
  ρ; a dimension that thickens 1s but reshapes 8s does not. A conditional run (cvae, m2) encodes and decodes
  every base with its own label, so there this measures how class-independent its style dimensions are.
- **Smoothness.** Mean over bases of max step / mean step between consecutive decoded frames of the traversal
  (see `vaelab.analysis.smoothness`): 1 for an even change, large when the picture jumps.

- **Annotations** (datasets that have them). A binary annotation (CelebA's 40 attributes) is related to each
  dimension by the AUC of its posterior means over the test split (`top_annotation`, `top_annotation_auc`: the
  annotation farthest from 0.5, as max(AUC, 1 − AUC), with `top_annotation_sign` +1 when larger values of the
  dimension mean the attribute). A known factor of the dataset (emoji: skin tone 1–5 on the toned images) gets two
  ρ per dimension on the images where it is defined (`known_factors`): `encoder_rho`, Spearman ρ between the
  posterior means and the factor's value, and `traversal_rho`, the pooled ρ of its measured attribute (skin
  lightness) under traversal from the first `bases` of those images.

The name: the strongest attribute when its |ρ| ≥ ATTRIBUTE_RHO_THRESHOLD (e.g. `stroke_thickness (ρ=+0.82)`),
with `+ class` and the MI when the MI with the class is also at least CLASS_MI_THRESHOLD nats (e.g.
`width + class (ρ=+0.91, class MI 0.49 nats)`: the dimension carries the class as well, so its traversal changes
the digit, not only its width; the attribute alone would hide that); else `class/shape` when the MI with the class
is at least CLASS_MI_THRESHOLD nats, else `entangled`; dimensions that are not active units are `inactive` and are
not traversed. An active dimension that carries under WEAK_KL_NATS of KL is `weak` and is not traversed or named
either: it passes the active-unit test, yet it holds too little information for its traversal to mean anything (a
collapsed model's near-zero-KL dimensions would otherwise be named after whatever the decoder's noise correlates
with). `shown_name` applies the same rule to a factors.json written before it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import rankdata
from torch import nn

from vaelab.analysis.attributes import attributes_for, measure_batch
from vaelab.analysis.smoothness import confident_fraction, smoothness_ratio
from vaelab.analysis.traversal import (
    latent_usage,
    load_test_inputs,
    traversal_values,
    traverse_from_bases,
)
from vaelab.data.catalog import describe
from vaelab.errors import VaelabError
from vaelab.evaluation.disentanglement_metrics import discrete_mutual_information, quantile_bins
from vaelab.evaluation.latents import dimensions_by_kl, is_weak_dimension
from vaelab.io import atomic_write_json, require_suffix
from vaelab.models.base import GenerativeModel, posterior_moments
from vaelab.models.registry import decodes_sequentially, require_encoder
from vaelab.rundir import FACTORS, load_model, read_config

DEFAULT_BASES = 200
# A PixelCNN decoder draws each traversal frame pixel by pixel (about 0.02 s on one CPU thread,
# benchmarks/pixelcnn_sampling.py): 200 bases × 32 dimensions × 11 steps would take about 25 minutes, 40 about 5.
SEQUENTIAL_DECODER_BASES = 40
DEFAULT_RADIUS = 3.0
DEFAULT_STEPS = 11
ATTRIBUTE_RHO_THRESHOLD = 0.6  # |ρ| at or above which a dimension is named after its attribute
CLASS_MI_THRESHOLD = 0.25  # nats (≈ 11% of ln 10): a dimension this informative about the class changes the class
MI_BINS = 20
MI_SHUFFLES = 20  # label permutations the chance level of the class MI is measured on
MI_SEED = 0
UNNAMED = ("inactive", "weak", "entangled", "class/shape")  # names that say a dimension tracks no one attribute
MIN_POINTS = 3  # finite measurements needed for a rank correlation
NOT_TRAVERSED = {  # the row of a dimension that is not an active unit
    "top_attribute": None, "top_rho": None, "second_attribute": None, "second_rho": None,
    "top_rho_per_class": None, "top_rho_weakest_class": None, "weakest_class": None, "smoothness_ratio": None,
    "confident_fraction": None, "name": "inactive",
}


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation of two `[N]` arrays, ignoring positions where either is nan (ties get their
    average rank). nan when fewer than MIN_POINTS remain; 0 when either side is constant (no monotone trend)."""
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < MIN_POINTS:
        return math.nan
    rank_x, rank_y = rankdata(x[keep]), rankdata(y[keep])
    if rank_x.std() == 0 or rank_y.std() == 0:
        return 0.0
    return float(np.corrcoef(rank_x, rank_y)[0, 1])


def pooled_rank_correlation(values: np.ndarray, measurements: np.ndarray) -> float:
    """Spearman ρ between the traversed `values` `[S]` and the measurements `[B, S]` of all B traversals at once."""
    return spearman(np.broadcast_to(values, measurements.shape).ravel(), measurements.ravel())


def within_rank_correlation(values: np.ndarray, measurements: np.ndarray) -> float:
    """The mean over the B traversals of each one's own Spearman ρ between the traversed `values` `[S]` and its
    measurements (a row of `[B, S]`; rows with fewer than MIN_POINTS finite measurements left out, nan if all are):
    how surely each traversal moves the attribute, whatever the spread between them. The pooled ρ mixes that with
    how far: an attribute moved exactly one spread of its own per unit of `values` in {−2, …, 2} pools to ρ 0.82."""
    values = np.asarray(values, dtype=np.float64)
    measurements = np.asarray(measurements, dtype=np.float64)
    whole = np.isfinite(measurements).all(axis=1) & np.isfinite(values).all()
    per_row = list(_row_spearman(values, measurements[whole]))  # rows with a gap, one by one
    per_row += [spearman(values, row) for row in measurements[~whole]]
    finite = [rho for rho in per_row if math.isfinite(rho)]
    return float(np.mean(finite)) if finite else math.nan


def _row_spearman(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """`spearman(values, row)` of every row of finite `rows` `[B, S]` at once (0 for a constant row)."""
    if len(rows) < 1 or len(values) < MIN_POINTS:
        return np.full(len(rows), math.nan)
    ranks = rankdata(rows, axis=1) - (len(values) + 1) / 2.0
    value_ranks = rankdata(values) - (len(values) + 1) / 2.0
    spread = np.sqrt((ranks**2).sum(1) * (value_ranks**2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(spread > 0, (ranks * value_ranks).sum(1) / spread, 0.0)


def plug_in_mutual_information(values: np.ndarray, labels: np.ndarray, bins: int = MI_BINS) -> float:
    """Plug-in mutual information in nats between `values` `[N]` (discretised into quantile bins) and integer
    class `labels` `[N]`: biased upwards on few images (see the module's docstring)."""
    binned = quantile_bins(np.asarray(values, dtype=np.float64), bins)
    return discrete_mutual_information(binned, np.asarray(labels, dtype=np.int64))


def mutual_information(
    values: np.ndarray, labels: np.ndarray, bins: int = MI_BINS, shuffles: int = MI_SHUFFLES, seed: int = MI_SEED
) -> float:
    """Mutual information in nats between `values` `[N]` and class `labels` `[N]` above chance: the plug-in
    estimate less the 95th percentile of its values under `shuffles` seeded permutations of the labels, at least 0."""
    binned = quantile_bins(np.asarray(values, dtype=np.float64), bins)
    labels = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    chance = [discrete_mutual_information(binned, rng.permutation(labels)) for _ in range(shuffles)]
    return max(0.0, discrete_mutual_information(binned, labels) - float(np.quantile(chance, 0.95)))


def class_information(values: np.ndarray, labels: np.ndarray, kl_nats: float) -> float:
    """The class MI of a dimension's posterior means `values` above chance (`mutual_information`), at most the
    dimension's KL: a code drawn from q(z|x) cannot tell more about the class than about the image
    (I(z; y) ≤ I(z; x) ≤ KL), however faithfully its barely moving means follow the class."""
    return min(mutual_information(values, labels), kl_nats)


def per_class_rank_correlation(
    values: np.ndarray, measurements: np.ndarray, base_labels: np.ndarray, classes: int
) -> list[float]:
    """The pooled ρ of `pooled_rank_correlation` over the bases of each class alone (nan for a class without
    bases): `measurements` `[B, S]`, `base_labels` `[B]`."""
    return [
        pooled_rank_correlation(values, measurements[base_labels == c]) if (base_labels == c).any() else math.nan
        for c in range(classes)
    ]


def weakest_class(per_class: list[float], pooled: float) -> tuple[float, int | None]:
    """The class whose ρ, signed along the pooled ρ, is smallest: (that signed ρ, the class)."""
    sign = 1.0 if pooled >= 0 else -1.0
    defined = [(sign * rho, c) for c, rho in enumerate(per_class) if math.isfinite(rho)]
    return min(defined) if defined else (math.nan, None)


def auc(values: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of `values` for telling `positive` (bool `[N]`) from the rest: the Mann–Whitney
    U statistic over n₊·n₋ (ties count a half); nan when either class is empty."""
    positive = np.asarray(positive, dtype=bool)
    n_positive, n_negative = positive.sum(), (~positive).sum()
    if n_positive == 0 or n_negative == 0:
        return math.nan
    ranks = rankdata(values)
    return float((ranks[positive].sum() - n_positive * (n_positive + 1) / 2) / (n_positive * n_negative))


def binary_annotations(annotations: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """The annotations that are 0/1 with both values present (CelebA's attributes), as bool arrays."""
    binary = {}
    for name, values in annotations.items():
        values = values.numpy()
        if set(np.unique(values).tolist()) == {0, 1}:
            binary[name] = values.astype(bool)
    return binary


def top_annotation(dim_means: np.ndarray, binary: dict[str, np.ndarray]) -> dict[str, Any]:
    """The binary annotation a dimension tells apart best: its name, max(AUC, 1 − AUC) and the sign."""
    if not binary:
        return {}
    scores = {name: auc(dim_means, positive) for name, positive in binary.items()}
    best = max(scores, key=lambda name: abs(scores[name] - 0.5))
    return {"top_annotation": best, "top_annotation_auc": max(scores[best], 1 - scores[best]),
            "top_annotation_sign": 1 if scores[best] >= 0.5 else -1}


def known_factor_relations(
    model: GenerativeModel, means: torch.Tensor, test: Any, dim: int, values: torch.Tensor, dataset: str, bases: int
) -> dict[str, dict[str, float]]:
    """For each known factor of the dataset, on the test images where it is defined: ρ of the posterior means of
    `dim` with the factor (`encoder_rho`), the pooled ρ of its measured attribute under traversal of `dim`
    from the first `bases` of them (`traversal_rho`) and, for a factor with `held_fixed` annotations, the mean of
    the ρ within each set of images that differ in the factor alone (`encoder_rho_within`, over `sets` sets)."""
    relations = {}
    for factor in describe(dataset).known_factors:
        truth = test.annotations[factor.annotation]
        inside = ((truth >= factor.low) & (truth <= factor.high)).nonzero().flatten()
        if inside.numel() < MIN_POINTS:
            continue
        encoder_rho = spearman(means[inside, dim].numpy(), truth[inside].numpy().astype(np.float64))
        chosen = inside[:bases]
        images = traverse_from_bases(model, means[chosen], dim, values, test.labels[chosen])
        measured = measure_batch(images.flatten(end_dim=1), dataset)[factor.attribute]
        traversal_rho = pooled_rank_correlation(values.numpy(), measured.reshape(len(chosen), -1))
        relations[factor.annotation] = {"encoder_rho": encoder_rho, "traversal_rho": traversal_rho,
                                        "images": int(inside.numel()), "bases": int(len(chosen))}
        if factor.held_fixed:
            sets = same_but_for(test.annotations, factor.held_fixed, inside, truth)
            within = [spearman(means[members, dim].numpy(), truth[members].numpy().astype(np.float64))
                      for members in sets]
            within = [rho for rho in within if math.isfinite(rho)]
            relations[factor.annotation].update(
                encoder_rho_within=float(np.mean(within)) if within else None, sets=len(within))
    return relations


MIN_FACTOR_VALUES = 3  # distinct values of the factor a set needs for a within-set ρ


def same_but_for(
    annotations: dict[str, torch.Tensor], held_fixed: tuple[str, ...], inside: torch.Tensor, truth: torch.Tensor
) -> list[torch.Tensor]:
    """The images among `inside` grouped by their `held_fixed` annotations (the same drawing by the same vendor),
    each group kept when it holds at least MIN_FACTOR_VALUES values of the factor."""
    keys = torch.stack([annotations[name][inside].long() for name in held_fixed], dim=1)
    _, group = torch.unique(keys, dim=0, return_inverse=True)
    sets = [inside[group == g] for g in range(int(group.max()) + 1)] if len(inside) else []
    return [members for members in sets if truth[members].unique().numel() >= MIN_FACTOR_VALUES]


def factor_name(top_attribute: str | None, top_rho: float, mi_with_class: float) -> str:
    """The name of an active dimension from its numbers (see the module's docstring): an attribute it tracks
    never hides a class it changes as well."""
    changes_class = mi_with_class >= CLASS_MI_THRESHOLD
    if top_attribute is not None and abs(top_rho) >= ATTRIBUTE_RHO_THRESHOLD:
        if changes_class:
            return f"{top_attribute} + class (ρ={top_rho:+.2f}, class MI {mi_with_class:.2f} nats)"
        return f"{top_attribute} (ρ={top_rho:+.2f})"
    if changes_class:
        return "class/shape"
    return "entangled"


def is_weak(row: dict[str, Any]) -> bool:
    """Whether a factor row is an active unit that carries under WEAK_KL_NATS of KL (computed from `kl`, so a
    factors.json written before the `weak` key still answers)."""
    return is_weak_dimension(row["active"], row["kl"])


def shown_name(row: dict[str, Any]) -> str:
    """A factor row's name as every view shows it: `inactive` or `weak` by their one definition (also for a
    factors.json written when weak dimensions were still named after an attribute), else the name it was given."""
    if not row["active"]:
        return "inactive"
    return "weak" if is_weak(row) else str(row["name"])


def is_named(row: dict[str, Any]) -> bool:
    """Whether a factor row names an attribute its dimension moves (not inactive, weak, entangled or class/shape)."""
    return shown_name(row) not in UNNAMED


def traversal_measurements(
    model: GenerativeModel,
    base_codes: torch.Tensor,
    dim: int,
    values: torch.Tensor,
    dataset: str,
    base_labels: torch.Tensor,
    classifier: nn.Module | None = None,
) -> dict[str, Any]:
    """Traverse `dim` from every base code (a conditional model decodes each as its base's label, `base_labels`
    `[B]`); the two attributes with the largest |ρ|, the top one's ρ per class, the mean smoothness ratio of the
    traversals, and (with a reference classifier) the share of frames it confidently assigns a class."""
    images = traverse_from_bases(model, base_codes, dim, values, base_labels)  # [B, S, 1, H, W]
    bases, steps = images.shape[:2]
    measured = {
        name: series.reshape(bases, steps) for name, series in measure_batch(images.flatten(end_dim=1), dataset).items()
    }
    rhos = {name: pooled_rank_correlation(values.numpy(), measured[name]) for name in attributes_for(dataset)}
    ranked = sorted((name for name in rhos if math.isfinite(rhos[name])), key=lambda name: -abs(rhos[name]))
    top, second = [*ranked, None, None][:2]  # None where fewer than two attributes have a defined ρ
    per_class = (
        per_class_rank_correlation(values.numpy(), measured[top], base_labels.numpy(), describe(dataset).classes)
        if top else []
    )
    weakest_rho, weakest = weakest_class(per_class, rhos[top]) if top else (math.nan, None)
    return {
        "top_attribute": top,
        "top_rho": rhos[top] if top else math.nan,
        "second_attribute": second,
        "second_rho": rhos[second] if second else math.nan,
        "top_rho_per_class": [None if not math.isfinite(rho) else rho for rho in per_class] or None,
        "top_rho_weakest_class": weakest_rho,
        "weakest_class": weakest,
        "smoothness_ratio": float(np.mean([smoothness_ratio(row) for row in images])),
        "confident_fraction": (
            confident_fraction(images.flatten(end_dim=1), classifier) if classifier is not None else None
        ),
    }


def _json_ready(row: dict[str, Any]) -> dict[str, Any]:
    """JSON has no nan: an undefined number becomes null."""
    return {key: None if isinstance(v, float) and not math.isfinite(v) else v for key, v in row.items()}


def analyse_factors(
    run_dir: str | Path,
    bases: int | None = None,
    radius: float = DEFAULT_RADIUS,
    steps: int = DEFAULT_STEPS,
    out: str | Path | None = None,
    log: Callable[[str], None] = lambda message: None,
    classifier: nn.Module | None = None,
) -> list[dict[str, Any]]:
    """The factor table of a run, one row per dimension, largest KL first; written atomically to `out`
    (default RUN/factors.json), traversing from the codes of the first `bases` test images (default DEFAULT_BASES,
    or SEQUENTIAL_DECODER_BASES for a decoder that draws pixel by pixel). Rows: dim, bases, kl, active, weak (active
    with under WEAK_KL_NATS of KL), top_attribute, top_rho, second_attribute, second_rho, top_rho_per_class,
    top_rho_weakest_class, weakest_class, mi_with_class, smoothness_ratio, confident_fraction (null without a
    classifier), name. A conditional run's codes are its posterior means given the true labels."""
    run_dir = Path(run_dir)
    if bases is not None and bases < 1:
        raise VaelabError(f"bases must be at least 1 test image (got {bases})")
    values = traversal_values(radius, steps)
    out = require_suffix(out if out is not None else run_dir / FACTORS, ".json")
    data = read_config(run_dir).data
    model = load_model(run_dir)
    if bases is None:
        bases = SEQUENTIAL_DECODER_BASES if decodes_sequentially(model.config) else DEFAULT_BASES
    require_encoder(model, "vaelab factors (it traverses from the codes of test images)")
    test, inputs = load_test_inputs(data)
    means, _ = posterior_moments(model, inputs, test.labels)
    usage = latent_usage(run_dir, model, inputs, test.labels)
    base_codes, base_labels = means[:bases], test.labels[:bases]
    has_classes = describe(data.dataset).classes >= 2
    binary = binary_annotations(test.annotations)
    rows = []
    for dim in dimensions_by_kl(usage.kl_per_dim):
        row: dict[str, Any] = {
            "dim": dim,
            "bases": len(base_codes),
            "kl": usage.kl_per_dim[dim],
            "active": usage.active[dim],
            "mi_with_class": (class_information(means[:, dim].numpy(), test.labels.numpy(), usage.kl_per_dim[dim])
                              if has_classes else 0.0),
            **top_annotation(means[:, dim].numpy(), binary),
        }
        row["weak"] = is_weak(row)
        if usage.active[dim] and not row["weak"]:
            row.update(traversal_measurements(model, base_codes, dim, values, data.dataset, base_labels, classifier))
            row["name"] = factor_name(row["top_attribute"], row["top_rho"], row["mi_with_class"])
            known = known_factor_relations(model, means, test, dim, values, data.dataset, bases)
            if known:
                row["known_factors"] = {name: _json_ready(numbers) for name, numbers in known.items()}
        else:
            row.update(NOT_TRAVERSED, name=shown_name(row))
        log(f"dimension {dim}: {row['name']}")
        rows.append(_json_ready(row))
    atomic_write_json(out, rows)
    return rows


def annotation_text(row: dict[str, Any]) -> str:
    """`skin_tone ρ −0.35 / −0.31 / +0.90 within; Smiling AUC 0.91 (+)`: a row's known factors (encoder ρ /
    traversal ρ / encoder ρ within sets that differ in the factor alone) and its best binary annotation; `–` for
    none."""
    parts = []
    for name, numbers in (row.get("known_factors") or {}).items():
        encoder, traversal, within = (numbers.get(key) for key in ("encoder_rho", "traversal_rho",
                                                                   "encoder_rho_within"))
        text = (f"{name} ρ {'–' if encoder is None else format(encoder, '+.2f')} / "
                f"{'–' if traversal is None else format(traversal, '+.2f')}")
        parts.append(text if within is None else f"{text} / {within:+.2f} within")
    if row.get("top_annotation"):
        sign = "+" if row["top_annotation_sign"] > 0 else "−"
        parts.append(f"{row['top_annotation']} AUC {row['top_annotation_auc']:.2f} ({sign})")
    return "; ".join(parts) or "–"


def weakest_class_text(row: dict[str, Any]) -> str:
    """`+0.41 (class 8)`: the top attribute's smallest ρ over the classes, signed along the pooled ρ."""
    if row.get("top_rho_weakest_class") is None:
        return "–"
    return f"{row['top_rho_weakest_class']:+.2f} (class {row['weakest_class']})"


def factor_table(rows: list[dict[str, Any]]) -> str:
    """The factor rows as a plain-text table for the terminal."""
    annotated = any("top_annotation" in row or "known_factors" in row for row in rows)
    header = ("dim", "KL nats", "top attribute", "ρ", "weakest class ρ", "second attribute", "ρ", "MI class", "smooth",
              "confident", "name", *(["annotations"] if annotated else []))

    def number(value: float | None, form: str) -> str:
        return "–" if value is None else format(value, form)

    lines = [
        (
            str(row["dim"]), number(row["kl"], ".2f") + (" weak" if is_weak(row) else ""),
            row["top_attribute"] or "–", number(row["top_rho"], "+.2f"),
            weakest_class_text(row), row["second_attribute"] or "–", number(row["second_rho"], "+.2f"),
            number(row["mi_with_class"], ".3f"), number(row["smoothness_ratio"], ".2f"),
            number(row.get("confident_fraction"), ".0%"), shown_name(row),
            *([annotation_text(row)] if annotated else []),
        )
        for row in rows
    ]
    widths = [max(len(cells[i]) for cells in [header, *lines]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()
        for cells in [header, *lines]
    )
