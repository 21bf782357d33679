"""How much denormal numbers cost a CPU run in fp32: the same recipe trained twice for the same steps, with
flush-to-zero (what `vaelab train` does on a CPU) and with denormals kept. Prints images/s per epoch. Usage, on the
slow-host emulation where the effect is largest:

    benchmarks/slow_host.sh .venv/bin/python benchmarks/denormals.py --steps 3436
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from machine import run_header

from vaelab.config import load_yaml_config
from vaelab.training.trainer import train


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="configs/mnist-minutes.yaml")
    parser.add_argument("--steps", type=int, default=3436)
    parser.add_argument("--out", default="runs/denormals")
    args = parser.parse_args()
    print(run_header(f"{args.config}, {args.steps} steps"))
    config = load_yaml_config(args.config).with_overrides({"steps": args.steps, "val_limit": 500})
    for mode in ("flush-to-zero", "denormals kept"):
        out = Path(args.out) / mode.replace(" ", "-")
        shutil.rmtree(out, ignore_errors=True)
        # train() flushes denormals; its undecorated body keeps them
        run = train if mode == "flush-to-zero" else train.__wrapped__
        run(config, out, progress=False, log=lambda message: None)
        rates = [json.loads(line)["images_per_s"] for line in (out / "metrics.jsonl").read_text().splitlines()]
        print(f"{mode:15s} " + "  ".join(f"epoch {i + 1}: {rate:,.0f} images/s" for i, rate in enumerate(rates)))


if __name__ == "__main__":
    main()
