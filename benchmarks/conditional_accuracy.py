"""Conditional accuracy of a cvae run: the share of samples generated for class c that vaelab's reference
classifier assigns to c, per class and overall, beside the classifier's own accuracy on real test images.

    python benchmarks/conditional_accuracy.py runs/cvae-mnist [--per-class 1000] [--seed 0]

Targets (issue 5): ≥ 99% on MNIST, ≥ 95% on Fashion-MNIST. Prints lines for docs/results.md.
"""

from __future__ import annotations

import argparse
import time

from machine import run_header

from vaelab.data.catalog import describe
from vaelab.evaluation.conditional import conditional_accuracy
from vaelab.evaluation.reference_classifier import classifier_summary, load_or_train_classifier
from vaelab.rundir import load_model, read_config, read_metrics

TARGETS = {"mnist": 0.99, "fashion-mnist": 0.95}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run")
    parser.add_argument("--per-class", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(run_header(args.run))
    started = time.perf_counter()
    dataset = read_config(args.run).data.dataset
    metrics = read_metrics(args.run)
    if metrics:
        best = max(metrics, key=lambda row: row["val_elbo"])
        print(f"run: {len(metrics)} epochs, best validation ELBO {best['val_elbo']:.2f} nats (epoch {best['epoch']})")
    judge = load_or_train_classifier(dataset, log=lambda m: None)
    result = conditional_accuracy(load_model(args.run), judge, args.per_class, args.seed)
    for label, value in enumerate(result["per_class"]):
        print(f"  class {label} ({describe(dataset).class_names[label]}): {value:.2%}")
    target = TARGETS.get(dataset)
    verdict = "" if target is None else f"; target ≥ {target:.0%} {'met' if result['overall'] >= target else 'NOT met'}"
    print(f"overall conditional accuracy {result['overall']:.2%} ({args.per_class:,} samples per class, seed "
          f"{args.seed}){verdict}")
    print(f"reference classifier on real {dataset} test images: {classifier_summary(dataset)['test_accuracy']:.2%}")
    print(f"# {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
