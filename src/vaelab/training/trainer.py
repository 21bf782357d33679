"""The training loop, readable top to bottom, the same for every model family.

Data lives in memory as one tensor (on the GPU when there is one); each step slices a batch and hands it to the
family's objective (`vaelab.models.objective`), which binarizes it when asked (a fresh draw per batch) and yields
its losses, one phase per optimizer step; the loop takes each step, with gradient clipping and non-finite
handling. After each epoch: the objective's validation numbers, the best checkpoint by its selection number, the
resumable last checkpoint, a metrics line — all written atomically. A resumable checkpoint is also written every
`checkpoint_every` steps, so a kill costs at most that many steps; everything a step depends on (batch order,
RNG states, optimizer moments, the epoch's running sums) is in it, so a resumed run ends bit-identical to an
uninterrupted one on the CPU.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaelab.config import RunConfig
from vaelab.data.catalog import use_data_dir
from vaelab.data.datasets import binarize, iterate_batches, load_split, prepare_inputs, to_float
from vaelab.errors import VaelabError
from vaelab.fitting import epoch_order, learning_rate
from vaelab.hardware import autocast, resolve_device, use_bf16
from vaelab.io import remove_stale_temp_files
from vaelab.models.objective import Objective, Phase, StepContext, ValidationData
from vaelab.models.registry import build_model, family
from vaelab.rundir import CONFIG, has_resumable_checkpoint
from vaelab.training import checkpoint
from vaelab.training.lock import run_lock

VALIDATION_SEED = 1234  # fixed binarization and draws for validation, so epochs are comparable


class NonFiniteLossError(VaelabError):
    pass


@dataclass
class TrainResult:
    run_dir: Path
    epochs_done: int
    steps: int
    selection: str  # the validation number that picked model.safetensors (the objective's; val_elbo for a VAE;
    # "epoch" when the last epoch's weights are kept)
    best_score: float  # its best value
    finished: bool  # False when stopped early by max_steps
    history: list[dict[str, Any]]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def train(
    config: RunConfig,
    run_dir: Path,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
    keep_existing: bool = False,
) -> TrainResult:
    """Train (or resume) `run_dir` as its only writer.

    `resume` continues from the run's checkpoint; a run whose start was killed before its first checkpoint (nothing
    but config.json and train.lock) starts afresh from `config` instead. A new run (`resume` False) replaces what
    the directory holds, unless `keep_existing` refuses a directory with a checkpoint (`vaelab train --out`): checked
    under the lock, so that a trainer that finished its first checkpoint meanwhile is not overwritten.

    Args:
        config: The run's configuration (for a resumed run, the one in its `config.json`: `vaelab.read_config`).
        run_dir: The run directory to write (created when missing).
        resume: Continue from the run's checkpoint instead of starting anew.
        progress: Show a progress bar per epoch.
        log: Called with each message (one line per epoch and notices).
        keep_existing: Refuse a new run in a directory that already holds a checkpoint.

    Returns:
        Epochs and steps done, the validation number that picked `model.safetensors` and its best value, whether
            the run finished, and the per-epoch history.

    Raises:
        VaelabError: A problem the user can fix: a missing run to resume, a directory that cannot be written, a
            non-finite loss (`NonFiniteLossError`), another trainer holding the run.

    Examples:
        ```python
        import vaelab

        config = vaelab.RunConfig.from_dict({"data": {"train_limit": 2000}, "train": {"epochs": 2}})
        result = vaelab.train(config, "runs/quick")
        print(result.selection, result.best_score)   # val_elbo and the best validation ELBO
        vaelab.train(vaelab.read_config("runs/quick"), "runs/quick", resume=True)   # after a kill: continue
        ```
    """
    run_dir = Path(run_dir)
    _check_before_writing(config, run_dir, resume)
    created = not resume and not run_dir.exists()
    if not resume:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise VaelabError(f"cannot create {run_dir} ({error.strerror or error}); choose another --out") from None
    with run_lock(run_dir):
        try:
            stale = remove_stale_temp_files(run_dir)
            if stale:
                log(f"removed {len(stale)} unfinished temp file(s) left by an interrupted write: {stale[0].name} …")
            resume = _resumes(run_dir, resume, keep_existing, log)
            if not resume:
                # The config is the first run file, written whole: from here on `--resume` can restart the run.
                checkpoint.write_config(run_dir, config)
            return _train(config, run_dir, resume, progress, log)
        except BaseException:
            # A new run that failed before its first checkpoint (bad data, no memory, Ctrl-C) leaves no directory.
            if created and not has_resumable_checkpoint(run_dir):
                shutil.rmtree(run_dir, ignore_errors=True)
            raise


def _check_before_writing(config: RunConfig, run_dir: Path, resume: bool) -> None:
    """Refuse, before the run directory is touched, what would otherwise fail once it is half made."""
    if config.train.tensorboard:
        _summary_writer_class()
    if resume and not run_dir.is_dir():
        raise VaelabError(f"run directory {run_dir} does not exist; train one with `vaelab train --out {run_dir}`")
    folder = run_dir
    while not folder.exists() and folder != folder.parent:  # the nearest folder that exists is where it is made
        folder = folder.parent
    if not folder.is_dir():
        raise VaelabError(f"cannot create {run_dir}: {folder} is a file, not a folder; choose another --out")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise VaelabError(f"cannot write in {folder} (permission denied); fix its permissions or choose another folder")


def _resumes(run_dir: Path, resume: bool, keep_existing: bool, log: Callable[[str], None]) -> bool:
    """Whether the run continues from its checkpoint, decided under the lock from what the directory holds."""
    if has_resumable_checkpoint(run_dir):
        if not resume and keep_existing:
            raise VaelabError(
                f"{run_dir} already exists and is not empty; resume it with --resume {run_dir} or choose another --out"
            )
        return resume
    if checkpoint.nothing_trained(run_dir) and (resume or (run_dir / CONFIG).is_file()):
        log(f"{run_dir} has no checkpoint yet (its start was interrupted); starting it afresh")
        return False
    return resume  # a resume with other files but no checkpoint fails on loading it, naming the file


def _train(
    config: RunConfig, run_dir: Path, resume: bool, progress: bool, log: Callable[[str], None]
) -> TrainResult:
    data, train_cfg = config.data, config.train
    seed_everything(train_cfg.seed)
    device = resolve_device(train_cfg.device)
    bf16 = use_bf16(train_cfg.precision, device)
    memory_format = torch.channels_last if train_cfg.channels_last else torch.contiguous_format

    # Data: whole splits as uint8 tensors on the device, made float a batch at a time.
    use_data_dir(data.dataset, data.data_dir)
    train_set = load_split(data.dataset, "train", data.val_size, data.split_seed).subset(data.train_limit)
    val_set = load_split(data.dataset, "val", data.val_size, data.split_seed).subset(data.val_limit)
    train_x = train_set.images.to(device)
    train_y = train_set.labels.to(device)  # only the families that use labels read them
    validation = ValidationData(
        inputs=prepare_inputs(val_set.images, data.input_mode, VALIDATION_SEED).to(device),
        intensities=to_float(val_set.images).to(device),
        labels=val_set.labels.to(device),
        seed=VALIDATION_SEED,
    )
    # The family's objective: which images an epoch runs over, the losses of a step, validation.
    objective = family(config.model.kind).objective_class()(config, train_set.labels)
    pool = objective.pool
    selection = objective.selection or "epoch"  # the name stored beside the best weights
    steps_per_epoch = len(pool) // train_cfg.batch_size
    if steps_per_epoch == 0:
        raise VaelabError(f"batch_size {train_cfg.batch_size} is larger than the {len(pool)} training images")
    total_steps = steps_per_epoch * train_cfg.epochs

    # Model, optimizers and the generators that make every random draw reproducible.
    model = build_model(config.model).to(device).to(memory_format=memory_format)
    # The fused kernel updates all parameters in one pass: ~8× faster than the per-tensor default on the CPU.
    optimizers = {
        name: torch.optim.Adam(parameters, lr=train_cfg.lr, fused=True, **objective.optimizer_options(name))
        for name, parameters in objective.parameter_groups(model).items()
    }
    generators = {"binarize": torch.Generator(device).manual_seed(train_cfg.seed + 1)}
    for name, spec in objective.generators().items():
        generators[name] = torch.Generator("cpu" if spec.cpu else device).manual_seed(train_cfg.seed + spec.offset)
    state: dict[str, Any] = {
        "epoch": 0, "step": 0, "batch_in_epoch": 0, "best_score": -math.inf, "history": [],
        "epoch_sums": {"images": 0}, "skipped_steps": [],
    }
    if resume:
        state = {**state, **checkpoint.load_last(run_dir, model, optimizers, generators, log=log)}
        if "best_val_elbo" in state:  # written before the objective chose the selection number
            state["best_score"] = state.pop("best_val_elbo")
        log(f"resuming {run_dir} at epoch {state['epoch'] + 1}, step {state['step']}")
        # A kill between the checkpoint and the metrics file leaves metrics.jsonl one epoch behind: rewrite it.
        checkpoint.write_metrics(run_dir, state["history"])
        checkpoint.write_trainer_state(run_dir, state)
        checkpoint.write_config(run_dir, config)  # with the new stopping point (a new run wrote its own already)
    writer = None  # made after the first checkpoint: a start killed earlier leaves no tensorboard folder behind

    def modelled(intensities: torch.Tensor) -> torch.Tensor:
        """What the likelihood models of a batch: a fresh binarization for a binarized run, else the intensities."""
        if data.input_mode == "binarized":
            intensities = binarize(intensities, generators["binarize"])
        return intensities.contiguous(memory_format=memory_format)

    context = StepContext(
        state["step"], total_steps, generators, modelled, lambda batch: batch.contiguous(memory_format=memory_format),
        lambda: autocast(device, bf16), train_x, train_y,
    )
    bar = _progress_bar(total_steps, state["step"], enabled=progress)
    say = bar.write if progress else log  # keep the bar intact while it is shown
    finished = True
    while state["epoch"] < train_cfg.epochs:
        epoch = state["epoch"]
        model.train()
        # The epoch's order depends only on (seed, epoch): a resumed run sees the same batches.
        order = epoch_order(train_cfg.seed, epoch)
        batches = [pool[i] for i in iterate_batches(len(pool), train_cfg.batch_size, order, drop_last=True)]
        sums = state["epoch_sums"]  # carried in the checkpoint: a mid-epoch resume reports the same epoch means
        seen_here, epoch_start = 0, time.perf_counter()
        for index in batches[state["batch_in_epoch"] :]:
            intensities, labels = to_float(train_x[index.to(device)]), train_y[index.to(device)]
            lr = learning_rate(state["step"], total_steps, train_cfg.lr, train_cfg.min_lr, train_cfg.lr_schedule)
            for optimizer in optimizers.values():
                for group in optimizer.param_groups:
                    group["lr"] = lr
            context.step = state["step"]
            logged, bad = {}, None
            for phase in objective.step(model, intensities, labels, context):
                bad = _optimizer_step(phase, optimizers[phase.optimizer], train_cfg.grad_clip)
                if bad is not None:  # the rest of the step is not taken
                    break
                logged.update({name: value.float().mean().item() for name, value in phase.logged.items()})
            if bad is not None:
                # The step (or its phases from the bad one on) is not taken, so the weights stay the last good
                # ones; a skipped batch still counts as a step, keeping the data order and schedules those of an
                # undisturbed run.
                if len(state["skipped_steps"]) >= train_cfg.skip_nonfinite:
                    bar.close()
                    raise NonFiniteLossError(
                        f"{bad} at step {state['step']} (epoch {epoch + 1}); stopped, the last good checkpoint in "
                        f"{run_dir} is intact — lower --lr or --grad-clip, use --precision fp32, or allow a few "
                        f"bad batches with --skip-nonfinite N"
                    )
                say(f"warning: {bad} at step {state['step']}; batch skipped "
                    f"({len(state['skipped_steps']) + 1} of at most {train_cfg.skip_nonfinite})")
                state["skipped_steps"].append(state["step"])
            else:
                for name, value in logged.items():
                    sums[name] = sums.get(name, 0.0) + value * intensities.shape[0]
                sums["images"] += intensities.shape[0]

            state["step"] += 1
            state["batch_in_epoch"] += 1
            seen_here += intensities.shape[0]
            bar.update(1)
            if state["step"] % 20 == 0 and bad is None:
                rate = seen_here / (time.perf_counter() - epoch_start)
                terms = " ".join(f"{name} {value:.1f}" for name, value in logged.items())
                bar.set_postfix_str(f"epoch {epoch + 1}/{train_cfg.epochs} {terms} {rate:,.0f} img/s")
            if train_cfg.max_steps is not None and state["step"] >= train_cfg.max_steps:
                finished = False
                break
            mid_epoch = state["batch_in_epoch"] < len(batches)  # the epoch's end writes its own checkpoint
            if mid_epoch and train_cfg.checkpoint_every and state["step"] % train_cfg.checkpoint_every == 0:
                checkpoint.save_last(run_dir, model, optimizers, generators, state)
        train_seconds = time.perf_counter() - epoch_start
        if not finished:
            checkpoint.save_last(run_dir, model, optimizers, generators, state)
            break

        val = validate(objective, model, validation)
        last_step = state["step"] - 1  # the schedules' values at the epoch's last step, also after a resume
        images = max(sums["images"], 1)
        row = {
            "epoch": epoch + 1,
            "step": state["step"],
            **{f"train_{name}": value / images for name, value in sums.items() if name != "images"},
            **val,
            **objective.schedule_values(last_step),
            "lr": learning_rate(last_step, total_steps, train_cfg.lr, train_cfg.min_lr, train_cfg.lr_schedule),
            "skipped_batches": sum(epoch * steps_per_epoch <= s < state["step"] for s in state["skipped_steps"]),
            "images_per_s": seen_here / train_seconds if train_seconds > 0 else 0.0,
            "train_seconds": train_seconds,
            "wall_time": time.time(),
        }
        state["history"].append(row)
        score = epoch + 1 if objective.selection is None else val[objective.selection]
        if score > state["best_score"]:
            state["best_score"] = score
            checkpoint.save_best(run_dir, model, epoch + 1, selection, score)
        state["epoch"] += 1
        state["batch_in_epoch"] = 0
        state["epoch_sums"] = {"images": 0}
        checkpoint.save_last(run_dir, model, optimizers, generators, state)
        checkpoint.write_metrics(run_dir, state["history"])
        if train_cfg.tensorboard:
            writer = writer if writer is not None else _summary_writer_class()(str(run_dir / "tensorboard"))
            for key, value in row.items():
                if isinstance(value, float):
                    writer.add_scalar(key, value, epoch + 1)
        say(
            f"epoch {epoch + 1:3d}  train loss {row.get('train_loss', math.nan):.2f}  {objective.summary(row)}  "
            f"{row['images_per_s']:,.0f} img/s"
        )
    bar.close()
    if writer is not None:
        writer.close()
    return TrainResult(run_dir, state["epoch"], state["step"], selection, state["best_score"], finished,
                       state["history"])


def validate(objective: Objective, model: torch.nn.Module, data: ValidationData) -> dict[str, Any]:
    """The objective's validation numbers, in eval mode without gradients (fp32: no autocast)."""
    model.eval()
    with torch.no_grad():
        result = objective.validate(model, data)
    model.train()
    return result


def _optimizer_step(phase: Phase, optimizer: torch.optim.Optimizer, grad_clip: float) -> str | None:
    """Back-propagate one phase's loss and step its optimizer; what went wrong instead (a non-finite loss or
    gradient norm), with the optimizer's parameters left as they were."""
    optimizer.zero_grad(set_to_none=True)
    if not torch.isfinite(phase.loss):
        return f"loss became {phase.loss.item()}"
    phase.loss.backward()
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    grad_norm = torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
    if not torch.isfinite(grad_norm):
        return f"gradient norm became {grad_norm.item()}"
    optimizer.step()
    return None


def _progress_bar(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, unit="step", dynamic_ncols=True, smoothing=0.05)


def _summary_writer_class() -> type:
    """TensorBoard's writer, or a one-line error naming the extra that installs it (an optional dependency)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise VaelabError(
            "--tensorboard needs the tensorboard package; install it with pip install 'vaelab[tensorboard]'"
        ) from None
    return SummaryWriter
