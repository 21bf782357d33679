"""The training loop, readable top to bottom.

Data lives in memory as one tensor (on the GPU when there is one); each step slices a batch, binarizes it
when asked (a fresh draw per batch), and takes one Adam step on recon + β·KL. After each epoch: validation
ELBO, best checkpoint, resumable last checkpoint, metrics line — all written atomically.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaelab.config import CLASSIFIER_KINDS, RunConfig
from vaelab.data import iterate_batches, load_split, prepare_inputs, to_float
from vaelab.errors import VaelabError
from vaelab.models import VAE, build_model, is_classifier, is_conditional
from vaelab.training import checkpoint
from vaelab.training.hardware import autocast, resolve_device, use_bf16
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
    run_dir = Path(run_dir)
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
    state: dict[str, Any] = {"epoch": 0, "step": 0, "batch_in_epoch": 0, "best_val_elbo": -math.inf, "history": []}
    if resume:
        state = checkpoint.load_last(run_dir, model, optimizer, generators)
        log(f"resuming {run_dir} at epoch {state['epoch'] + 1}, step {state['step']}")
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
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
        sums = {"loss": 0.0, "recon": 0.0, "kl": 0.0}
        seen, epoch_start = 0, time.perf_counter()
        for index in batches[state["batch_in_epoch"] :]:
            x, labels = train_x[index.to(device)], train_y[index.to(device)]
            if data.input_mode == "binarized":
                x = torch.bernoulli(x, generator=generators["binarize"])
            x = x.contiguous(memory_format=memory_format)
            lr = learning_rate(state["step"], total_steps, train_cfg.lr, train_cfg.min_lr, train_cfg.lr_schedule)
            for group in optimizer.param_groups:
                group["lr"] = lr
            beta = kl_weight(state["step"], train_cfg.beta, train_cfg.kl_warmup_steps)

            noise = torch.randn(
                x.shape[0], config.model.latent_dim, generator=generators["noise"], device=device
            )
            if semi is None:
                with autocast(device, bf16):
                    terms = model_terms(model, x, noise, labels)
                loss = (terms["recon"] + beta * kl_with_free_bits(terms["kl_per_dim"], train_cfg.free_bits)).mean()
            else:
                loss, terms = _classifier_loss(
                    model, semi, x, labels, noise, beta, train_x, train_y, generators, config, memory_format, bf16
                )
            if not torch.isfinite(loss):
                bar.close()
                raise NonFiniteLossError(
                    f"loss became {loss.item()} at step {state['step']} (epoch {epoch + 1}); stopped, the last "
                    f"good checkpoint in {run_dir} is intact — lower --lr or --grad-clip, or use --precision fp32"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), train_cfg.grad_clip)
            optimizer.step()

            state["step"] += 1
            state["batch_in_epoch"] += 1
            seen += x.shape[0]
            recon, kl = terms["recon"].mean().item(), terms["kl"].mean().item()
            sums["loss"] += loss.item() * x.shape[0]
            sums["recon"] += recon * x.shape[0]
            sums["kl"] += kl * x.shape[0]
            bar.update(1)
            if state["step"] % 20 == 0:
                rate = seen / (time.perf_counter() - epoch_start)
                bar.set_postfix_str(
                    f"epoch {epoch + 1}/{train_cfg.epochs} loss {loss.item():.1f} "
                    f"ELBO {-(recon + kl):.1f} KL {kl:.1f} {rate:,.0f} img/s"
                )
            if train_cfg.max_steps is not None and state["step"] >= train_cfg.max_steps:
                finished = False
                break
        train_seconds = time.perf_counter() - epoch_start
        if not finished:
            checkpoint.save_last(run_dir, model, optimizer, generators, state)
            break

        val = validate(model, val_x, val_y, config, device)
        row = {
            "epoch": epoch + 1,
            "step": state["step"],
            "train_loss": sums["loss"] / seen,
            "train_recon": sums["recon"] / seen,
            "train_kl": sums["kl"] / seen,
            **val,
            "beta": beta,
            "lr": lr,
            "images_per_s": seen / train_seconds,
            "train_seconds": train_seconds,
            "wall_time": time.time(),
        }
        state["history"].append(row)
        if val["val_elbo"] > state["best_val_elbo"]:
            state["best_val_elbo"] = val["val_elbo"]
            checkpoint.save_best(run_dir, model, epoch + 1, val["val_elbo"])
        state["epoch"] += 1
        state["batch_in_epoch"] = 0
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


def _classifier_loss(
    model: VAE,
    semi: LabelledSet,
    x: torch.Tensor,
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
    (whose labels are never read) plus the labelled one on a batch drawn from the kept labels."""
    free_bits, device = config.train.free_bits, x.device
    if semi.all_labelled:
        with autocast(device, bf16):
            per_image, terms = labelled_loss(model, x, labels, noise, beta, free_bits, semi.weight)
        return per_image.mean(), terms
    count = min(config.train.batch_size, semi.labelled.numel())
    index = semi.labelled[torch.randperm(semi.labelled.numel(), generator=generators["labelled"])[:count]].to(device)
    labelled_x = train_x[index]
    if config.data.input_mode == "binarized":
        labelled_x = torch.bernoulli(labelled_x, generator=generators["binarize"])
    labelled_x = labelled_x.contiguous(memory_format=memory_format)
    labelled_noise = torch.randn(count, config.model.latent_dim, generator=generators["noise"], device=device)
    with autocast(device, bf16):
        per_image, terms = unlabelled_loss(model, x, noise, beta, free_bits)
        labelled_per_image, _ = labelled_loss(model, labelled_x, train_y[index], labelled_noise, beta, free_bits,
                                              semi.weight)
    return per_image.mean() + labelled_per_image.mean(), terms


def model_terms(model: VAE, x: torch.Tensor, noise: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """The model's loss terms; a conditional model is also given the batch's labels."""
    return model.loss_terms(x, noise, labels) if is_conditional(model) else model.loss_terms(x, noise)


@torch.no_grad()
def validate(
    model: VAE, val_x: torch.Tensor, val_y: torch.Tensor, config: RunConfig, device: torch.device
) -> dict[str, Any]:
    """Validation ELBO in fp32 with fixed noise: one reparameterised sample per image, analytic KL."""
    model.eval()
    generator = torch.Generator(device).manual_seed(VALIDATION_SEED)
    recon_sum, kl_dims_sum, correct = 0.0, torch.zeros(config.model.latent_dim, device=device), 0
    for index in iterate_batches(val_x.shape[0], 1000):
        x = val_x[index.to(device)]
        noise = torch.randn(x.shape[0], config.model.latent_dim, generator=generator, device=device)
        terms = model_terms(model, x, noise, val_y[index.to(device)])
        recon_sum += terms["recon"].sum().item()
        kl_dims_sum += terms["kl_per_dim"].sum(0)
        if is_classifier(model):
            correct += (model.classify(x).argmax(1) == val_y[index.to(device)]).sum().item()
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
