"""The training loop, readable top to bottom.

Data lives in memory as one tensor (on the GPU when there is one); each step slices a batch, binarizes it
when asked (a fresh draw per batch), and takes one Adam step on recon + β·KL. After each epoch: validation
ELBO, best checkpoint, resumable last checkpoint, metrics line — all written atomically. A resumable checkpoint
is also written every `checkpoint_every` steps, so a kill costs at most that many steps; everything a step
depends on (batch order, RNG states, optimizer moments, the epoch's running sums) is in it, so a resumed run
ends bit-identical to an uninterrupted one on the CPU.
"""

from __future__ import annotations

import math
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaelab.config import CLASSIFIER_KINDS, RunConfig
from vaelab.data import (
    binarize,
    iterate_batches,
    load_split,
    prepare_inputs,
    random_flip,
    random_rotation,
    random_translation,
    to_float,
)
from vaelab.errors import VaelabError
from vaelab.io import remove_stale_temp_files
from vaelab.models import VAE, build_model, is_classifier
from vaelab.training import checkpoint
from vaelab.training.hardware import autocast, resolve_device, use_bf16
from vaelab.training.lock import run_lock
from vaelab.training.schedules import kl_weight, kl_with_free_bits, learning_rate
from vaelab.training.semi_supervised import LabelledSet, labelled_loss, labelled_set, unlabelled_loss

VALIDATION_SEED = 1234  # fixed binarization and noise for validation, so epochs are comparable


class NonFiniteLossError(VaelabError):
    pass


@dataclass
class TrainResult:
    run_dir: Path
    epochs_done: int
    steps: int
    best_val_elbo: float
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
) -> TrainResult:
    """Train (or resume) `run_dir` as its only writer."""
    run_dir = Path(run_dir)
    created = not resume and not run_dir.exists()
    if not resume:
        run_dir.mkdir(parents=True, exist_ok=True)
    try:
        with run_lock(run_dir):
            stale = remove_stale_temp_files(run_dir)
            if stale:
                log(f"removed {len(stale)} unfinished temp file(s) left by an interrupted write: {stale[0].name} …")
            return _train(config, run_dir, resume, progress, log)
    except BaseException:
        # A new run that failed before writing its config (bad data, no memory) leaves no half-made directory.
        if created and not (run_dir / checkpoint.CONFIG).exists():
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def _train(
    config: RunConfig, run_dir: Path, resume: bool, progress: bool, log: Callable[[str], None]
) -> TrainResult:
    data, train_cfg = config.data, config.train
    seed_everything(train_cfg.seed)
    device = resolve_device(train_cfg.device)
    bf16 = use_bf16(train_cfg.precision, device)
    memory_format = torch.channels_last if train_cfg.channels_last else torch.contiguous_format

    # Data: whole splits as tensors on the device.
    train_set = load_split(data.dataset, "train", data.val_size, data.split_seed).subset(data.train_limit)
    val_set = load_split(data.dataset, "val", data.val_size, data.split_seed).subset(data.val_limit)
    train_x = to_float(train_set.images).to(device)
    train_y = train_set.labels.to(device)  # only a conditional model reads them
    val_x = prepare_inputs(val_set.images, data.input_mode, VALIDATION_SEED).to(device)
    val_intensities = to_float(val_set.images).to(device)  # what a classifier kind's q(y|x) reads
    val_y = val_set.labels.to(device)
    # A classifier kind keeps all labels or a balanced subset; with a subset, epochs run over the unlabelled rest
    # and every step also draws a labelled batch. Every other kind: epochs over all images, as always.
    semi = labelled_set(config, train_set.labels) if config.model.kind in CLASSIFIER_KINDS else None
    pool = semi.unlabelled if semi is not None and not semi.all_labelled else torch.arange(len(train_set))
    steps_per_epoch = len(pool) // train_cfg.batch_size
    if steps_per_epoch == 0:
        raise VaelabError(f"batch_size {train_cfg.batch_size} is larger than the {len(pool)} training images")
    total_steps = steps_per_epoch * train_cfg.epochs

    # Model, optimizer and the generators that make every random draw reproducible.
    model = build_model(config.model).to(device).to(memory_format=memory_format)
    # The fused kernel updates all parameters in one pass: ~8× faster than the per-tensor default on the CPU.
    optimizer = torch.optim.Adam(model.parameters(), lr=train_cfg.lr, fused=True)
    generators = {
        "binarize": torch.Generator(device).manual_seed(train_cfg.seed + 1),
        "noise": torch.Generator(device).manual_seed(train_cfg.seed + 2),
    }
    if semi is not None and not semi.all_labelled:
        generators["labelled"] = torch.Generator().manual_seed(train_cfg.seed + 3)  # which labelled images, each step
    if train_cfg.head_shift or train_cfg.head_flip or train_cfg.head_rotate:
        generators["head_augment"] = torch.Generator().manual_seed(train_cfg.seed + 4)  # the classifier's changes
    state: dict[str, Any] = {
        "epoch": 0, "step": 0, "batch_in_epoch": 0, "best_val_elbo": -math.inf, "history": [],
        "epoch_sums": _zero_sums(), "skipped_steps": [],
    }
    if resume:
        state = {**state, **checkpoint.load_last(run_dir, model, optimizer, generators, log=log)}
        log(f"resuming {run_dir} at epoch {state['epoch'] + 1}, step {state['step']}")
        # A kill between the checkpoint and the metrics file leaves metrics.jsonl one epoch behind: rewrite it.
        checkpoint.write_metrics(run_dir, state["history"])
        checkpoint.write_trainer_state(run_dir, state)
    checkpoint.write_config(run_dir, config)
    writer = _tensorboard_writer(run_dir) if train_cfg.tensorboard else None

    bar = _progress_bar(total_steps, state["step"], enabled=progress)
    say = bar.write if progress else log  # keep the bar intact while it is shown
    finished = True
    while state["epoch"] < train_cfg.epochs:
        epoch = state["epoch"]
        model.train()
        # The epoch's order depends only on (seed, epoch): a resumed run sees the same batches.
        order_gen = torch.Generator().manual_seed(train_cfg.seed * 100_003 + epoch)
        batches = [pool[i] for i in iterate_batches(len(pool), train_cfg.batch_size, order_gen, drop_last=True)]
        sums = state["epoch_sums"]  # carried in the checkpoint: a mid-epoch resume reports the same epoch means
        seen_here, epoch_start = 0, time.perf_counter()
        for index in batches[state["batch_in_epoch"] :]:
            intensities, labels = train_x[index.to(device)], train_y[index.to(device)]
            x = modelled_batch(intensities, config, generators, memory_format)
            lr = learning_rate(state["step"], total_steps, train_cfg.lr, train_cfg.min_lr, train_cfg.lr_schedule)
            for group in optimizer.param_groups:
                group["lr"] = lr
            beta = kl_weight(state["step"], train_cfg.beta, train_cfg.kl_warmup_steps)

            noise = torch.randn(
                x.shape[0], config.model.latent_dim, generator=generators["noise"], device=device
            )
            if semi is None:
                with autocast(device, bf16):
                    terms = model.loss_terms(x, noise, labels)
                loss = (terms["recon"] + beta * kl_with_free_bits(terms["kl_per_dim"], train_cfg.free_bits)).mean()
            else:
                loss, terms = _classifier_loss(
                    model, semi, x, intensities, labels, noise, beta, train_x, train_y, generators, config,
                    memory_format, bf16,
                )
            optimizer.zero_grad(set_to_none=True)
            bad = None if torch.isfinite(loss) else f"loss became {loss.item()}"
            if bad is None:
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.grad_clip)
                bad = None if torch.isfinite(grad_norm) else f"gradient norm became {grad_norm.item()}"
            if bad is not None:
                # The step is not taken, so the weights stay the last good ones; a skipped batch still counts as
                # a step, keeping the data order and schedules those of an undisturbed run.
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
                optimizer.step()
                recon, kl = terms["recon"].mean().item(), terms["kl"].mean().item()
                sums["loss"] += loss.item() * x.shape[0]
                sums["recon"] += recon * x.shape[0]
                sums["kl"] += kl * x.shape[0]
                sums["images"] += x.shape[0]

            state["step"] += 1
            state["batch_in_epoch"] += 1
            seen_here += x.shape[0]
            bar.update(1)
            if state["step"] % 20 == 0 and bad is None:
                rate = seen_here / (time.perf_counter() - epoch_start)
                bar.set_postfix_str(
                    f"epoch {epoch + 1}/{train_cfg.epochs} loss {loss.item():.1f} "
                    f"ELBO {-(recon + kl):.1f} KL {kl:.1f} {rate:,.0f} img/s"
                )
            if train_cfg.max_steps is not None and state["step"] >= train_cfg.max_steps:
                finished = False
                break
            mid_epoch = state["batch_in_epoch"] < len(batches)  # the epoch's end writes its own checkpoint
            if mid_epoch and train_cfg.checkpoint_every and state["step"] % train_cfg.checkpoint_every == 0:
                checkpoint.save_last(run_dir, model, optimizer, generators, state)
        train_seconds = time.perf_counter() - epoch_start
        if not finished:
            checkpoint.save_last(run_dir, model, optimizer, generators, state)
            break

        val = validate(model, val_x, val_y, config, device, val_intensities)
        last_step = state["step"] - 1  # the schedules' values at the epoch's last step, also after a resume
        images = max(sums["images"], 1)
        row = {
            "epoch": epoch + 1,
            "step": state["step"],
            "train_loss": sums["loss"] / images,
            "train_recon": sums["recon"] / images,
            "train_kl": sums["kl"] / images,
            **val,
            "beta": kl_weight(last_step, train_cfg.beta, train_cfg.kl_warmup_steps),
            "lr": learning_rate(last_step, total_steps, train_cfg.lr, train_cfg.min_lr, train_cfg.lr_schedule),
            "skipped_batches": sum(epoch * steps_per_epoch <= s < state["step"] for s in state["skipped_steps"]),
            "images_per_s": seen_here / train_seconds if train_seconds > 0 else 0.0,
            "train_seconds": train_seconds,
            "wall_time": time.time(),
        }
        state["history"].append(row)
        if val["val_elbo"] > state["best_val_elbo"]:
            state["best_val_elbo"] = val["val_elbo"]
            checkpoint.save_best(run_dir, model, epoch + 1, val["val_elbo"])
        state["epoch"] += 1
        state["batch_in_epoch"] = 0
        state["epoch_sums"] = _zero_sums()
        checkpoint.save_last(run_dir, model, optimizer, generators, state)
        checkpoint.write_metrics(run_dir, state["history"])
        if writer is not None:
            for key, value in row.items():
                if isinstance(value, float):
                    writer.add_scalar(key, value, epoch + 1)
        say(
            f"epoch {epoch + 1:3d}  train loss {row['train_loss']:.2f}  val ELBO {val['val_elbo']:.2f}  "
            f"val KL {val['val_kl']:.2f}  {row['images_per_s']:,.0f} img/s"
            + (f"  val accuracy {val['val_accuracy']:.2%}" if "val_accuracy" in val else "")
        )
    bar.close()
    if writer is not None:
        writer.close()
    return TrainResult(run_dir, state["epoch"], state["step"], state["best_val_elbo"], finished, state["history"])


def _zero_sums() -> dict[str, float]:
    return {"loss": 0.0, "recon": 0.0, "kl": 0.0, "images": 0}


def modelled_batch(
    intensities: torch.Tensor,
    config: RunConfig,
    generators: dict[str, torch.Generator],
    memory_format: torch.memory_format,
) -> torch.Tensor:
    """What the ELBO models of a batch: a fresh binarization of it for a binarized run, else the intensities."""
    x = intensities
    if config.data.input_mode == "binarized":
        x = binarize(intensities, generators["binarize"])
    return x.contiguous(memory_format=memory_format)


def _classifier_loss(
    model: VAE,
    semi: LabelledSet,
    x: torch.Tensor,
    intensities: torch.Tensor,
    labels: torch.Tensor,
    noise: torch.Tensor,
    beta: float,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    generators: dict[str, torch.Generator],
    config: RunConfig,
    memory_format: torch.memory_format,
    bf16: bool,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """A classifier kind's step loss: the labelled objective on a labelled batch, or the unlabelled one on `x`
    (whose labels are never read) plus the labelled one on a batch drawn from the kept labels. `x` is what the
    ELBO models (a binarization, for binarized runs), `intensities` the batch before binarizing."""
    free_bits, device, train_cfg = config.train.free_bits, x.device, config.train
    binarized = config.data.input_mode == "binarized"

    def classified(images: torch.Tensor) -> torch.Tensor | None:
        """What the cross-entropy reads when it is not the ELBO's batch itself: the intensities (q(y|x) never reads
        a random binarization), mirrored (`head_flip`), turned (`head_rotate`) and moved (`head_shift`) when asked."""
        changes = generators.get("head_augment")  # present when any change is asked for
        if not binarized and changes is None:
            return None
        if train_cfg.head_flip:
            images = random_flip(images, changes)
        images = random_rotation(images, train_cfg.head_rotate, changes)
        images = random_translation(images, train_cfg.head_shift, changes)
        return images.contiguous(memory_format=memory_format)

    if semi.all_labelled:
        with autocast(device, bf16):
            per_image, terms = labelled_loss(model, x, labels, noise, beta, free_bits, semi.weight,
                                             classified(intensities))
        return per_image.mean(), terms
    count = min(train_cfg.batch_size, semi.labelled.numel())
    index = semi.labelled[torch.randperm(semi.labelled.numel(), generator=generators["labelled"])[:count]].to(device)
    labelled_intensities = train_x[index]
    labelled_x = modelled_batch(labelled_intensities, config, generators, memory_format)
    labelled_noise = torch.randn(count, config.model.latent_dim, generator=generators["noise"], device=device)
    unlabelled_classified = intensities.contiguous(memory_format=memory_format) if binarized else None
    with autocast(device, bf16):
        per_image, terms = unlabelled_loss(model, x, noise, beta, free_bits, unlabelled_classified)
        labelled_per_image, _ = labelled_loss(model, labelled_x, train_y[index], labelled_noise, beta, free_bits,
                                              semi.weight, classified(labelled_intensities))
    return per_image.mean() + labelled_per_image.mean(), terms


@torch.no_grad()
def validate(
    model: VAE,
    val_x: torch.Tensor,
    val_y: torch.Tensor,
    config: RunConfig,
    device: torch.device,
    val_intensities: torch.Tensor,
) -> dict[str, Any]:
    """Validation ELBO in fp32 with fixed noise: one reparameterised sample per image, analytic KL; for a
    classifier kind also the accuracy of q(y|x) on `val_intensities` (the images before binarizing)."""
    model.eval()
    generator = torch.Generator(device).manual_seed(VALIDATION_SEED)
    recon_sum, kl_dims_sum, correct = 0.0, torch.zeros(config.model.latent_dim, device=device), 0
    for index in iterate_batches(val_x.shape[0], 1000):
        index = index.to(device)
        x, y = val_x[index], val_y[index]
        noise = torch.randn(x.shape[0], config.model.latent_dim, generator=generator, device=device)
        terms = model.loss_terms(x, noise, y)
        recon_sum += terms["recon"].sum().item()
        kl_dims_sum += terms["kl_per_dim"].sum(0)
        if is_classifier(model):
            correct += (model.classify(val_intensities[index]).argmax(1) == y).sum().item()
    n = val_x.shape[0]
    kl_per_dim = (kl_dims_sum / n).tolist()
    recon, kl = recon_sum / n, sum(kl_per_dim)
    model.train()
    result = {
        "val_loss": recon + config.train.beta * kl,
        "val_recon": recon,
        "val_kl": kl,
        "val_elbo": -(recon + kl),
        "val_kl_per_dim": kl_per_dim,
    }
    if is_classifier(model):
        result["val_accuracy"] = correct / n
    return result


def _progress_bar(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, unit="step", dynamic_ncols=True, smoothing=0.05)


def _tensorboard_writer(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise VaelabError("--tensorboard needs the tensorboard package; run `pip install tensorboard`") from None
    return SummaryWriter(str(run_dir / "tensorboard"))
