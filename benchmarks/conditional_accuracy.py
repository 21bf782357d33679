"""Conditional accuracy of a cvae run: the share of samples generated for class c that vaelab's reference
classifier assigns to c, per class and overall, beside the classifier's own accuracy on real test images.

    python benchmarks/conditional_accuracy.py runs/cvae-mnist [--per-class 1000] [--seed 0]

Target (issue 21, which replaced issue 5's fixed 99% / 95%): samples as classifiable as real images, i.e. an overall
accuracy at least the classifier's own on the real test images. Prints lines for docs/results/.
"""

from __future__ import annotations

import argparse
import time

from machine import run_header

from vaelab.data.catalog import describe
from vaelab.evaluation.conditional_accuracy import conditional_accuracy
from vaelab.evaluation.reference_classifier import classifier_summary, load_or_train_classifier
from vaelab.rundir import load_model, read_config, read_metrics


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
    real = classifier_summary(dataset)["test_accuracy"]
    print(f"overall conditional accuracy {result['overall']:.2%} ({args.per_class:,} samples per class, seed "
          f"{args.seed}); the reference classifier on real {dataset} test images: {real:.2%}; as classifiable as "
          f"real images: {'met' if result['overall'] >= real else 'NOT met'}")
    print(f"# {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
