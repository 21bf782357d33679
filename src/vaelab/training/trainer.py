"""The training loop, readable top to bottom, the same for every model family.

Data lives in memory as one tensor (on the GPU when there is one); each step slices a batch and hands it to the
family's training step (`vaelab.models.training_step`), which binarizes it when asked (a fresh draw per batch) and
yields its losses, one phase per optimizer step; the loop takes each step, with gradient clipping and non-finite
handling. After each epoch: the training step's validation numbers, the best checkpoint by its selection number, the
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
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from vaelab.config import RunConfig, format_duration, parse_duration
from vaelab.data.catalog import describe, use_data_dir
from vaelab.data.datasets import ImageSet, binarize, iterate_batches, load_split, prepare_inputs, to_float
from vaelab.errors import VaelabError
from vaelab.evaluation.collapse import TRAINING_WARNING, training_warning
from vaelab.fitting import epoch_order, learning_rate
from vaelab.hardware import (
    autocast,
    compile_networks,
    flushes_denormals,
    machine_profile,
    resolve_device,
    use_bf16,
)
from vaelab.io import atomic_write_json, remove_stale_temp_files
from vaelab.models.registry import build_model, family
from vaelab.models.training_step import Phase, StepContext, TrainingStep, ValidationData
from vaelab.rundir import BUDGET, CONFIG, MACHINE, has_resumable_checkpoint
from vaelab.training import checkpoint
from vaelab.training.budget import Plan, Snapshot, estimated_seconds, measure_and_plan
from vaelab.training.distributed import (
    RanksFailed,
    World,
    check_batch_size,
    phase_runner,
    process_group,
    rank_message,
)
from vaelab.training.lock import run_lock

VALIDATION_SEED = 1234  # fixed binarization and draws for validation, so epochs are comparable


class NonFiniteLossError(VaelabError):
    every_rank = True  # the non-finite flag is reduced over the ranks: all of them stop at the same step


@dataclass
class TrainResult:
    run_dir: Path
    epochs_done: int
    steps: int
    selection: str  # the validation number that picked model.safetensors (the training step's; val_elbo for a VAE;
    # "epoch" when the last epoch's weights are kept)
    best_score: float  # its best value
    finished: bool  # False when stopped early by max_steps
    history: list[dict[str, Any]]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@flushes_denormals
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

    Started by torchrun (`vaelab.training.distributed`), every process calls this with the same arguments: rank 0
    prepares and writes the directory, the others follow its decision, and each trains on its share of every batch.

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
    world = World.from_environment()
    check_batch_size(world, config.train.batch_size)
    device = world.device(resolve_device(config.train.device))
    with process_group(world, device):
        try:
            if world.is_main:
                return _train_as_writer(config, run_dir, resume, progress, log, keep_existing, world, device)
            return _train_as_follower(config, run_dir, world, device)
        except Exception as error:
            if (failure := world.failure(error)) is error:
                raise
            raise failure from None


def _train_as_follower(config: RunConfig, run_dir: Path, world: World, device: torch.device) -> TrainResult:
    """Train as a rank other than 0: on rank 0's decision to resume or not, or stop with the error that stopped it."""
    decision = world.from_main(None)
    if isinstance(decision, str):
        raise RanksFailed(decision)
    return _train(config, run_dir, decision, world, device, progress=False, log=lambda message: None)


def _train_as_writer(
    config: RunConfig, run_dir: Path, resume: bool, progress: bool, log: Callable[[str], None], keep_existing: bool,
    world: World, device: torch.device,
) -> TrainResult:
    """Prepare the directory under its lock, tell the other ranks what was decided, and train."""
    told = False  # whether the other ranks know the decision
    try:
        _check_before_writing(config, run_dir, resume)
        created = not resume and not run_dir.exists()
        if not resume:
            try:
                run_dir.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                reason = error.strerror or error
                raise VaelabError(f"cannot create {run_dir} ({reason}); choose another --out") from None
        with run_lock(run_dir):
            try:
                stale = remove_stale_temp_files(run_dir)
                if stale:
                    log(f"removed {len(stale)} unfinished temp file(s) left by an interrupted write: {stale[0].name} …")
                resume = _resumes(run_dir, resume, keep_existing, log)
                if not resume:
                    # The config is the first run file, written whole: from here on `--resume` can restart the run.
                    checkpoint.write_config(run_dir, config)
                world.from_main(resume)
                told = True
                return _train(config, run_dir, resume, world, device, progress, log)
            except BaseException:
                # A new run that failed before its first checkpoint (bad data, no memory, Ctrl-C) leaves no directory.
                if created and not has_resumable_checkpoint(run_dir):
                    shutil.rmtree(run_dir, ignore_errors=True)
                raise
    except Exception as error:
        if not told:
            world.from_main(rank_message(0, error))
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


@dataclass(frozen=True)
class _Run:
    """What every part of the training loop reads and none replaces: the settings, the processes, the data, the
    training_step, the model with its optimizers, and the generators every random draw comes from."""

    config: RunConfig
    run_dir: Path
    world: World
    device: torch.device
    training_step: TrainingStep
    pool: torch.Tensor  # the training images an epoch runs over (the training step's)
    model: torch.nn.Module
    optimizers: dict[str, torch.optim.Optimizer]
    generators: dict[str, torch.Generator]
    runner: Callable[[Iterator[Phase]], Phase | None]
    train_x: torch.Tensor
    train_y: torch.Tensor
    validation: ValidationData
    selection: str  # the name stored beside the best weights
    steps_per_epoch: int
    epochs_per_round: int


class _Length(NamedTuple):
    steps_per_epoch: int
    total_steps: int  # a time budget's: once measured
    epochs_per_round: int


@dataclass
class _Loop:
    """The loop's bookkeeping beside the checkpointed state: kept out of the checkpoint, as a resume starts its
    own clocks. This process's part of the round under way is what its speed is measured on."""

    total_steps: int
    epochs: int
    plan: Plan | None
    progress: bool
    bar: Any
    say: Callable[[str], None]  # the bar's writer while it is shown, which keeps it intact
    first_step: int  # of this segment (the start or a resume)
    spent_before: float  # training seconds of the segments before this one
    segment_start: float
    round_start: float
    round_first_step: int
    round_images: int = 0
    warned_behind: bool = False  # once a run: a machine's speed wanders
    writer: Any = None  # made after the first checkpoint: a start killed earlier leaves no tensorboard folder behind

    def close(self) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.close()


def _train(
    config: RunConfig, run_dir: Path, resume: bool, world: World, device: torch.device, progress: bool,
    log: Callable[[str], None],
) -> TrainResult:
    """Every rank's training once the directory is ready (rank 0 writes the files): set up, resume, then epochs."""
    train_cfg = config.train
    seed_everything(train_cfg.seed)
    bf16 = use_bf16(train_cfg.precision, device)
    memory_format = torch.channels_last if train_cfg.channels_last else torch.contiguous_format

    train_set, val_set, train_x, train_y, validation = _load_data(config, world, device)
    # The family's training step: which images an epoch runs over, the losses of a step, validation.
    training_step = family(config.model.family).training_step_class()(config, train_set.labels)
    steps_per_epoch, total_steps, epochs_per_round = _run_length(len(training_step.pool), train_cfg)

    # Model, optimizers and the generators that make every random draw reproducible.
    model = build_model(config.model).to(device).to(memory_format=memory_format)
    if train_cfg.compile:
        compile_networks(model)
    runner = phase_runner(world, model)
    optimizers, generators = _optimizers_and_generators(training_step, model, train_cfg, world, device)
    run = _Run(config, run_dir, world, device, training_step, training_step.pool, model, optimizers, generators, runner,
               train_x, train_y, validation, training_step.selection or "epoch", steps_per_epoch, epochs_per_round)
    state: dict[str, Any] = {
        "epoch": 0, "step": 0, "batch_in_epoch": 0, "best_score": -math.inf, "history": [],
        "epoch_sums": {"images": 0}, "skipped_steps": [], "world_size": world.size,
    }
    if resume:
        state = _resumed_state(run, state, log)
    if world.is_main:
        profile = machine_profile(device, train_cfg.precision)
        log(profile.describe())
        atomic_write_json(run_dir / MACHINE, profile.to_dict())
        log(_describe_data(config, len(train_set), len(val_set), steps_per_epoch, epochs_per_round, total_steps))

    context = _step_context(run, state["step"], total_steps, bf16, memory_format)
    plan = _time_budget_plan(run, state, context, log)
    if plan is not None:
        total_steps = context.total_steps = plan.steps
    training_step.set_run_length(total_steps)
    loop = _start_loop(state, total_steps, steps_per_epoch, plan, progress, log)
    if plan is not None and resume:
        log(f"the time budget {plan.time_budget} has {format_duration(loop.spent_before)} spent; "
            f"{total_steps - state['step']:,} of its {total_steps:,} steps are left")
    finished = True
    while state["epoch"] < loop.epochs:
        tally, finished = _train_epoch(run, state, loop, context)
        if not finished:  # stopped by max_steps
            _save_last(run, state, loop, tally.read_sums())
            break
        _end_epoch(run, state, loop, tally)
    loop.close()
    return TrainResult(run_dir, state["epoch"], state["step"], run.selection, state["best_score"], finished,
                       state["history"])


def _run_length(images: int, train_cfg: Any) -> _Length:
    """On a small training set an epoch is a few steps, and a validation and a checkpoint after each would cost more
    than the training: they come after a round of whole epochs of at least MIN_ROUND_IMAGES images instead."""
    steps_per_epoch = images // train_cfg.batch_size
    if steps_per_epoch == 0:
        raise VaelabError(f"batch_size {train_cfg.batch_size} is larger than the {images} training images")
    total_steps = train_cfg.steps or steps_per_epoch * train_cfg.epochs
    epochs_per_round = math.ceil(MIN_ROUND_IMAGES / (steps_per_epoch * train_cfg.batch_size))
    return _Length(steps_per_epoch, total_steps, epochs_per_round)


def _step_context(
    run: _Run, step: int, total_steps: int, bf16: bool, memory_format: torch.memory_format
) -> StepContext:
    """What the training step is handed, so that every family steps in the run's precision and memory format
    and draws from the run's generators."""

    def modelled(intensities: torch.Tensor) -> torch.Tensor:
        """What the likelihood models of a batch: a fresh binarization for a binarized run, else the intensities."""
        if run.config.data.input_mode == "binarized":
            intensities = binarize(intensities, run.generators["binarize"])
        return intensities.contiguous(memory_format=memory_format)

    return StepContext(
        step, total_steps, run.generators, modelled, lambda batch: batch.contiguous(memory_format=memory_format),
        lambda: autocast(run.device, bf16), run.train_x, run.train_y,
    )


def _time_budget_plan(
    run: _Run, state: dict[str, Any], context: StepContext, log: Callable[[str], None]
) -> Plan | None:
    """The plan of a run with a time budget, said and written to RUN/budget.json: bought once, on this machine, and
    kept in the checkpoint, so that a resume keeps the steps it bought. None without a time budget."""
    plan = Plan.from_dict(state["plan"]) if "plan" in state else None
    if run.config.train.time_budget is not None and plan is None:
        def write_probe() -> None:
            with tempfile.TemporaryDirectory(prefix="vaelab-budget-") as probe:
                _save_last_to(run, state, Path(probe), {"images": 0})
                checkpoint.save_best(Path(probe), run.model, 1, run.selection, 0.0)

        measured = time.perf_counter()
        plan = _buy_steps(run, context, _epoch_batches(run.pool, run.config.train, 0, run.train_x.device),
                          write_probe)
        state["plan"] = plan.to_dict()
        state["train_seconds"] = time.perf_counter() - measured
    if plan is not None:
        log(plan.describe())
        if run.world.is_main:
            _write_budget(run.run_dir, plan)
    return plan


def _start_loop(
    state: dict[str, Any], total_steps: int, steps_per_epoch: int, plan: Plan | None, progress: bool,
    log: Callable[[str], None],
) -> _Loop:
    """The loop's bookkeeping at its first step: the progress bar shown, the clocks started."""
    epochs = math.ceil(total_steps / steps_per_epoch)
    bar = _progress_bar(total_steps, state["step"], enabled=progress)
    now = time.perf_counter()
    return _Loop(total_steps, epochs, plan, progress, bar, bar.write if progress else log, first_step=state["step"],
                 spent_before=state.get("train_seconds", 0.0), segment_start=now, round_start=now,
                 round_first_step=state["step"])


def _train_epoch(run: _Run, state: dict[str, Any], loop: _Loop, context: StepContext) -> tuple[_Tally, bool]:
    """The epoch's steps from where the state stands (mid-epoch after a resume), with a resumable checkpoint every
    `checkpoint_every` steps. Returns the epoch's tally, and False when max_steps stopped it."""
    epoch, train_cfg = state["epoch"], run.config.train
    run.model.train()
    batches = _epoch_batches(run.pool, train_cfg, epoch, run.train_x.device)
    batches = batches[: loop.total_steps - epoch * run.steps_per_epoch]  # the run's last epoch may be partial
    tally = _Tally(run.device, state["epoch_sums"])  # carried in the checkpoint: a resume reports the same means
    finished = True
    for global_batch in batches[state["batch_in_epoch"] :]:
        _train_step(run, state, context, tally, global_batch, loop.total_steps)
        loop.round_images += global_batch.shape[0]
        loop.bar.update(1)
        if state["step"] % LOG_EVERY == 0:
            _look(run, state, loop, tally)
            if loop.progress:
                rate = loop.round_images / (time.perf_counter() - loop.round_start)
                terms = " ".join(f"{name} {value:.1f}" for name, value in tally.last_logged().items())
                loop.bar.set_postfix_str(f"epoch {epoch + 1}/{loop.epochs} {terms} {rate:,.0f} img/s")
        if state["step"] == loop.first_step + ESTIMATE_AFTER and loop.plan is None:
            elapsed = time.perf_counter() - loop.segment_start
            loop.say(f"≈ {format_duration(_remaining_seconds(state, loop.total_steps, elapsed))} left on this "
                     f"machine ({loop.total_steps:,} steps, measured over the first {ESTIMATE_AFTER})")
        if train_cfg.max_steps is not None and state["step"] >= train_cfg.max_steps:
            finished = False
            break
        mid_epoch = state["batch_in_epoch"] < len(batches)  # the epoch's end writes its own checkpoint
        if mid_epoch and train_cfg.checkpoint_every and state["step"] % train_cfg.checkpoint_every == 0:
            _look(run, state, loop, tally)
            _save_last(run, state, loop, tally.read_sums())
    _look(run, state, loop, tally)
    return tally, finished


def _train_step(
    run: _Run, state: dict[str, Any], context: StepContext, tally: _Tally, global_batch: torch.Tensor,
    total_steps: int,
) -> None:
    """One step on this rank's share of the batch, at the schedule's learning rate. The host does not wait for it:
    its fault and logged terms stay on the device, in the tally."""
    train_cfg = run.config.train
    intensities, labels = _batch(run.train_x, run.train_y, run.world.rank_share(global_batch), run.device)
    lr = learning_rate(state["step"], total_steps, train_cfg.lr, train_cfg.min_lr, train_cfg.lr_schedule)
    _set_learning_rate(run.optimizers, lr)
    context.step = state["step"]
    phases = run.training_step.step(run.model, intensities, labels, context)
    fault, value, logged = take_step(run.runner, phases, run.optimizers, train_cfg.grad_clip, run.world)
    tally.add(state["step"], fault, value, logged, intensities.shape[0])
    state["step"] += 1
    state["batch_in_epoch"] += 1


def _set_learning_rate(optimizers: dict[str, torch.optim.Optimizer], lr: float) -> None:
    for optimizer in optimizers.values():
        for group in optimizer.param_groups:
            group["lr"] = lr


def _look(run: _Run, state: dict[str, Any], loop: _Loop, tally: _Tally) -> None:
    """The host reads the device's fault flags only here: a read waits for the device."""
    _handle_faults(tally, state, run.config.train.skip_nonfinite, run.run_dir, state["epoch"], loop.say, loop.bar)


def _end_epoch(run: _Run, state: dict[str, Any], loop: _Loop, tally: _Tally) -> None:
    """Within a round the epoch's sums carry on (a checkpoint keeps them when one is due); the round's last epoch
    ends the round."""
    state["epoch"] += 1
    state["batch_in_epoch"] = 0
    if state["epoch"] % run.epochs_per_round and state["epoch"] < loop.epochs:  # the round goes on
        state["epoch_sums"] = tally.read_sums()
        checkpoint_every = run.config.train.checkpoint_every
        if checkpoint_every and state["step"] % checkpoint_every == 0:
            _save_last(run, state, loop, state["epoch_sums"])
        return
    _end_round(run, state, loop, tally)


def _end_round(run: _Run, state: dict[str, Any], loop: _Loop, tally: _Tally) -> None:
    """Validate, keep the best weights and the resumable checkpoint, then write and say the round's metrics row."""
    training_step, world = run.training_step, run.world
    train_seconds = time.perf_counter() - loop.round_start
    val = validate(training_step, run.model, run.validation, world)
    sums = _summed(world.gather(tally.read_sums()))
    row = _round_row(run, state, loop, val, sums, train_seconds)
    collapse = training_warning(run.config, row, state["history"], loop.total_steps,
                                training_step.scaled_steps(run.config.model.objective.kl_warmup_steps))
    if collapse is not None:  # kept in metrics.jsonl: later commands, and a resume, see that it was said
        row[TRAINING_WARNING] = collapse
        loop.say(collapse)
    state["history"].append(row)
    score = state["epoch"] if training_step.selection is None else val[training_step.selection]
    if score > state["best_score"]:
        state["best_score"] = score
        if world.is_main:
            checkpoint.save_best(run.run_dir, run.model, state["epoch"], run.selection, score)
    state["epoch_sums"] = {"images": 0}
    _save_last(run, state, loop, state["epoch_sums"])
    if loop.plan is not None and state["step"] < loop.total_steps and not loop.warned_behind:
        step_seconds = train_seconds / max(state["step"] - loop.round_first_step, 1)
        loop.warned_behind = _warn_if_behind(loop.plan, state, step_seconds, loop.say)
    if world.is_main:
        _write_round_files(run, state, loop, row)
    loop.say(
        f"epoch {state['epoch']:3d}  train loss {row.get('train_loss', math.nan):.2f}  {training_step.summary(row)}  "
        f"{row['images_per_s']:,.0f} img/s"
    )
    loop.round_start, loop.round_images, loop.round_first_step = time.perf_counter(), 0, state["step"]


def _write_round_files(run: _Run, state: dict[str, Any], loop: _Loop, row: dict[str, Any]) -> None:
    """Rank 0's records of a round: metrics.jsonl, what the time budget spent once its steps are done, and the
    row's numbers in TensorBoard."""
    checkpoint.write_metrics(run.run_dir, state["history"])
    if loop.plan is not None and state["step"] >= loop.total_steps:
        _write_budget(run.run_dir, loop.plan, spent_seconds=round(state["train_seconds"], 2))
    if run.config.train.tensorboard:
        if loop.writer is None:
            loop.writer = _summary_writer_class()(str(run.run_dir / "tensorboard"))
        for key, value in row.items():
            if isinstance(value, float):
                loop.writer.add_scalar(key, value, state["epoch"])


def _save_last(run: _Run, state: dict[str, Any], loop: _Loop, epoch_sums: dict[str, float]) -> None:
    """The resumable checkpoint, with the training seconds spent so far across resumes (what a time budget has
    spent)."""
    state["train_seconds"] = loop.spent_before + time.perf_counter() - loop.segment_start
    _save_last_to(run, state, run.run_dir, epoch_sums)


def _save_last_to(run: _Run, state: dict[str, Any], folder: Path, epoch_sums: dict[str, float]) -> None:
    """The resumable checkpoint, with every rank's generators and running sums (every rank calls it; rank 0
    writes)."""
    world = run.world
    rng_states = world.gather({checkpoint.rng_name(name, world.rank): generator.get_state()
                               for name, generator in run.generators.items()})
    sums = world.gather(epoch_sums)
    if world.is_main:
        stored = {**state, "epoch_sums": sums[0], **({"other_rank_sums": sums[1:]} if world.size > 1 else {})}
        checkpoint.save_last(folder, run.model, run.optimizers, {k: v for part in rng_states for k, v in part.items()},
                             stored)


def _load_data(
    config: RunConfig, world: World, device: torch.device
) -> tuple[ImageSet, ImageSet, torch.Tensor, torch.Tensor, ValidationData]:
    """The training and validation splits; the training images as one uint8 tensor on the device (made float a
    batch at a time), and this rank's part of the validation split prepared once. Every rank reads its own copy
    (each machine has its own files); one rank's bad file stops them all with its error."""
    data = config.data
    failure = None
    try:
        use_data_dir(data.dataset, data.data_dir)
        train_set = load_split(data.dataset, "train", data.val_size, data.split_seed).subset(data.train_limit)
        val_set = load_split(data.dataset, "val", data.val_size, data.split_seed).subset(data.val_limit)
    except VaelabError as error:
        if world.size == 1:
            raise
        failure = str(error)
    world.agree(failure)
    train_x, train_y = _training_tensors(train_set.images, train_set.labels, device)
    # Each rank validates its own part of the validation split; `validate` combines the parts.
    val_part = torch.tensor_split(torch.arange(len(val_set.labels)), world.size)[world.rank]
    validation = ValidationData(
        inputs=prepare_inputs(val_set.images, data.input_mode, VALIDATION_SEED)[val_part].to(device),
        intensities=to_float(val_set.images[val_part]).to(device),
        labels=val_set.labels[val_part].to(device),
        seed=VALIDATION_SEED,
    )
    return train_set, val_set, train_x, train_y, validation


def _optimizers_and_generators(
    training_step: TrainingStep, model: torch.nn.Module, train_cfg: Any, world: World, device: torch.device
) -> tuple[dict[str, torch.optim.Optimizer], dict[str, torch.Generator]]:
    """One Adam per parameter group of the training step, and the seeded generators every random draw comes from (each
    rank its own seeds)."""
    # The fused kernel updates all parameters in one pass: ~8× faster than the per-tensor default on the CPU. It
    # also skips a step on the device when told to (`found_inf`), which the non-finite handling relies on.
    optimizers = {
        name: torch.optim.Adam(parameters, lr=train_cfg.lr, fused=True, **training_step.optimizer_options(name))
        for name, parameters in training_step.parameter_groups(model).items()
    }
    generators = {"binarize": torch.Generator(device).manual_seed(world.rank_seed(train_cfg.seed + 1))}
    for name, spec in training_step.generators().items():
        generators[name] = torch.Generator("cpu" if spec.cpu else device).manual_seed(
            world.rank_seed(train_cfg.seed + spec.offset))
    return optimizers, generators


def _resumed_state(run: _Run, state: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    """The trainer's state from the run's resumable checkpoint, with the weights, optimizer moments and generator
    states put back into the run's model, optimizers and generators."""
    run_dir, config, world = run.run_dir, run.config, run.world
    stored = {checkpoint.rng_name(name, world.rank): generator for name, generator in run.generators.items()}
    state = {**state, **checkpoint.load_last(run_dir, run.model, run.optimizers, stored, log=log,
                                             optional_generators=world.rank > 0)}
    if "best_val_elbo" in state:  # written before the training step chose the selection number
        state["best_score"] = state.pop("best_val_elbo")
    state["epoch_sums"] = _rank_sums(state, world)
    if state.get("world_size", 1) != world.size:
        log(f"warning: {run_dir} was trained by {state.get('world_size', 1)} process(es) and resumes with "
            f"{world.size}: the batches are the same, the random draws of each rank start anew")
        state["world_size"] = world.size
    log(f"resuming {run_dir} at epoch {state['epoch'] + 1}, step {state['step']}")
    if world.is_main:
        # A kill between the checkpoint and the metrics file leaves metrics.jsonl one epoch behind: rewrite it.
        checkpoint.write_metrics(run_dir, state["history"])
        checkpoint.write_trainer_state(run_dir, state)
        checkpoint.write_config(run_dir, config)  # with the new stopping point (a new run wrote its own already)
    return state


def _round_row(
    run: _Run, state: dict[str, Any], loop: _Loop, val: dict[str, Any], sums: dict[str, float], train_seconds: float,
) -> dict[str, Any]:
    """The metrics row of the round that just ended: the training means, the validation numbers, the schedules'
    values at its last step, the batches skipped in it and its speed."""
    train_cfg, epochs_per_round = run.config.train, run.epochs_per_round
    last_step = state["step"] - 1  # the schedules' values at the epoch's last step, also after a resume
    images = max(sums["images"], 1)
    round_first = (state["epoch"] - 1) // epochs_per_round * epochs_per_round * run.steps_per_epoch
    return {
        "epoch": state["epoch"],
        "step": state["step"],
        **{f"train_{name}": value / images for name, value in sums.items() if name != "images"},
        **val,
        **run.training_step.schedule_values(last_step),
        "lr": learning_rate(last_step, loop.total_steps, train_cfg.lr, train_cfg.min_lr, train_cfg.lr_schedule),
        "skipped_batches": sum(round_first <= s < state["step"] for s in state["skipped_steps"]),
        "images_per_s": loop.round_images / train_seconds if train_seconds > 0 else 0.0,
        "train_seconds": train_seconds,
        "wall_time": time.time(),
    }


MIN_ROUND_IMAGES = 500  # images trained on between two validations at the least: see `epochs_per_round`
LOG_EVERY = 20  # steps between the host's reads of the device's flags (and the progress bar's numbers)
ESTIMATE_AFTER = 20  # steps measured before a run without a time budget says how long it will take


def _epoch_batches(pool: torch.Tensor, train_cfg: Any, epoch: int, device: torch.device) -> torch.Tensor:
    """Epoch `epoch`'s batches of image indices, one per row. The order depends only on (seed, epoch): a resumed
    run sees the same batches. They go where the images are at once; each step takes its row (this rank's share)."""
    order = epoch_order(train_cfg.seed, epoch)
    return torch.stack([pool[i] for i in iterate_batches(len(pool), train_cfg.batch_size, order,
                                                         drop_last=True)]).to(device)


def _describe_data(config: RunConfig, train_images: int, val_images: int, steps_per_epoch: int,
                   epochs_per_round: int, total_steps: int) -> str:
    """One line on what the run trains on and how: the images of each split, the classes, the shape, the batches
    and the steps (a time budget's steps are bought, and said, after this line)."""
    data, train_cfg = config.data, config.train
    description = describe(data.dataset)
    test_images = len(load_split(data.dataset, "test", data.val_size, data.split_seed))
    names = description.class_names or ()
    classes = (f"{len(names)} classes ({', '.join(names[:5])}{' …' if len(names) > 5 else ''})" if names
               else "no classes")
    if train_cfg.time_budget is not None:
        length = f"the steps a time budget of {train_cfg.time_budget} buys"
    else:
        length = f"{total_steps:,} steps ({total_steps / steps_per_epoch:.3g} epochs)"
    rounds = f", validated every {epochs_per_round} epochs" if epochs_per_round > 1 else ""
    return (f"data: {train_images:,} training, {val_images:,} validation and {test_images:,} test images of "
            f"{data.dataset}; {classes}; {'×'.join(map(str, description.shape))}; batches of {train_cfg.batch_size}, "
            f"{steps_per_epoch:,} steps an epoch; {length}{rounds}")


def _write_budget(run_dir: Path, plan: Plan, **finished: float) -> None:
    """RUN/budget.json: what the time budget bought, how to repeat it, and (once finished) what it spent."""
    atomic_write_json(run_dir / BUDGET, {**plan.to_dict(), "reproduce": f"--steps {plan.steps}", **finished})


def _warn_if_behind(plan: Plan, state: dict[str, Any], step_seconds: float, say: Callable[[str], None]) -> bool:
    """Say so (and return True) when this machine now runs so much slower than it measured that the run will
    overrun its budget by more than 20%. Its steps stay as bought, so that `--steps N` still repeats it."""
    left = plan.steps - state["step"]
    projected = state["train_seconds"] + estimated_seconds(left, plan.steps_per_round, 0, step_seconds,
                                                           plan.validation_seconds, plan.checkpoint_seconds)
    if projected <= 1.2 * plan.budget_seconds:
        return False
    say(f"warning: steps now take {step_seconds * 1000:.0f} ms against {plan.step_seconds * 1000:.0f} measured "
        f"(a busier or slower machine); the run will take ≈ {format_duration(projected)} of its "
        f"{plan.time_budget} budget")
    return True


def _remaining_seconds(state: dict[str, Any], total_steps: int, elapsed: float) -> float:
    """The rest of a run at the pace of its first steps (each epoch's validation not counted)."""
    return elapsed / ESTIMATE_AFTER * (total_steps - state["step"])


def _buy_steps(run: _Run, context: StepContext, batches: torch.Tensor, write_probe: Callable[[], None]) -> Plan:
    """Measure this machine on real steps, buy the steps the time budget affords, then undo the measuring steps.
    Every rank steps together (rank 0 says when to stop) and rank 0's plan holds for all."""
    train_cfg, training_step, world = run.config.train, run.training_step, run.world
    model, optimizers = run.model, run.optimizers
    train_x, train_y = context.train_images, context.train_labels
    device = next(model.parameters()).device

    def take_one(index: int) -> None:
        intensities, labels = _batch(train_x, train_y, world.rank_share(batches[index % len(batches)]), device)
        _set_learning_rate(optimizers, train_cfg.lr)
        context.step = index
        fault, _, _ = take_step(run.runner, training_step.step(model, intensities, labels, context), optimizers,
                                train_cfg.grad_clip, world)
        fault.item()  # waits for the device: the step is over

    snapshot = Snapshot(model, optimizers, run.generators)
    try:
        plan: Plan | str = measure_and_plan(
            train_cfg.time_budget, parse_duration(train_cfg.time_budget), run.steps_per_epoch,
            train_cfg.checkpoint_every, take_one, lambda: validate(training_step, model, run.validation, world),
            write_probe, agree=world.from_main, epochs_per_round=run.epochs_per_round)
    except VaelabError as error:
        plan = str(error)
    finally:
        snapshot.restore()
        model.train()
    plan = world.from_main(plan)
    if isinstance(plan, str):
        raise VaelabError(plan)
    return plan


LOSS_FAULT, GRADIENT_FAULT = 1.0, 2.0


def _training_tensors(
    images: torch.Tensor, labels: torch.Tensor, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """The training images and labels on the device when they fit in half its free memory (batches are then taken
    by index there, with no host copy per step); otherwise in pinned host memory, copied per batch without
    blocking."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if images.numel() * images.element_size() > free // 2:
            return images.pin_memory(), labels.pin_memory()
    return images.to(device), labels.to(device)


def _batch(
    train_x: torch.Tensor, train_y: torch.Tensor, index: torch.Tensor, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch's float images and labels, on the device."""
    if train_x.device == device:
        return to_float(train_x[index]), train_y[index]
    images = train_x[index].pin_memory().to(device, non_blocking=True)
    return to_float(images), train_y[index].pin_memory().to(device, non_blocking=True)


def take_step(
    runner: Callable[[Iterator[Phase]], Phase | None],
    phases: Iterator[Phase],
    optimizers: dict[str, torch.optim.Optimizer],
    grad_clip: float,
    world: World,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Every phase of one training step, each an optimizer step, without the host waiting on the device.

    A phase whose loss (on any rank) or gradient norm is not finite is not taken, nor is any phase after it in the
    step: the fused Adam step reads that flag on the device (`found_inf`) and leaves its parameters and moments as
    they were. Returns the step's fault (0, `LOSS_FAULT` or `GRADIENT_FAULT`: the first bad phase's), the
    non-finite value, and the batch means of the terms the phases log, all on the device."""
    fault = value = None
    logged: dict[str, torch.Tensor] = {}
    while (phase := runner(phases)) is not None:
        optimizer = optimizers[phase.optimizer]
        optimizer.zero_grad(set_to_none=True)
        loss = phase.loss.detach().float()
        # Which of nan, +inf, −inf any rank's loss is: every rank then skips the phase and names the same value.
        kinds = world.any(torch.stack([loss.isnan(), loss == math.inf, loss == -math.inf]).float())
        loss_value = torch.where(kinds[0] > 0, math.nan, torch.where(kinds[1] > 0, math.inf, -math.inf))
        phase.loss.backward()  # DDP averages the gradients here: the gradient norm is the same on every rank
        parameters = [p for group in optimizer.param_groups for p in group["params"]]
        grad_norm = torch.nn.utils.clip_grad_norm_(parameters, grad_clip).float()
        code = torch.where(kinds.amax() > 0, LOSS_FAULT, torch.where(grad_norm.isfinite(), 0.0, GRADIENT_FAULT))
        bad_value = torch.where(code == LOSS_FAULT, loss_value, grad_norm)
        if fault is None:
            fault, value = code, bad_value
        else:  # the first bad phase names the fault
            value = torch.where(fault > 0, value, bad_value)
            fault = torch.where(fault > 0, fault, code)
        optimizer.found_inf = (fault > 0).float()
        optimizer.step()
        del optimizer.found_inf
        logged.update({name: term.detach().float().mean() for name, term in phase.logged.items()})
    if fault is None or value is None:
        raise RuntimeError("a training step yielded no phase")
    return fault, value, logged


class _Tally:
    """An epoch's running sums of the logged terms (weighted by images, good steps only) and its steps' faults,
    kept on the device in float64; `starting` holds the sums carried in from a checkpoint."""

    def __init__(self, device: torch.device, starting: dict[str, float]) -> None:
        self.sums = {name: torch.tensor(float(value), dtype=torch.float64, device=device)
                     for name, value in starting.items()}
        self.faults: list[tuple[int, torch.Tensor, torch.Tensor]] = []
        self.logged: dict[str, torch.Tensor] = {}

    def add(self, step: int, fault: torch.Tensor, value: torch.Tensor, logged: dict[str, torch.Tensor],
            images: int) -> None:
        good = fault == 0
        for name, mean in {**logged, "images": torch.ones((), device=fault.device)}.items():
            weighted = torch.where(good, mean.double() * images, 0.0)  # a bad step's NaN stays out of the sums
            self.sums[name] = self.sums[name] + weighted if name in self.sums else weighted
        self.faults.append((step, fault, value))
        self.logged = logged

    def read_faults(self) -> list[tuple[int, float, float]]:
        """The bad steps since the last read: (step, fault, value)."""
        if not self.faults:
            return []
        steps = [step for step, _, _ in self.faults]
        rows = torch.stack([torch.stack([fault, value]) for _, fault, value in self.faults]).tolist()
        self.faults = []
        return [(step, code, value) for step, (code, value) in zip(steps, rows, strict=True) if code]

    def read_sums(self) -> dict[str, float]:
        return {name: value.item() for name, value in self.sums.items()}

    def last_logged(self) -> dict[str, float]:
        return {name: value.item() for name, value in self.logged.items()}


def _handle_faults(
    tally: _Tally, state: dict[str, Any], limit: int, run_dir: Path, epoch: int, say: Callable[[str], None], bar: Any
) -> None:
    """Count the bad steps since the last look. Each was skipped: its weights stay the last good ones, and it still
    counts as a step, keeping the data order and schedules those of an undisturbed run. One beyond `limit` stops
    the run."""
    for step, code, value in tally.read_faults():
        bad = f"{'loss' if code == LOSS_FAULT else 'gradient norm'} became {value}"
        if len(state["skipped_steps"]) >= limit:
            bar.close()
            raise NonFiniteLossError(
                f"{bad} at step {step} (epoch {epoch + 1}); stopped, the last good checkpoint in {run_dir} is intact "
                f"— lower --lr or --grad-clip, use --precision fp32, or allow a few bad batches with --skip-nonfinite N"
            )
        say(f"warning: {bad} at step {step}; batch skipped ({len(state['skipped_steps']) + 1} of at most {limit})")
        state["skipped_steps"].append(step)


def _summed(parts: list[dict[str, float]]) -> dict[str, float]:
    """Every rank's sums added up, name by name."""
    total: dict[str, float] = {}
    for part in parts:
        for name, value in part.items():
            total[name] = total.get(name, 0.0) + value
    return total


def _rank_sums(state: dict[str, Any], world: World) -> dict[str, float]:
    """This rank's running sums from a checkpoint's: rank r ≥ 1 its own (none for a rank the run did not have);
    rank 0 its own plus those of ranks the resumed run lacks."""
    others = state.pop("other_rank_sums", [])
    if world.rank > 0:
        return others[world.rank - 1] if world.rank - 1 < len(others) else {"images": 0}
    return _summed([state["epoch_sums"], *others[world.size - 1 :]])


def validate(
    training_step: TrainingStep, model: torch.nn.Module, data: ValidationData, world: World | None = None
) -> dict[str, Any]:
    """The training step's validation numbers, in eval mode without gradients (fp32: no autocast). Across processes,
    each rank validates its part, and the parts' numbers (means over their images) are combined weighted by size."""
    model.eval()
    with torch.no_grad():
        result = training_step.validate(model, data)
    model.train()
    if world is None or world.size == 1:
        return result
    parts = world.gather((data.intensities.shape[0], result))
    total = sum(count for count, _ in parts)

    def mean(values: list[Any]) -> Any:
        if isinstance(values[0], list):
            return [mean(list(column)) for column in zip(*values, strict=True)]
        return sum(count * value for (count, _), value in zip(parts, values, strict=True)) / total

    return {name: mean([part[name] for _, part in parts]) for name in result}


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
