"""Starting a new run or resuming one: the checks that keep an existing run directory from being damaged."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from vaelab.config import DataConfig, ModelConfig, RunConfig, load_yaml_config
from vaelab.errors import VaelabError
from vaelab.rundir import LAST, has_resumable_checkpoint, read_config
from vaelab.training.trainer import TrainResult, train

_FIXED_ON_RESUME = {f for cls in (DataConfig, ModelConfig) for f in cls.__dataclass_fields__}


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
    if resume is not None:
        if config_path is not None:
            raise VaelabError("--config cannot be combined with --resume; the run's own config.json is used")
        fixed = sorted(set(given) & _FIXED_ON_RESUME)
        if fixed:
            raise VaelabError(
                f"cannot change {', '.join(fixed)} when resuming (the checkpoint was trained with them); "
                "start a new run with --out instead"
            )
        config = read_config(resume)
        if not has_resumable_checkpoint(resume):
            raise VaelabError(f"{resume} has no {LAST} to resume from; start it again with --out")
        # A resumed run goes to the end unless a new stopping point is given.
        config = config.with_overrides({"max_steps": None, **given})
        config.train.max_steps = given.get("max_steps")
        return train(config, Path(resume), resume=True, progress=progress, log=log)

    assert out is not None
    if out.exists() and any(out.iterdir()):
        raise VaelabError(
            f"{out} already exists and is not empty; resume it with --resume {out} or choose another --out"
        )
    base = load_yaml_config(config_path) if config_path is not None else RunConfig()
    config = base.with_overrides(given)
    return train(config, out, resume=False, progress=progress, log=log)
