"""`vaelab generation` / `vaelab eval --generation`: how good a run's samples are, per sampler, written to
RUN/generation.json.

For each sampler (prior, gmm, two-stage): n samples (seed 0 unless told) against the test split, measured by
- `fid_inception`: FID with the standard InceptionV3 weights (the number set beside published ones; the sample and
  reference counts are stored with it, and anything short of 10k vs. 10k is flagged QUICK);
- `fid_classifier`: FID in the feature space of vaelab's reference classifier (its test accuracy stored beside it),
  plus k-NN precision / recall (k = 3) in that space — never to be compared with Inception FID;
- the class histogram the reference classifier gives the samples, and how many classes get ≥ 1% of them;
- sharpness (mean gradient magnitude) of samples and of the test images.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vaelab.analysis.samplers import SAMPLERS, check_sampler, sample_images, samplers_for, use_sampling_steps
from vaelab.data.datasets import load_split, to_float
from vaelab.errors import VaelabError
from vaelab.evaluation.reference_classifier import (
    ReferenceClassifier,
    classifier_outputs,
    classifier_summary,
    load_or_train_classifier,
    weakness_text,
)
from vaelab.evaluation.sample_metrics import (
    PRECISION_RECALL_K,
    PROTOCOL_IMAGES,
    FeatureStatistics,
    feature_statistics,
    frechet_distance,
    inception_features,
    inception_test_statistics,
    load_inception,
    nearest_neighbour_radii,
    precision_recall,
    protocol_note,
    sharpness,
)
from vaelab.io import atomic_write_json
from vaelab.models.registry import capabilities, family
from vaelab.rundir import GENERATION, load_model, read_artefact_if_present, read_config

SAMPLE_SEED = 0
INCEPTION_FOR = ("all", "best")  # which samplers get an Inception FID
COVERED_SHARE = 0.01  # a class counts as covered when at least 1% of the samples are classified as it

Log = Callable[[str], None]


def parse_samplers(spec: str | Sequence[str], run_dir: str | Path | None = None) -> list[str]:
    """'all', one name or a comma-separated list → sampler names, checked (against what the run's family offers,
    given `run_dir`: 'all' is prior, gmm and two-stage for a VAE, prior alone for a gan or a ddpm)."""
    kind = read_config(run_dir).model.family if run_dir is not None else "vae"
    can = family(kind).capabilities
    names = samplers_for(can) if spec == "all" else ([s.strip() for s in spec.split(",")] if isinstance(spec, str)
                                                     else list(spec))
    unknown = [name for name in names if name not in SAMPLERS]
    if unknown or not names:
        offered = samplers_for(can, explicit=True)
        raise VaelabError(f"unknown sampler '{','.join(unknown)}'; choose from: all, {', '.join(offered)}")
    for name in names:
        check_sampler(can, kind, name)
    return names


def class_histogram(probabilities: torch.Tensor) -> list[float]:
    """Share of images per most probable class."""
    counts = torch.bincount(probabilities.argmax(1), minlength=probabilities.shape[1]).float()
    return (counts / counts.sum()).tolist()


@dataclass(frozen=True)
class RealReference:
    """What samples are compared with: the test split seen by the reference classifier (and, optionally, by
    Inception). Computed once and shared by every sampler and every run of a sweep."""

    dataset: str
    classifier: ReferenceClassifier
    features: torch.Tensor
    statistics: FeatureStatistics
    radii: torch.Tensor  # k-NN radii of the real features, for precision
    summary: dict[str, Any]  # sharpness, class histogram, image count
    inception: FeatureStatistics | None
    network: torch.jit.ScriptModule | None


def real_reference(
    dataset: str, inception: bool = True, reference_images: int | None = None, log: Log = lambda m: None
) -> RealReference:
    """The real side of every generation metric: the first `reference_images` test images (default: the
    protocol's 10,000, or the whole test split when it is smaller, e.g. emoji's 832)."""
    if reference_images is None:
        reference_images = min(PROTOCOL_IMAGES, len(load_split(dataset, "test")))
    if reference_images < 2:
        raise VaelabError("--reference-images must be at least 2 for a covariance")
    judge = load_or_train_classifier(dataset, log=log)
    test = load_split(dataset, "test")
    if reference_images > len(test):
        raise VaelabError(f"--reference-images {reference_images} is more than the {len(test):,} test images")
    real = to_float(test.images)
    features, probabilities = classifier_outputs(judge, real)
    network = load_inception() if inception else None
    return RealReference(
        dataset, judge, features, feature_statistics(features), nearest_neighbour_radii(features),
        {"images": len(test), "sharpness": sharpness(real), "class_histogram": class_histogram(probabilities)},
        inception_test_statistics(dataset, reference_images, network, log) if inception else None,
        network,
    )


def score_samples(images: torch.Tensor, reference: RealReference) -> dict[str, Any]:
    """Every classifier-space metric of one set of samples `[N, C, H, W]` in [0, 1] against the reference."""
    features, probabilities = classifier_outputs(reference.classifier, images)
    precision, recall = precision_recall(reference.features, features, real_radii=reference.radii)
    histogram = class_histogram(probabilities)
    return {
        "samples": len(images),
        "fid_classifier": frechet_distance(feature_statistics(features), reference.statistics),
        "fid_classifier_reference_images": len(reference.features),
        "precision": precision,
        "recall": recall,
        "precision_recall_k": PRECISION_RECALL_K,
        "class_histogram": histogram,
        "classes_covered": sum(share >= COVERED_SHARE for share in histogram),
        "sharpness": sharpness(images),
    }


def inception_scores(images: torch.Tensor, reference: RealReference, inception_samples: int, log: Log) -> dict:
    """Inception FID of the first `inception_samples` samples against the reference's Inception statistics."""
    log(f"Inception features of {inception_samples:,} samples (≈{inception_samples * 0.11:.0f} s on 2 CPU cores)")
    statistics = feature_statistics(inception_features(images[:inception_samples], reference.network, log))
    return {
        "fid_inception": frechet_distance(statistics, reference.inception),
        "inception_samples": inception_samples,
        "inception_reference_images": reference.inception.count,
        "fid_inception_protocol": protocol_note(inception_samples, reference.inception.count),
    }


def check_inception_for(value: str) -> None:
    """A one-line error for an `--inception-for` that is neither all nor best (before any measurement)."""
    if value not in INCEPTION_FOR:
        raise VaelabError(f"unknown --inception-for '{value}'; choose from: {', '.join(INCEPTION_FOR)}")


def measure_generation(
    run_dir: str | Path,
    samplers: str | Sequence[str] = "all",
    samples: int = PROTOCOL_IMAGES,
    inception: bool = True,
    inception_samples: int | None = None,
    reference_images: int | None = None,
    components: int = 10,
    log: Log = lambda m: None,
    write: bool = True,
    steps: int | None = None,
    reference: RealReference | None = None,
    inception_for: str = "all",
    seed: int = SAMPLE_SEED,
    cache_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Generation metrics of each sampler; merged into RUN/generation.json (other samplers' entries are kept).

    `inception_samples` (default: all `samples`) and `reference_images` (default: the 10,000 test images, or all of
    a smaller test split) trade the Inception FID's accuracy for time — about 0.11 s per image on 2 CPU cores.
    `inception_for="best"` spends Inception on one sampler only, the one with the lowest classifier FID: the
    10,000-sample protocol then costs one Inception pass per run instead of one per sampler. Another `seed` draws
    other samples from the same sampler: the spread of a figure over seeds says which differences are real.
    The fitted samplers are stored in `cache_dir` (None: the run directory; `vaelab.analysis.samplers`).
    """
    check_inception_for(inception_for)
    run_dir = Path(run_dir)
    samplers = parse_samplers(samplers, run_dir)
    inception_samples = samples if inception_samples is None else inception_samples
    if min(samples, inception_samples) < 2:
        raise VaelabError("sample counts must be at least 2 for a covariance")
    if inception_samples > samples:
        raise VaelabError(f"--inception-samples {inception_samples} is more than the {samples} samples drawn")
    dataset = read_config(run_dir).data.dataset
    if reference is None:
        reference = real_reference(dataset, inception, reference_images, log)
    elif reference.dataset != dataset:
        raise VaelabError(f"{run_dir} is a {dataset} run; the reference given is {reference.dataset}")
    model = load_model(run_dir)
    use_sampling_steps(model, steps)

    path = run_dir / GENERATION
    result: dict[str, Any] = read_artefact_if_present(run_dir, GENERATION) or {}
    result.update({
        "dataset": dataset,
        "real": reference.summary,
        "classifier_test_accuracy": classifier_summary(dataset)["test_accuracy"],
    })
    result.setdefault("samplers", {})
    best: tuple[float, str, torch.Tensor] | None = None  # (classifier FID, sampler, samples) for inception_for="best"
    for sampler in samplers:
        started = time.perf_counter()
        log(f"{sampler}: drawing {samples:,} samples")
        images = sample_images(model, run_dir, samples, sampler, seed, components, log, cache_dir)
        entry = {"seed": seed, **score_samples(images, reference)}
        if reference.inception is not None and inception_for == "all":
            entry.update(inception_scores(images, reference, inception_samples, log))
        if best is None or entry["fid_classifier"] < best[0]:
            best = (entry["fid_classifier"], sampler, images)
        if capabilities(model).sampling == "diffusion" and sampler == "prior":
            entry["ddim_steps"] = model.sampling_steps
        if sampler == "gmm":
            entry["components"] = components
        if capabilities(model).conditional:
            entry["labels"] = "the classes in turn"
        entry["seconds"] = time.perf_counter() - started
        result["samplers"][sampler] = entry
        if write:  # after each sampler: an interrupted measurement keeps what it finished
            atomic_write_json(path, result)
    if reference.inception is not None and inception_for == "best":
        _, sampler, images = best
        log(f"{sampler}: the lowest classifier FID of {', '.join(samplers)}; Inception FID for it alone")
        result["samplers"][sampler].update(inception_scores(images, reference, inception_samples, log),
                                           inception_chosen_by="lowest classifier FID")
        if write:
            atomic_write_json(path, result)
    return result


def generation_table(result: dict[str, Any], samplers: Sequence[str] | None = None) -> str:
    """Terminal table: one row per sampler."""
    header = ("sampler", "FID inception", "FID classifier", "precision", "recall", "classes", "sharpness", "samples")
    rows = [header]
    for name, entry in result["samplers"].items():
        if samplers is not None and name not in samplers:
            continue
        inception = f"{entry['fid_inception']:.2f}" if "fid_inception" in entry else "–"
        if "fid_inception" in entry and entry["inception_samples"] < PROTOCOL_IMAGES:
            inception += f" (QUICK, {entry['inception_samples']:,})"
        rows.append((name, inception, f"{entry['fid_classifier']:.3f}", f"{entry['precision']:.3f}",
                     f"{entry['recall']:.3f}", f"{entry['classes_covered']}/{len(entry['class_histogram'])}",
                     f"{entry['sharpness']:.4f}", f"{entry['samples']:,}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows]
    lines.append(f"real test images: sharpness {result['real']['sharpness']:.4f}; reference classifier test "
                 f"accuracy {result['classifier_test_accuracy']:.2%} (its 128-d features: FID classifier, P/R k=3)")
    weakness = weakness_text(result["classifier_test_accuracy"])
    if weakness is not None:
        lines.append(f"the reference classifier is {weakness}: FID classifier, precision, recall and classes are "
                     "measured in its features and not to be trusted")
    return "\n".join(lines)
