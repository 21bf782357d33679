"""Fault injection: real training processes killed with SIGKILL at chosen points, then resumed.

`python -m tests.faults RUN PHASE N [KIND]` trains the small fault-test configuration of model family KIND (default
vae) into RUN (or resumes it when RUN holds a checkpoint) and kills itself with SIGKILL at the N-th occurrence of
PHASE:

    step        inside a training step (after the forward pass, before an optimizer step)
    validation  inside the end-of-epoch validation
    torn-write  half-way through writing any run file: the temp file is half written, nothing renamed yet
    after-write just after a run file was renamed into place, before the next one (e.g. last.safetensors
                written, trainer_state.json / metrics.jsonl not yet)
    none        no fault: run to the end

The parent side (`kill_and_resume`, `run_campaign`) is shared by tests/test_faults.py and
benchmarks/fault_injection.py.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

PHASES = ("step", "validation", "torn-write", "after-write")
ROOT = Path(__file__).resolve().parent.parent
TIMING_KEYS = ("images_per_s", "train_seconds", "wall_time")
# 2 epochs × 16 steps of 64 real images; a resumable checkpoint every 5 steps and at each epoch's end.
SETTINGS = {  # 16 steps an epoch, on as few images as that allows
    "train_limit": 1024, "val_limit": 256, "batch_size": 64, "channels": [16, 32], "hidden_dim": 64,
    "latent_dim": 8, "epochs": 2, "checkpoint_every": 5,
}
# Each family's own options on top of SETTINGS: the classifier kinds keep 100 labels, so a step also draws a labelled
# batch from its own generator, and vae-classifier's head reads changed images from another; the gan takes two
# optimizer steps per step (and keeps batch-norm statistics), the ddpm an EMA of its weights.
KINDS = {
    "vae": {},
    "cvae": {"family": "cvae", "label_at_input": True},
    "vae-classifier": {"family": "vae-classifier", "labels": 100, "head_shift": 2, "head_flip": True},
    "m2": {"family": "m2", "labels": 100},
    "gan": {"family": "gan", "lr": 2e-4},
    "ddpm": {"family": "ddpm", "channels": [8, 16], "diffusion_steps": 100, "sampling_steps": 10},
}
CHILD_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def _die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _child(run_dir: Path, phase: str, at: int, kind: str = "vae") -> None:
    import torch

    from vaelab import io, rundir
    from vaelab.config import RunConfig
    from vaelab.training import trainer

    if phase not in (*PHASES, "none"):
        raise SystemExit(f"unknown phase {phase!r}; one of: {', '.join(PHASES)}, none")
    torch.set_num_threads(1)
    calls = 0

    def counted(function, before: bool = True, tear: bool = False):
        def wrapper(*args, **kwargs):
            nonlocal calls
            calls += 1
            if calls == at and before:
                _die()
            if calls == at and tear:  # write the temp file, cut it in half, die before the rename
                path, write = args[0], args[1]

                def torn(tmp: Path) -> None:
                    write(tmp)
                    size = tmp.stat().st_size
                    with open(tmp, "r+b") as handle:
                        handle.truncate(size // 2)
                    _die()

                return function(path, torn)
            result = function(*args, **kwargs)
            if calls == at:
                _die()
            return result

        return wrapper

    if phase == "step":
        torch.optim.Adam.step = counted(torch.optim.Adam.step)  # once per optimizer step
    elif phase == "validation":
        trainer.validate = counted(trainer.validate)
    elif phase in ("torn-write", "after-write"):
        patched = counted(io.atomic_write, before=False, tear=phase == "torn-write")
        io.atomic_write = patched
    resume = rundir.has_resumable_checkpoint(run_dir)
    config = RunConfig().with_overrides({**SETTINGS, **KINDS[kind]})
    result = trainer.train(config, run_dir, resume=resume, progress=False, log=print)
    print(f"finished at step {result.steps}", flush=True)


def launch(run_dir: Path, phase: str = "none", at: int = 0, kind: str = "vae") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tests.faults", str(run_dir), phase, str(at), kind],
        capture_output=True, text=True, cwd=ROOT, env=CHILD_ENV, timeout=300,
    )


@dataclass
class Outcome:
    phase: str
    at: int
    killed: bool  # False when the run ended before the N-th occurrence of the phase
    resumed_from_step: int | None
    fell_back: bool  # resumed from previous.safetensors because last.safetensors was damaged
    torn_files: list[str]  # complete-looking run files that fail to load after the kill (must stay empty)


def kill_and_resume(run_dir: Path, phase: str, at: int, kind: str = "vae") -> Outcome:
    """Kill a training process at (phase, at), check the run directory, resume it to the end."""
    killed = launch(run_dir, phase, at, kind)
    was_killed = killed.returncode == -signal.SIGKILL
    if not was_killed and killed.returncode != 0:
        raise AssertionError(f"training failed instead of being killed:\n{killed.stderr[-2000:]}")
    torn = damaged_run_files(run_dir)
    resumed = launch(run_dir, kind=kind)
    if resumed.returncode != 0:
        raise AssertionError(f"resume failed:\n{resumed.stdout[-1000:]}\n{resumed.stderr[-2000:]}")
    match = re.search(r"resuming .* step (\d+)", resumed.stdout)
    return Outcome(
        phase, at, was_killed, int(match.group(1)) if match else None, "instead" in resumed.stdout, torn
    )


def damaged_run_files(run_dir: Path) -> list[str]:
    """Run files (not hidden temp files) that do not load completely."""
    from vaelab.errors import VaelabError
    from vaelab.rundir import load_tensors

    damaged = []
    for path in sorted(Path(run_dir).glob("*")):
        try:
            if path.suffix == ".safetensors":
                load_tensors(path)
            elif path.suffix == ".json":
                json.loads(path.read_text())
            elif path.suffix == ".jsonl":
                [json.loads(line) for line in path.read_text().splitlines()]
        except (VaelabError, ValueError):
            damaged.append(path.name)
    return damaged


def comparable_metrics(run_dir: Path) -> list[dict]:
    from vaelab.rundir import read_metrics

    return [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in read_metrics(run_dir)]


def identical_weights(a: Path, b: Path) -> bool:
    import torch
    from safetensors.torch import load_file

    left, right = load_file(a), load_file(b)
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


def kill_points(count: int, seed: int) -> list[tuple[str, int]]:
    """`count` distinct seeded (phase, occurrence) points: both validations, the rest spread evenly over steps,
    torn writes and completed writes. One uninterrupted run has 32 steps, 2 validations and 21 atomic writes
    (config, 8 checkpoints × 2 files, 2 best models, 2 metrics files)."""
    rng = random.Random(seed)
    limits = {"step": 32, "torn-write": 21, "after-write": 21}
    drawn = {phase: rng.sample(range(1, limit + 1), limit) for phase, limit in limits.items()}
    phases = list(limits)
    return [("validation", 1), ("validation", 2)] + [
        (phases[i % 3], drawn[phases[i % 3]][i // 3]) for i in range(count - 2)
    ]

if __name__ == "__main__":
    _child(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), *sys.argv[4:5])
