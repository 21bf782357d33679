"""Starting a new run or resuming one: the checks that keep an existing run directory from being damaged.

One rule brings a killed run back, whenever the kill came: the same command again. `vaelab train --out RUN` on a
run directory with a checkpoint continues that run when the command gives the same config (the stopping point
`max_steps` aside), and a different config is refused in one line naming the fields that differ. Under torchrun with
`--max-restarts`, a group restarted after a failure runs the same command again, so it resumes the same way.

A start killed before its first checkpoint leaves at most config.json and train.lock; such a directory holds
nothing to resume, so both ways back in work: the same `--out` command starts it again, and `--resume` starts it
afresh from its config.json.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from vaelab.config import RunConfig, described_options, load_yaml_config
from vaelab.errors import VaelabError
from vaelab.rundir import CONFIG, LAST, PREVIOUS, has_resumable_checkpoint, read_config
from vaelab.training.checkpoint import nothing_trained
from vaelab.training.distributed import restarted
from vaelab.training.trainer import TrainResult, train

# The data and the model a checkpoint was trained with (the optimisation may change: a longer run, a new lr).
_FIXED_ON_RESUME = {option.name for option in described_options() if option.path[0] in ("data", "model")}


def start_or_resume(
    out: Path | None,
    resume: Path | None,
    config_path: Path | None,
    overrides: dict[str, Any],
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """`vaelab train --out NEW ...` or `vaelab train --resume RUN [--epochs N ...]`."""
    given = {k: v for k, v in overrides.items() if v is not None}
    if (out is None) == (resume is None):
        raise VaelabError("give exactly one of --out NEW_RUN_DIR (a new run) or --resume RUN_DIR")
    lengths = [f"--{name.replace('_', '-')}" for name in ("epochs", "steps", "time_budget") if name in given]
    if len(lengths) > 1:
        raise VaelabError(f"{' and '.join(lengths)} both set the run's length; give one of them")
    if resume is not None:
        return _resume(Path(resume), config_path, given, progress, log)
    assert out is not None
    base = load_yaml_config(config_path) if config_path is not None else RunConfig()
    config = base.with_overrides(given)
    out = Path(out)
    if out.is_dir() and has_resumable_checkpoint(out):
        return _continue(out, config, progress, log)
    _check_new_run_dir(out)
    return train(config, out, resume=False, progress=progress, log=log, keep_existing=True)


def _continue(out: Path, config: RunConfig, progress: bool, log: Callable[[str], None]) -> TrainResult:
    """The same `--out` command again on a run with a checkpoint: continue it, if the command's config is the run's."""
    stored = read_config(out)
    changed = config_differences(stored, config)
    if changed:
        raise VaelabError(
            f"{out} holds a run trained with other settings ({'; '.join(changed)}); give the same options as before "
            f"to continue it, or choose another --out")
    why = "restarted by torchrun" if restarted() else "the same command again"
    log(f"{why}: resuming {out} from its last checkpoint")
    stored.train.max_steps = config.train.max_steps
    return train(stored, out, resume=True, progress=progress, log=log)


def config_differences(before: RunConfig, after: RunConfig) -> list[str]:
    """The options whose values differ, as `name before → after` by their flat names (the stopping point
    `max_steps` aside)."""
    old, new = before.options(), after.options()
    return [f"{name} {old[name]!r} → {new[name]!r}" for name in old if name != "max_steps" and old[name] != new[name]]


def _check_new_run_dir(out: Path) -> None:
    """`--out` takes a new or empty folder, or one whose start was interrupted before anything was trained."""
    if not out.exists():
        return
    if not out.is_dir():
        raise VaelabError(f"{out} is a file, not a run directory; choose another --out")
    if has_resumable_checkpoint(out):
        raise VaelabError(
            f"{out} already exists and is not empty; resume it with --resume {out} or choose another --out"
        )
    if not nothing_trained(out):
        raise VaelabError(f"{out} already exists and is not empty (it holds no run to resume); choose another --out")


def _resume(
    run_dir: Path, config_path: Path | None, given: dict[str, Any], progress: bool, log: Callable[[str], None]
) -> TrainResult:
    if config_path is not None:
        raise VaelabError("--config cannot be combined with --resume; the run's own config.json is used")
    fixed = sorted(set(given) & _FIXED_ON_RESUME)
    if fixed:
        raise VaelabError(
            f"cannot change {', '.join(fixed)} when resuming (the checkpoint was trained with them); "
            "start a new run with --out instead"
        )
    if run_dir.is_dir() and not (run_dir / CONFIG).is_file() and nothing_trained(run_dir):
        raise VaelabError(
            f"{run_dir} holds no {CONFIG} and no checkpoint (its start was killed before the config was written); "
            f"start it again with `vaelab train --out {run_dir}` and its options"
        )
    config = read_config(run_dir)
    if config.train.time_budget is not None and {"epochs", "steps", "time_budget"} & set(given):
        raise VaelabError(
            f"{run_dir} is sized by its time budget ({config.train.time_budget}); resuming finishes the steps it "
            "bought, with no new length"
        )
    if "time_budget" in given:
        raise VaelabError("--time-budget sizes a new run; resume this one with --epochs or --steps, or start a new "
                          "run with --out")
    if not has_resumable_checkpoint(run_dir) and not nothing_trained(run_dir):
        raise VaelabError(
            f"{run_dir} has no {LAST} or {PREVIOUS} to resume from; train a new run with --out NEW_RUN_DIR"
        )
    # A resumed run goes to the end unless a new stopping point is given; one with no checkpoint yet starts afresh
    # from its config.json (the trainer decides it under the lock, and says so).
    config = config.with_overrides({"max_steps": None, **given})
    config.train.max_steps = given.get("max_steps")
    return train(config, run_dir, resume=True, progress=progress, log=log)
