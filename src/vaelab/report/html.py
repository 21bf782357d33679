"""`vaelab report`: everything about one run in one self-contained HTML file (images embedded as data URIs, no
scripts, no network requests), regenerated from the run directory alone.

Every kind of run gets the same core (evaluation, samples, reconstructions, traversals, factors, latent maps,
limitations). A conditional run (cvae, m2) adds its class grid, restyled test images and its style dimensions
written as every class, and skips the interpolations (a path between two digits would change only the style;
`vaelab interpolate --class` draws one); a run that predicts classes (vae-classifier, m2) adds its accuracy and
confusion matrix."""

from __future__ import annotations

import base64
import html
import itertools
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from vaelab.analysis.conditional import class_grid, class_grid_picture, restyle, restyle_strip, style_traversal
from vaelab.analysis.disentanglement import measure_disentanglement, objective_text
from vaelab.analysis.embedding import manifold_grid
from vaelab.analysis.factors import (
    ATTRIBUTE_RHO_THRESHOLD,
    CLASS_MI_THRESHOLD,
    analyse_factors,
    annotation_text,
    is_named,
    is_weak,
    shown_name,
    weakest_class_text,
)
from vaelab.analysis.interpolation import MODES, TEST_PAIR, interpolate_run, interpolation_ends, interpolation_grid
from vaelab.analysis.samples import prior_samples, reconstruction_grid, sample_grid
from vaelab.analysis.smoothness import CONFIDENCE_THRESHOLD, confident_fraction, smoothness_ratio
from vaelab.analysis.traversal import load_test_inputs, traversal_grid, traversal_values, traverse_run
from vaelab.data.catalog import describe
from vaelab.data.datasets import to_float
from vaelab.errors import VaelabError
from vaelab.evaluation import evaluate_run
from vaelab.evaluation.collapse import SPREAD_IMAGES, diagnose_run
from vaelab.evaluation.evaluate import per_class_reconstruction
from vaelab.evaluation.generation import sharpness
from vaelab.evaluation.latents import ACTIVE_UNIT_THRESHOLD, WEAK_KL_NATS
from vaelab.evaluation.reference_classifier import judge_or_reason
from vaelab.evaluation.tables import eval_rows
from vaelab.images import make_grid, png_bytes, upscale
from vaelab.io import atomic_write_json, atomic_write_text
from vaelab.models.registry import capabilities, family, model_label
from vaelab.models.vae import VAE
from vaelab.pretrained import run_name
from vaelab.report.figures import confusion_matrix_png, kl_heatmap, latent_map_png, scalar_curves, training_curves
from vaelab.rundir import (
    DISENTANGLEMENT,
    EVAL,
    FACTORS,
    load_model,
    read_artefact_if_present,
    read_config,
    read_metrics,
)

if TYPE_CHECKING:
    from vaelab.config import RunConfig

SMOOTHNESS_LIMIT = 3.0  # the target: a larger max/mean step ratio over ±3σ is a jump
QUICK_EVAL = {"iw_samples": 100, "iw_images": 1000}  # when the run has no eval.json yet
REPORT_SAMPLES = 64  # prior samples drawn (seed 0) for the sample grid, the sharpness and the comparison
TSNE_POINTS = 2000
REPORT_DISENTANGLEMENT_IMAGES = 2000  # when the run has no disentanglement.json yet
RECONSTRUCTED = 32  # test images shown with their reconstructions
PER_CLASS_IMAGES = 2000  # test images the per-class reconstruction of the limitations is measured on
RESTYLED_IMAGES = 5  # test images 0 … 4, each written as every class
STYLE_DIMENSIONS = 3  # the conditional model's dimensions with the most KL, drawn as every class
TRAVERSAL_RADIUS = 3.0  # prior standard deviations either side of the base code
TRAVERSAL_STEPS = 11
TRAVERSAL_FRAME_PX = 48  # the least size of one traversal frame in the factor table (a 28-px digit is drawn at 56)
TABLE_FRAMES = 6  # evenly spaced frames of each traversal beside its numbers: the table fits the page's width

Log = Callable[[str], None]
Skipped = dict[str, str]  # a part of the report that could not be computed → why, and what would enable it


def img_tag(picture: np.ndarray | bytes, alt: str, scale: int = 3) -> str:
    data = picture if isinstance(picture, bytes) else png_bytes(upscale(picture, scale))
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def html_table(header: list[str], rows: list[list[Any]], meanings: list[str] | None = None) -> str:
    """A table; with `meanings` (one line per column) each heading carries its meaning as a tooltip and a legend
    under the table spells them out, consecutive columns of the same meaning on one line (`0 … 9: …`). A table
    wider than the page scrolls sideways instead of shrinking its pictures."""
    titles = [""] * len(header) if meanings is None else [f' title="{html.escape(m)}"' for m in meanings]
    head = "".join(f"<th{title}>{html.escape(str(h))}</th>" for h, title in zip(header, titles, strict=True))
    body = "".join(
        "<tr>" + "".join(f"<td>{c if str(c).startswith('<img') else html.escape(str(c))}</td>" for c in row) + "</tr>"
        for row in rows
    )
    table = f"<div class='table'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
    return table if meanings is None else table + legend(header, meanings)


def legend(header: list[str], meanings: list[str]) -> str:
    """One line per column: `<b>heading</b>: meaning`; a run of columns with the same meaning shares a line."""
    lines = []
    for meaning, run in itertools.groupby(zip(header, meanings, strict=True), key=lambda column: column[1]):
        names = [str(name) for name, _ in run]
        label = names[0] if len(names) == 1 else f"{names[0]} … {names[-1]}"
        lines.append(f"<li><b>{html.escape(label)}</b>: {html.escape(meaning)}</li>")
    return f"<ul class='legend'>{''.join(lines)}</ul>"


def number_text(value: float | None, form: str = ".2f") -> str:
    return "–" if value is None else format(value, form)


def build_report(
    run_dir: str | Path, out: str | Path | None = None, log: Log = lambda m: None,
    reference: str | Path | None = None,
) -> Path:
    """The report of a run, written atomically to `out` (default RUN/report.html). `reference`: a run of the same
    dataset to set a VAE beside (say, the factorised decoder at the same β beside a PixelCNN decoder): what the
    latent carries, how sharp the samples are and what they cost, measured by the same code.

    A part that cannot be computed on this run (too few test images for a metric, no classes, a reference
    classifier too weak to judge) is skipped with one line saying why and what would enable it: listed at the end
    of the page, logged, and kept in `skipped` of the JSON beside the page (`out` with `.json`: the sections and
    what was skipped)."""
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / "report.html"
    config = read_config(run_dir)
    model = load_model(run_dir)
    if reference is not None:
        _require_reference(config, Path(reference))
    skipped: Skipped = {}
    if capabilities(model).likelihood:
        sections = _vae_sections(run_dir, config, model, log, None if reference is None else Path(reference),
                                 skipped)
    else:
        sections = _generator_sections(run_dir, config, model, log, skipped)
    for part, reason in skipped.items():
        log(f"{part} skipped: {reason}")
    if skipped:
        sections.append(("Skipped (not computed on this run)", "<ul>" + "".join(
            f"<li><b>{html.escape(part)}</b> skipped: {html.escape(reason)}</li>" for part, reason in skipped.items()
        ) + "</ul>"))
    body = "".join(f"<section><h2>{html.escape(title)}</h2>{content}</section>" for title, content in sections)
    beta = f", {objective_text(config.objective_settings())}" if capabilities(model).likelihood else ""
    page = PAGE_TEMPLATE.format(
        title=html.escape(f"vaelab report — {run_dir.name}"),
        subtitle=html.escape(f"{config.data.dataset}, {config.data.input_mode}, {config.model.kind}, latent "
                             f"{model.latent_dim}{beta} · generated {time.strftime('%Y-%m-%d %H:%M')} from "
                             f"{run_dir}" + (f" · {len(skipped)} part(s) skipped, listed at the end" if skipped
                                             else "")),
        body=body,
    )
    atomic_write_text(out, page)
    atomic_write_json(out.with_suffix(".json"), {
        "run": str(run_dir), "dataset": config.data.dataset, "sections": [title for title, _ in sections],
        "skipped": skipped,
    })
    return out


def _generator_sections(
    run_dir: Path, config: RunConfig, model: torch.nn.Module, log: Log, skipped: Skipped
) -> list[tuple[str, str]]:
    """A family without a likelihood (gan, ddpm): configuration, curves, what `eval` measures, samples,
    reconstructions where it can invert, traversals where its code has factors, an interpolation; the factor
    analysis and latent maps need an encoder and are left out (`vaelab compare` sets it beside a VAE)."""
    can = capabilities(model)
    history = read_metrics(run_dir)
    log("evaluation")
    evaluation, eval_note = read_artefact_if_present(run_dir, EVAL), "from eval.json"
    if evaluation is None:
        evaluation, eval_note = evaluate_run(run_dir, iw_images=QUICK_EVAL["iw_images"]), "computed now"
    sections = [("Configuration", f"<pre>{html.escape(json.dumps(config.to_dict(), indent=2))}</pre>")]
    if history:
        sections.append(("Training curves", img_tag(scalar_curves(history), "training curves")))
    sections.append(("Evaluation on the test split", _evaluation_table(evaluation, eval_note)))
    log("samples")
    how = f"DDIM, {model.sampling_steps} steps" if can.sampling == "diffusion" else "z ~ N(0, I)"
    sections.append((f"Samples ({how})", img_tag(make_grid(prior_samples(model, 64, seed=0), columns=8), "samples")))
    if can.inversion:
        recon = reconstruction_grid(model, config.data.dataset, config.data.input_mode, 16)
        sections.append(("Reconstructions by DDIM inversion, then generation (inputs above)",
                         img_tag(recon, "reconstructions")))
    else:
        log("traversals")
        dims = ",".join(map(str, range(min(model.latent_dim, 16))))
        traversal = traverse_run(run_dir, dims, TRAVERSAL_RADIUS, TRAVERSAL_STEPS, "prior")
        sections.append(("Latent traversals of the first 16 dimensions (±3σ around the zero code; a GAN has no "
                         "KL to order them by)", img_tag(traversal_grid(traversal), "traversals", scale=2)))
    log("interpolations")
    judge = _judge(config.data.dataset, log, skipped)
    start, end, mode = interpolation_ends(can)  # a GAN's random codes are shown in both modes
    sections.append(_interpolations(run_dir, judge, (start, end), (mode,) if can.inversion else MODES))
    return sections


def _require_reference(config: RunConfig, reference: Path) -> None:
    """A reference must be a VAE run of the report's dataset and input mode, or the comparison means nothing."""
    other = read_config(reference)
    if not family(other.model.kind).capabilities.likelihood:
        raise VaelabError(f"--reference {reference} is a {other.model.kind} run; pick a VAE run (one with a "
                          "likelihood) to compare latents with")
    mine, theirs = (config.data.dataset, config.data.input_mode), (other.data.dataset, other.data.input_mode)
    if mine != theirs:
        raise VaelabError(f"--reference {reference} is a {theirs[0]} ({theirs[1]}) run and this one {mine[0]} "
                          f"({mine[1]}); pick a reference of the same dataset and input mode")


def _vae_sections(
    run_dir: Path, config: RunConfig, model: VAE, log: Log, reference: Path | None, skipped: Skipped
) -> list[tuple[str, str]]:
    dataset = config.data.dataset
    classes = describe(dataset).class_names
    conditional = capabilities(model).conditional
    history = read_metrics(run_dir)
    sections: list[tuple[str, str]] = []

    log("evaluation")
    evaluation, eval_note = read_artefact_if_present(run_dir, EVAL), "from eval.json"
    if evaluation is None:
        evaluation = evaluate_run(run_dir, **QUICK_EVAL)
        eval_note = f"computed now (IWAE-{QUICK_EVAL['iw_samples']} on {evaluation['iwae']['images']:,} images)"

    sections.append(("Configuration", f"<pre>{html.escape(json.dumps(config.to_dict(), indent=2))}</pre>"))
    if history:
        sections.append(("Training curves", img_tag(training_curves(history), "training curves")
                         + img_tag(kl_heatmap(history), "KL per dimension")))
    sections.append(("Evaluation on the test split", _evaluation_table(evaluation, eval_note)))
    if "classification" in evaluation:
        sections.append(("Classification of the test split", _classification(evaluation["classification"],
                                                                              classes)))
    test, inputs = load_test_inputs(config.data)
    collapse = evaluation.get("collapse") or diagnose_run(  # eval.json files written before the diagnosis lack it
        run_dir, model, config, evaluation, to_float(test.images[:SPREAD_IMAGES])).to_dict()
    if collapse["collapsed"]:  # said first: every picture below is then the same image
        sections.insert(0, ("Posterior collapse", f"<p><strong>{html.escape(collapse['warning'])}</strong></p>"))

    log("samples and reconstructions")
    samples, sampling_ms = _timed_prior_samples(model)
    sections.append((f"Prior samples ({len(samples)} draws" + (", the classes in turn)" if conditional else ")"),
                     img_tag(make_grid(samples, columns=8), "prior samples")))
    components = model.prior_components()
    if components is not None:  # the VampPrior: what its pseudo-inputs became, and what their codes decode to
        with torch.no_grad():
            pseudo = torch.sigmoid(model.pseudo_inputs[:32]).float().cpu()
            labels = torch.arange(len(pseudo)) % model.config.classes if conditional else None  # as encoded
            decoded = model.decode(components[0][:32], labels).cpu()
        sections.append(("VampPrior: pseudo-inputs (above) and their posterior means decoded (below)",
                         img_tag(make_grid(torch.cat([pseudo, decoded]), columns=16), "pseudo-inputs")))
    recon = reconstruction_grid(model, dataset, config.data.input_mode, RECONSTRUCTED)
    sections.append((f"Reconstructions of the first {min(RECONSTRUCTED, len(test))} test images (inputs above, "
                     "reconstructions below)", img_tag(recon, "reconstructions")))
    if conditional:
        log("class grid and restyling")
        sections += _conditional_sections(model, inputs, test.labels, classes)

    log("traversals and factors")
    # A conditional model decodes a traversal as one class: that of the test image it starts from.
    base = "test:0" if conditional else "prior"
    traversal = traverse_run(run_dir, "auto", TRAVERSAL_RADIUS, TRAVERSAL_STEPS, base)
    judge = _judge(dataset, log, skipped)
    factors = read_artefact_if_present(run_dir, FACTORS)
    if factors is None:
        factors = analyse_factors(run_dir, classifier=judge)
    around = f"test image 0's code, decoded as class {traversal.label}" if conditional else "the prior's mode"
    sections.append((f"Latent traversals, most informative first (±3σ around {around})",
                     img_tag(traversal_grid(traversal), "traversals", scale=2)))
    sections.append((f"What each dimension controls (measured on {len(test):,} test images)",
                     _factor_table(factors, traversal, around, len(classes or ()), judged=judge is not None)))
    if describe(dataset).attributes:
        log("disentanglement scores")
        sections += _disentanglement(run_dir, skipped)
    if conditional:
        sections.append(_style_dimensions(model, factors, classes))
    else:
        log("interpolations")
        if len(test) >= len(TEST_PAIR):
            sections.append(_interpolations(run_dir, judge, TEST_PAIR, MODES))
        else:
            skipped["interpolations"] = (f"they run between test images 0 and 1, and the test split has {len(test)}; "
                                         "use a dataset with 2 test images or more (a folder of 20 images or more)")

    log("latent maps")
    maps = [img_tag(latent_map_png(run_dir, "pca"), "PCA map")]
    if collapse["collapsed"]:  # codes all alike: t-SNE shows nothing, and took 73 s on 2,000 of them
        maps.append("<p class='note'>No t-SNE map: the run collapsed, so its codes are all alike.</p>")
    else:
        maps.append(img_tag(latent_map_png(run_dir, "tsne", TSNE_POINTS), "t-SNE map"))
    if model.latent_dim == 2 and not conditional:
        maps.append(img_tag(manifold_grid(model), "decoded manifold", scale=2))
    sections.append(("Latent maps" + (" (posterior means given the true labels)" if conditional else ""),
                     "".join(maps)))

    real = to_float(test.images[:1000])
    if reference is not None:
        log(f"beside {reference}")
        mine = Measured(model_label(config.model), config.objective_settings(), evaluation, factors, samples,
                        sampling_ms)
        sections.append(_against_reference(mine, reference, sharpness(real)))

    log("limitations")
    per_class = per_class_reconstruction(model, inputs[:PER_CLASS_IMAGES], test.labels[:PER_CLASS_IMAGES])
    sections.append(("Limitations (measured)", _limitations(evaluation, factors, sharpness(samples),
                                                            sharpness(real), per_class, classes,
                                                            min(PER_CLASS_IMAGES, len(inputs)))))
    return sections


def _judge(dataset: str, log: Log, skipped: Skipped) -> torch.nn.Module | None:
    """The reference classifier where it can judge generated images; else None, and why in `skipped`."""
    judge, why_not = judge_or_reason(dataset, log=log)
    if why_not is not None:
        skipped["confident frames (factor table, interpolations)"] = why_not
    return judge


def _timed_prior_samples(model: VAE) -> tuple[torch.Tensor, float]:
    """REPORT_SAMPLES prior samples (seed 0) and the milliseconds per sample they took."""
    started = time.perf_counter()
    samples = prior_samples(model, REPORT_SAMPLES, seed=0)
    return samples, 1000 * (time.perf_counter() - started) / REPORT_SAMPLES


@dataclass
class Measured:
    """What the comparison with a reference reads of one VAE run."""

    label: str
    objective: dict[str, Any]
    evaluation: dict[str, Any]
    factors: list[dict[str, Any]] | None
    samples: torch.Tensor
    sampling_ms: float


def _measured_reference(reference: Path) -> Measured:
    """The reference's eval.json and factors.json as written (None where absent), and REPORT_SAMPLES prior samples
    drawn and timed now; with no eval.json, the report's quick evaluation."""
    config, model = read_config(reference), load_model(reference)
    evaluation = read_artefact_if_present(reference, EVAL) or evaluate_run(reference, write=False, **QUICK_EVAL)
    samples, sampling_ms = _timed_prior_samples(model)
    return Measured(model_label(config.model), config.objective_settings(), evaluation,
                    read_artefact_if_present(reference, FACTORS), samples, sampling_ms)


def _against_reference(mine: Measured, reference: Path, real_sharpness: float) -> tuple[str, str]:
    """The run and the reference side by side: what the latent carries (KL, active units, named factors), the test
    NLL, how sharp REPORT_SAMPLES prior samples are and how long they took, and both sample grids."""
    theirs, reference_name = _measured_reference(reference), run_name(reference)
    both = (("this run", mine), (reference_name, theirs))
    sharpnesses = [sharpness(run.samples) for _, run in both]
    rows = []
    for (name, run), sample_sharpness in zip(both, sharpnesses, strict=True):
        ev, iw = run.evaluation, run.evaluation.get("iwae")
        named = None if run.factors is None else len(named_factors(run.factors))
        rows.append([
            name, run.label, objective_text(run.objective), number_text(ev["kl"]),
            f"{ev['active_units']} of {ev['latent_dim']}", "–" if named is None else str(named),
            "–" if iw is None else f"{iw['nll']:.2f} (IWAE-{iw['k']}, first {iw['images']:,})",
            f"{sample_sharpness:.4f} ({sample_sharpness / real_sharpness:.0%} of real)",
            f"{run.sampling_ms:.1f}",
        ])
    columns = [
        ("run", "the run of this report, and the reference it is set beside (`vaelab report --reference`)"),
        ("model", "the family and what sets the model apart (learned prior, autoregressive decoder)"),
        ("objective", "the training objective and its weight"),
        ("test KL (nats)", "KL(q(z|x) ‖ p(z)) on the test split: the information the latent carries per image"),
        ("active units", f"dimensions whose posterior mean varies across test images (variance > "
                         f"{ACTIVE_UNIT_THRESHOLD:g})"),
        ("named factors", f"active dimensions whose traversal moves one measured attribute at |ρ| ≥ "
                          f"{ATTRIBUTE_RHO_THRESHOLD:g} (from the run's factors.json; – without one)"),
        ("test NLL (nats)", "the IWAE bound of the run's eval.json, with its k and test images: compare on the same "
                            "images and k"),
        ("sample sharpness", f"mean gradient magnitude of {REPORT_SAMPLES} prior samples (seed 0), and its share of "
                             f"real test images' ({real_sharpness:.4f}): below 100% is blur"),
        ("sampling (ms per image)", f"wall-clock time to draw those {REPORT_SAMPLES} samples here, per image"),
    ]
    grids = "".join(f"<figure>{img_tag(sample_grid(run.samples), f'{name} prior samples', scale=2)}"
                    f"<figcaption>{html.escape(name)}</figcaption></figure>"
                    for name, run in both)
    summary = (f"This run's prior samples are {sharpnesses[0] / sharpnesses[1]:.2f}× as sharp as {reference_name}'s, "
               f"and its latent carries {mine.evaluation['kl']:.1f} nats of KL in {mine.evaluation['active_units']} "
               f"active units against {theirs.evaluation['kl']:.1f} nats in {theirs.evaluation['active_units']}.")
    table = html_table([n for n, _ in columns], rows, [m for _, m in columns])
    return f"Beside {reference_name}", f"<p>{html.escape(summary)}</p>{table}{grids}"


def _disentanglement(run_dir: Path, skipped: Skipped) -> list[tuple[str, str]]:
    """MIG, DCI and SAP against the measured attributes, from RUN/disentanglement.json or computed now: the section,
    or none where no part has images enough (then why, in `skipped`)."""
    result, note = read_artefact_if_present(run_dir, DISENTANGLEMENT), "from disentanglement.json"
    if result is None:
        result = measure_disentanglement(run_dir, images=REPORT_DISENTANGLEMENT_IMAGES, write=False)
        read = result["images"] + result["images_dropped"]
        note = (f"computed now on the first {read:,} test images (`vaelab factors` uses all)"
                if read >= REPORT_DISENTANGLEMENT_IMAGES else f"computed now on all {read:,} test images")
    parts = [part for part in ("all", "decorrelated") if result[part] is not None]
    for part in ("all", "decorrelated"):
        if result[part] is None:
            skipped[f"disentanglement metrics ({part})"] = result["skipped"][part]
    if not parts:
        return []
    rows = []
    for part in parts:
        scores = result[part]
        rows.append([part, f"{scores['images']:,}", f"{scores['mean_abs_factor_correlation']:.2f}",
                     f"{scores['mig']['mig']:.3f}", f"{scores['dci']['disentanglement']:.3f}",
                     f"{scores['dci']['completeness']:.3f}", f"{scores['dci']['informativeness']:.3f}",
                     f"{scores['sap']['sap']:.3f}"])
    meanings = [
        "all test images, or a subsample drawn so that the attributes are close to independent",
        "test images whose attributes are all defined",
        "mean |Spearman ρ| between pairs of attributes: how correlated the factors themselves are",
        f"mutual information gap (Chen et al. 2018), codes and attributes in {result['bins']} quantile bins",
        f"DCI disentanglement (Eastwood & Williams 2018), {result['regressor']} importances",
        "DCI completeness: how few codes each attribute is spread over",
        "DCI informativeness: held-out R² of the attributes predicted from the codes",
        "separated attribute predictability (Kumar et al. 2018)",
    ]
    table = html_table(["images", "count", "factor |ρ|", "MIG", "DCI D", "DCI C", "DCI I", "SAP"], rows, meanings)
    return [(f"Disentanglement against measured attributes ({objective_text(result['objective'])})",
             table + f"<p class='note'>Factors: {html.escape(', '.join(result['factors']))}; {html.escape(note)}. "
                     f"{html.escape(result['note'])}</p>")]


def _interpolations(
    run_dir: Path, judge: torch.nn.Module | None, pair: tuple[str, str], modes: tuple[str, ...]
) -> tuple[str, str]:
    """The interpolation pictures and their smoothness; with a judge, also the share of confident frames."""
    paths = {mode: interpolate_run(run_dir, *pair, 10, mode) for mode in modes}
    pictures = [img_tag(interpolation_grid(path), f"{mode} interpolation") for mode, path in paths.items()]
    crossfade = paths[modes[-1]].crossfade
    rows = [[f"latent, {mode}", number_text(smoothness_ratio(path.decoded))] for mode, path in paths.items()]
    rows.append(["pixel cross-fade", number_text(smoothness_ratio(crossfade))])
    columns = [
        ("path", "the latent path (straight or spherical between the two codes, each point decoded) or the pixel "
                 "cross-fade (the two images' intensities mixed in proportion)"),
        ("smoothness (max/mean step)", "the largest pixel step between consecutive frames over the mean step: 1 is "
                                       "an even change, large is a jump"),
    ]
    note = ""
    if judge is not None:
        latent = {mode: confident_fraction(path.decoded, judge) for mode, path in paths.items()}
        faded = confident_fraction(crossfade, judge)
        for row, share in zip(rows, [*latent.values(), faded], strict=True):
            row.append(f"{share:.0%}")
        columns.append(("confident frames", f"share of the frames the reference classifier assigns to one class "
                                            f"with at least {CONFIDENCE_THRESHOLD:.0%} probability: how much they "
                                            "look like one class's training images"))
        note = f"<p>{html.escape(confidence_note(latent, faded))}</p>"
    measured = html_table([name for name, _ in columns], rows, [meaning for _, meaning in columns])
    return (f"Interpolations between {pair[0]} and {pair[1]} (latent path above, pixel cross-fade below)",
            "<br>".join(pictures) + measured + note)


def confidence_note(latent: dict[str, float], crossfade: float) -> str:
    """What the confident-frame shares of the latent paths (mode → share) and of the cross-fade say, and what they
    do not: a share of frames that look like one class, not a measure of how smooth a path is."""
    paths = " and ".join(f"{share:.0%} ({mode})" for mode, share in latent.items())
    if crossfade >= max(latent.values()):
        comparison = (f"The pixel cross-fade has {crossfade:.0%} confident frames, as many as or more than the latent "
                      f"path's {paths}; that does not make it the better path.")
    else:
        comparison = (f"The latent path has {paths} confident frames against {crossfade:.0%} for the pixel "
                      "cross-fade.")
    return (comparison + " A cross-fade between two images is mostly one image or the other at every frame (the "
            "other shows through faintly), so the classifier stays sure of most frames, while a latent path passes "
            "through in-between shapes that belong to neither class. Confident frames measure how much each frame "
            "looks like a training image of one class, not how smoothly the path moves: that is the smoothness "
            "column.")


def _conditional_sections(
    model: VAE, inputs: torch.Tensor, labels: torch.Tensor, classes: tuple[str, ...]
) -> list[tuple[str, str]]:
    """The class × style grid and restyled test images of a conditional model."""
    names = ", ".join(f"{c} {name}" for c, name in enumerate(classes))
    grid = img_tag(class_grid_picture(class_grid(model, columns=10, seed=0)), "class grid")
    shown = min(RESTYLED_IMAGES, len(inputs))
    strips = [
        img_tag(restyle_strip(inputs[i : i + 1], restyle(model, inputs, labels, i)), f"restyled test image {i}")
        for i in range(shown)
    ]
    return [
        ("Class-conditioned samples: one row per class, the same z down each column",
         grid + f"<p class='note'>Rows: {html.escape(names)}. A column is one prior draw of z (the style) "
                "written as every class.</p>"),
        (f"Restyle: test images 0 to {shown - 1} (left), their style written as every class",
         "<br>".join(strips) + "<p class='note'>Each image is encoded with its own label; its posterior mean is "
                               "decoded with every label in turn.</p>"),
    ]


def _style_dimensions(model: VAE, factors: list[dict[str, Any]], classes: tuple[str, ...]) -> tuple[str, str]:
    """The most informative active dimensions, each swept ±3σ from the prior mean and written as every class."""
    values = traversal_values(3.0, 11)
    parts = []
    for f in [f for f in factors if f["active"] and not is_weak(f)][:STYLE_DIMENSIONS]:
        picture = class_grid_picture(style_traversal(model, f["dim"], values))
        parts.append(f"<h3>z{f['dim']}: {html.escape(shown_name(f))}</h3>"
                     + img_tag(picture, f"z{f['dim']} as every class", scale=2))
        if f.get("top_rho_per_class"):
            rhos = [number_text(rho, "+.2f") for rho in f["top_rho_per_class"]]
            meaning = (f"Spearman ρ between z{f['dim']} and {f['top_attribute']} over the traversals from that "
                       "class's test images alone (±1: the attribute always moves one way)")
            parts.append(html_table(["class", *classes], [[f"ρ with {f['top_attribute']} (test images of this class)",
                                                           *rhos]], ["what the row measures", *[meaning] * len(rhos)]))
    note = ("<p class='note'>A class-independent style factor moves the same attribute the same way in every "
            "row.</p>")
    return "Style dimensions written as every class (rows: classes; columns: −3σ … +3σ)", "".join(parts) + note


def _classification(classification: dict[str, Any], classes: tuple[str, ...]) -> str:
    per_class = [
        [name, f"{accuracy:.2%}"]
        for name, accuracy in zip(classes, classification["per_class_accuracy"], strict=True)
    ]
    summary = (f"<p>Test accuracy {classification['accuracy']:.2%} on {classification['images']:,} images "
               "(the run's own classifier q(y|x)).</p>")
    confusion = img_tag(confusion_matrix_png(classification["confusion_matrix"], classes), "confusion matrix",
                        scale=1)
    meanings = ["the true class of the test images", "share of that class's test images q(y|x) labels correctly"]
    return summary + html_table(["class", "accuracy"], per_class, meanings) + confusion


def _evaluation_table(ev: dict[str, Any], note: str) -> str:
    caveat = f" {ev['note']}." if "note" in ev else ""
    meanings = ["what is measured on the test split (log-likelihoods in nats per image or bits per dimension)",
                "the measured number, with the images it was measured on where it used fewer"]
    return html_table(["metric", "value"], [list(row) for row in eval_rows(ev)], meanings) + \
        f"<p class='note'>{html.escape(note + '.' + caveat)}</p>"


def _factor_table(
    factors: list[dict[str, Any]], traversal, around: str, classes: int, judged: bool = True
) -> str:
    """One row per dimension with its numbers, its name and TABLE_FRAMES frames of its traversal (each at least
    TRAVERSAL_FRAME_PX wide), and a legend of the columns; without a trustworthy judge (`judged` False) no
    confident-frames column, whatever factors.json holds."""
    row_of_dim = {d: i for i, d in enumerate(traversal.dims)}
    annotated = any("top_annotation" in f or "known_factors" in f for f in factors)
    bases = next((f["bases"] for f in factors if "bases" in f), None)  # absent from factors.json before 2026-12-04
    pooled = "many test images" if bases is None else f"the codes of the first {bases} test images"
    steps, height = traversal.images.shape[1], traversal.images.shape[-2]
    shown = sorted(set(np.linspace(0, steps - 1, TABLE_FRAMES).round().astype(int).tolist()))
    scale = math.ceil(TRAVERSAL_FRAME_PX / height)
    rows = []
    for f in factors:
        strip = make_grid(traversal.images[row_of_dim[f["dim"]]][shown], columns=len(shown))
        rows.append([
            f"z{f['dim']}", number_text(f["kl"]), active_text(f),
            f"{f['top_attribute'] or '–'} ({number_text(f['top_rho'], '+.2f')})",
            weakest_class_text(f),
            f"{f['second_attribute'] or '–'} ({number_text(f['second_rho'], '+.2f')})",
            number_text(f["mi_with_class"], ".3f"), number_text(f["smoothness_ratio"]),
            *([number_text(f.get("confident_fraction"), ".0%")] if judged else []), shown_name(f),
            *([annotation_text(f)] if annotated else []),
            img_tag(strip, f"traversal of z{f['dim']}", scale=scale),
        ])
    columns = [
        ("dim", "the latent dimension, the most informative (largest KL) first"),
        ("KL (nats)", "the KL of its posterior from the prior, averaged over test images: the information it carries"),
        ("active", f"yes when its posterior mean varies across test images (variance > {ACTIVE_UNIT_THRESHOLD:g}); "
                   f"weak when it is active yet carries under {WEAK_KL_NATS:g} nats of KL"),
        ("top attribute (ρ)", "the measured attribute the traversal moves most, with its Spearman ρ between the "
                              f"traversed value and the attribute, pooled over traversals from {pooled}"),
        ("its weakest class ρ", "that attribute's ρ in the class where the dimension moves it least (signed along "
                                "the pooled ρ): near the pooled ρ for a factor that acts alike in every class"),
        ("second (ρ)", "the attribute with the next largest |ρ|"),
        ("MI with class (nats)", "mutual information between the dimension's posterior means and the class label "
                                 "above chance (less its 95th percentile under shuffled labels), capped at its KL"
                                 + (f" (at most ln {classes} = {math.log(classes):.2f} nats)" if classes > 1 else "")),
        ("smoothness (max/mean step)", "the largest pixel step between consecutive traversal frames over the mean "
                                       f"step: 1 is an even change, above {SMOOTHNESS_LIMIT:g} a jump"),
        *([("confident frames", f"share of traversal frames the reference classifier assigns to one class with at "
                                f"least {CONFIDENCE_THRESHOLD:.0%} probability: how much they look like training "
                                "images")] if judged else []),
        ("name", f"the attribute when |ρ| ≥ {ATTRIBUTE_RHO_THRESHOLD:g}, with '+ class' when the MI with the class is "
                 f"also ≥ {CLASS_MI_THRESHOLD:g} nats (the traversal changes the class too); else class/shape when "
                 f"the MI is ≥ {CLASS_MI_THRESHOLD:g} nats; else entangled; inactive or weak dimensions carry "
                 "(almost) no information and are not named"),
        *([("annotations (AUC; known factor ρ: encoder, traversal)",
            "the annotation the dimension tells apart best (AUC) and the ρ of each known factor with the posterior "
            "means (encoder) and under traversal")] if annotated else []),
        ("traversal −3σ … +3σ", f"the dimension swept from −3σ to +3σ around {around}, the others fixed: "
                                f"{len(shown)} evenly spaced frames of its row in the traversals above"),
    ]
    return html_table([name for name, _ in columns], rows, [meaning for _, meaning in columns])


def active_text(row: dict[str, Any]) -> str:
    """`yes`, `yes, weak (< 0.1 nats)` or `no`."""
    if not row["active"]:
        return "no"
    return f"yes, weak (< {WEAK_KL_NATS:g} nats)" if is_weak(row) else "yes"


def named_factors(factors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The dimensions of a factor table named after a measured attribute (not inactive, weak, class/shape or
    entangled)."""
    return [f for f in factors if is_named(f)]


def _limitations(
    ev: dict[str, Any], factors: list[dict[str, Any]], sample_sharpness: float, real_sharpness: float,
    per_class: list[float], classes: tuple[str, ...] | None, images: int,
) -> str:
    active = [f for f in factors if f["active"]]
    weak = [f for f in active if is_weak(f)]
    named = named_factors(factors)
    with_class = [f for f in named if f["mi_with_class"] >= CLASS_MI_THRESHOLD]
    jumpy = [f for f in active if f["smoothness_ratio"] is not None and f["smoothness_ratio"] > SMOOTHNESS_LIMIT]
    measured = [c for c in range(len(per_class)) if math.isfinite(per_class[c])]  # a class absent from them: nan
    worst = sorted(measured, key=lambda c: -per_class[c])[:3]
    best = min(measured, key=lambda c: per_class[c]) if measured else None
    items = [
        f"Blur: prior samples have a mean gradient magnitude of {sample_sharpness:.4f} against "
        f"{real_sharpness:.4f} for real test images ({sample_sharpness / real_sharpness:.0%} of the real "
        "sharpness): the decoder's mean image averages over plausible strokes.",
        f"Inactive dimensions: {ev['latent_dim'] - ev['active_units']} of {ev['latent_dim']} latent dimensions "
        f"carry (almost) no information (posterior-mean variance ≤ {ACTIVE_UNIT_THRESHOLD:g}); they change nothing "
        "in the traversals.",
        f"Weak dimensions: {len(weak)} of {len(active)} active dimensions carry under {WEAK_KL_NATS:g} nats of KL "
        "each (marked weak in the factor table): they pass the active-unit test, yet hold little information.",
        f"Named factors: {len(named)} of {len(active)} active dimensions correlate with one measured attribute at "
        f"|ρ| ≥ {ATTRIBUTE_RHO_THRESHOLD:g}, {len(with_class)} of them also carry the class (MI ≥ "
        f"{CLASS_MI_THRESHOLD:g} nats: their traversal changes the class as well); the others are labelled "
        "'class/shape' or 'entangled' by the numbers, not named by eye.",
        f"Traversal smoothness: {len(jumpy)} of {len(active)} active dimensions have a max/mean step ratio above "
        f"{SMOOTHNESS_LIMIT:g} over ±3σ.",
    ]
    if classes and best is not None:
        items.append(f"Classes that reconstruct worst (mean −log p(x|z) on the first {images:,} test images): "
                     + ", ".join(f"{classes[c]} ({per_class[c]:.1f} nats)" for c in worst)
                     + f"; best: {classes[best]} ({per_class[best]:.1f} nats).")
    return "<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in items) + "</ul>"


PAGE_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1300px; color: #222; padding: 0 1rem; }}
h1 {{ margin-bottom: 0.2rem; }} .subtitle {{ color: #666; margin-top: 0; }}
section {{ margin: 2rem 0; }} h2 {{ border-bottom: 1px solid #ddd; padding-bottom: 0.3rem; }}
img {{ image-rendering: pixelated; max-width: 100%; }}
td img {{ max-width: none; }} .table {{ overflow-x: auto; }}
table {{ border-collapse: collapse; font-size: 0.9rem; }}
td, th {{ border: 1px solid #ddd; padding: 0.25rem 0.5rem; text-align: left; vertical-align: middle; }}
th {{ background: #f4f4f4; }} pre {{ background: #f7f7f7; padding: 0.8rem; font-size: 0.8rem; }}
.note {{ color: #666; font-size: 0.85rem; }}
figure {{ display: inline-block; margin: 0.5rem 1.5rem 0 0; }} figcaption {{ color: #555; font-size: 0.85rem; }}
.legend {{ color: #555; font-size: 0.85rem; margin: 0.4rem 0 0; padding-left: 1.2rem; }}
</style></head>
<body><h1>{title}</h1><p class="subtitle">{subtitle}</p>{body}</body></html>
"""
