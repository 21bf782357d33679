"""Which architecture gives the best test NLL for a fixed CPU budget? (chooses the `make demo` config)

Each candidate's training speed is measured first; it then gets as many whole epochs as fit in the budget,
trains, and is evaluated with IWAE-k on the first test images. Usage:

    python benchmarks/quality_per_minute.py --budget-min 7 --iw-samples 200 --iw-images 1000
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from vaelab.config import RunConfig
from vaelab.evaluation import evaluate_run
from vaelab.training import train

CANDIDATES = {
    "c32-64": {"channels": [32, 64]},
    "c32-64-h512": {"channels": [32, 64], "hidden_dim": 512},
    "c32-64-res1": {"channels": [32, 64], "blocks_per_stage": 1},
    "c64-128": {"channels": [64, 128]},
}


def images_per_second(overrides: dict, steps: int = 40) -> float:
    config = RunConfig().with_overrides({**overrides, "epochs": 1, "max_steps": steps, "val_limit": 100})
    out = Path(f"/tmp/vaelab-speed-{time.time_ns()}")
    started = time.perf_counter()
    train(config, out, progress=False, log=lambda m: None)
    return steps * config.train.batch_size / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget-min", type=float, default=7.0)
    parser.add_argument("--iw-samples", type=int, default=200)
    parser.add_argument("--iw-images", type=int, default=1000)
    parser.add_argument("--only", default=",".join(CANDIDATES))
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--out", default="runs/quality-per-minute")
    args = parser.parse_args()
    print(f"# {time.strftime('%Y-%m-%d %H:%M')} {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, budget {args.budget_min} min")
    for name in args.only.split(","):
        overrides = {**CANDIDATES[name], "batch_size": args.batch_size, "lr": args.lr}
        rate = images_per_second(overrides)
        epochs = max(1, int(args.budget_min * 60 * rate / 55_000))
        config = RunConfig().with_overrides({**overrides, "epochs": epochs})
        run_dir = Path(args.out) / f"{name}-bs{args.batch_size}-lr{args.lr}"
        started = time.perf_counter()
        result = train(config, run_dir, progress=False, log=lambda m: None)
        minutes = (time.perf_counter() - started) / 60
        ev = evaluate_run(run_dir, args.iw_samples, args.iw_images)
        params = sum(p.numel() for p in __import__("vaelab").load_model(run_dir).parameters())
        row = {
            "name": name, "params": params, "images_per_s": round(rate), "epochs": epochs,
            "train_min": round(minutes, 2), "val_elbo": round(result.best_score, 2),
            "test_elbo": round(ev["elbo"], 2),
            f"iwae{args.iw_samples}_nll_first{args.iw_images}": round(ev["iwae"]["nll"], 2),
            "active_units": ev["active_units"],
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
