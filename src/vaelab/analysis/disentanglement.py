"""`vaelab factors` → RUN/disentanglement.json: MIG, DCI and SAP of a run's codes against measured attributes.

The codes are the posterior means of the test split; the factors are what `vaelab.analysis.attributes` measures on
the same real test images (MNIST: ink area, stroke length and thickness, slant, width, height), plus the binary
annotations a dataset has (CelebA's 40 labels). Those attributes are correlated with each other and with the class,
so the same metrics are also computed on a subsample where they are close to independent
(`vaelab.evaluation.disentanglement_metrics.decorrelated_subset`): how far the two differ says how much of a score is
the
correlation of the attributes rather than the model. The scores compare vaelab's runs with each other; they are not
dSprites figures.

A part the metrics cannot be computed on (fewer than MIN_IMAGES images: a small folder's test split is a tenth of
it, and the decorrelated subsample a quarter of that) is null in the result, and `skipped` (part → reason) says
why and what would give it enough images; the result is written all the same.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from vaelab.analysis.attributes import measure_batch
from vaelab.analysis.factors import binary_annotations
from vaelab.analysis.traversal import load_test_inputs
from vaelab.data.catalog import describe
from vaelab.data.datasets import to_float
from vaelab.errors import VaelabError
from vaelab.evaluation.disentanglement_metrics import (
    METRIC_BINS,
    MIN_IMAGES,
    decorrelated_subset,
    disentanglement_scores,
    mean_absolute_correlation,
    mutual_information_gap,
)
from vaelab.io import atomic_write_json
from vaelab.models.base import posterior_moments
from vaelab.models.registry import require_encoder
from vaelab.rundir import DISENTANGLEMENT, load_model, read_config

MIN_DEFINED_SHARE = 0.5  # an attribute must be defined on at least this share of the images to be a factor
DECORRELATED_SHARE = 4  # the decorrelated subsample keeps a quarter of the images
CORRELATION_NOTE = (
    "Measured attributes are correlated with each other and with the class, unlike the factors of synthetic datasets "
    "(dSprites): these scores compare vaelab runs on the same attributes and are not to be set beside published "
    "dSprites figures. 'decorrelated' repeats them on a subsample where the attributes are close to independent."
)


def factors_of_test_images(dataset: str, images: np.ndarray, annotations: dict) -> tuple[list[str], np.ndarray]:
    """The factor names and values `[N, K]` of test images: measured attributes, then binary annotations."""
    columns = dict(measure_batch(images, dataset)) if describe(dataset).attributes else {}
    columns.update({name: values.astype(np.float64) for name, values in binary_annotations(annotations).items()})
    if not columns:
        raise VaelabError(f"{dataset} has neither attribute measurers nor annotations: there are no factors to "
                          "measure disentanglement against")
    return list(columns), np.stack(list(columns.values()), axis=1)


def known_factor_gaps(
    dataset: str, codes: np.ndarray, annotations: dict, bins: int, binning: str = "quantile"
) -> dict[str, Any]:
    """MIG of the codes against each ground-truth factor of the dataset (emoji: skin tone 1–5), on the images where
    it is defined: a factor that was designed independent of the rest, unlike the measured attributes."""
    gaps = {}
    for factor in describe(dataset).known_factors:
        truth = annotations[factor.annotation].numpy()
        inside = (truth >= factor.low) & (truth <= factor.high)
        if inside.sum() < MIN_IMAGES:
            continue
        gap = mutual_information_gap(codes[inside], truth[inside, None].astype(np.float64), bins, binning)
        gaps[factor.annotation] = {"mig": gap["mig"], "top_code": gap["top_code"][0], "images": int(inside.sum())}
    return gaps


def measure_disentanglement(
    run_dir: str | Path,
    images: int | None = None,
    bins: int = METRIC_BINS,
    regressor: str = "lasso",
    binning: str = "quantile",
    out: str | Path | None = None,
    log: Callable[[str], None] = lambda message: None,
    write: bool = True,
) -> dict[str, Any]:
    """MIG, DCI and SAP of the run's test codes against the test images' factors (the first `images`, default all),
    on all of them and on the decorrelated subsample; written atomically to `out` (default
    RUN/disentanglement.json) unless `write` is False."""
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    model = load_model(run_dir)
    require_encoder(model, "disentanglement metrics (they read the codes of test images)")
    test, inputs = load_test_inputs(config.data)
    count = len(test) if images is None else min(images, len(test))
    log(f"encoding {count:,} test images and measuring their attributes")
    codes, _ = posterior_moments(model, inputs[:count], test.labels[:count])
    annotations = {name: values[:count] for name, values in test.annotations.items()}
    names, factors = factors_of_test_images(config.data.dataset, to_float(test.images[:count]).numpy(), annotations)
    # An attribute undefined on most images (emoji: skin lightness without skin) is left out; then the images where
    # any remaining one is undefined (thickness of an image without ink).
    mostly_defined = np.isfinite(factors).mean(axis=0) >= MIN_DEFINED_SHARE
    dropped_factors = [name for name, kept in zip(names, mostly_defined, strict=True) if not kept]
    names = [name for name, kept in zip(names, mostly_defined, strict=True) if kept]
    factors = factors[:, mostly_defined]
    defined = np.isfinite(factors).all(axis=1)
    codes_all = codes.numpy()
    codes, factors = codes_all[defined], factors[defined]
    log(f"MIG, DCI ({regressor}) and SAP on {len(codes):,} images against {len(names)} factors")
    size = len(factors) // DECORRELATED_SHARE
    # Too small a subsample is not scored (see _scores); drawing it would only fail on fewer than 2 images.
    subset = decorrelated_subset(factors, size) if size >= MIN_IMAGES else np.arange(size)
    known = known_factor_gaps(config.data.dataset, codes_all, annotations, bins, binning)
    result = {
        "dataset": config.data.dataset,
        "objective": config.objective_settings(),
        "factors": names,
        "factors_dropped": dropped_factors,
        "images": int(defined.sum()),
        "images_dropped": int((~defined).sum()),
        "images_requested": images,  # None: all; more than the split holds is all of it
        "bins": bins,
        "binning": binning,
        "regressor": regressor,
        "all": _scores(codes, factors, bins, regressor, binning),
        "decorrelated": _scores(codes[subset], factors[subset], bins, regressor, binning),
        "known_factors": known,
        "note": CORRELATION_NOTE,
    }
    limited = images is not None and images < len(test)
    result["skipped"] = {
        part: too_few_images_text(part, len(chosen), limited)
        for part, chosen in (("all", codes), ("decorrelated", subset)) if result[part] is None
    }
    for part, reason in result["skipped"].items():
        log(f"disentanglement metrics ({part}) skipped: {reason}")
    if write:
        atomic_write_json(Path(out) if out is not None else run_dir / DISENTANGLEMENT, result)
    return result


def _scores(
    codes: np.ndarray, factors: np.ndarray, bins: int, regressor: str, binning: str = "quantile"
) -> dict[str, Any] | None:
    """MIG, DCI, SAP and the factors' mean |ρ| of one part, or None where it has too few images to score."""
    if len(codes) < MIN_IMAGES:
        return None
    return {**disentanglement_scores(codes, factors, bins, regressor, binning=binning),
            "mean_abs_factor_correlation": mean_absolute_correlation(factors)}


def too_few_images_text(part: str, images: int, limited: bool) -> str:
    """Why a part of the metrics was not computed and what would give it enough images."""
    share = DECORRELATED_SHARE if part == "decorrelated" else 1
    have = (f"the decorrelated subsample keeps a quarter of the test images, {images} here" if share > 1
            else f"this run has {images} test images with every factor defined")
    fix = ("raise --metric-images" if limited else
           f"use a dataset with at least {MIN_IMAGES * share} test images (a folder's test split is a tenth of it: "
           f"{MIN_IMAGES * share * 10:,} images or more)")
    return f"they need at least {MIN_IMAGES} images, and {have}; {fix}"


def objective_text(objective: dict[str, Any]) -> str:
    """`β-TCVAE, tc_weight 6` / `β-VAE, β 1` / `β-VAE, β 1, VampPrior (100 pseudo-inputs)`: an objective, its
    weights and a prior other than N(0, I) in a few words."""
    names = {"beta": "β-VAE", "tcvae": "β-TCVAE", "factorvae": "FactorVAE", "capacity": "annealed capacity"}
    # β is always shown; the β-VAE's warm-up and free bits only when they are on.
    weights = ", ".join(f"{'β' if key == 'beta' else key} {value:g}" for key, value in objective.items()
                        if key not in ("name", "prior", "prior_components")
                        and (value or key not in ("kl_warmup_steps", "free_bits")))
    prior = f", VampPrior ({objective['prior_components']} pseudo-inputs)" if objective.get("prior") == "vamp" else ""
    return f"{names[objective['name']]}, {weights}{prior}"


def disentanglement_table(result: dict[str, Any]) -> str:
    """Terminal lines: the scores on all test images and on the decorrelated subsample."""
    lines = [f"objective {objective_text(result['objective'])}; {len(result['factors'])} factors "
             f"({', '.join(result['factors'][:8])}{' …' if len(result['factors']) > 8 else ''}); MIG with "
             f"{result.get('binning', 'quantile')} bins, DCI from a {result['regressor']} regressor"]
    for name in ("all", "decorrelated"):
        part = result[name]
        if part is None:
            lines.append(f"{name:<13} skipped: {result['skipped'][name]}")
            continue
        lines.append(f"{name:<13} {part['images']:>6,} images  mean |ρ| between factors "
                     f"{part['mean_abs_factor_correlation']:.2f}  MIG {part['mig']['mig']:.3f}  "
                     f"DCI D {part['dci']['disentanglement']:.3f} C {part['dci']['completeness']:.3f} "
                     f"I {part['dci']['informativeness']:.3f}  SAP {part['sap']['sap']:.3f}")
    return "\n".join(lines)
