"""Semi-supervised classification: test error of q(y|x) with all labels and with 100 / 600 / 1000 / 3000 labels,
beside the same classifier trained on the labelled images alone (same steps, lr, seed).

    python benchmarks/semi_supervised.py --out runs/semi [--kind m2] [--epochs 30] [--labels all,100,600,1000,3000]
    python benchmarks/semi_supervised.py --out runs/semi --kind m1m2 --m1 runs/demo --epochs 50 --labels 100,600
    python benchmarks/semi_supervised.py --out /tmp/semi --epochs 2 --labels all,100,600 --train-limit 2000 \
        --test-limit 500 --channels 16,32 --hidden-dim 64 --latent-dim 8                   # a tiny smoke run

Each variant is one run directory under --out (an existing finished run is reused, so an interrupted benchmark
continues). `--kind m1m2` trains M2 on the codes of the finished unsupervised run `--m1` instead
(`vaelab.training.m1m2`, as `vaelab m1m2`; its folder holds m1m2.json). Kingma et al. 2014 report M2 test errors of
11.97% (100 labels), 4.94% (600), 3.60% (1000) and 3.92% (3000) on MNIST, and M1+M2 3.33%, 2.59%, 2.40%, 2.18%.
Prints lines for docs/results/.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from machine import run_header

from vaelab.config import RunConfig
from vaelab.data import balanced_label_subset, load_split, to_float
from vaelab.evaluation.classification import predict_probabilities
from vaelab.rundir import load_model, read_metrics
from vaelab.training.m1m2 import M1M2_JSON, M1M2Config, train_labelled_only, train_m1m2
from vaelab.training.runs import start_or_resume


def test_error(model, x: torch.Tensor, labels: torch.Tensor) -> float:
    return (predict_probabilities(model, x).argmax(1) != labels).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--kind", default="m2", choices=["m2", "vae-classifier", "m1m2"])
    parser.add_argument("--m1", type=Path, default=None, help="m1m2: the finished unsupervised run to stack on")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--labels", default="all,100,600,1000,3000")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--classifier-weight", type=float, default=None, help="α (default 0.1 × training images)")
    parser.add_argument("--train-limit", type=int, default=None)
    parser.add_argument("--test-limit", type=int, default=None)
    parser.add_argument("--channels", default=None)
    parser.add_argument("--hidden-dim", type=int, default=None)
    parser.add_argument("--latent-dim", type=int, default=None)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    print(run_header(f"{args.kind} on {args.dataset}, {args.epochs} epochs, seed {args.seed}"))
    started = time.perf_counter()
    if args.kind == "m1m2":
        stacked(args)
        print(f"# {time.perf_counter() - started:.0f} s")
        return
    test = load_split(args.dataset, "test").subset(args.test_limit)
    base = {
        "dataset": args.dataset, "kind": args.kind, "epochs": args.epochs, "seed": args.seed,
        "classifier_weight": args.classifier_weight, "train_limit": args.train_limit, "channels": args.channels,
        "hidden_dim": args.hidden_dim, "latent_dim": args.latent_dim, "device": args.device,
    }
    print(f"{'labels':>7}  {'test error':>10}  {'labelled only':>13}  {'val ELBO':>9}  {'steps':>6}  {'seconds':>7}")
    for label_count in args.labels.split(","):
        labels = None if label_count == "all" else int(label_count)
        run_dir = args.out / f"{args.kind}-{label_count}"
        variant_start = time.perf_counter()
        metrics = read_metrics(run_dir)
        if not metrics or metrics[-1]["epoch"] < args.epochs:
            resume = run_dir if (run_dir / "last.safetensors").is_file() else None
            start_or_resume(None if resume else run_dir, resume, None,
                            {} if resume else {**base, "labels": labels}, progress=False, log=lambda m: None)
            metrics = read_metrics(run_dir)
        model = load_model(run_dir)  # the best epoch by validation ELBO
        config = RunConfig().with_overrides({**base, "labels": labels})
        x = to_float(test.images)  # q(y|x) reads intensities, also in binarized runs
        error = test_error(model, x, test.labels)
        alone = "—"
        if labels is not None:
            train = load_split(args.dataset, "train", config.data.val_size, config.data.split_seed)
            train = train.subset(args.train_limit)
            kept = balanced_label_subset(train.labels, labels, config.data.split_seed)
            steps = metrics[-1]["step"]
            baseline = train_labelled_only(config, train.images[kept], train.labels[kept], steps, model.device)
            alone = f"{test_error(baseline, x, test.labels):.2%}"
        best = max(row["val_elbo"] for row in metrics)
        print(f"{label_count:>7}  {error:>10.2%}  {alone:>13}  {best:>9.2f}  {metrics[-1]['step']:>6}  "
              f"{time.perf_counter() - variant_start:>7.0f}", flush=True)
    print(f"# {time.perf_counter() - started:.0f} s, test images {len(test):,}")


def progress(message: str) -> None:
    """Per-epoch validation errors go to stderr, so stdout keeps only the lines for docs/results/."""
    print(message, file=sys.stderr, flush=True)


def stacked(args: argparse.Namespace) -> None:
    """M1+M2 for each label count: test error beside q(y|z1) trained on the labelled codes alone."""
    if args.m1 is None:
        raise SystemExit("--kind m1m2 needs --m1 RUN (a finished unsupervised run)")
    print(f"# M1: {args.m1}")
    print(f"{'labels':>7}  {'test error':>10}  {'labelled only':>13}  {'steps':>6}  {'seconds':>7}")
    for label_count in args.labels.split(","):
        out = args.out / f"m1m2-{label_count}"
        settings = M1M2Config(labels=int(label_count), epochs=args.epochs, seed=args.seed,
                                 train_limit=args.train_limit)
        path = out / M1M2_JSON
        reusable = path.is_file() and json.loads(path.read_text())["settings"] == vars(settings)
        result = json.loads(path.read_text()) if reusable else train_m1m2(args.m1, out, settings, log=progress)
        print(f"{label_count:>7}  {result['test_error']:>10.2%}  {result['test_error_labelled_only']:>13.2%}  "
              f"{result['steps']:>6}  {result['seconds']:>7.0f}", flush=True)


if __name__ == "__main__":
    main()
