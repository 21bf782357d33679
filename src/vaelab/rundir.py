"""The read side of a run directory: the contract between training and everything after it.

    config.json        the resolved RunConfig: everything needed to rebuild the model
    model.safetensors  weights of the best epoch by the objective's validation number (the ELBO for a VAE)
    last.safetensors   weights + optimizer + RNG states of the newest step, with the trainer state embedded as
                       metadata, so one atomic rename moves all of it at once
    previous.safetensors  the checkpoint before that one (a hard link, no copy): `--resume` falls back to it
                       when last.safetensors is damaged
    trainer_state.json a readable copy of that trainer state (epoch, step, best score, history)
    metrics.jsonl      one JSON line per finished epoch
    eval.json          written by `vaelab eval`; factors.json by `vaelab factors`; generation.json by `vaelab fid`
    train.lock         held (flock) by the one process training the run

Everything is safetensors or JSON: loading a stranger's run never unpickles anything. Every safetensors file
carries the SHA-256 of its tensors in its metadata, because the format itself has no checksum: a flipped byte
in the data would otherwise load silently as a wrong weight. Evaluation, analysis, report, web and pipelines read
runs through this module; only `vaelab.training` writes the checkpoints.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from vaelab.config import RunConfig, load_json_config
from vaelab.errors import VaelabError
from vaelab.io import atomic_write_bytes
from vaelab.models.registry import build_model

CONFIG = "config.json"
BEST = "model.safetensors"
LAST = "last.safetensors"
PREVIOUS = "previous.safetensors"
TRAINER_STATE = "trainer_state.json"
METRICS = "metrics.jsonl"
EVAL = "eval.json"
FACTORS = "factors.json"
GENERATION = "generation.json"
# The JSON artefacts later commands write, and the command that (re)writes each.
ARTEFACT_COMMANDS = {EVAL: "vaelab eval", FACTORS: "vaelab factors", GENERATION: "vaelab fid"}
CHECKSUM_KEY = "tensors_sha256"
STATE_PREFIXES = ("optimizer.", "optimizer-", "rng.")  # resumable state beside the weights in last.safetensors


def read_config(run_dir: str | Path) -> RunConfig:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise VaelabError(f"run directory {run_dir} does not exist; train one with `vaelab train --out {run_dir}`")
    if not (run_dir / CONFIG).is_file():
        raise VaelabError(f"{run_dir} has no {CONFIG}; it is not a vaelab run directory")
    return load_json_config(run_dir / CONFIG)


def load_model(run_dir: str | Path, device: str | torch.device = "cpu", checkpoint: str = BEST) -> nn.Module:
    """Rebuild the model from `config.json` and load `model.safetensors`; eval mode, CPU by default."""
    run_dir = Path(run_dir)
    config = read_config(run_dir)
    model = build_model(config.model)
    tensors, _ = load_tensors(run_dir / checkpoint)
    load_model_weights(model, weights_only(tensors), run_dir / checkpoint)
    return model.to(device).eval()


def read_artefact(run_dir: str | Path, name: str) -> Any:
    """A JSON artefact of the run (eval.json, factors.json, generation.json); missing or damaged, a one-line error
    naming the file and the command that rewrites it."""
    path = Path(run_dir) / name
    command = f"`{ARTEFACT_COMMANDS.get(name, 'vaelab eval')} {run_dir}`"
    if not path.is_file():
        raise VaelabError(f"{path} is missing; run {command} to write it")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        reason = str(error).splitlines()[0] if str(error) else error.__class__.__name__
        raise VaelabError(f"{path} is unreadable or not valid JSON ({reason}); run {command} again") from None


def read_artefact_if_present(run_dir: str | Path, name: str) -> Any | None:
    """`read_artefact`, or None when the command that writes it has not run yet (a damaged file is still an
    error)."""
    return read_artefact(run_dir, name) if (Path(run_dir) / name).is_file() else None


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_trainer_state(run_dir: str | Path) -> dict[str, Any]:
    """The readable trainer state, or {} when it is missing or damaged (resuming rewrites it)."""
    try:
        state = json.loads((Path(run_dir) / TRAINER_STATE).read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def has_resumable_checkpoint(run_dir: str | Path) -> bool:
    return any((Path(run_dir) / name).is_file() for name in (LAST, PREVIOUS))


# --- safetensors files ------------------------------------------------------------------------------------------


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
    atomic_write_bytes(path, canonical_safetensors(save(cpu, metadata=metadata)))


def canonical_safetensors(data: bytes) -> bytes:
    """The same safetensors file with its metadata in sorted order: the safetensors library writes the metadata
    map in a random order per process, so the same tensors and metadata would otherwise give files whose bytes
    (and SHA-256) differ from run to run. Tensor entries keep their order and offsets."""
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + length])
    if "__metadata__" in header:
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)  # the format pads the header with spaces to a multiple of 8 bytes
    return len(text).to_bytes(8, "little") + text + data[8 + length :]


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
    return dict(model.state_dict().items())


def weights_only(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: t for name, t in tensors.items() if not name.startswith(STATE_PREFIXES)}


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
