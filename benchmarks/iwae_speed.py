"""Seconds per test image of a run's IWAE_k bound, plain and with `torch.compile` (`vaelab eval --compile`).

    python benchmarks/iwae_speed.py runs/pixelcnn-45 [--k 1000] [--images 4] [--threads 1]

Both modes bound the same test images with the same draws (after one warm-up image, which for the compiled model
includes compiling), and the largest difference between their bounds is printed: compiling changes float rounding,
not the bound. Prints lines for docs/results/.
"""

from __future__ import annotations

import argparse
import time

import torch
from machine import run_header

from vaelab.data.datasets import load_split, prepare_inputs
from vaelab.evaluation.evaluate import EVAL_SEED, importance_weighted_bounds
from vaelab.hardware import compile_networks
from vaelab.rundir import load_model, read_config


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run")
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(run_header(f"{args.run}, IWAE-{args.k} on test images 1–{args.images}"))
    config = read_config(args.run)
    test = load_split(config.data.dataset, "test").subset(args.images + 1)
    inputs = prepare_inputs(test.images, config.data.input_mode, EVAL_SEED)
    cpu = torch.device("cpu")
    bounds = {}
    for compiled in (False, True):
        model = load_model(args.run, cpu)
        if compiled:
            compile_networks(model)
        started = time.perf_counter()
        importance_weighted_bounds(model, inputs[:1], test.labels[:1], args.k, cpu)
        warm_up = time.perf_counter() - started
        started = time.perf_counter()
        bounds[compiled], _ = importance_weighted_bounds(model, inputs[1:], test.labels[1:], args.k, cpu)
        per_image = (time.perf_counter() - started) / args.images
        print(f"{'compiled' if compiled else 'plain':>8}: {per_image:.3f} s per image (first image {warm_up:.1f} s)")
    difference = (bounds[True] - bounds[False]).abs().max().item()
    print(f"largest difference between the two bounds: {difference:.2e} nats")


if __name__ == "__main__":
    main()
