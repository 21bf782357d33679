"""Disentangling objectives on MNIST: one model per setting (the demo architecture, the same seed and epochs), each
scored by test NLL, MIG, DCI and SAP against the measured attributes, and by its named dimensions; a conditional VAE
beside them (its z carries style only). Everything goes through `vaelab sweep` (OUT/sweep.json, OUT/sweep.html), so
an interrupted benchmark is continued by running the same command again:

    python benchmarks/disentangling.py --out runs/disentangling --epochs 22 \\
        --points beta:1,beta:4,tcvae:6,factorvae:20,capacity:25 [--cvae] [--train-limit N]
    python benchmarks/disentangling.py --score pretrained:mnist runs/style-tcvae   # score finished runs only

"Clean" named dimensions are those the factor analysis names after an attribute (|ρ| ≥ 0.6) without "+ class", i.e.
whose traversal does not also switch the digit (the target of issue 19 counts these).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from machine import run_header

from vaelab.analysis.disentanglement import disentanglement_table, measure_disentanglement
from vaelab.analysis.factors import analyse_factors
from vaelab.config import load_yaml_config
from vaelab.evaluation import evaluate_run
from vaelab.pipelines.sweep import SweepPoint, SweepSettings, run_sweep
from vaelab.pretrained import resolve_run
from vaelab.rundir import (
    CONFIG,
    DISENTANGLEMENT,
    EVAL,
    FACTORS,
    read_artefact_if_present,
    read_config,
    read_metrics,
)
from vaelab.training import train


def clean_names(factors: list[dict]) -> list[str]:
    return [f"z{row['dim']}: {row['name']}" for row in factors
            if row["active"] and "(ρ=" in row["name"] and "+ class" not in row["name"]]


def parse_points(spec: str) -> list[SweepPoint]:
    points = []
    for item in spec.split(","):
        objective, _, weight = item.partition(":")
        points.append(SweepPoint(objective.strip(), float(weight)))
    return points


def conditional_row(out: Path, base, settings: SweepSettings, overrides: dict) -> dict:
    """A cvae of the same architecture and epochs, analysed like the sweep's runs."""
    run_dir = out / "cvae-beta-1"
    config = base.with_overrides({**overrides, "family": "cvae", "epochs": settings.epochs})
    if not (run_dir / CONFIG).is_file():
        train(config, run_dir, progress=False)
    elif len(read_metrics(run_dir)) < settings.epochs:
        train(config, run_dir, resume=True, progress=False)
    evaluation = read_artefact_if_present(run_dir, EVAL) or evaluate_run(run_dir, settings.iw_samples,
                                                                           settings.iw_images)
    factors = read_artefact_if_present(run_dir, FACTORS) or analyse_factors(run_dir, settings.factor_bases)
    scores = read_artefact_if_present(run_dir, DISENTANGLEMENT) or measure_disentanglement(run_dir,
                                                                                          settings.metric_images)
    return {"label": "cvae β=1", "run": run_dir.name, "iwae_nll": evaluation.get("iwae", {}).get("nll"),
            "active_units": evaluation["active_units"], "mig": scores["all"]["mig"]["mig"],
            "dci": scores["all"]["dci"], "sap": scores["all"]["sap"]["sap"], "scores": scores, "factors": factors}


def score_runs(runs: list[str], regressor: str = "lasso", binning: str = "quantile", images: int | None = None) -> None:
    """MIG, DCI and SAP of finished runs (disentanglement.json when there is one and the conventions are the
    defaults, else computed on all test images, not written) and their clean named dimensions (factors.json)."""
    defaults = regressor == "lasso" and binning == "quantile" and images is None
    for spec in runs:
        run_dir = resolve_run(spec)
        scores = (read_artefact_if_present(run_dir, DISENTANGLEMENT) if defaults else None) or \
            measure_disentanglement(run_dir, images, write=False, regressor=regressor, binning=binning)
        names = clean_names(read_artefact_if_present(run_dir, FACTORS) or [])
        evaluation = read_artefact_if_present(run_dir, EVAL) or {}
        nll = evaluation.get("iwae", {}).get("nll")
        print(f"## {spec}: {read_config(run_dir).model.family}, test NLL "
              f"{'–' if nll is None else f'{nll:.2f}'} (IWAE), {evaluation.get('active_units', '?')} active units, "
              f"{len(names)} clean named dimensions: {'; '.join(names) or '–'}")
        print(disentanglement_table(scores))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--score", nargs="+", metavar="RUN", help="only score these finished runs")
    parser.add_argument("--regressor", default="lasso", help="with --score: DCI's model (lasso, gbt, gbt-classifier)")
    parser.add_argument("--mig-binning", default="quantile", help="with --score: quantile or equal-width")
    parser.add_argument("--metric-images", type=int, default=None, help="with --score: the first N test images")
    parser.add_argument("--out", type=Path, default=Path("runs/disentangling"))
    parser.add_argument("--epochs", type=int, default=22)
    parser.add_argument("--points", default="beta:1,beta:4,tcvae:6,factorvae:20,capacity:25")
    parser.add_argument("--config", type=Path, default=Path("configs/mnist-demo.yaml"))
    parser.add_argument("--cvae", action="store_true", help="also a conditional VAE (objective beta, β = 1)")
    parser.add_argument("--iw-samples", type=int, default=1000)
    parser.add_argument("--iw-images", type=int, default=1000)
    parser.add_argument("--factor-bases", type=int, default=200)
    parser.add_argument("--train-limit", type=int, default=None)
    args = parser.parse_args()
    print(run_header(f"torch {torch.__version__}" + ("" if args.score else f", {args.epochs} epochs per setting")))
    if args.score:
        score_runs(args.score, args.regressor, args.mig_binning, args.metric_images)
        return
    base = load_yaml_config(args.config)
    settings = SweepSettings(args.epochs, samples=2000, iw_samples=args.iw_samples, iw_images=args.iw_images,
                             factor_bases=args.factor_bases, metric_images=10_000)
    overrides = {"train_limit": args.train_limit}
    summary = run_sweep(args.out, parse_points(args.points), settings, base, overrides, log=print)
    rows = []
    for row in summary["runs"]:
        run_dir = args.out / row["run"]
        scores = read_artefact_if_present(run_dir, DISENTANGLEMENT)
        minutes = sum(entry["train_seconds"] for entry in read_metrics(run_dir)) / 60
        rows.append({**row, "dci": scores["all"]["dci"], "scores": scores, "minutes": minutes,
                     "factors": read_artefact_if_present(run_dir, FACTORS)})
    if args.cvae:
        rows.append(conditional_row(args.out, base, settings, overrides))
    print(f"{'setting':<18} {'NLL':>7} {'active':>6} {'MIG':>6} {'DCI D':>6} {'DCI C':>6} {'DCI I':>6} {'SAP':>6} "
          f"{'MIG dec':>7} {'D dec':>6} {'clean':>5}  clean named dimensions")
    for row in rows:
        decorrelated = row["scores"]["decorrelated"]
        names = clean_names(row["factors"])
        nll = row["iwae_nll"] if row["iwae_nll"] is not None else float("nan")
        print(f"{row['label']:<18} {nll:7.2f} {row['active_units']:6d} {row['mig']:6.3f} "
              f"{row['dci']['disentanglement']:6.3f} {row['dci']['completeness']:6.3f} "
              f"{row['dci']['informativeness']:6.3f} {row['sap']:6.3f} {decorrelated['mig']['mig']:7.3f} "
              f"{decorrelated['dci']['disentanglement']:6.3f} {len(names):5d}  {'; '.join(names)}")
    first = rows[0]["scores"]
    print(f"factor |ρ| between attributes: all {first['all']['mean_abs_factor_correlation']:.2f}, decorrelated "
          f"subsample {first['decorrelated']['mean_abs_factor_correlation']:.2f} ({first['decorrelated']['images']:,} "
          f"of {first['all']['images']:,} images)")


if __name__ == "__main__":
    main()
