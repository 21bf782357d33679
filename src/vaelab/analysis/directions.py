"""`vaelab directions RUN` → RUN/directions.json: for every attribute the dataset measures, a direction in the latent
space that moves it, measured by editing test images along it, beside the best single dimension for the same
attribute.

Fitting, on `fit_images` codes with the attributes of their images: prior samples and their decoded images
(`generated`, the default: the decoder's own effect), or the posterior means of the run's first training images and
the images themselves (`encoded`):
- `ridge`: the attribute regressed linearly on the codes (ridge, the attribute standardised): the direction is
  the normalised weight vector (White 2016's attribute vectors, fitted rather than averaged);
- `ridge-class-held`: the same with the normals of the class boundaries (the between-class directions of a
  linear discriminant) projected out, so that an edit holds the class (InterFaceGAN's conditional manipulation,
  Shen et al. 2020; projecting out the other attributes' directions too was measured and dropped: ink area,
  thickness and length move together, so each loses what it shares with the others);
- `per-class`: one ridge direction fitted within each class; an image is edited along its own class's direction
  (the class as the reference classifier reads the unedited image; a conditional run's class is its label).
- `pca`: the principal directions of the aggregate posterior (GANSpace, Härkönen et al. 2020), each named by the
  attribute its edits move most, or "unnamed" below |ρ| 0.6.

Measuring: each of `edit_images` test images is moved from its code by t × `scale` along the direction, t in
EDIT_STEPS, and decoded; the attribute's pooled Spearman ρ with t, every other attribute's ρ (leakage), the share of
edits (t ≠ 0) the reference classifier reads as the class of the unedited decoded image (t = 0: so that a blurry
reconstruction is not counted against the edit), and the smoothness of each edit's frames.
`scale` is the standard deviation of the training codes along the direction (one "standard" edit). The best single
dimension is measured the same way, with its own standard deviation as the scale.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vaelab.analysis.attributes import attributes_for, measure_batch
from vaelab.analysis.factors import ATTRIBUTE_RHO_THRESHOLD, MIN_POINTS, pooled_rank_correlation
from vaelab.analysis.smoothness import smoothness_ratio
from vaelab.analysis.traversal import decode_codes, load_test_inputs
from vaelab.data.catalog import describe
from vaelab.data.datasets import load_split, prepare_inputs, to_float
from vaelab.errors import VaelabError
from vaelab.evaluation.evaluate import EVAL_SEED
from vaelab.evaluation.latents import ACTIVE_UNIT_THRESHOLD, active_units
from vaelab.evaluation.reference_classifier import predict_probabilities
from vaelab.io import atomic_write_json
from vaelab.models.base import EncodingModel, posterior_moments
from vaelab.models.registry import capabilities, require_encoder
from vaelab.pretrained import resolve_run
from vaelab.rundir import load_model, read_config

DIRECTIONS = "directions.json"
EDIT_STEPS = (-2.0, -1.0, 0.0, 1.0, 2.0)
DEFAULT_FIT_IMAGES = 5000
DEFAULT_EDIT_IMAGES = 300
PCA_DIRECTIONS = 10
RIDGE = 1e-2  # the ridge's λ, relative to the used dimensions' mean variance: a little shrinkage, no more
CLASS_KEPT_TARGET = 0.95  # a direction that keeps the class in this share of its edits is preferred
SOURCES = {"generated": "prior samples (attributes of their decoded images)",
           "encoded": "training images (their posterior means; attributes of the images)"}


@dataclass(frozen=True)
class CodeSet:
    """Codes `[N, D]`, the attributes measured on their images (name → `[N]`) and their classes `[N]`."""

    codes: np.ndarray
    attributes: dict[str, np.ndarray]
    labels: np.ndarray | None


def encoded_training_codes(model: EncodingModel, run_dir: Path, count: int) -> CodeSet:
    """The posterior means of the run's first `count` training images, and the attributes of the images."""
    data = read_config(run_dir).data
    split = load_split(data.dataset, "train", data.val_size, data.split_seed).subset(count)
    labels = split.labels if capabilities(model).conditional else None
    means, _ = posterior_moments(model, prepare_inputs(split.images, data.input_mode, EVAL_SEED), labels)
    attributes = measure_batch(to_float(split.images), data.dataset)
    has_classes = describe(data.dataset).classes >= 2
    return CodeSet(means.double().numpy(), attributes, split.labels.numpy() if has_classes else None)


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
    "per_class", a unit vector per class)."""
    names = list(fit.attributes)
    plain = {name: ridge_direction(fit.codes, fit.attributes[name]) for name in names}
    fitted: dict[str, dict[str, Any]] = {"ridge": {name: _entry(fit.codes, plain[name]) for name in names}}
    if fit.labels is None or conditional_model:  # no class to hold, or the label holds it already
        return fitted
    normals = class_normals(fit.codes, fit.labels)
    fitted["ridge-class-held"] = {name: _entry(fit.codes, project_out(plain[name], normals)) for name in names}
    fitted["per-class"] = {}
    for name in names:
        per_class = {int(c): ridge_direction(fit.codes[fit.labels == c], fit.attributes[name][fit.labels == c])
                     for c in np.unique(fit.labels)}
        entry = _entry(fit.codes, plain[name])
        entry["per_class"] = per_class
        entry["scale"] = float(np.mean([np.std(fit.codes[fit.labels == c] @ u) for c, u in per_class.items()]))
        fitted["per-class"][name] = entry
    return fitted


def _entry(codes: np.ndarray, unit: np.ndarray) -> dict[str, Any]:
    return {"unit_vector": unit, "scale": float(np.std(codes @ unit))}


def principal_directions(codes: np.ndarray, count: int = PCA_DIRECTIONS) -> list[dict[str, Any]]:
    """The top `count` principal directions of the codes, each with its spread as the scale."""
    centred = codes - codes.mean(0)
    _, singular, vectors = np.linalg.svd(centred, full_matrices=False)
    spread = singular / math.sqrt(len(codes))
    return [{"unit_vector": vectors[i], "scale": float(spread[i]), "component": i} for i in range(min(count,
                                                                                                      len(vectors)))]


@dataclass(frozen=True)
class EditSet:
    """The test images an edit starts from: their codes `[N, D]`, labels (for a conditional model's decoder), the
    class the reference classifier reads in each, and the attribute names."""

    codes: torch.Tensor
    labels: torch.Tensor | None
    classes: torch.Tensor | None
    dataset: str


def edit_set(model: EncodingModel, run_dir: Path, count: int, classifier: nn.Module | None) -> EditSet:
    data = read_config(run_dir).data
    test, inputs = load_test_inputs(data)
    inputs, labels = inputs[:count], test.labels[:count]
    conditional = capabilities(model).conditional
    codes, _ = posterior_moments(model, inputs, labels if conditional else None)
    classes = predict_probabilities(classifier, to_float(test.images[:count])).argmax(1) if classifier else None
    return EditSet(codes, labels if conditional else None, classes, data.dataset)


def edit_images(model: nn.Module, start: EditSet, vectors: torch.Tensor, scale: float) -> torch.Tensor:
    """Each start code moved by t × scale along its vector (`[N, D]`, or `[D]` for all), decoded: `[N, S, C, H, W]`."""
    steps = torch.tensor(EDIT_STEPS, dtype=start.codes.dtype)
    vectors = vectors.to(start.codes.dtype).expand_as(start.codes)
    codes = start.codes[:, None, :] + steps[None, :, None] * scale * vectors[:, None, :]
    labels = None if start.labels is None else start.labels.repeat_interleave(len(EDIT_STEPS))
    return decode_codes(model, codes.flatten(end_dim=1), labels).unflatten(0, (len(start.codes), len(EDIT_STEPS)))


@dataclass(frozen=True)
class EditMeasures:
    """What edits `[N, S, C, H, W]` did: every attribute's pooled ρ with t, the share of edits (t ≠ 0) read as the
    class of the unedited decoded image (None without a classifier), the mean smoothness ratio of the edits'
    frames."""

    rho: dict[str, float | None]
    class_kept: float | None
    smoothness_ratio: float

    def of(self, attribute: str) -> dict[str, Any]:
        """The measurements as one attribute's direction reports them: its ρ, the others' (leakage)."""
        return {"rho": self.rho[attribute], "leakage": {name: v for name, v in self.rho.items() if name != attribute},
                "class_kept": self.class_kept, "smoothness_ratio": self.smoothness_ratio}


def measure_edits(images: torch.Tensor, start: EditSet, classifier: nn.Module | None) -> EditMeasures:
    count, steps = images.shape[:2]
    measured = measure_batch(images.flatten(end_dim=1), start.dataset)
    t = np.asarray(EDIT_STEPS)
    rho = {name: _number(pooled_rank_correlation(t, values.reshape(count, steps))) for name, values in measured.items()}
    kept = None
    if classifier is not None:
        read = predict_probabilities(classifier, images.flatten(end_dim=1)).argmax(1).reshape(count, steps)
        edited = [i for i, value in enumerate(EDIT_STEPS) if value != 0]
        unedited = read[:, EDIT_STEPS.index(0.0)]  # the image as the model draws it: what the edit alone changes
        kept = float((read[:, edited] == unedited[:, None]).double().mean())
    return EditMeasures(rho, kept, float(np.mean([smoothness_ratio(row) for row in images])))


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
    screen_images: int = 50,
) -> dict[str, dict[str, Any]]:
    """For every attribute, the active dimension whose edits move it most (screened on the first `screen_images`
    start codes, then measured on all), measured as the directions are."""
    screen = EditSet(start.codes[:screen_images], None if start.labels is None else start.labels[:screen_images],
                     None, start.dataset)
    scales = {dim: float(np.std(fit.codes[:, dim])) for dim in active}
    screened = {dim: measure_edits(edit_images(model, screen, _axis(dim, start), scales[dim]), screen, None).rho
                for dim in active}
    measured: dict[tuple[int, float], EditMeasures] = {}  # a dimension best for several attributes is measured once
    best = {}
    for name in fit.attributes:
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
    directions = []
    for method, entries in fit_directions(fit, conditional).items():
        for name, entry in entries.items():
            measured = measure_edits(edit_images(model, start, _vectors_for(entry, start), entry["scale"]), start,
                                     classifier).of(name)
            directions.append({"name": name, "method": method, **_json_entry(entry), **measured})
            log(f"{method:18s} {name:20s} ρ {signed_text(measured['rho'])}  "
                f"class kept {percent_text(measured['class_kept'])}")
    active = [int(d) for d in np.flatnonzero(active_units(torch.from_numpy(encoded.codes)).numpy())]
    single = best_single_dimensions(model, start, encoded, active, classifier)
    principal = []
    for entry in principal_directions(encoded.codes):
        moved = measure_edits(edit_images(model, start, torch.from_numpy(entry["unit_vector"]), entry["scale"]),
                              start, classifier)
        top = max(moved.rho, key=lambda name: abs(moved.rho[name] or 0.0))
        if (moved.rho[top] or 0.0) < 0:  # a component's sign is arbitrary: + raises the attribute it moves most
            entry["unit_vector"] = -entry["unit_vector"]
            moved = EditMeasures({name: None if v is None else -v for name, v in moved.rho.items()},
                                 moved.class_kept, moved.smoothness_ratio)  # the steps are symmetric about 0
        named = abs(moved.rho[top] or 0.0) >= ATTRIBUTE_RHO_THRESHOLD
        principal.append({"name": top if named else "unnamed", "method": "pca", **_json_entry(entry),
                          **moved.of(top)})
    result = {"dataset": dataset, "fit": {"source": source, "images": len(fit.codes)},
              "edit": {"images": len(start.codes), "steps": list(EDIT_STEPS)},
              "directions": directions, "single_dimensions": single, "principal": principal,
              "summary": summarise(directions, single)}
    atomic_write_json(Path(out) if out is not None else run_dir / DIRECTIONS, result)
    return result


def _json_entry(entry: dict[str, Any]) -> dict[str, Any]:
    shown = {"unit_vector": [float(v) for v in entry["unit_vector"]], "scale": entry["scale"]}
    if "per_class" in entry:
        shown["per_class"] = {str(c): [float(v) for v in u] for c, u in entry["per_class"].items()}
    if "component" in entry:
        shown["component"] = entry["component"]
    return shown


def percent_text(value: float | None) -> str:
    """A share as a table shows it, `97%`; `–` where it was not measured."""
    return "–" if value is None else f"{value:.0%}"


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
    the highest ρ), beside the best single dimension, and whether the direction is better, plainly."""
    rows = []
    for name, dim in single.items():
        best = best_direction([d for d in directions if d["name"] == name])
        verdict = "better" if (best["rho"] or 0.0) > abs(dim["rho"] or 0.0) else "worse"
        rows.append({"attribute": name, "method": best["method"], "rho": best["rho"],
                     "class_kept": best["class_kept"], "dim": dim["dim"], "dim_rho": dim["rho"],
                     "dim_class_kept": dim["class_kept"], "direction_is": verdict})
    return rows


def directions_table(result: dict[str, Any]) -> str:
    """The summary as a terminal table."""
    lines = [f"{'attribute':20s} {'direction':18s} {'ρ':>6s} {'class kept':>10s}   {'best dim':>8s} {'ρ':>6s} "
             f"{'class kept':>10s}  direction"]
    for row in result["summary"]:
        lines.append(f"{row['attribute']:20s} {row['method']:18s} {signed_text(row['rho']):>6s} "
                     f"{percent_text(row['class_kept']):>10s}   {'z' + str(row['dim']):>8s} "
                     f"{signed_text(row['dim_rho']):>6s} {percent_text(row['dim_class_kept']):>10s}  "
                     f"{row['direction_is']}")
    named = sum(entry["name"] != "unnamed" for entry in result["principal"])
    lines.append(f"principal directions named: {named} of {len(result['principal'])}")
    return "\n".join(lines)


def edit_rows(run_dir: Path, result: dict[str, Any], images: int = 3,
              classifier: nn.Module | None = None) -> list[tuple[str, torch.Tensor]]:
    """Per attribute of the summary, the first `images` test images edited along its best direction by each of
    EDIT_STEPS: (attribute, `[images × steps, C, H, W]`), the images one after another."""
    model = load_model(run_dir)
    start = edit_set(model, run_dir, images, classifier)
    rows = []
    for row in result["summary"]:
        entry = next(d for d in result["directions"] if d["name"] == row["attribute"] and d["method"] == row["method"])
        if "per_class" in entry:
            entry = {**entry, "per_class": {int(c): np.asarray(u) for c, u in entry["per_class"].items()}}
        edited = edit_images(model, start, _vectors_for(entry, start), entry["scale"])
        rows.append((row["attribute"], edited.flatten(end_dim=1)))
    return rows


GLOBAL_METHODS = ("ridge", "ridge-class-held")  # one vector for every image: what a slider can move along


def slider_directions(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Per attribute, the direction a slider moves along from any code: of the methods with one vector for every
    image, the one with the highest ρ among those that keep the class in ≥ 95% of edits (else the highest ρ), with
    its measured ρ and class kept."""
    sliders = []
    for row in result["summary"]:
        candidates = [d for d in result["directions"] if d["name"] == row["attribute"] and d["method"] in
                      GLOBAL_METHODS and d["rho"] is not None]
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
    vector = entry["per_class"][str(int(label[0]))] if "per_class" in entry else entry["unit_vector"]
    moves = torch.linspace(0.0, amount, steps, dtype=torch.float64)[:, None] * entry["scale"] * torch.tensor(vector)
    codes = code.double() + moves
    return decode_codes(model, codes.to(code.dtype), None if labels is None else labels.repeat(steps))
