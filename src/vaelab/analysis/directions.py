"""`vaelab directions RUN` → RUN/directions.json (and the local paths' networks in directions.safetensors): for
every attribute the dataset measures or annotates, a direction in the latent space that moves it, measured by editing
test images along it, beside the best single dimension for the same attribute.

Fitting, on `fit_images` codes with the attributes of their images: prior samples and their decoded images
(`generated`, the default: the decoder's own effect), or the posterior means of training images (a seeded draw) and
the images themselves (`encoded`; the annotated attributes, emoji skin tone and CelebA's 40, are always fitted so):
- `ridge`: the attribute regressed linearly on the codes (ridge, the attribute standardised): the direction is
  the normalised weight vector (White 2016's attribute vectors, fitted rather than averaged);
- `ridge-class-held`: the same with the normals of the class boundaries (the between-class directions of a
  linear discriminant) projected out, so that an edit holds the class (InterFaceGAN's conditional manipulation,
  Shen et al. 2020; projecting out the other attributes' directions too was measured and dropped: ink area,
  thickness and length move together, so each loses what it shares with the others);
- `per-class`: one ridge direction fitted within each class; an image is edited along its own class's direction
  (the class as the reference classifier reads the unedited image; a conditional run's class is its label).
- `local`: not a line but a path, walked by `vaelab.analysis.local_paths` (a code-level network's gradient of the
  attribute, the gradient of a code-level class network's log-probability of the image's class projected out);
  its scale and its recorded unit vector are the ridge direction's.
- `pca`: the principal directions of the aggregate posterior (GANSpace, Härkönen et al. 2020), and `sefa`: the
  closed-form directions of the decoder's first layer, the top eigenvectors of WᵀW over the latent columns of its
  weight W (SeFa, Shen & Zhou 2021); each named by the attribute its edits move most, or "unnamed" below |ρ| 0.6
  (measured on the first UNSUPERVISED_EDIT_IMAGES of the test images).

Measuring: each of `edit_images` test images is moved from its code by t × `scale` along the direction, t in
EDIT_STEPS, and decoded; the attribute's pooled Spearman ρ with t (an edit that moves the attribute by exactly one
spread of the images per step pools to 0.82), the mean ρ within each image's edit and the change per step in
spreads, every other attribute's ρ (leakage), the share of edits (t ≠ 0) the reference classifier reads as the
class of the unedited decoded image (t = 0: so that a blurry reconstruction is not counted against the edit), and
the smoothness of each edit's frames. An annotated attribute is read by the measurer of its known factor (emoji
skin tone: skin lightness, on the test images drawn in a skin tone), or not at all (CelebA's: ρ None).
`scale` is the standard deviation of the training codes along the direction (one "standard" edit). The best single
dimension is measured the same way, with its own standard deviation as the scale.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vaelab.analysis.attributes import attributes_for, measure_batch
from vaelab.analysis.factors import (
    ATTRIBUTE_RHO_THRESHOLD,
    MIN_POINTS,
    binary_annotations,
    pooled_rank_correlation,
    spearman,
    within_rank_correlation,
)
from vaelab.analysis.local_paths import LocalPaths
from vaelab.analysis.smoothness import smoothness_ratio
from vaelab.analysis.traversal import GRID_PADDING, add_row_labels, decode_codes, load_test_inputs
from vaelab.data.catalog import describe
from vaelab.data.datasets import load_split, prepare_inputs, to_float
from vaelab.data.description import KnownFactor
from vaelab.errors import VaelabError
from vaelab.evaluation.evaluate import EVAL_SEED
from vaelab.evaluation.latents import ACTIVE_UNIT_THRESHOLD, active_units
from vaelab.evaluation.reference_classifier import predict_probabilities
from vaelab.hardware import one_thread
from vaelab.images import make_grid
from vaelab.io import atomic_write_json
from vaelab.models.base import EncodingModel, posterior_moments
from vaelab.models.registry import capabilities, require_encoder
from vaelab.pretrained import resolve_run
from vaelab.rundir import load_model, read_config

DIRECTIONS = "directions.json"
PATHS_SUFFIX = ".safetensors"  # RUN/directions.safetensors: the local paths' networks
EDIT_STEPS = (-2.0, -1.0, 0.0, 1.0, 2.0)
DEFAULT_FIT_IMAGES = 5000
DEFAULT_EDIT_IMAGES = 300
PCA_DIRECTIONS = 10
UNSUPERVISED_EDIT_IMAGES = 100  # a PCA or SeFa direction is named from the edits of this many of the test images
RIDGE = 1e-2  # the ridge's λ, relative to the used dimensions' mean variance: a little shrinkage, no more
CLASS_KEPT_TARGET = 0.95  # a direction that keeps the class in this share of its edits is preferred
SOURCES = {"generated": "prior samples (attributes of their decoded images)",
           "encoded": "training images (their posterior means; attributes of the images)"}


@dataclass(frozen=True)
class CodeSet:
    """Codes `[N, D]`, the attributes measured on their images (name → `[N]`), their classes `[N]`, and the
    attributes the dataset annotates (name → `[N]`, nan where an image lies outside it: empty for prior samples)."""

    codes: np.ndarray
    attributes: dict[str, np.ndarray]
    labels: np.ndarray | None
    annotated: dict[str, np.ndarray] = field(default_factory=dict)


def annotated_attributes(annotations: dict[str, torch.Tensor], dataset: str) -> dict[str, np.ndarray]:
    """The annotations that are attributes of the picture: the known factors on the images they cover (emoji skin
    tone 1–5; nan elsewhere) and the binary annotations (CelebA's 40), as float arrays."""
    annotated = {name: values.astype(np.float64) for name, values in binary_annotations(annotations).items()}
    for factor in describe(dataset).known_factors:
        values = annotations[factor.annotation].double().numpy()
        annotated[factor.annotation] = np.where((values >= factor.low) & (values <= factor.high), values, np.nan)
    return annotated


def measured_by(name: str, dataset: str) -> str | None:
    """The measured attribute that reads an attribute off the edited pictures: itself, a known factor's measurer
    (emoji skin tone: skin lightness), or None (CelebA's annotations: no measurer reads them)."""
    if name in attributes_for(dataset):
        return name
    return next((f.attribute for f in describe(dataset).known_factors if f.annotation == name), None)


def encoded_training_codes(model: EncodingModel, run_dir: Path, count: int) -> CodeSet:
    """The posterior means of `count` training images drawn without replacement (seeded: a dataset stored in order,
    as emoji by vendor, is still sampled whole), the attributes of the images and their annotated attributes."""
    data = read_config(run_dir).data
    split = load_split(data.dataset, "train", data.val_size, data.split_seed)
    chosen = torch.randperm(len(split.labels), generator=torch.Generator().manual_seed(EVAL_SEED))[:count]
    split = split.select(chosen.sort().values)
    labels = split.labels if capabilities(model).conditional else None
    means, _ = posterior_moments(model, prepare_inputs(split.images, data.input_mode, EVAL_SEED), labels)
    attributes = measure_batch(to_float(split.images), data.dataset)
    has_classes = describe(data.dataset).classes >= 2
    return CodeSet(means.double().numpy(), attributes, split.labels.numpy() if has_classes else None,
                   annotated_attributes(split.annotations, data.dataset))


@torch.no_grad()
def generated_codes(model: nn.Module, dataset: str, count: int, classifier: nn.Module | None,
                    seed: int = 0) -> CodeSet:
    """`count` codes drawn from the prior, the attributes of their decoded images, and their classes (a conditional
    model's: the label it decoded with, drawn uniformly; else as the reference classifier reads the image)."""
    generator = torch.Generator().manual_seed(seed)
    codes = model.sample_prior(count, generator).cpu()
    classes = describe(dataset).classes
    labels = torch.randint(classes, (count,), generator=generator) if capabilities(model).conditional else None
    images = decode_codes(model, codes, labels)
    if labels is None and classifier is not None:
        labels = predict_probabilities(classifier, images).argmax(1)
    return CodeSet(codes.double().numpy(), measure_batch(images, dataset),
                   None if labels is None else labels.numpy())


def ridge_direction(codes: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The unit vector of the ridge regression of the standardised `values` `[N]` on the centred `codes` `[N, D]`,
    signed so that moving along it raises the attribute. Dimensions that hardly vary (inactive units, whose posterior
    means sit near 0) get no weight: a regression would scale their noise up into large steps the decoder ignores."""
    keep = np.isfinite(values)
    if keep.sum() < MIN_POINTS:  # the images give it no value (a blank image has no stroke): no direction
        return np.zeros(codes.shape[1])
    centred = codes[keep] - codes[keep].mean(0)
    used = centred.var(0) > ACTIVE_UNIT_THRESHOLD  # the active units (Burda et al. 2016)
    target = values[keep] - values[keep].mean()
    target = target / (target.std() or 1.0)
    inputs = centred[:, used]
    gram = inputs.T @ inputs / len(inputs)
    weights = np.zeros(codes.shape[1])
    weights[used] = np.linalg.solve(gram + RIDGE * np.trace(gram) / max(len(gram), 1) * np.eye(len(gram)),
                                    inputs.T @ target / len(inputs))
    return weights / (np.linalg.norm(weights) or 1.0)


def class_normals(codes: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """An orthonormal basis `[K-1, D]` of the normals of a linear discriminant's class boundaries: the within-class
    whitened differences of each class mean from the overall mean."""
    classes = np.unique(labels)
    overall = codes.mean(0)
    within = sum(np.cov(codes[labels == c].T) * (labels == c).sum() for c in classes) / len(codes)
    within = within + 1e-6 * np.trace(within) / len(within) * np.eye(len(within))
    normals = np.linalg.solve(within, np.stack([codes[labels == c].mean(0) - overall for c in classes]).T).T
    basis, singular, _ = np.linalg.svd(normals.T, full_matrices=False)
    return basis[:, singular > 1e-8 * singular.max()][:, : len(classes) - 1].T


def project_out(vector: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """`vector` less its components along the (not necessarily orthonormal) rows of `basis`, normalised."""
    if len(basis) == 0:
        return vector
    orthonormal, _ = np.linalg.qr(basis.T)
    rest = vector - orthonormal @ (orthonormal.T @ vector)
    return rest / (np.linalg.norm(rest) or 1.0)


def fit_directions(fit: CodeSet, conditional_model: bool) -> dict[str, dict[str, Any]]:
    """Every attribute's direction by each method: method → attribute → {"unit_vector", "scale"} (per-class: also
    "per_class", a unit vector per class; local: the ridge direction and scale, its path walked by `LocalPaths`)."""
    names = list(fit.attributes)
    plain = {name: ridge_direction(fit.codes, fit.attributes[name]) for name in names}
    fitted: dict[str, dict[str, Any]] = {"ridge": {name: _entry(fit.codes, plain[name]) for name in names}}
    local = {name: dict(entry) for name, entry in fitted["ridge"].items()}  # the path's scale is the line's
    if fit.labels is None or conditional_model:  # no class to hold, or the label holds it already
        return {**fitted, "local": local}
    normals = class_normals(fit.codes, fit.labels)
    fitted["ridge-class-held"] = {name: _entry(fit.codes, project_out(plain[name], normals)) for name in names}
    fitted["per-class"] = {}
    for name in names:
        per_class = {int(c): ridge_direction(fit.codes[fit.labels == c], fit.attributes[name][fit.labels == c])
                     for c in np.unique(fit.labels)}
        # a class whose images lack the attribute (emoji without skin) is edited along the one direction
        per_class = {c: u for c, u in per_class.items() if np.any(u)}
        entry = _entry(fit.codes, plain[name])
        entry["per_class"] = per_class
        if per_class:
            entry["scale"] = float(np.mean([np.std(fit.codes[fit.labels == c] @ u) for c, u in per_class.items()]))
        fitted["per-class"][name] = entry
    return {**fitted, "local": local}


def _entry(codes: np.ndarray, unit: np.ndarray) -> dict[str, Any]:
    return {"unit_vector": unit, "scale": float(np.std(codes @ unit))}


def principal_directions(codes: np.ndarray, count: int = PCA_DIRECTIONS) -> list[dict[str, Any]]:
    """The top `count` principal directions of the codes, each with its spread as the scale."""
    centred = codes - codes.mean(0)
    _, singular, vectors = np.linalg.svd(centred, full_matrices=False)
    spread = singular / math.sqrt(len(codes))
    return [{"unit_vector": vectors[i], "scale": float(spread[i]), "component": i} for i in range(min(count,
                                                                                                      len(vectors)))]


def closed_form_directions(model: nn.Module, codes: np.ndarray, count: int = PCA_DIRECTIONS) -> list[dict[str, Any]]:
    """SeFa's directions: the top `count` eigenvectors of WᵀW, W the weight of the decoder's first layer over the
    latent columns (a conditional decoder's label columns follow them), each with the codes' spread along it as the
    scale; none for a family whose decoder does not start with a linear layer of the code."""
    first = getattr(model, "decoder_input", None)
    if not isinstance(first, nn.Sequential) or not isinstance(first[0], nn.Linear):
        return []
    weight = first[0].weight.detach().double().cpu().numpy()[:, : codes.shape[1]]
    eigenvalues, eigenvectors = np.linalg.eigh(weight.T @ weight)
    order = np.argsort(eigenvalues)[::-1][:count]
    return [{"unit_vector": eigenvectors[:, i], "scale": float(np.std(codes @ eigenvectors[:, i])), "component": rank}
            for rank, i in enumerate(order)]


@dataclass(frozen=True)
class EditSet:
    """The test images an edit starts from: their codes `[N, D]`, labels (for a conditional model's decoder), the
    class the reference classifier reads in each, and the attribute names."""

    codes: torch.Tensor
    labels: torch.Tensor | None
    classes: torch.Tensor | None
    dataset: str

    def first(self, count: int) -> EditSet:
        """The first `count` of the images."""
        def head(values: torch.Tensor | None) -> torch.Tensor | None:
            return None if values is None else values[:count]

        return EditSet(self.codes[:count], head(self.labels), head(self.classes), self.dataset)


def edit_set(model: EncodingModel, run_dir: Path, count: int, classifier: nn.Module | None,
             within: KnownFactor | None = None) -> EditSet:
    """The first `count` test images, or the first `count` a known factor covers (emoji: those drawn in a skin
    tone; an edit of skin tone on a drawing without skin has nothing to move)."""
    data = read_config(run_dir).data
    test, inputs = load_test_inputs(data)
    index = torch.arange(len(test.labels))
    if within is not None:
        values = test.annotations[within.annotation]
        index = index[(values >= within.low) & (values <= within.high)]
    index = index[:count]
    inputs, labels = inputs[index], test.labels[index]
    conditional = capabilities(model).conditional
    codes, _ = posterior_moments(model, inputs, labels if conditional else None)
    classes = predict_probabilities(classifier, to_float(test.images[index])).argmax(1) if classifier else None
    return EditSet(codes, labels if conditional else None, classes, data.dataset)


def edit_images(model: nn.Module, start: EditSet, vectors: torch.Tensor, scale: float) -> torch.Tensor:
    """Each start code moved by t × scale along its vector (`[N, D]`, or `[D]` for all), decoded: `[N, S, C, H, W]`."""
    steps = torch.tensor(EDIT_STEPS, dtype=start.codes.dtype)
    vectors = vectors.to(start.codes.dtype).expand_as(start.codes)
    return decode_edits(model, start, start.codes[:, None, :] + steps[None, :, None] * scale * vectors[:, None, :])


def decode_edits(model: nn.Module, start: EditSet, codes: torch.Tensor) -> torch.Tensor:
    """Edited codes `[N, S, D]` decoded (with the start images' labels, for a conditional model): `[N, S, C, H, W]`."""
    count, steps = codes.shape[:2]
    labels = None if start.labels is None else start.labels.repeat_interleave(steps)
    return decode_codes(model, codes.flatten(end_dim=1), labels).unflatten(0, (count, steps))


def edited(model: nn.Module, start: EditSet, entry: dict[str, Any], paths: LocalPaths | None) -> torch.Tensor:
    """The start images edited by each of EDIT_STEPS along an entry of `fit_directions` (a local entry: along its
    path), decoded: `[N, S, C, H, W]`."""
    if entry.get("method") == "local":
        if paths is None:
            raise VaelabError(f"the local path of {entry['name']} needs directions.safetensors")
        codes = paths.walk(entry["name"], start.codes, EDIT_STEPS, entry["scale"])
        return decode_edits(model, start, codes)
    return edit_images(model, start, _vectors_for(entry, start), entry["scale"])


@dataclass(frozen=True)
class EditMeasures:
    """What edits `[N, S, C, H, W]` did, per attribute: the pooled ρ with t, the mean ρ within each image's edit,
    the mean change per standard edit in spreads of the unedited images' attribute; and the share of edits (t ≠ 0)
    read as the class of the unedited decoded image (None without a classifier), the mean smoothness ratio of the
    edits' frames."""

    rho: dict[str, float | None]
    rho_within: dict[str, float | None]
    change_per_edit: dict[str, float | None]
    class_kept: float | None
    smoothness_ratio: float

    def of(self, attribute: str | None, sign: float = 1.0) -> dict[str, Any]:
        """The measurements as one attribute's direction reports them: the measured attribute that reads it (None:
        none does), times `sign` (−1 where it falls as the annotation rises), and the others' pooled ρ (leakage)."""
        def own(values: dict[str, float | None]) -> float | None:
            value = values.get(attribute) if attribute else None
            return None if value is None else sign * value

        return {"rho": own(self.rho), "rho_within": own(self.rho_within), "change_per_edit": own(self.change_per_edit),
                "leakage": {name: v for name, v in self.rho.items() if name != attribute},
                "class_kept": self.class_kept, "smoothness_ratio": self.smoothness_ratio}

    def reversed(self) -> EditMeasures:
        """The same edits read in the opposite direction (the steps are symmetric about 0)."""
        def negated(values: dict[str, float | None]) -> dict[str, float | None]:
            return {name: None if v is None else -v for name, v in values.items()}

        return EditMeasures(negated(self.rho), negated(self.rho_within), negated(self.change_per_edit),
                            self.class_kept, self.smoothness_ratio)


def measure_edits(images: torch.Tensor, start: EditSet, classifier: nn.Module | None) -> EditMeasures:
    count, steps = images.shape[:2]
    measured = measure_batch(images.flatten(end_dim=1), start.dataset)
    t = np.asarray(EDIT_STEPS)
    per_image = {name: values.reshape(count, steps) for name, values in measured.items()}
    rho = {name: _number(pooled_rank_correlation(t, values)) for name, values in per_image.items()}
    within = {name: _number(within_rank_correlation(t, values)) for name, values in per_image.items()}
    change = {name: _number(change_per_edit(t, values)) for name, values in per_image.items()}
    kept = None
    if classifier is not None:
        read = predict_probabilities(classifier, images.flatten(end_dim=1)).argmax(1).reshape(count, steps)
        edited = [i for i, value in enumerate(EDIT_STEPS) if value != 0]
        unedited = read[:, EDIT_STEPS.index(0.0)]  # the image as the model draws it: what the edit alone changes
        kept = float((read[:, edited] == unedited[:, None]).double().mean())
    return EditMeasures(rho, within, change, kept, float(np.mean([smoothness_ratio(row) for row in images])))


def change_per_edit(steps: np.ndarray, measurements: np.ndarray) -> float:
    """The mean over images of the least-squares slope of the attribute `[N, S]` on the `steps` `[S]`, in standard
    deviations of the unedited images' attribute (the column where the step is 0): how far one standard edit moves
    it against how much it varies between images (1 caps the pooled ρ of ±2 edits at 0.82; 1.5 at 0.91)."""
    unedited = measurements[:, list(steps).index(0.0)]
    spread = np.std(unedited[np.isfinite(unedited)]) if np.isfinite(unedited).sum() >= MIN_POINTS else 0.0
    keep = np.isfinite(measurements)
    rows = keep.sum(1) >= MIN_POINTS  # each image's slope over its own finite measurements
    if not rows.any() or not spread > 0:
        return math.nan
    weights, values = keep[rows], np.where(keep, measurements, 0.0)[rows]
    t = np.broadcast_to(steps, weights.shape)
    t_centred = t - (weights * t).sum(1, keepdims=True) / weights.sum(1, keepdims=True)
    slopes = (weights * t_centred * values).sum(1) / (weights * t_centred**2).sum(1)
    return float(slopes.mean() / spread)


def _number(value: float) -> float | None:
    return None if not math.isfinite(value) else float(value)


def _vectors_for(entry: dict[str, Any], start: EditSet) -> torch.Tensor:
    """The direction each start image is edited along: its class's (per-class) or the one direction."""
    if "per_class" in entry and start.classes is not None:
        per_class = entry["per_class"]
        return torch.from_numpy(np.stack([per_class.get(int(c), entry["unit_vector"]) for c in start.classes]))
    return torch.from_numpy(np.asarray(entry["unit_vector"]))


def best_single_dimensions(
    model: nn.Module, start: EditSet, fit: CodeSet, active: list[int], classifier: nn.Module | None,
    screen_images: int = 50, names: list[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """For every attribute of `fit` (or of `names`), the active dimension whose edits move it most (screened on the
    first `screen_images` start codes, then measured on all), measured as the directions are."""
    screen = start.first(screen_images)
    scales = {dim: float(np.std(fit.codes[:, dim])) for dim in active}
    screened = {dim: measure_edits(edit_images(model, screen, _axis(dim, start), scales[dim]), screen, None).rho
                for dim in active}
    measured: dict[tuple[int, float], EditMeasures] = {}  # a dimension best for several attributes is measured once
    best = {}
    for name in names or fit.attributes:
        dim = max(active, key=lambda d: abs(screened[d][name]) if screened[d][name] is not None else -1.0)
        sign = float(np.sign(screened[dim][name] or 0.0) or 1.0)  # + raises the attribute
        if (dim, sign) not in measured:
            measured[dim, sign] = measure_edits(edit_images(model, start, sign * _axis(dim, start), scales[dim]),
                                                start, classifier)
        best[name] = {"dim": dim, "scale": scales[dim], **measured[dim, sign].of(name)}
    return best


def _axis(dim: int, start: EditSet) -> torch.Tensor:
    """The unit vector of one latent dimension."""
    unit = torch.zeros(start.codes.shape[1], dtype=torch.float64)
    unit[dim] = 1.0
    return unit


def analyse_directions(
    run_dir: str | Path,
    fit_images: int = DEFAULT_FIT_IMAGES,
    edit_count: int = DEFAULT_EDIT_IMAGES,
    classifier: nn.Module | None = None,
    out: str | Path | None = None,
    log: Callable[[str], None] = lambda message: None,
    source: str = "generated",
) -> dict[str, Any]:
    """Fit every measured attribute's directions, measure their edits beside the best single dimensions and write
    RUN/directions.json (see the module's docstring); returns what it holds.

    Args:
        run_dir: a run directory of a family with an encoder.
        fit_images: how many codes the directions are fitted on.
        edit_count: how many test images each direction is measured on.
        classifier: the dataset's reference classifier (`judge_or_reason`): the class held and the class kept;
            None fits no class-held or per-class direction and measures no class kept.
        out: where to write (default RUN/directions.json).
        log: one line per direction as it is measured.
        source: "generated" (prior samples and their decoded images) or "encoded" (the posterior means of the run's
            training images and the images themselves).

    Examples:
        ```python
        import vaelab
        from vaelab.evaluation.reference_classifier import load_or_train_classifier

        vaelab.copy_pretrained("mnist", "runs/mnist-directions")
        result = vaelab.analyse_directions("runs/mnist-directions", classifier=load_or_train_classifier("mnist"))
        [(row["attribute"], row["method"], row["rho"]) for row in result["summary"]]
        ```
    """
    if source not in SOURCES:
        raise VaelabError(f"unknown --source {source!r}; choose one of: {', '.join(SOURCES)}")
    run_dir = Path(run_dir)
    model = load_model(run_dir)
    require_encoder(model, "vaelab directions (it fits directions on the codes of training images)")
    dataset = read_config(run_dir).data.dataset
    attributes_for(dataset)  # a one-line error for a dataset with no measurers
    log(f"codes of {fit_images:,} {SOURCES[source]}")
    encoded = encoded_training_codes(model, run_dir, fit_images)  # the aggregate posterior: PCA, single dimensions
    fit = encoded if source == "encoded" else generated_codes(model, dataset, fit_images, classifier)
    start = edit_set(model, run_dir, edit_count, classifier)
    conditional = capabilities(model).conditional
    factor_starts = {f.annotation: edit_set(model, run_dir, edit_count, classifier, within=f)
                     for f in describe(dataset).known_factors}
    held = None if conditional else fit.labels  # a conditional model's label holds the class already
    log(f"local paths: fitting the attributes' network{'' if held is None else ' and the class network'}")
    paths = LocalPaths.fit(fit.codes, fit.attributes, held)
    if encoded.annotated:  # the annotations are known for training images only
        paths.attributes.update(LocalPaths.fit(encoded.codes, encoded.annotated, None).attributes)
    editing = Editing(model, start, factor_starts, classifier, paths, log)
    directions = measured_directions(editing, fit, source)
    if encoded.annotated:
        annotated = CodeSet(encoded.codes, encoded.annotated, encoded.labels)
        directions += measured_directions(editing, annotated, "encoded", encoded.attributes)
    single = single_dimensions(editing, encoded)
    named = start.first(UNSUPERVISED_EDIT_IMAGES)
    principal = [named_direction(model, named, entry, method, classifier)
                 for method, entries in (("pca", principal_directions(encoded.codes)),
                                         ("sefa", closed_form_directions(model, encoded.codes)))
                 for entry in entries]
    result = {"dataset": dataset, "fit": {"source": source, "images": len(fit.codes)},
              "edit": {"images": len(start.codes), "steps": list(EDIT_STEPS), "unsupervised_images": len(named.codes),
                       **({"within": {name: len(found.codes) for name, found in factor_starts.items()}}
                          if factor_starts else {})},
              "directions": directions, "single_dimensions": single, "principal": principal,
              "summary": summarise(directions, single)}
    out = Path(out) if out is not None else run_dir / DIRECTIONS
    paths.save(out.with_suffix(PATHS_SUFFIX))  # before the JSON that names them
    atomic_write_json(out, result)
    return result


def single_dimensions(editing: Editing, encoded: CodeSet) -> dict[str, dict[str, Any]]:
    """The best single dimension of every measured attribute, and of every known factor on the images it covers
    (read by its measurer), screened among the active units."""
    active = [int(d) for d in np.flatnonzero(active_units(torch.from_numpy(encoded.codes)).numpy())]
    active = active or list(range(encoded.codes.shape[1]))  # a collapsed posterior: screen every dimension
    single = best_single_dimensions(editing.model, editing.start, encoded, active, editing.classifier)
    for factor in describe(editing.start.dataset).known_factors:
        found = best_single_dimensions(editing.model, editing.starts[factor.annotation], encoded, active,
                                       editing.classifier, names=[factor.attribute])
        single[factor.annotation] = {**found[factor.attribute], "measured_by": factor.attribute}
    return single


@dataclass(frozen=True)
class Editing:
    """What measuring a direction needs: the model, the test images edits start from (an attribute of `starts`:
    its own, as the images a known factor covers), the reference classifier, the local paths, the log."""

    model: nn.Module
    start: EditSet
    starts: dict[str, EditSet]
    classifier: nn.Module | None
    paths: LocalPaths | None
    log: Callable[[str], None]

    def start_of(self, name: str) -> EditSet:
        return self.starts.get(name, self.start)


def measured_directions(editing: Editing, fit: CodeSet, source: str,
                        measurements: dict[str, np.ndarray] | None = None) -> list[dict[str, Any]]:
    """Every attribute of `fit` by every method, each measured by editing test images. An annotated attribute is
    read by its measurer (`measured_by`), its ρ signed by how the measurer follows the annotation on the fitted
    images (`measurements`: their measured attributes): emoji skin tone rises as skin lightness falls."""
    directions = []
    with one_thread():  # 5,000 × D matrices: a second BLAS thread only spins
        fitted = fit_directions(fit, capabilities(editing.model).conditional)
    for method, entries in fitted.items():
        for name, entry in entries.items():
            if method == "local" and (editing.paths is None or name not in editing.paths.attributes):
                continue  # an attribute the images never vary in has no network to follow
            reader = measured_by(name, editing.start.dataset)
            sign = 1.0
            if reader and reader != name and measurements is not None:
                sign = float(np.sign(spearman(fit.attributes[name], measurements[reader])) or 1.0)
            start = editing.start_of(name)
            images = edited(editing.model, start, {**entry, "name": name, "method": method}, editing.paths)
            measured = measure_edits(images, start, editing.classifier).of(reader, sign)
            directions.append({"name": name, "method": method, "fitted_on": source, "measured_by": reader,
                               **_json_entry(entry), **measured})
            editing.log(f"{method:18s} {name:20s} ρ {signed_text(measured['rho'])}  "
                        f"class kept {percent_text(measured['class_kept'])}")
    return directions


def named_direction(model: nn.Module, start: EditSet, entry: dict[str, Any], method: str,
                    classifier: nn.Module | None) -> dict[str, Any]:
    """An unsupervised direction measured, named by the attribute its edits move most (or "unnamed" below
    ATTRIBUTE_RHO_THRESHOLD) and signed so that + raises that attribute (a component's sign is arbitrary)."""
    moved = measure_edits(edit_images(model, start, torch.from_numpy(entry["unit_vector"]), entry["scale"]), start,
                          classifier)
    top = max(moved.rho, key=lambda name: abs(moved.rho[name] or 0.0))
    if (moved.rho[top] or 0.0) < 0:
        entry = {**entry, "unit_vector": -entry["unit_vector"]}
        moved = moved.reversed()
    named = abs(moved.rho[top] or 0.0) >= ATTRIBUTE_RHO_THRESHOLD
    return {"name": top if named else "unnamed", "method": method, **_json_entry(entry), **moved.of(top)}


def _json_entry(entry: dict[str, Any]) -> dict[str, Any]:
    shown = {"unit_vector": [float(v) for v in entry["unit_vector"]], "scale": entry["scale"]}
    if "per_class" in entry:
        shown["per_class"] = {str(c): [float(v) for v in u] for c, u in entry["per_class"].items()}
    if "component" in entry:
        shown["component"] = entry["component"]
    return shown


def percent_text(value: float | None) -> str:
    """A share as a table shows it, `97%` (rounded down, so that a share just short of a target never reads as
    meeting it); `–` where it was not measured."""
    return "–" if value is None else f"{math.floor(value * 100 + 1e-9)}%"


def signed_text(value: float | None) -> str:
    """A ρ as a table shows it, `+0.80`; `–` where it is undefined."""
    return "    –" if value is None else f"{value:+.2f}"


def best_direction(candidates: list[dict[str, Any]]) -> dict[str, Any]:
    """The highest ρ among the directions that keep the class in at least CLASS_KEPT_TARGET of their edits, else
    the highest ρ of all (an undefined ρ last)."""
    keeping = [d for d in candidates if (d["class_kept"] or 0.0) >= CLASS_KEPT_TARGET] or candidates
    return max(keeping, key=lambda d: d["rho"] if d["rho"] is not None else -math.inf)


def summarise(directions: list[dict[str, Any]], single: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Per attribute: the best direction (the highest ρ among those that keep the class in ≥ 95% of edits, else
    the highest ρ), beside the best single dimension for the measured attribute that reads it (traversed the way
    that raises it), and whether the direction is better, plainly ("not measured" where nothing reads it)."""
    rows = []
    for name in dict.fromkeys(d["name"] for d in directions):
        best = best_direction([d for d in directions if d["name"] == name])
        reader = best.get("measured_by", name)
        dim = single.get(name) or single.get(reader or "", {})
        verdict = ("not measured" if reader is None else
                   "better" if (best["rho"] or 0.0) > abs(dim.get("rho") or 0.0) else "worse")
        rows.append({"attribute": name, "method": best["method"], "rho": best["rho"], "rho_within": best["rho_within"],
                     "class_kept": best["class_kept"], "dim": dim.get("dim"), "dim_rho": dim.get("rho"),
                     "dim_rho_within": dim.get("rho_within"), "dim_class_kept": dim.get("class_kept"),
                     "direction_is": verdict})
    return rows


def directions_table(result: dict[str, Any]) -> str:
    """The summary as a terminal table."""
    lines = [f"{'attribute':20s} {'direction':18s} {'ρ':>6s} {'within':>6s} {'class kept':>10s}   {'best dim':>8s} "
             f"{'ρ':>6s} {'within':>6s} {'class kept':>10s}  direction"]
    for row in result["summary"]:
        lines.append(f"{row['attribute']:20s} {row['method']:18s} {signed_text(row['rho']):>6s} "
                     f"{signed_text(row.get('rho_within')):>6s} {percent_text(row['class_kept']):>10s}   "
                     f"{'–' if row['dim'] is None else 'z' + str(row['dim']):>8s} {signed_text(row['dim_rho']):>6s} "
                     f"{signed_text(row.get('dim_rho_within')):>6s} {percent_text(row['dim_class_kept']):>10s}  "
                     f"{row['direction_is']}")
    for method in ("pca", "sefa"):
        found = [entry for entry in result["principal"] if entry["method"] == method]
        if found:
            named = sum(entry["name"] != "unnamed" for entry in found)
            lines.append(f"{method} directions named: {named} of {len(found)}")
    return "\n".join(lines)


def edit_rows(run_dir: Path, result: dict[str, Any], images: int = 3,
              classifier: nn.Module | None = None) -> list[tuple[str, torch.Tensor]]:
    """Per attribute of the summary, the first `images` test images edited along its best direction by each of
    EDIT_STEPS: (attribute, `[images × steps, C, H, W]`), the images one after another."""
    model = load_model(run_dir)
    start = edit_set(model, run_dir, images, classifier)
    factors = {f.annotation: f for f in describe(result["dataset"]).known_factors}
    paths = None  # loaded where an attribute's best is a local path
    rows = []
    for row in result["summary"]:
        factor = factors.get(row["attribute"])  # skin tone: the first images drawn in a skin tone
        edited_set = start if factor is None else edit_set(model, run_dir, images, classifier, within=factor)
        entry = next(d for d in result["directions"] if d["name"] == row["attribute"] and d["method"] == row["method"])
        if "per_class" in entry:
            entry = {**entry, "per_class": {int(c): np.asarray(u) for c, u in entry["per_class"].items()}}
        if entry["method"] == "local" and paths is None:
            paths = LocalPaths.load((run_dir / DIRECTIONS).with_suffix(PATHS_SUFFIX))
        rows.append((row["attribute"], edited(model, edited_set, entry, paths).flatten(end_dim=1)))
    return rows


def directions_picture(run_dir: Path, result: dict[str, Any], images: int = 3,
                       classifier: nn.Module | None = None) -> np.ndarray:
    """`edit_rows` as one picture: a row per attribute, labelled with its name and method, the first `images` test
    images one after another, each from t = −2 to +2 standard edits."""
    rows = edit_rows(run_dir, result, images, classifier)
    methods = {row["attribute"]: row["method"] for row in result["summary"]}
    grid = make_grid(torch.cat([edited for _, edited in rows]), columns=images * len(EDIT_STEPS), padding=GRID_PADDING)
    height = rows[0][1].shape[-2]
    return add_row_labels(grid, [f"{name} ({methods[name]})" for name, _ in rows], height + GRID_PADDING)


GLOBAL_METHODS = ("ridge", "ridge-class-held")  # one vector for every image: what a slider can move along


def slider_directions(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Per attribute, the direction a slider moves along from any code: of the methods with one vector for every
    image, the one with the highest ρ among those that keep the class in ≥ 95% of edits (else the highest ρ), with
    its measured ρ (None where nothing reads it) and class kept."""
    sliders = []
    for row in result["summary"]:
        candidates = [d for d in result["directions"] if d["name"] == row["attribute"] and d["method"] in
                      GLOBAL_METHODS]  # CelebA's annotations too: no measurer reads them (ρ None)
        if candidates:
            best = best_direction(candidates)
            sliders.append({key: best[key] for key in ("name", "method", "unit_vector", "scale", "rho", "class_kept")})
    return sliders


def read_directions(run_dir: Path) -> dict[str, Any]:
    """RUN/directions.json, or a one-line error naming the command that writes it."""
    path = run_dir / DIRECTIONS
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise VaelabError(f"{path} does not exist; run `vaelab directions {run_dir}` first") from None
    except (OSError, json.JSONDecodeError) as error:
        raise VaelabError(f"{path} is unreadable ({error}); delete it and run `vaelab directions {run_dir}`") from None


def attribute_name(spec: str, names: list[str]) -> str:
    """An attribute by its name or a word of it (`thickness` → `stroke_thickness`), or a one-line error."""
    if spec in names:
        return spec
    matches = [name for name in names if spec in name.split("_")]
    if len(matches) == 1:
        return matches[0]
    raise VaelabError(f"unknown attribute {spec!r}; choose one of: {', '.join(names)}")


@torch.no_grad()
def edit(
    run_dir: str | Path, image: str, attribute: str, amount: float = 2.0, steps: int = 5,
    classifier: nn.Module | None = None,
) -> torch.Tensor:
    """Frames `[steps, C, H, W]`: an image decoded from its code moved from 0 to `amount` standard edits along the
    attribute's best direction (the summary's method in RUN/directions.json). A conditional run edits within the
    image's class (its label; a file's, as the reference classifier reads it).

    Args:
        run_dir: a run directory holding directions.json (`vaelab directions RUN`).
        image: `test:INDEX`, or the path of a PNG file.
        attribute: an attribute of directions.json, or a word of its name (`thickness`).
        amount: how far, in standard edits (the spread of the codes along the direction); negative lowers it.
        steps: frames from the reconstruction (amount 0) to the edit.
        classifier: the reference classifier, for a file's class where a per-class direction or a conditional
            run needs it.

    Examples:
        ```python
        import vaelab
        from vaelab.images import make_grid, save_png

        frames = vaelab.edit("pretrained:mnist", "test:12", "thickness", amount=2.0, steps=5)
        save_png("thicker.png", make_grid(frames, columns=5))
        ```
    """
    from vaelab.analysis.traversal import parse_test_reference
    from vaelab.images import read_picture
    from vaelab.io import require_input_file

    run_dir = resolve_run(run_dir)  # `pretrained:NAME`: the shipped model, which carries its directions.json
    model = load_model(run_dir)
    require_encoder(model, "vaelab edit (it moves the code of an image)")
    if not 2 <= steps <= 100:
        raise VaelabError(f"--steps must be between 2 and 100 (got {steps})")
    if not math.isfinite(amount) or abs(amount) > 10:
        raise VaelabError(f"--amount must be between −10 and 10 standard edits (got {amount})")
    found = read_directions(run_dir)
    name = attribute_name(attribute, [row["attribute"] for row in found["summary"]])
    method = next(row["method"] for row in found["summary"] if row["attribute"] == name)
    entry = next(d for d in found["directions"] if d["name"] == name and d["method"] == method)
    data = read_config(run_dir).data
    if image.startswith("test:") or not Path(image).suffix:
        test, inputs = load_test_inputs(data)  # the binarization every analysis reads a test image in
        index = parse_test_reference(image, "--image", len(test.labels), ("a PNG file",))
        pixels, label, prepared = test.images[index: index + 1], test.labels[index: index + 1], inputs[index: index + 1]
    else:
        path = require_input_file(Path(image), "--image", "an image file (PNG)")
        picture = read_picture(path, describe(data.dataset))
        picture = picture if picture.ndim == 3 else picture[None]
        pixels = torch.from_numpy((np.clip(picture, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))[None]
        label, prepared = None, prepare_inputs(pixels, data.input_mode, EVAL_SEED)
    if label is None and (capabilities(model).conditional or "per_class" in entry):
        if classifier is None:
            raise VaelabError(f"editing {image} along {name} needs its class: pass a test image (test:INDEX)")
        label = predict_probabilities(classifier, to_float(pixels)).argmax(1)
    labels = label if capabilities(model).conditional else None
    code, _ = posterior_moments(model, prepared, labels)
    amounts = torch.linspace(0.0, amount, steps, dtype=torch.float64)
    if method == "local":  # the path the measurements walked
        codes = LocalPaths.load((run_dir / DIRECTIONS).with_suffix(PATHS_SUFFIX)).walk(
            name, code, amounts.tolist(), entry["scale"])[0]
    else:
        vector = entry["per_class"].get(str(int(label[0])), entry["unit_vector"]) if "per_class" in entry else \
            entry["unit_vector"]
        codes = code.double() + amounts[:, None] * entry["scale"] * torch.tensor(vector)
    return decode_codes(model, codes.to(code.dtype), None if labels is None else labels.repeat(steps))
