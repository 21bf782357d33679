"""`vaelab report`: everything about one run in one self-contained HTML file (images embedded as data URIs, no
scripts, no network requests), regenerated from the run directory alone.

The page opens with a one-screen summary (what was trained on what, the headline numbers beside their published
anchors where one is measured like for like, a sample grid, the strongest measured factors) and ends with the
configuration, folded. Every kind of run gets the same core (evaluation, samples, reconstructions, traversals,
factors, latent maps, limitations). A conditional run (cvae, m2) adds its class grid, restyled test images and its
style dimensions written as every class, and skips the interpolations (a path between two digits would change only
the style; `vaelab interpolate --class` draws one); a run that predicts classes (vae-classifier, m2) adds its
accuracy and confusion matrix."""

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

from vaelab.analysis.class_style import class_grid, class_grid_picture, restyle, restyle_strip, style_traversal
from vaelab.analysis.directions import (
    DIRECTIONS,
    EDIT_STEPS,
    edit_rows,
    percent_text,
    read_directions,
    signed_text,
)
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
from vaelab.analysis.traversal import (
    Traversal,
    load_test_inputs,
    traversal_grid,
    traversal_values,
    traverse_run,
)
from vaelab.config import format_duration
from vaelab.data.catalog import describe
from vaelab.data.datasets import to_float
from vaelab.errors import VaelabError
from vaelab.evaluation import evaluate_run
from vaelab.evaluation.collapse import SPREAD_IMAGES, diagnose_run
from vaelab.evaluation.evaluate import per_class_reconstruction
from vaelab.evaluation.latents import ACTIVE_UNIT_THRESHOLD, WEAK_KL_NATS
from vaelab.evaluation.reference_classifier import judge_or_reason
from vaelab.evaluation.sample_metrics import PROTOCOL_IMAGES, sharpness
from vaelab.evaluation.tables import eval_rows
from vaelab.images import make_grid, png_bytes, upscale
from vaelab.io import atomic_write_json, atomic_write_text
from vaelab.models.base import GenerativeModel
from vaelab.models.registry import capabilities, family, model_label
from vaelab.pretrained import run_name, short_run_name
from vaelab.report.figures import confusion_matrix_png, kl_heatmap, latent_map_png, scalar_curves, training_curves
from vaelab.rundir import (
    DISENTANGLEMENT,
    EVAL,
    FACTORS,
    GENERATION,
    load_model,
    read_artefact_if_present,
    read_config,
    read_machine,
    read_metrics,
    read_trainer_state,
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
TABLE_FRAMES = 6  # evenly spaced frames of each traversal beside its numbers (the factor table and the summary)
SUMMARY_SAMPLES = 24  # of the REPORT_SAMPLES prior samples, shown in the summary: four rows of six
SUMMARY_COLUMNS = 6  # narrow enough that the strongest factors fit beside the samples on a 1024-px screen
SUMMARY_FACTORS = 5  # the named factors with the largest |ρ|, listed in the summary


@dataclass(frozen=True)
class Anchor:
    """A published number, set beside a run's only where the run is measured as the paper measured it."""

    value: float
    model: str  # as the paper names it
    source: str  # the paper and its table (/work/shared/REFERENCES.md lists them with their protocols)


# (metric, dataset) → the published number; `published_anchor` says which runs it may stand beside.
# nll: nats on dynamically binarized MNIST, an importance-weighted bound (Burda et al.'s with k = 5,000);
# fid prior / fid two-stage: Inception FID of 10,000 samples against the test set, from a VAE's prior and from its
# second-stage VAE; m2 test error: per cent of the test images, with 100 labelled training images.
PUBLISHED_ANCHORS: dict[tuple[str, str], Anchor] = {
    ("nll", "mnist"): Anchor(86.76, "VAE, 1 stochastic layer, IWAE-5000", "Burda et al. 2016, Table 1"),
    ("fid prior", "mnist"): Anchor(16.6, "VAE", "Dai & Wipf 2019, Table 1"),
    ("fid prior", "fashion-mnist"): Anchor(43.6, "VAE", "Dai & Wipf 2019, Table 1"),
    ("fid prior", "celeba"): Anchor(53.3, "VAE", "Dai & Wipf 2019, Table 1"),
    ("fid two-stage", "mnist"): Anchor(12.6, "2-stage VAE", "Dai & Wipf 2019, Table 1"),
    ("fid two-stage", "fashion-mnist"): Anchor(29.3, "2-stage VAE", "Dai & Wipf 2019, Table 1"),
    ("fid two-stage", "celeba"): Anchor(44.4, "2-stage VAE", "Dai & Wipf 2019, Table 1"),
    ("m2 test error", "mnist"): Anchor(11.97, "M2", "Kingma et al. 2014, Table 1"),
}

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
        sections, headline = _vae_sections(run_dir, config, model, log,
                                           None if reference is None else Path(reference), skipped)
    else:
        sections, headline = _generator_sections(run_dir, config, model, log, skipped)
    for part, reason in skipped.items():
        log(f"{part} skipped: {reason}")
    if skipped:
        sections.append(("Skipped (not computed on this run)", "<ul>" + "".join(
            f"<li><b>{html.escape(part)}</b> skipped: {html.escape(reason)}</li>" for part, reason in skipped.items()
        ) + "</ul>"))
    # The page opens with what a reader comes for, the summary; the ~60 lines of configuration close it, folded. A
    # collapsed run says so before anything: every picture below, the summary's too, is then the same image.
    collapse = [] if headline.collapse_warning is None else [
        ("Posterior collapse", f"<p><strong>{html.escape(headline.collapse_warning)}</strong></p>")]
    sections = [*collapse, ("Summary", _summary(run_dir, config, model, headline)), *sections,
                ("Configuration (appendix)", _configuration_appendix(config))]
    body = "".join(f"<section><h2>{html.escape(title)}</h2>{content}</section>" for title, content in sections)
    beta = f", {objective_text(config.objective_settings())}" if capabilities(model).likelihood else ""
    listed = f" · {len(skipped)} part(s) skipped, listed at the end" if skipped else ""
    page = PAGE_TEMPLATE.format(
        title=html.escape(f"vaelab report — {short_run_name(run_dir)}"),
        subtitle=html.escape(f"{config.data.dataset}, {config.data.input_mode}, {config.model.family}, latent "
                             f"{model.latent_dim}{beta} · generated {time.strftime('%Y-%m-%d %H:%M')} from "
                             f"{run_name(run_dir)}{listed}"),
        body=body,
    )
    atomic_write_text(out, page)
    atomic_write_json(out.with_suffix(".json"), {
        "run": str(run_dir), "dataset": config.data.dataset, "sections": [title for title, _ in sections],
        "skipped": skipped,
    })
    return out


@dataclass(frozen=True)
class Headline:
    """What the summary at the top of the page shows of the sections below it: the same numbers and pictures, not
    measured twice."""

    evaluation: dict[str, Any]  # eval.json, or the quick evaluation computed for the report
    samples: torch.Tensor  # the REPORT_SAMPLES prior samples (seed 0) of the sample section
    factors: list[dict[str, Any]] | None  # the factor table's rows; None for a family without an encoder
    traversal: Traversal | None  # the traversals the factor table shows frames of
    collapse_warning: str | None = None  # a posterior collapse, said first (`build_report`)


def published_anchor(metric: str, config: RunConfig) -> Anchor | None:
    """The published number for `metric` (a key of PUBLISHED_ANCHORS) in this run's setting, or None where no paper
    of the table measured the same thing. The VAE anchors need a VAE as the papers trained it: one stochastic layer,
    an N(0, I) prior, a factorised decoder and the plain ELBO (β 1, no free bits; a KL warm-up is allowed, it is
    worth about a nat); the NLL anchor also needs binarized images under a Bernoulli likelihood. The M2 anchor
    needs an m2 run that kept 100 labels."""
    model, data = config.model, config.data
    # A published number belongs to one model as its paper trained it, so the family is named here, not a capability.
    objective = model.objective
    plain_vae = model_label(model) == "vae" and objective.name == "beta" and objective.beta == 1 and \
        objective.free_bits == 0
    like_for_like = {
        "nll": plain_vae and data.input_mode == "binarized" and model.likelihood == "bernoulli",
        "fid prior": plain_vae,
        "fid two-stage": plain_vae,
        "m2 test error": model.family == "m2" and data.labels == 100,
    }
    return PUBLISHED_ANCHORS.get((metric, data.dataset)) if like_for_like.get(metric, False) else None


def anchor_text(anchor: Anchor | None, unit: str = "") -> str:
    """`86.76 nats: VAE, 1 stochastic layer, IWAE-5000 (Burda et al. 2016, Table 1)`, or `–` without an anchor."""
    return "–" if anchor is None else f"{anchor.value:g}{unit}: {anchor.model} ({anchor.source})"


def headline_rows(
    config: RunConfig, evaluation: dict[str, Any], generation: dict[str, Any] | None
) -> list[list[str]]:
    """The summary's numbers, each as [metric, this run, published anchor]: the test bounds and active units (a
    family with a likelihood) or a ddpm's bound, the Inception FID of every sampler `vaelab generation` measured (an
    anchor only beside a figure of the published protocol, 10,000 samples against 10,000 test images) and the test error
    of a run with a classifier."""
    rows = []
    if "elbo" in evaluation:
        rows.append(["test ELBO", f"{evaluation['elbo']:.2f} nats ({evaluation['bits_per_dim_elbo']:.4f} bits/dim)",
                     "–"])
        if "iwae" in evaluation:
            iw = evaluation["iwae"]
            rows.append([f"test NLL (IWAE-{iw['k']})", f"{iw['nll']:.2f} nats ({iw['bits_per_dim']:.4f} bits/dim, "
                                                       f"first {iw['images']:,} test images)",
                         anchor_text(published_anchor("nll", config), " nats")])
        rows.append(["active units", f"{evaluation['active_units']} of {evaluation['latent_dim']}", "–"])
    elif "bound" in evaluation:  # a ddpm: a variational bound estimated from sampled timesteps
        bound = evaluation["bound"]
        rows.append(["test NLL bound (estimate)", f"{bound['nll_bound_nats']:.2f} nats ({bound['bits_per_dim']:.4f} "
                                                  f"bits/dim)", "–"])
    measured = {sampler: entry for sampler, entry in (generation or {"samplers": {}})["samplers"].items()
                if "fid_inception" in entry}
    for sampler, entry in measured.items():
        published = (entry["inception_samples"] >= PROTOCOL_IMAGES
                     and entry["inception_reference_images"] >= PROTOCOL_IMAGES)
        anchor = published_anchor(f"fid {sampler}", config) if published else None
        rows.append([f"FID (Inception), {sampler} samples",
                     f"{entry['fid_inception']:.1f} ({entry['fid_inception_protocol']})", anchor_text(anchor)])
    if not measured:
        rows.append(["FID (Inception)", "not measured (`vaelab generation RUN` measures it)", "–"])
    if "classification" in evaluation:
        classification = evaluation["classification"]
        rows.append(["test error of q(y|x)", f"{1 - classification['accuracy']:.2%} ({classification['images']:,} "
                                             "test images)",
                     anchor_text(published_anchor("m2 test error", config), "%")])
    return rows


def _summary(run_dir: Path, config: RunConfig, model: torch.nn.Module, headline: Headline) -> str:
    """One screen at the top of the page: what was trained on what, the headline numbers beside their published
    anchors, a sample grid and the strongest measured factors; the sections below hold the rest."""
    numbers = html_table(
        ["metric", "this run", "published"],
        headline_rows(config, headline.evaluation, read_artefact_if_present(run_dir, GENERATION)),
        ["what is measured on the test split (log-likelihoods in nats per image and bits per dimension)",
         "the run's number, with how it was measured",
         "a paper's number for the same model, data and protocol, with its source; – where no published number is "
         "measured like for like"],
    )
    height = headline.samples.shape[-2]
    grid = img_tag(make_grid(headline.samples[:SUMMARY_SAMPLES], columns=SUMMARY_COLUMNS), "summary samples",
                   scale=math.ceil(TRAVERSAL_FRAME_PX / height))
    how = "DDIM" if capabilities(model).sampling == "diffusion" else "prior"
    return ("<div class='summary'>"
            f"<div class='facts'><h3>What was trained on what</h3>{_trained_facts(run_dir, config, model)}</div>"
            f"<div class='numbers'><h3>Headline numbers</h3>{numbers}</div>"
            f"<figure>{grid}<figcaption>{min(SUMMARY_SAMPLES, len(headline.samples))} {how} samples (seed 0),<br>"
            "the first of the samples below</figcaption></figure>"
            f"<div class='factors'><h3>Strongest measured factors</h3>{_strongest_factors(headline, config)}"
            "</div>"
            "</div>")


def _trained_facts(run_dir: Path, config: RunConfig, model: torch.nn.Module) -> str:
    """The family and objective, the dataset and its images, the likelihood, the latent size, how long the run
    trained (epochs, steps) and for how much time, on what machine, where the run directory recorded it."""
    history = read_metrics(run_dir)
    can = capabilities(model)
    objective = f" ({objective_text(config.objective_settings())})" if can.likelihood else ""
    shape = "×".join(map(str, config.model.image_shape))
    length = "not recorded (no metrics.jsonl)"
    if history:
        last = history[-1]
        length = f"{last['epoch']} epochs, {last['step']:,} steps of {config.train.batch_size} images"
    facts = [
        ("model", model_label(config.model) + objective),
        ("dataset", f"{config.data.dataset}, {shape} images, {config.data.input_mode}"),
        ("likelihood", config.model.likelihood if can.likelihood
         else f"none (a {config.model.family} draws samples without one)"),
        ("latent", f"{model.latent_dim} dimensions"),
        ("length", length),
        ("training time", training_time_text(run_dir, history)),
    ]
    return "<dl>" + "".join(f"<dt>{html.escape(name)}</dt><dd>{html.escape(value)}</dd>" for name, value in facts) \
        + "</dl>"


def training_time_text(run_dir: Path, history: list[dict[str, Any]]) -> str:
    """`41 min 10 s on <machine> (bf16)`: the trainer's own count of training seconds (across resumes), else the
    epochs' training steps summed from metrics.jsonl (a shipped model keeps no trainer state), and the machine where
    machine.json names it; `not recorded` without either count."""
    seconds = read_trainer_state(run_dir).get("train_seconds")
    how = ""
    if not isinstance(seconds, int | float):
        epochs = [line["train_seconds"] for line in history if isinstance(line.get("train_seconds"), int | float)]
        seconds, how = (sum(epochs), " (the epochs' training steps, from metrics.jsonl)") if epochs else (None, "")
    if seconds is None:
        return "not recorded"
    machine = read_machine(run_dir)
    where = f" on {machine['device']}" if "device" in machine else ""
    precision = f" ({machine['precision']})" if where and "precision" in machine else ""
    return f"{format_duration(seconds)}{how}{where}{precision}"


def _strongest_factors(headline: Headline, config: RunConfig) -> str:
    """The SUMMARY_FACTORS named factors with the largest |ρ|: attribute, ρ, MI with the class, KL and frames of
    the traversal; or one line saying why there are none."""
    if headline.factors is None or headline.traversal is None:
        return (f"<p class='note'>No measured factors: a {html.escape(config.model.family)} has no encoder to read the "
                "codes of test images with.</p>")
    active = [f for f in headline.factors if f["active"]]
    every_named = named_factors(headline.factors)
    named = sorted(every_named, key=lambda f: -abs(f["top_rho"]))[:SUMMARY_FACTORS]
    if not named:
        return (f"<p>No dimension is named after an attribute: none of the {len(active)} active dimensions moves one "
                f"measured attribute at |ρ| ≥ {ATTRIBUTE_RHO_THRESHOLD:g} (the factor table below has each one's "
                "numbers).</p>")
    rows = [[f"z{f['dim']}", f["top_attribute"], number_text(f["top_rho"], "+.2f"),
             number_text(f["mi_with_class"]), number_text(f["kl"]),
             img_tag(traversal_strip(headline.traversal, f["dim"]), f"summary traversal of z{f['dim']}", scale=1)]
            for f in named]
    columns = [
        ("dim", f"a latent dimension named after an attribute: {len(every_named)} of the "
                f"{len(active)} active dimensions are"),
        ("attribute", "the measured attribute its traversal moves most"),
        ("ρ", "Spearman ρ between the traversed value and the attribute, largest |ρ| first"),
        ("class MI", f"mutual information with the class label in nats: from {CLASS_MI_THRESHOLD:g} the traversal "
                     "changes the class too"),
        ("KL", "the information the dimension carries, in nats"),
        ("traversal", "−3σ … +3σ, the frames of the factor table below"),
    ]
    return html_table([name for name, _ in columns], rows, [meaning for _, meaning in columns])


def _configuration_appendix(config: RunConfig) -> str:
    """The run's whole configuration, folded: open to read it."""
    text = json.dumps(config.to_dict(), indent=2)
    return (f"<details><summary>config.json as the run was trained ({text.count(chr(10)) + 1} lines)</summary>"
            f"<pre>{html.escape(text)}</pre></details>")


def _generator_sections(
    run_dir: Path, config: RunConfig, model: torch.nn.Module, log: Log, skipped: Skipped
) -> tuple[list[tuple[str, str]], Headline]:
    """A family without a likelihood (gan, ddpm): curves, what `eval` measures, samples,
    reconstructions where it can invert, traversals where its code has factors, an interpolation; the factor
    analysis and latent maps need an encoder and are left out (`vaelab compare` sets it beside a VAE)."""
    can = capabilities(model)
    history = read_metrics(run_dir)
    log("evaluation")
    evaluation, eval_note = read_artefact_if_present(run_dir, EVAL), "from eval.json"
    if evaluation is None:
        evaluation, eval_note = evaluate_run(run_dir, iw_images=QUICK_EVAL["iw_images"]), "computed now"
    sections: list[tuple[str, str]] = []
    if history:
        sections.append(("Training curves", img_tag(scalar_curves(history), "training curves")))
    sections.append(("Evaluation on the test split", _evaluation_table(evaluation, eval_note)))
    log("samples")
    how = f"DDIM, {model.sampling_steps} steps" if can.sampling == "diffusion" else "z ~ N(0, I)"
    samples = prior_samples(model, REPORT_SAMPLES, seed=0)
    sections.append((f"Samples ({how})", img_tag(make_grid(samples, columns=8), "samples")))
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
    return sections, Headline(evaluation, samples, factors=None, traversal=None)


def _require_reference(config: RunConfig, reference: Path) -> None:
    """A reference must be a VAE run of the report's dataset and input mode, or the comparison means nothing."""
    other = read_config(reference)
    if not family(other.model.family).capabilities.likelihood:
        raise VaelabError(f"--reference {reference} is a {other.model.family} run; pick a VAE run (one with a "
                          "likelihood) to compare latents with")
    mine, theirs = (config.data.dataset, config.data.input_mode), (other.data.dataset, other.data.input_mode)
    if mine != theirs:
        raise VaelabError(f"--reference {reference} is a {theirs[0]} ({theirs[1]}) run and this one {mine[0]} "
                          f"({mine[1]}); pick a reference of the same dataset and input mode")


def _vae_sections(
    run_dir: Path, config: RunConfig, model: GenerativeModel, log: Log, reference: Path | None, skipped: Skipped
) -> tuple[list[tuple[str, str]], Headline]:
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
        sections += _directions(run_dir, judge)
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
    return sections, Headline(evaluation, samples, factors, traversal,
                              collapse["warning"] if collapse["collapsed"] else None)


def _directions(run_dir: Path, judge: torch.nn.Module | None) -> list[tuple[str, str]]:
    """The directions of directions.json beside the best single dimensions, and an edit row per attribute."""
    if not (run_dir / DIRECTIONS).is_file():
        return [("Directions in the latent space",
                 "<p class='note'>Not measured yet: <code>vaelab directions RUN</code> finds each attribute's "
                 "direction and measures its edits (about 2 minutes on 2 cores); the report then shows them here.</p>")]
    result = read_directions(run_dir)
    rows = [[row["attribute"], row["method"], signed_text(row["rho"]).strip(),
             signed_text(row.get("rho_within")).strip(), percent_text(row["class_kept"]),
             "–" if row["dim"] is None else f"z{row['dim']}",
             signed_text(row["dim_rho"]).strip(), signed_text(row.get("dim_rho_within")).strip(),
             percent_text(row["dim_class_kept"]), row["direction_is"]] for row in result["summary"]]
    table = html_table(["attribute", "direction", "ρ", "ρ within", "class kept", "best dimension", "its ρ",
                        "ρ within", "class kept", "the direction is"], rows)
    steps = len(EDIT_STEPS)
    strips = "".join(f"<p>{html.escape(name)}</p>" + img_tag(make_grid(images, columns=steps * 3), name)
                     for name, images in edit_rows(run_dir, result, 3, judge))
    fitted = result["fit"]
    text = (f"<p>Fitted on {fitted['images']:,} codes ({html.escape(fitted['source'])}); each measured on "
            f"{result['edit']['images']} test images edited by t ∈ {{{', '.join(f'{t:g}' for t in EDIT_STEPS)}}} "
            "standard edits: the attribute's Spearman ρ with t pooled over the images (at most 0.82 for an edit that "
            "moves it one spread of the images per standard edit) and within each image's edit (mean; at most 1), and "
            "the share of edits the reference classifier reads as the image's class. Below, the first test images "
            f"edited along each attribute's best direction or path, t = {EDIT_STEPS[0]:g} … {EDIT_STEPS[-1]:g}.</p>")
    return [("Directions in the latent space (directions.json)", text + table + strips)]


def _judge(dataset: str, log: Log, skipped: Skipped) -> torch.nn.Module | None:
    """The reference classifier where it can judge generated images; else None, and why in `skipped`."""
    judge, why_not = judge_or_reason(dataset, log=log)
    if why_not is not None:
        skipped["confident frames (factor table, interpolations)"] = why_not
    return judge


def _timed_prior_samples(model: GenerativeModel) -> tuple[torch.Tensor, float]:
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
    model: GenerativeModel, inputs: torch.Tensor, labels: torch.Tensor, classes: tuple[str, ...]
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


def _style_dimensions(
    model: GenerativeModel, factors: list[dict[str, Any]], classes: tuple[str, ...]
) -> tuple[str, str]:
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
    """One row per dimension: TABLE_FRAMES frames of its traversal (each at least TRAVERSAL_FRAME_PX wide), its
    name and its numbers, and a legend of the columns; without a trustworthy judge (`judged` False) no
    confident-frames column, whatever factors.json holds."""
    annotated = any("top_annotation" in f or "known_factors" in f for f in factors)
    bases = next((f["bases"] for f in factors if "bases" in f), None)  # absent from factors.json before 2026-12-04
    pooled = "many test images" if bases is None else f"the codes of the first {bases} test images"
    scale = math.ceil(TRAVERSAL_FRAME_PX / traversal.images.shape[-2])
    # The traversal and the name come right after the dimension: on a laptop screen the pictures show whole, and
    # the numbers that do not fit scroll inside the table's own box.
    rows = []
    for f in factors:
        rows.append([
            f"z{f['dim']}", img_tag(traversal_strip(traversal, f["dim"]), f"traversal of z{f['dim']}", scale=scale),
            shown_name(f), number_text(f["kl"]), active_text(f),
            f"{f['top_attribute'] or '–'} ({number_text(f['top_rho'], '+.2f')})",
            weakest_class_text(f),
            f"{f['second_attribute'] or '–'} ({number_text(f['second_rho'], '+.2f')})",
            number_text(f["mi_with_class"], ".3f"), number_text(f["smoothness_ratio"]),
            *([number_text(f.get("confident_fraction"), ".0%")] if judged else []),
            *([annotation_text(f)] if annotated else []),
        ])
    columns = [
        ("dim", "the latent dimension, the most informative (largest KL) first"),
        ("traversal −3σ … +3σ", f"the dimension swept from −3σ to +3σ around {around}, the others fixed: "
                                f"{min(TABLE_FRAMES, traversal.images.shape[1])} evenly spaced frames of its row "
                                "in the traversals above"),
        ("name", f"the attribute when |ρ| ≥ {ATTRIBUTE_RHO_THRESHOLD:g}, with '+ class' when the MI with the class is "
                 f"also ≥ {CLASS_MI_THRESHOLD:g} nats (the traversal changes the class too); else class/shape when "
                 f"the MI is ≥ {CLASS_MI_THRESHOLD:g} nats; else entangled; inactive or weak dimensions carry "
                 "(almost) no information and are not named"),
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
        *([("annotations (AUC; known factor ρ: encoder, traversal)",
            "the annotation the dimension tells apart best (AUC) and the ρ of each known factor with the posterior "
            "means (encoder) and under traversal")] if annotated else []),
    ]
    return html_table([name for name, _ in columns], rows, [meaning for _, meaning in columns])


def traversal_strip(traversal: Traversal, dim: int) -> np.ndarray:
    """TABLE_FRAMES evenly spaced frames of one dimension's traversal, left to right, as one picture."""
    steps = traversal.images.shape[1]
    shown = sorted(set(np.linspace(0, steps - 1, TABLE_FRAMES).round().astype(int).tolist()))
    return make_grid(traversal.images[traversal.dims.index(dim)][shown], columns=len(shown))


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
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1300px; color: #222; padding: 0 1rem; }}
h1 {{ margin-bottom: 0.2rem; }} .subtitle {{ color: #666; margin-top: 0; }}
h1, h2, .subtitle, p, li {{ overflow-wrap: break-word; }}
section {{ margin: 2rem 0; }} h2 {{ border-bottom: 1px solid #ddd; padding-bottom: 0.3rem; }}
img {{ image-rendering: pixelated; max-width: 100%; }}
/* Nothing pushes the page sideways: a table wider than the window scrolls inside its own box, its pictures kept at
   their size; a line of the configuration too. */
td img {{ max-width: none; }} .table {{ overflow-x: auto; max-width: 100%; }}
table {{ border-collapse: collapse; font-size: 0.9rem; }}
td, th {{ border: 1px solid #ddd; padding: 0.25rem 0.5rem; text-align: left; vertical-align: middle; }}
th {{ background: #f4f4f4; }}
pre {{ background: #f7f7f7; padding: 0.8rem; font-size: 0.8rem; overflow-x: auto; }}
.note {{ color: #666; font-size: 0.85rem; }}
figure {{ display: inline-block; margin: 0.5rem 1.5rem 0 0; }} figcaption {{ color: #555; font-size: 0.85rem; }}
.legend {{ color: #555; font-size: 0.85rem; margin: 0.4rem 0 0; padding-left: 1.2rem; }}
/* The summary: what was trained beside the numbers, the samples beside the factors, where the window has room;
   one column on a phone. */
.summary {{ display: flex; flex-wrap: wrap; gap: 0 2rem; align-items: flex-start; }}
.summary > * {{ min-width: 0; max-width: 100%; }} .summary h3 {{ font-size: 1rem; margin: 0.6rem 0 0.4rem; }}
.summary .facts {{ flex: 1 1 20rem; }} .summary .numbers {{ flex: 1.5 1 28rem; }}
.summary figure {{ flex: 0 1 auto; margin: 1rem 0 0; }} .summary .factors {{ flex: 1 1 28rem; }}
.facts dl {{ display: grid; grid-template-columns: max-content minmax(0, 1fr); gap: 0.2rem 1rem; margin: 0; }}
.facts dt {{ color: #555; }} .facts dd {{ margin: 0; overflow-wrap: anywhere; }}
details summary {{ cursor: pointer; color: #555; }}
</style></head>
<body><h1>{title}</h1><p class="subtitle">{subtitle}</p>{body}</body></html>
"""
