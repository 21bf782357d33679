"""Which model change buys what: configurations of one dataset trained (or resumed), evaluated with IWAE-1000, and
set side by side by `vaelab compare` — NLL, FID, sharpness, KL and active units, training minutes and sampling ms
per image — one row per configuration (issue 21's table):

    python benchmarks/model_quality.py --out runs/quality demo=configs/mnist-demo.yaml \
        vamp=configs/mnist-vamp.yaml pixelcnn=configs/mnist-pixelcnn.yaml [--samples 10000] [--iw-images 10000] \
        [--no-inception]

Each NAME=CONFIG trains into OUT/NAME; a run already there is kept (resumed if it was killed), so a long run
started earlier (`vaelab train --config … --out OUT/NAME`) is measured as it is.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from family_baselines import print_comparison, trained_and_evaluated  # the same training and table
from machine import run_header

from vaelab.config import load_yaml_config
from vaelab.report.compare import compare_runs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", nargs="+", help="NAME=CONFIG: a run OUT/NAME of the YAML config")
    parser.add_argument("--out", type=Path, default=Path("runs/quality"))
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--inception-samples", type=int, default=None)
    parser.add_argument("--no-inception", action="store_true", help="classifier FID only (no Inception network)")
    parser.add_argument("--iw-images", type=int, default=1000, help="test images of the IWAE-1000 bound")
    args = parser.parse_args()
    print(run_header(f"torch {torch.__version__}"))
    named = dict(item.split("=", 1) for item in args.runs)
    runs = [trained_and_evaluated(load_yaml_config(Path(config)), args.out / name, iw_images=args.iw_images)
            for name, config in named.items()]
    print_comparison(compare_runs(runs, args.out / "compare", args.samples, not args.no_inception,
                                  args.inception_samples, log=print))


if __name__ == "__main__":
    main()
