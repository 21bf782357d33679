"""Sample quality of every sampler of a trained run (prior, GMM, two-stage), measured without retraining the VAE:
Inception FID (published protocol: 10,000 samples vs. the 10,000 test images), classifier-feature FID,
precision/recall (k=3), classes covered, sharpness — and the confident share of the reference classifier.

    python benchmarks/samplers.py runs/demo [--samples 10000] [--inception-samples N | --no-inception]

Writes RUN/generation.json (as `vaelab generation`) and prints a table for docs/results/.
"""

from __future__ import annotations

import argparse
import time

from machine import run_header

from vaelab.analysis.generation import generation_table, measure_generation, parse_samplers
from vaelab.analysis.samplers import sample_images
from vaelab.analysis.smoothness import CONFIDENCE_THRESHOLD, confident_fraction
from vaelab.evaluation.reference_classifier import load_or_train_classifier
from vaelab.rundir import load_model, read_config


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run")
    parser.add_argument("--samplers", default="all")
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--inception-samples", type=int, default=None)
    parser.add_argument("--no-inception", action="store_true")
    parser.add_argument("--components", type=int, default=10)
    args = parser.parse_args()
    print(run_header(args.run))
    started = time.perf_counter()
    samplers = parse_samplers(args.samplers)
    result = measure_generation(args.run, samplers, args.samples, not args.no_inception, args.inception_samples,
                                components=args.components, log=lambda m: print(f"  … {m}", flush=True))
    print(generation_table(result, samplers))
    for name in samplers:
        entry = result["samplers"][name]
        if "fid_inception_protocol" in entry:
            print(f"{name}: Inception FID {entry['fid_inception']:.2f} — {entry['fid_inception_protocol']}")
    model = load_model(args.run)
    judge = load_or_train_classifier(read_config(args.run).data.dataset, log=lambda m: None)
    shares = {name: confident_fraction(sample_images(model, args.run, 2000, name, 0, args.components), judge)
              for name in samplers}
    print(f"confident (≥{CONFIDENCE_THRESHOLD:.0%} to one class, 2,000 samples): "
          + ", ".join(f"{name} {share:.1%}" for name, share in shares.items()))
    print(f"# {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
