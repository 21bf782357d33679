"""The sweep report: one self-contained HTML page (no scripts, images inline) drawn from sweep.json and the runs
beside it — the rate–distortion curve (Alemi et al. 2018), likelihood against disentanglement (the trade between
realism and interpretable factors, measured), metrics against each objective's weight, and samples / traversals side
by side."""

from __future__ import annotations

import html
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from vaelab.analysis.samples import prior_samples
from vaelab.analysis.traversal import traversal_grid, traverse_run
from vaelab.images import make_grid
from vaelab.io import atomic_write_text
from vaelab.report.figures import figure_png
from vaelab.report.html import PAGE_TEMPLATE, html_table, img_tag, number_text
from vaelab.rundir import load_model

TRAVERSAL_ROWS = 6
DISENTANGLEMENT_NOTE = ("MIG and DCI against the test images' measured attributes (disentanglement.json of each run), "
                        "which are correlated with each other and with the class: a comparison between these runs, not "
                        "with published dSprites scores.")


def rate_distortion_png(rows: list[dict[str, Any]]) -> bytes:
    """Distortion (reconstruction nats) against rate (KL nats), one labelled point per setting, a line per
    objective."""
    figure, ax = plt.subplots(figsize=(6, 4.5))
    for objective, group in _by_objective(rows).items():
        ax.plot([r["kl"] for r in group], [r["recon"] for r in group], "o-", label=objective)
    for r in rows:
        ax.annotate(r["label"], (r["kl"], r["recon"]), textcoords="offset points", xytext=(6, 4), fontsize=8)
    if len(_by_objective(rows)) > 1:
        ax.legend(fontsize=7)
    ax.set(xlabel="rate: KL(q(z|x) ‖ p(z)), nats", ylabel="distortion: −log p(x|z), nats",
           title="rate–distortion (test split)")
    ax.grid(alpha=0.3)
    return figure_png(figure)


def _by_objective(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r["objective"], []).append(r)
    return groups


def _likelihood(r: dict[str, Any]) -> float:
    return r["iwae_nll"] if r["iwae_nll"] is not None else -r["elbo"]


def likelihood_vs_disentanglement_png(rows: list[dict[str, Any]]) -> bytes:
    """Test NLL against MIG and against DCI disentanglement, one labelled point per setting: what the factors cost
    in likelihood."""
    panels = [("mig", "MIG"), ("dci_disentanglement", "DCI disentanglement"), ("named_factors", "named factors")]
    figure, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6))
    for ax, (key, title) in zip(axes, panels, strict=True):
        for objective, group in _by_objective(rows).items():
            ax.plot([r[key] for r in group], [_likelihood(r) for r in group], "o", label=objective)
        for r in rows:
            ax.annotate(r["label"], (r[key], _likelihood(r)), textcoords="offset points", xytext=(4, 3), fontsize=7)
        ax.set(xlabel=title, ylabel="test NLL (IWAE), nats", title=f"likelihood against {title}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    figure.tight_layout()
    return figure_png(figure)


def metrics_vs_weight_png(rows: list[dict[str, Any]], real_sharpness: float) -> bytes:
    """Each metric against the objective's weight, one line per objective."""
    panels = [("iwae_nll", "IWAE NLL (nats)"), ("active_units", "active units"),
              ("fid_classifier", "FID, classifier features"), ("fid_inception", "FID, Inception (QUICK if flagged)"),
              ("sharpness", "sharpness of prior samples"), ("named_factors", "named factors"), ("mig", "MIG")]
    panels = [(key, title) for key, title in panels if any(r[key] is not None for r in rows)]
    groups = _by_objective(rows)
    figure, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.2))
    for ax, (key, title) in zip(axes, panels, strict=True):
        for objective, group in groups.items():
            ax.plot([r["weight"] for r in group], [r[key] if r[key] is not None else float("nan") for r in group],
                    "o-", label=objective)
        if key == "sharpness":
            ax.axhline(real_sharpness, color="grey", linestyle="--", label="real test images")
        if key == "sharpness" or (len(groups) > 1 and key == panels[0][0]):
            ax.legend(fontsize=7)
        if min(r["weight"] for r in rows) > 0:
            ax.set_xscale("log")
        ax.set(title=title, xlabel="β" if set(groups) == {"beta"} else "weight (β, γ of the TC, or C nats)")
        ax.grid(alpha=0.3)
    figure.tight_layout()
    return figure_png(figure)


def build_sweep_report(
    sweep_dir: str | Path, summary: dict[str, Any] | None = None, out: str | Path | None = None
) -> Path:
    sweep_dir = Path(sweep_dir)
    summary = summary if summary is not None else json.loads((sweep_dir / "sweep.json").read_text())
    out = Path(out) if out is not None else sweep_dir / "sweep.html"
    rows, settings = summary["runs"], summary["settings"]
    inception = settings["inception_samples"]
    against = "β" if {r["objective"] for r in rows} == {"beta"} else "each objective's weight"
    sections = [("Rate–distortion", img_tag(rate_distortion_png(rows), "rate-distortion curve"))]
    if any(r["mig"] is not None for r in rows):
        sections.append(("Likelihood against disentanglement", img_tag(
            likelihood_vs_disentanglement_png([r for r in rows if r["mig"] is not None]),
            "likelihood against disentanglement") + f"<p class='note'>{html.escape(DISENTANGLEMENT_NOTE)}</p>"))
    sections += [
        (f"Metrics against {against}", img_tag(metrics_vs_weight_png(rows, summary["real_sharpness"]),
                                                "metrics against the weight")),
        ("Numbers", _numbers_table(rows, settings) + _notes(summary)),
        ("Samples and traversals side by side", _pictures(sweep_dir, rows)),
        ("Settings", f"<pre>{html.escape(json.dumps({'settings': settings, 'config': summary['config']}, indent=2))}"
                     "</pre>"),
    ]
    body = "".join(f"<section><h2>{html.escape(title)}</h2>{content}</section>" for title, content in sections)
    subtitle = (f"{summary['dataset']}, {', '.join(r['label'] for r in rows)}, "
                f"{settings['epochs']} epochs each, seed {summary['config']['train']['seed']}"
                f"{f', Inception FID on {inception:,} samples' if inception else ''} · "
                f"generated {time.strftime('%Y-%m-%d %H:%M')} from {sweep_dir}")
    page = PAGE_TEMPLATE.format(title=html.escape(f"vaelab sweep — {sweep_dir.name}"),
                                subtitle=html.escape(subtitle), body=body)
    atomic_write_text(out, page)
    return out


def _numbers_table(rows: list[dict[str, Any]], settings: dict[str, Any]) -> str:
    header = ["setting", "ELBO", "recon", "KL", f"IWAE-{settings['iw_samples']} NLL", "active", "FID classifier",
              "FID Inception", "precision", "recall", "classes", "sharpness", "MIG", "DCI D", "SAP", "named factors"]
    body = [[r["label"], number_text(r["elbo"]), number_text(r["recon"]), number_text(r["kl"]),
             number_text(r["iwae_nll"]), f"{r['active_units']}/{r['latent_dim']}", number_text(r["fid_classifier"]),
             number_text(r["fid_inception"]), number_text(r["precision"], ".3f"), number_text(r["recall"], ".3f"),
             r["classes_covered"], number_text(r["sharpness"], ".4f"), number_text(r["mig"], ".3f"),
             number_text(r["dci_disentanglement"], ".3f"), number_text(r["sap"], ".3f"),
             ", ".join(r["factor_names"]) or "–"] for r in rows]
    return html_table(header, body)


def _notes(summary: dict[str, Any]) -> str:
    settings = summary["settings"]
    inception = settings["inception_samples"]
    lines = [
        f"ELBO, reconstruction and KL on the whole test split; IWAE-{settings['iw_samples']} on its first "
        f"{settings['iw_images']:,} images.",
        f"Sample metrics on {settings['samples']:,} prior samples (seed 0) against the test split; classifier FID and "
        f"precision/recall (k=3) in the features of vaelab's reference classifier (test accuracy "
        f"{summary['classifier_test_accuracy']:.2%}) — not comparable with Inception FID.",
        (f"Inception FID on {inception:,} samples vs. the test images"
         + (" — QUICK: biased upward, not comparable with published FIDs." if inception < 10_000 else "."))
        if inception else "Inception FID not computed (--inception-samples 0).",
        f"Factors from {settings['factor_bases']} test codes; a dimension is named only at |ρ| ≥ 0.6.",
    ]
    return "".join(f"<p class='note'>{html.escape(line)}</p>" for line in lines)


def _pictures(sweep_dir: Path, rows: list[dict[str, Any]]) -> str:
    """Per setting: 36 prior samples (the same z for every one) and the traversals of its most informative
    dimensions."""
    table = []
    for r in rows:
        run_dir = sweep_dir / r["run"]
        samples = make_grid(prior_samples(load_model(run_dir), 36, seed=0), columns=6)
        traversal = traverse_run(run_dir, "auto", 3.0, 9, "prior")
        top = replace(traversal, images=traversal.images[:TRAVERSAL_ROWS], dims=traversal.dims[:TRAVERSAL_ROWS])
        strip = traversal_grid(top)
        table.append([r["label"], img_tag(samples, f"samples {r['run']}", scale=2),
                      img_tag(strip, f"traversals {r['run']}", scale=2)])
    return html_table(["setting", "prior samples (same z for every setting)",
                       f"top {TRAVERSAL_ROWS} dimensions by KL, ±3σ"], table)
