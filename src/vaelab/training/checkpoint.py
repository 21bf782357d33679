"""The write side of a run directory (the read side, and the layout, are `vaelab.rundir`): the config, the best
weights, the resumable checkpoint with its fallback, the trainer state and metrics.jsonl, each written atomically.

A resumable checkpoint holds the weights, every optimizer's moments and every generator's state in one
safetensors file, with the trainer state as metadata. A generator is stored as `rng.<name>`, or `rng.<name>.rank<r>`
for rank r ≥ 1 of a run trained by several processes. The optimizer named "model" (the only one of most families)
is stored as `optimizer.<index>.<key>` with its `param_groups`; any other as `optimizer-<name>.<index>.<key>` with
`param_groups-<name>`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vaelab.config import RunConfig
from vaelab.errors import VaelabError
from vaelab.io import atomic_write_json, atomic_write_text
from vaelab.rundir import (
    BEST,
    BUDGET,
    CONFIG,
    LAST,
    MACHINE,
    METRICS,
    PREVIOUS,
    TRAINER_STATE,
    load_model_weights,
    load_tensors,
    model_tensors,
    save_tensors,
    weights_only,
)
from vaelab.training.lock import LOCK

Optimizers = dict[str, torch.optim.Optimizer]


def write_config(run_dir: Path, config: RunConfig) -> None:
    atomic_write_json(run_dir / CONFIG, config.to_dict())


def nothing_trained(run_dir: Path) -> bool:
    """Whether `run_dir` holds only what a start killed before its first checkpoint leaves: config.json, train.lock
    (an flock dies with its process, so the file alone locks nothing), the machine profile, a time budget's plan
    and unfinished temp files; or nothing."""
    return all(
        path.name in (CONFIG, LOCK, MACHINE, BUDGET) or (path.name.startswith(".") and path.name.endswith(".tmp"))
        for path in Path(run_dir).iterdir()
    )


def _prefix(name: str) -> str:
    return "optimizer." if name == "model" else f"optimizer-{name}."


def _groups_key(name: str) -> str:
    return "param_groups" if name == "model" else f"param_groups-{name}"


def save_last(
    run_dir: Path,
    model: nn.Module,
    optimizers: Optimizers,
    rng_states: dict[str, torch.Tensor],
    state: dict[str, Any],
) -> None:
    """Weights, optimizer moments, RNG states (by stored name: `rng_name`) and the trainer state in one file, then
    a readable copy."""
    tensors = model_tensors(model)
    metadata = {"trainer_state": json.dumps(state)}
    for name, optimizer in optimizers.items():
        optim = optimizer.state_dict()
        for index, param_state in optim["state"].items():
            for key, value in param_state.items():
                tensors[f"{_prefix(name)}{index}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
        metadata[_groups_key(name)] = json.dumps(optim["param_groups"])
    for name, rng_state in rng_states.items():
        tensors[f"rng.{name}"] = rng_state
    _keep_as_previous(run_dir / LAST, run_dir / PREVIOUS)
    save_tensors(run_dir / LAST, tensors, metadata)
    write_trainer_state(run_dir, state)


def rng_name(name: str, rank: int) -> str:
    """The stored name of generator `name` of rank `rank` (rank 0's is the name itself, as in a single process)."""
    return name if rank == 0 else f"{name}.rank{rank}"


def write_trainer_state(run_dir: Path, state: dict[str, Any]) -> None:
    """The readable copy of the trainer state (the authoritative one is inside last.safetensors)."""
    atomic_write_json(run_dir / TRAINER_STATE, {k: v for k, v in state.items() if k != "history"})


def _keep_as_previous(last: Path, previous: Path) -> None:
    """Make `previous` name the current `last` file before it is replaced (a hard link: no bytes copied)."""
    if not last.is_file():
        return
    staged = previous.with_name(f".{previous.name}.link.tmp")  # swept like any stale temp file if killed here
    staged.unlink(missing_ok=True)
    try:
        os.link(last, staged)
    except OSError:  # a file system without hard links: the fallback checkpoint is simply not kept
        return
    os.replace(staged, previous)


def load_last(
    run_dir: Path,
    model: nn.Module,
    optimizers: Optimizers,
    generators: dict[str, torch.Generator],
    log: Callable[[str], None] = print,
    optional_generators: bool = False,
) -> dict[str, Any]:
    """Restore the newest intact resumable checkpoint (last, else previous); returns the trainer state.
    `generators` go by stored name (`rng_name`); with `optional_generators`, one the file lacks (a rank the run did
    not have before) keeps its seed."""
    try:
        return _load_resumable(run_dir / LAST, model, optimizers, generators, optional_generators)
    except VaelabError as error:
        if not (run_dir / PREVIOUS).is_file():
            raise
        state = _load_resumable(run_dir / PREVIOUS, model, optimizers, generators, optional_generators)
        log(f"warning: {error}; resuming from {PREVIOUS} (step {state['step']}) instead")
        return state


def _load_resumable(
    path: Path, model: nn.Module, optimizers: Optimizers, generators: dict[str, torch.Generator], optional: bool
) -> dict[str, Any]:
    tensors, metadata = load_tensors(path)
    missing = [] if optional else [f"rng.{name}" for name in generators if f"rng.{name}" not in tensors]
    missing += [_groups_key(name) for name in optimizers if _groups_key(name) not in metadata]
    if "trainer_state" not in metadata or missing:
        raise VaelabError(f"{path} has no complete trainer state; it was not written by `vaelab train`")
    load_model_weights(model, weights_only(tensors), path)
    device = next(model.parameters()).device
    for name, optimizer in optimizers.items():
        optim_state: dict[int, dict[str, torch.Tensor]] = {}
        for key_name, value in tensors.items():
            if key_name.startswith(_prefix(name)):
                index, key = key_name[len(_prefix(name)):].split(".", 1)
                optim_state.setdefault(int(index), {})[key] = value if key == "step" else value.to(device)
        groups = json.loads(metadata[_groups_key(name)])
        optimizer.load_state_dict({"state": optim_state, "param_groups": groups})
        # Moments must share their parameter's memory layout (channels-last convs): the fused Adam kernel walks
        # both as flat memory, so a contiguous moment beside a channels-last weight would update the wrong elements.
        for param, param_state in optimizer.state.items():
            for key, value in param_state.items():
                if torch.is_tensor(value) and value.shape == param.shape:
                    param_state[key] = torch.empty_like(param).copy_(value)
    for name, generator in generators.items():
        if f"rng.{name}" in tensors:
            generator.set_state(tensors[f"rng.{name}"])
    return json.loads(metadata["trainer_state"])


def save_best(run_dir: Path, model: nn.Module, epoch: int, name: str, value: float) -> None:
    """model.safetensors: the weights of the epoch with the best validation number `name` (stored beside them)."""
    save_tensors(run_dir / BEST, model_tensors(model), {"epoch": str(epoch), name: repr(value)})


def write_metrics(run_dir: Path, history: list[dict[str, Any]]) -> None:
    """Rewrite metrics.jsonl whole from the history (atomic: no torn or duplicated lines after a resume)."""
    atomic_write_text(run_dir / METRICS, "".join(json.dumps(row) + "\n" for row in history))
