"""The VAE, the GAN and the DDPM on one dataset, each trained for the same wall-clock budget, then compared.

For each family the trainer's steady-state rate is measured first (`trainer_images_per_second`, short epochs), and
the epochs are set so that training takes about `--minutes` on this machine; the runs are then trained one after
another (resumable: a run directory that already holds a finished run is kept), evaluated, and set side by side by
`vaelab compare` (its compare.json and compare.html go to OUT/compare):

    python benchmarks/family_baselines.py --dataset mnist --minutes 45 --out runs/baselines-mnist \
        [--samples 10000 --inception-samples 2000 --reference-images 10000]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from machine import run_header

from vaelab.config import load_yaml_config
from vaelab.data import load_split
from vaelab.evaluation import evaluate_run
from vaelab.report.compare import compare_runs
from vaelab.rundir import CONFIG, EVAL, read_config, read_metrics
from vaelab.training import train

CONFIGS = {
    "mnist": {"vae": "configs/mnist-demo.yaml", "gan": "configs/gan-mnist.yaml", "ddpm": "configs/ddpm-mnist.yaml"},
    "fashion-mnist": {"vae": "configs/fashion-mnist.yaml", "gan": "configs/gan-mnist.yaml",
                      "ddpm": "configs/ddpm-mnist.yaml"},
}


def steady_rate(config, steps: int = 60) -> float:
    from train_throughput import trainer_images_per_second  # the same measurement as the throughput benchmark

    return trainer_images_per_second(config, steps)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="mnist", choices=sorted(CONFIGS))
    parser.add_argument("--minutes", type=float, default=45.0)
    parser.add_argument("--out", type=Path, default=Path("runs/baselines"))
    parser.add_argument("--families", default="vae,gan,ddpm")
    parser.add_argument("--epochs", default="", help="family=N,...: epochs sized by an earlier measurement of the "
                        "rates (a benchmark restarted on a busy machine keeps its first sizing)")
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--inception-samples", type=int, default=None)
    parser.add_argument("--reference-images", type=int, default=None, help="test images for Inception (default 10k)")
    parser.add_argument("--train-only", action="store_true", help="train and evaluate; leave the comparison for later")
    args = parser.parse_args()
    print(run_header(f"torch {torch.__version__}, {args.dataset}, {args.minutes:g} min per family"))
    train_images = len(load_split(args.dataset, "train", 5000, 0))
    families = args.families.split(",")
    configs = {family: load_yaml_config(Path(CONFIGS[args.dataset][family])).with_overrides({"dataset": args.dataset})
               for family in families}
    # Every new run's rate is measured before any training starts, so that all are measured on the same idle machine;
    # its epochs then fill the budget at that rate.
    epochs = {family: int(count) for family, count in (item.split("=") for item in args.epochs.split(",") if item)}
    for family in families:
        if not (args.out / family / CONFIG).is_file() and family not in epochs:
            rate = steady_rate(configs[family])
            epochs[family] = max(1, round(args.minutes * 60 * rate / train_images))
            print(f"{family}: {rate:,.0f} images/s → {epochs[family]} epochs for {args.minutes:g} minutes")
    runs = [trained_and_evaluated(configs[family].with_overrides({"epochs": epochs[family]}) if family in epochs
                                  else configs[family], args.out / family) for family in families]
    if args.train_only:
        return
    print_comparison(compare_runs(runs, args.out / "compare", args.samples, True, args.inception_samples,
                                  args.reference_images, log=print))


def trained_and_evaluated(config, run_dir: Path, iw_samples: int = 1000, iw_images: int = 1000) -> Path:
    """The run trained (a run already there is resumed if it was killed, never replaced) and evaluated."""
    if not (run_dir / CONFIG).is_file():
        train(config, run_dir, progress=False)
    elif len(read_metrics(run_dir)) < read_config(run_dir).train.epochs:  # killed: resume it
        train(read_config(run_dir), run_dir, resume=True, progress=False)
    if not (run_dir / EVAL).is_file():
        evaluate_run(run_dir, iw_samples=iw_samples, iw_images=iw_images)
    seconds = sum(row["train_seconds"] for row in read_metrics(run_dir))
    print(f"{run_dir}: trained {len(read_metrics(run_dir))} epochs in {seconds / 60:.1f} min")
    return run_dir


def print_comparison(result: dict) -> None:
    """compare.json's numbers as one row per run: its best sampler, likelihood, latent and costs."""
    print(f"{'model':40s} {'sampler':9s} {'FID':>8s} {'clf FID':>8s} {'prec':>6s} {'recall':>6s} {'sharp':>7s} "
          f"{'NLL nats':>9s} {'bits/dim':>9s} {'KL':>6s} {'active':>6s} {'train min':>9s} {'ms/img':>8s}")
    for run in result["runs"]:
        entry = run["generation"][run["best_sampler"]]
        likelihood = run["likelihood"] or {"nll_nats": float("nan"), "bits_per_dim": float("nan")}
        latent = run.get("latent") or {"kl_nats": float("nan"), "active_units": -1}
        print(f"{run.get('model', run['family']):40s} {run['best_sampler']:9s} "
              f"{entry.get('fid_inception', float('nan')):8.2f} {entry['fid_classifier']:8.3f} "
              f"{entry['precision']:6.3f} {entry['recall']:6.3f} {entry['sharpness']:7.4f} "
              f"{likelihood['nll_nats']:9.2f} {likelihood['bits_per_dim']:9.4f} {latent['kl_nats']:6.1f} "
              f"{latent['active_units']:6d} {run['training']['train_seconds'] / 60:9.1f} "
              f"{min(run['sampling_ms_per_image'].values()):8.2f}")
    print(f"real test images: sharpness {result['real']['sharpness']:.4f}")
    for statement in result["trade"]:
        print(statement)


if __name__ == "__main__":
    main()
