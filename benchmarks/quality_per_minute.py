"""Which recipe gives the best test NLL for a training budget in minutes? (chooses the `make demo` recipe)

Each candidate is trained with `--time-budget`: it measures its own speed on this machine, buys the steps that fit
and spans its learning-rate schedule over them. It is then evaluated with IWAE-k on the first test images.
A candidate is the demo config (configs/mnist-demo.yaml) with a few options changed. Usage:

    python benchmarks/quality_per_minute.py --budget 4m --iw-samples 200 --iw-images 1000 --only demo,vamp
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from machine import run_header

from vaelab.config import load_yaml_config
from vaelab.evaluation import evaluate_run
from vaelab.training import train

CANDIDATES = {
    "demo": {},
    "lr2e-3": {"lr": 2e-3},
    "lr3e-3": {"lr": 3e-3},
    "bs64-lr1e-3": {"batch_size": 64},
    "bs64-lr2e-3": {"batch_size": 64, "lr": 2e-3},
    "vamp": {"prior": "vamp"},
    "vamp-lr2e-3": {"prior": "vamp", "lr": 2e-3},
    "vamp-k50-lr2e-3": {"prior": "vamp", "prior_components": 50, "lr": 2e-3},
    "h256-lr2e-3": {"hidden_dim": 256, "lr": 2e-3},
    "c16-32": {"channels": [16, 32]},
    "c16-32-h256": {"channels": [16, 32], "hidden_dim": 256},
    "c16-32-vamp": {"channels": [16, 32], "prior": "vamp"},
    "c16-32-lr2e-3": {"channels": [16, 32], "lr": 2e-3},
    "c16-32-h256-lr2e-3": {"channels": [16, 32], "hidden_dim": 256, "lr": 2e-3},
    "c16-32-h256-bs64": {"channels": [16, 32], "hidden_dim": 256, "batch_size": 64},
    "c16-32-h256-vamp": {"channels": [16, 32], "hidden_dim": 256, "prior": "vamp"},
    "c16-32-h128": {"channels": [16, 32], "hidden_dim": 128},
    "c16-32-h256-bs32": {"channels": [16, 32], "hidden_dim": 256, "batch_size": 32},
    "c16-32-h256-bs64-lr2e-3": {"channels": [16, 32], "hidden_dim": 256, "batch_size": 64, "lr": 2e-3},
    "c16-32-h128-bs64": {"channels": [16, 32], "hidden_dim": 128, "batch_size": 64},
    "c32-64-res1": {"blocks_per_stage": 1},
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget", default="4m", help="Training time of each candidate, e.g. 4m or 90s.")
    parser.add_argument("--iw-samples", type=int, default=200)
    parser.add_argument("--iw-images", type=int, default=1000)
    parser.add_argument("--only", default=",".join(CANDIDATES))
    parser.add_argument("--config", default="configs/mnist-demo.yaml")
    parser.add_argument("--out", default="runs/quality-per-minute")
    args = parser.parse_args()
    print(run_header(f"budget {args.budget} per candidate, {args.config}"))
    base = load_yaml_config(args.config)
    for name in args.only.split(","):
        config = base.with_overrides({**CANDIDATES[name], "time_budget": args.budget})
        run_dir = Path(args.out) / f"{name}-{args.budget}"
        result = train(config, run_dir, progress=False, log=lambda message: None)
        bought = json.loads((run_dir / "budget.json").read_text())
        ev = evaluate_run(run_dir, args.iw_samples, args.iw_images, log=lambda message: None)
        params = sum(p.numel() for p in __import__("vaelab").load_model(run_dir).parameters())
        row = {
            "name": name, "params": params, "steps": bought["steps"], "epochs": bought["epochs"],
            "images_per_s": round(config.train.batch_size / bought["step_seconds"]),
            "spent_s": bought["spent_seconds"], "val_elbo": round(result.best_score, 2),
            "test_elbo": round(ev["elbo"], 2),
            f"iwae{args.iw_samples}_nll_first{args.iw_images}": round(ev["iwae"]["nll"], 2),
            "active_units": ev["active_units"],
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
