"""Prior vs ex-post (GMM) sampling on a trained run, judged without retraining anything:
sharpness (mean gradient magnitude, real test images for reference), the share of samples the reference
classifier gives ≥ 90% to one class, and the class histogram of the samples.

    python benchmarks/samplers.py runs/demo [-n 2000] [--components 10]
"""

from __future__ import annotations

import argparse
import subprocess
import time

import torch

from vaelab.analysis.samplers import SAMPLERS, sample_images
from vaelab.analysis.smoothness import CONFIDENCE_THRESHOLD, confident_fraction
from vaelab.data import load_split, to_float
from vaelab.evaluation.generation import sharpness
from vaelab.evaluation.reference_classifier import load_or_train_classifier, predict_probabilities
from vaelab.training import load_model, read_config


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run")
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--components", type=int, default=10)
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}  {torch.get_num_threads()} threads, commit {commit}, {args.run}, "
          f"{args.n} samples per sampler, seed 0")
    dataset = read_config(args.run).data.dataset
    model, judge = load_model(args.run), load_or_train_classifier(dataset, log=lambda m: None)
    real = to_float(load_split(dataset, "test").images[: args.n])
    print(f"real test images: sharpness {sharpness(real):.4f}, confident {confident_fraction(real, judge):.1%}")
    for sampler in SAMPLERS:
        images = sample_images(model, args.run, args.n, sampler, seed=0, components=args.components)
        classes = torch.bincount(predict_probabilities(judge, images).argmax(1), minlength=10)
        print(f"{sampler:6s} sharpness {sharpness(images):.4f}, confident (≥{CONFIDENCE_THRESHOLD:.0%}) "
              f"{confident_fraction(images, judge):.1%}, class histogram {classes.tolist()}")


if __name__ == "__main__":
    main()
