"""Fault-injection campaign: real training processes killed with SIGKILL at seeded points, then resumed.

    python benchmarks/fault_injection.py [--kills 20] [--seed 0] [--out /tmp/vaelab-faults]

Each kill point is (phase, occurrence) — inside a step, inside validation, half-way through a file write, or
just after a file was renamed into place (tests/faults.py). After each kill the run directory is checked for
torn files, resumed to the end, and compared with one uninterrupted run: weights, optimizer and RNG states
(`last.safetensors`), best model and every metrics row (timings aside) must be bit-identical. Steps lost =
the step the kill interrupted − the step the resume started from (at most the checkpoint interval, 5 steps).
Prints lines for docs/results/.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.faults
from machine import run_header

from tests.faults import (
    SETTINGS,
    comparable_metrics,
    identical_weights,
    kill_and_resume,
    kill_points,
    launch,
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("/tmp/vaelab-faults"))
    args = parser.parse_args()
    print(run_header(f"{args.kills} SIGKILLs, seed {args.seed}, checkpoint every {SETTINGS['checkpoint_every']} steps"))
    shutil.rmtree(args.out, ignore_errors=True)
    reference = args.out / "reference"
    if launch(reference).returncode != 0:
        raise SystemExit("the uninterrupted reference run failed")
    started = time.perf_counter()
    print(f"{'phase':<12} {'at':>3}  {'killed':>6}  {'resumed at step':>15}  {'steps lost':>10}  {'fell back':>9}  "
          f"{'torn files':>10}  {'identical':>9}")
    failures = 0
    for phase, at in kill_points(args.kills, args.seed):
        run_dir = args.out / f"{phase}-{at}"
        outcome = kill_and_resume(run_dir, phase, at)
        same = all(identical_weights(run_dir / n, reference / n) for n in ("model.safetensors", "last.safetensors"))
        same = same and comparable_metrics(run_dir) == comparable_metrics(reference)
        clean = not outcome.torn_files and not list(run_dir.glob(".*.tmp"))
        failures += not (outcome.killed and same and clean)
        # Only a kill inside a step knows its own step (the at-th step of a run that started at 0).
        lost = at - 1 - outcome.resumed_from_step if phase == "step" and outcome.resumed_from_step is not None else "–"
        print(f"{phase:<12} {at:>3}  {str(outcome.killed):>6}  {str(outcome.resumed_from_step):>15}  {lost:>10}  "
              f"{str(outcome.fell_back):>9}  {len(outcome.torn_files):>10}  {str(same):>9}")
    print(f"{args.kills} kills, {failures} failures, {time.perf_counter() - started:.0f} s")
    raise SystemExit(1 if failures else 0)


if __name__ == "__main__":
    main()
