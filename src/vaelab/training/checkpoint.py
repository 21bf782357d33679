"""Run-directory I/O. A run directory is the contract between training and everything after it:

    config.json        the resolved RunConfig: everything needed to rebuild the model
    model.safetensors  weights of the best epoch by validation ELBO
    last.safetensors   weights + optimizer + RNG states of the newest step, with the trainer state embedded as
                       metadata, so one atomic rename moves all of it at once
    previous.safetensors  the checkpoint before that one (a hard link, no copy): `--resume` falls back to it
                       when last.safetensors is damaged
    trainer_state.json a readable copy of that trainer state (epoch, step, best ELBO, history)
    metrics.jsonl      one JSON line per finished epoch
    eval.json          written by `vaelab eval`
    train.lock         held (flock) by the one process training the run

Everything is safetensors or JSON: loading a stranger's run never unpickles anything. Every safetensors file
carries the SHA-256 of its tensors in its metadata, because the format itself has no checksum: a flipped byte
in the data would otherwise load silently as a wrong weight.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from vaelab.config import RunConfig, load_json_config
from vaelab.errors import VaelabError
from vaelab.io import atomic_write, atomic_write_json, atomic_write_text
from vaelab.models import VAE, build_model

CONFIG = "config.json"
BEST = "model.safetensors"
LAST = "last.safetensors"
PREVIOUS = "previous.safetensors"
TRAINER_STATE = "trainer_state.json"
METRICS = "metrics.jsonl"
EVAL = "eval.json"


def write_config(run_dir: Path, config: RunConfig) -> None:
    atomic_write_json(run_dir / CONFIG, config.to_dict())


def read_config(run_dir: Path) -> RunConfig:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise VaelabError(f"run directory {run_dir} does not exist; train one with `vaelab train --out {run_dir}`")
    if not (run_dir / CONFIG).is_file():
        raise VaelabError(f"{run_dir} has no {CONFIG}; it is not a vaelab run directory")
    return load_json_config(run_dir / CONFIG)


CHECKSUM_KEY = "tensors_sha256"


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """Digest of names, dtypes, shapes and bytes of every tensor, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    cpu = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    metadata = {**(metadata or {}), CHECKSUM_KEY: tensors_sha256(cpu)}
    atomic_write(path, lambda tmp: save_file(cpu, str(tmp), metadata=metadata))


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    if not path.is_file():
        raise VaelabError(f"{path} is missing; the run has no checkpoint there (train or resume it first)")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else error.__class__.__name__
        raise VaelabError(
            f"{path} is not a readable safetensors file ({reason}); it is truncated or corrupted"
        ) from None
    # Files written before checksums were stored have none; they load as before.
    if CHECKSUM_KEY in metadata and tensors_sha256(tensors) != metadata[CHECKSUM_KEY]:
        raise VaelabError(f"{path} fails its SHA-256 check (its tensor bytes changed); it is corrupted")
    return tensors, metadata


def model_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    return {name: t for name, t in model.state_dict().items()}


def load_model_weights(model: nn.Module, tensors: dict[str, torch.Tensor], source: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong_shape = [k for k in expected if k in tensors and tensors[k].shape != expected[k].shape]
    if missing or unexpected or wrong_shape:
        detail = (
            f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}" if unexpected
            else f"shape of {wrong_shape[0]} is {tuple(tensors[wrong_shape[0]].shape)}, "
            f"config wants {tuple(expected[wrong_shape[0]].shape)}"
        )
        raise VaelabError(
            f"{source} does not match the model described by config.json ({detail}); "
            "it comes from another configuration — use the config.json it was trained with"
        )
    model.load_state_dict(tensors)


def load_model(run_dir: str | Path, device: str | torch.device = "cpu", checkpoint: str = BEST) -> VAE:
    """Rebuild the model from `config.json` and load `model.safetensors`; eval mode, CPU by default."""
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    model = build_model(config.model)
    tensors, _ = load_tensors(run_dir / checkpoint)
    load_model_weights(model, _weights_only(tensors), run_dir / checkpoint)
    return model.to(device).eval()


# --- resumable state -------------------------------------------------------------------------------------------

_STATE_PREFIXES = ("optimizer.", "rng.")


def _weights_only(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: t for name, t in tensors.items() if not name.startswith(_STATE_PREFIXES)}


def save_last(
    run_dir: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    generators: dict[str, torch.Generator],
    state: dict[str, Any],
) -> None:
    """Weights, optimizer moments, RNG states and the trainer state in one file, then a readable copy."""
    tensors = model_tensors(model)
    optim = optimizer.state_dict()
    for index, param_state in optim["state"].items():
        for key, value in param_state.items():
            tensors[f"optimizer.{index}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    for name, generator in generators.items():
        tensors[f"rng.{name}"] = generator.get_state()
    metadata = {"trainer_state": json.dumps(state), "param_groups": json.dumps(optim["param_groups"])}
    _keep_as_previous(run_dir / LAST, run_dir / PREVIOUS)
    save_tensors(run_dir / LAST, tensors, metadata)
    write_trainer_state(run_dir, state)


def write_trainer_state(run_dir: Path, state: dict[str, Any]) -> None:
    """The readable copy of the trainer state (the authoritative one is inside last.safetensors)."""
    atomic_write_json(run_dir / TRAINER_STATE, {k: v for k, v in state.items() if k != "history"})


def read_trainer_state(run_dir: Path) -> dict[str, Any]:
    """The readable trainer state, or {} when it is missing or damaged (resuming rewrites it)."""
    try:
        state = json.loads((Path(run_dir) / TRAINER_STATE).read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def has_resumable_checkpoint(run_dir: Path) -> bool:
    return any((Path(run_dir) / name).is_file() for name in (LAST, PREVIOUS))


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
    optimizer: torch.optim.Optimizer,
    generators: dict[str, torch.Generator],
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Restore the newest intact resumable checkpoint (last, else previous); returns the trainer state."""
    try:
        return _load_resumable(run_dir / LAST, model, optimizer, generators)
    except VaelabError as error:
        if not (run_dir / PREVIOUS).is_file():
            raise
        state = _load_resumable(run_dir / PREVIOUS, model, optimizer, generators)
        log(f"warning: {error}; resuming from {PREVIOUS} (step {state['step']}) instead")
        return state


def _load_resumable(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, generators: dict[str, torch.Generator]
) -> dict[str, Any]:
    tensors, metadata = load_tensors(path)
    missing = [f"rng.{name}" for name in generators if f"rng.{name}" not in tensors]
    if "trainer_state" not in metadata or "param_groups" not in metadata or missing:
        raise VaelabError(f"{path} has no complete trainer state; it was not written by `vaelab train`")
    load_model_weights(model, _weights_only(tensors), path)
    device = next(model.parameters()).device
    optim_state: dict[int, dict[str, torch.Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, index, key = name.split(".", 2)
            optim_state.setdefault(int(index), {})[key] = value if key == "step" else value.to(device)
    optimizer.load_state_dict({"state": optim_state, "param_groups": json.loads(metadata["param_groups"])})
    # Moments must share their parameter's memory layout (channels-last convs): the fused Adam kernel walks
    # both as flat memory, so a contiguous moment beside a channels-last weight would update the wrong elements.
    for param, param_state in optimizer.state.items():
        for key, value in param_state.items():
            if torch.is_tensor(value) and value.shape == param.shape:
                param_state[key] = torch.empty_like(param).copy_(value)
    for name, generator in generators.items():
        generator.set_state(tensors[f"rng.{name}"])
    return json.loads(metadata["trainer_state"])


def save_best(run_dir: Path, model: nn.Module, epoch: int, val_elbo: float) -> None:
    save_tensors(run_dir / BEST, model_tensors(model), {"epoch": str(epoch), "val_elbo": repr(val_elbo)})


def write_metrics(run_dir: Path, history: list[dict[str, Any]]) -> None:
    """Rewrite metrics.jsonl whole from the history (atomic: no torn or duplicated lines after a resume)."""
    atomic_write_text(run_dir / METRICS, "".join(json.dumps(row) + "\n" for row in history))


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
