"""The β-sweep report: one self-contained HTML page (no scripts, images inline) drawn from sweep.json and the runs
beside it — the rate–distortion curve (Alemi et al. 2018), metrics against β, and samples / traversals side by
side."""

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


def rate_distortion_png(rows: list[dict[str, Any]]) -> bytes:
    """Distortion (reconstruction nats) against rate (KL nats), one labelled point per β."""
    figure, ax = plt.subplots(figsize=(6, 4.5))
    ax.plot([r["kl"] for r in rows], [r["recon"] for r in rows], "o-")
    for r in rows:
        ax.annotate(f"β={r['beta']:g}", (r["kl"], r["recon"]), textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set(xlabel="rate: KL(q(z|x) ‖ p(z)), nats", ylabel="distortion: −log p(x|z), nats",
           title="rate–distortion (test split)")
    ax.grid(alpha=0.3)
    return figure_png(figure)


def metrics_vs_beta_png(rows: list[dict[str, Any]], real_sharpness: float) -> bytes:
    betas = [r["beta"] for r in rows]
    panels = [("iwae_nll", "IWAE NLL (nats)"), ("active_units", "active units"),
              ("fid_classifier", "FID, classifier features"), ("fid_inception", "FID, Inception (QUICK if flagged)"),
              ("sharpness", "sharpness of prior samples"), ("named_factors", "named factors")]
    panels = [(key, title) for key, title in panels if any(r[key] is not None for r in rows)]
    figure, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.2))
    for ax, (key, title) in zip(axes, panels, strict=True):
        ax.plot(betas, [r[key] if r[key] is not None else float("nan") for r in rows], "o-")
        if key == "sharpness":
            ax.axhline(real_sharpness, color="grey", linestyle="--", label="real test images")
            ax.legend(fontsize=7)
        if min(betas) > 0:
            ax.set_xscale("log")
        ax.set(title=title, xlabel="β")
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
    sections = [
        ("Rate–distortion", img_tag(rate_distortion_png(rows), "rate-distortion curve")),
        ("Metrics against β", img_tag(metrics_vs_beta_png(rows, summary["real_sharpness"]), "metrics against beta")),
        ("Numbers", _numbers_table(rows, settings) + _notes(summary)),
        ("Samples and traversals side by side", _pictures(sweep_dir, rows)),
        ("Settings", f"<pre>{html.escape(json.dumps({'settings': settings, 'config': summary['config']}, indent=2))}"
                     "</pre>"),
    ]
    body = "".join(f"<section><h2>{html.escape(title)}</h2>{content}</section>" for title, content in sections)
    subtitle = (f"{summary['dataset']}, β ∈ {{{', '.join(f'{b:g}' for b in summary['betas'])}}}, "
                f"{settings['epochs']} epochs each, seed {summary['config']['train']['seed']}"
                f"{f', Inception FID on {inception:,} samples' if inception else ''} · "
                f"generated {time.strftime('%Y-%m-%d %H:%M')} from {sweep_dir}")
    page = PAGE_TEMPLATE.format(title=html.escape(f"vaelab β sweep — {sweep_dir.name}"),
                                subtitle=html.escape(subtitle), body=body)
    atomic_write_text(out, page)
    return out


def _numbers_table(rows: list[dict[str, Any]], settings: dict[str, Any]) -> str:
    header = ["β", "ELBO", "recon", "KL", f"IWAE-{settings['iw_samples']} NLL", "active", "FID classifier",
              "FID Inception", "precision", "recall", "classes", "sharpness", "named factors"]
    body = [[f"{r['beta']:g}", number_text(r["elbo"]), number_text(r["recon"]), number_text(r["kl"]),
             number_text(r["iwae_nll"]), f"{r['active_units']}/{r['latent_dim']}", number_text(r["fid_classifier"]),
             number_text(r["fid_inception"]), number_text(r["precision"], ".3f"), number_text(r["recall"], ".3f"),
             r["classes_covered"], number_text(r["sharpness"], ".4f"), ", ".join(r["factor_names"]) or "–"]
            for r in rows]
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
    """Per β: 36 prior samples (the same z for every β) and the traversals of its most informative dimensions."""
    table = []
    for r in rows:
        run_dir = sweep_dir / r["run"]
        samples = make_grid(prior_samples(load_model(run_dir), 36, seed=0), columns=6)
        traversal = traverse_run(run_dir, "auto", 3.0, 9, "prior")
        top = replace(traversal, images=traversal.images[:TRAVERSAL_ROWS], dims=traversal.dims[:TRAVERSAL_ROWS])
        strip = traversal_grid(top)
        table.append([f"β={r['beta']:g}", img_tag(samples, f"samples beta {r['beta']:g}", scale=2),
                      img_tag(strip, f"traversals beta {r['beta']:g}", scale=2)])
    return html_table(["β", "prior samples (same z for every β)", f"top {TRAVERSAL_ROWS} dimensions by KL, ±3σ"], table)
