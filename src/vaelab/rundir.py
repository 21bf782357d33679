"""The read side of a run directory: the contract between training and everything after it.

    config.json        the resolved RunConfig: everything needed to rebuild the model
    model.safetensors  weights of the best epoch by the objective's validation number (the ELBO for a VAE)
    last.safetensors   weights + optimizer + RNG states of the newest step, with the trainer state embedded as
                       metadata, so one atomic rename moves all of it at once
    previous.safetensors  the checkpoint before that one (a hard link, no copy): `--resume` falls back to it
                       when last.safetensors is damaged
    trainer_state.json a readable copy of that trainer state (epoch, step, best score, history)
    metrics.jsonl      one JSON line per finished epoch
    machine.json       the machine that trained it: device, threads, precision and why, measured matmul rates
    budget.json        a run sized by --time-budget: the steps it bought (`--steps N` repeats the run) and its costs
    eval.json          written by `vaelab eval`; factors.json by `vaelab factors`; generation.json by
                       `vaelab generation`
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
from vaelab.models.registry import build_model, family
from vaelab.pretrained import resolve_run

CONFIG = "config.json"
BEST = "model.safetensors"
LAST = "last.safetensors"
PREVIOUS = "previous.safetensors"
TRAINER_STATE = "trainer_state.json"
METRICS = "metrics.jsonl"
EVAL = "eval.json"
FACTORS = "factors.json"
GENERATION = "generation.json"
DISENTANGLEMENT = "disentanglement.json"
MACHINE = "machine.json"  # the machine that trained the run: device, threads, precision and why, matmul rates
BUDGET = "budget.json"  # what a time budget bought: the steps, and what one step, validation and checkpoint took
# The JSON artefacts later commands write, and the command that (re)writes each.
ARTEFACT_COMMANDS = {EVAL: "vaelab eval", FACTORS: "vaelab factors", GENERATION: "vaelab generation",
                     DISENTANGLEMENT: "vaelab factors"}
# What a reader of each artefact may index without looking: the keys of the object (of every row of factors.json).
# A file that parses but lacks them (edited by hand, another file copied over it) is refused on reading, in one
# line, instead of failing later as a KeyError deep in a report.
ARTEFACT_KEYS = {
    EVAL: ("dataset", "split", "images"),
    FACTORS: ("dim", "kl", "active", "name"),
    GENERATION: ("dataset", "real", "classifier_test_accuracy", "samplers"),
    DISENTANGLEMENT: ("dataset", "objective", "factors", "all", "decorrelated"),
}
# eval.json also holds the bounds of a family with a likelihood, or the size of one without (by the run's family).
EVAL_KEYS_BY_LIKELIHOOD = {
    True: ("input_mode", "elbo", "recon", "kl", "bits_per_dim_elbo", "mse", "kl_per_dim", "active_units",
           "active_dims", "latent_dim"),
    False: ("parameters",),
}
CHECKSUM_KEY = "tensors_sha256"
STATE_PREFIXES = ("optimizer.", "optimizer-", "rng.")  # resumable state beside the weights in last.safetensors


def read_config(run_dir: str | Path) -> RunConfig:
    """The run's resolved config, read from its `config.json` and validated.

    Args:
        run_dir: The run directory, or `pretrained:NAME` for a model shipped with vaelab (`vaelab list-pretrained`).

    Returns:
        The configuration the run was trained with.

    Raises:
        VaelabError: The directory or its `config.json` is missing, unreadable or invalid.

    Examples:
        ```python
        import vaelab

        config = vaelab.read_config("runs/demo")
        print(config.data.dataset, config.model.family, config.model.latent_dim)   # mnist vae 32
        ```
    """
    run_dir = resolve_run(run_dir)
    if run_dir.is_file():
        raise VaelabError(f"{run_dir} is a file, not a run directory; give the folder `vaelab train --out` wrote")
    if not run_dir.is_dir():
        raise VaelabError(f"run directory {run_dir} does not exist; train one with `vaelab train --out {run_dir}`")
    if not (run_dir / CONFIG).is_file():
        raise VaelabError(f"{run_dir} has no {CONFIG}; it is not a vaelab run directory")
    return load_json_config(run_dir / CONFIG)


def load_model(run_dir: str | Path, device: str | torch.device = "cpu", checkpoint: str = BEST) -> nn.Module:
    """Rebuild the model from `config.json` and load `model.safetensors`, for use, not training: in eval mode
    (dropout off, batch statistics fixed) with every parameter frozen (`requires_grad` False), so its outputs carry
    no autograd graph and need no `torch.no_grad()`; on the CPU by default. Training builds its own model and
    never comes through here: to train a run further, resume it (`vaelab train --resume RUN`).

    Args:
        run_dir: The run directory, or `pretrained:NAME` for a model shipped with vaelab (fp16 weights, loaded as
            fp32).
        device: Where to put the model: "cpu", "cuda" or a `torch.device`.
        checkpoint: The weights file in the run directory: `model.safetensors` (the best validation score) or
            `last.safetensors` (the newest step).

    Returns:
        The model of the run's family (a `VAE` for `--model vae`) with the trained weights, in eval mode and
        frozen.

    Raises:
        VaelabError: The run's config or weights are missing, damaged or do not match each other.

    Examples:
        ```python
        import torch
        import vaelab

        model = vaelab.load_model("runs/demo")
        images = model.sample(16, generator=torch.Generator().manual_seed(0))   # [16, 1, 28, 28] in [0, 1]
        ```
    """
    run_dir = resolve_run(run_dir)
    config = read_config(run_dir)
    model = build_model(config.model)
    tensors, _ = load_tensors(run_dir / checkpoint)
    load_model_weights(model, weights_only(tensors), run_dir / checkpoint)
    return model.requires_grad_(False).to(device).eval()


def read_artefact(run_dir: str | Path, name: str) -> Any:
    """A JSON artefact of the run (eval.json, factors.json, generation.json) with the keys its readers index
    (`ARTEFACT_KEYS`); missing, unreadable, not JSON or not of that form, a one-line error naming the file and
    the command that rewrites it (after deleting it: `vaelab generation` itself reads the generation.json it adds
    to)."""
    path = Path(run_dir) / name
    command = f"`{ARTEFACT_COMMANDS.get(name, 'vaelab eval')} {run_dir}`"
    if not path.is_file():
        raise VaelabError(f"{path} is missing; run {command} to write it")
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise VaelabError(f"{path} could not be read ({error.strerror or error}); fix its permissions") from None
    except UnicodeDecodeError:
        raise VaelabError(f"{path} is not valid JSON (not UTF-8 text); delete it and run {command} again") from None
    except json.JSONDecodeError as error:
        raise VaelabError(
            f"{path} is not valid JSON ({error.msg} at line {error.lineno}, column {error.colno}); delete it and "
            f"run {command} again"
        ) from None
    likelihood = family(read_config(run_dir).model.family).capabilities.likelihood if name == EVAL else None
    problem = artefact_problem(name, content, likelihood)
    if problem is not None:
        raise VaelabError(f"{path} is not what {command} writes ({problem}); delete it and run {command} again")
    return content


def artefact_problem(name: str, content: Any, likelihood: bool | None = None) -> str | None:
    """What keeps parsed `content` from being the artefact `name` its readers expect, or None (`likelihood`:
    whether the run's family has one, for eval.json)."""
    if name not in ARTEFACT_KEYS:
        return None
    table = name == FACTORS
    if not isinstance(content, list if table else dict):
        return f"{_json_type(content)} instead of {'a list of rows' if table else 'an object'}"
    for index, row in enumerate(content if table else [content]):
        where = f"row {index} " if table else ""
        if not isinstance(row, dict):
            return f"{where}is {_json_type(row)} instead of an object"
        keys = ARTEFACT_KEYS[name] + (EVAL_KEYS_BY_LIKELIHOOD[bool(likelihood)] if name == EVAL else ())
        missing = [key for key in keys if key not in row]
        if missing:
            return f"{where}has no {', '.join(repr(key) for key in missing[:3])}"
    return None


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "true/false", type(None): "null"}
    return names.get(type(value), "a number")


def read_artefact_if_present(run_dir: str | Path, name: str) -> Any | None:
    """`read_artefact`, or None when the command that writes it has not run yet (a damaged file is still an
    error)."""
    return read_artefact(run_dir, name) if (Path(run_dir) / name).is_file() else None


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _readable_object(path: Path) -> dict[str, Any]:
    """A JSON object file that is only informative, or {} when it is missing, damaged or not an object."""
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return content if isinstance(content, dict) else {}


def read_trainer_state(run_dir: str | Path) -> dict[str, Any]:
    """The readable trainer state, or {} when it is missing or damaged (resuming rewrites it)."""
    return _readable_object(Path(run_dir) / TRAINER_STATE)


def read_machine(run_dir: str | Path) -> dict[str, Any]:
    """The machine that trained the run (machine.json), or {} when it is missing or damaged: what reads it only
    names the machine, which is not worth an error."""
    return _readable_object(Path(run_dir) / MACHINE)


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
