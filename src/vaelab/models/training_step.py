"""What a model family tells the trainer: its `TrainingStep`.

The trainer (`vaelab.training.trainer`) owns everything that is the same for every family: batches in seeded
order, precision, optimizers, gradient clipping, non-finite handling, checkpoints, exact resume, logging. The
objective owns what is the family's own:
- which training images an epoch runs over (`pool`) and the seeded generators its steps draw from (`generators`,
  stored in every checkpoint, so a resumed run draws the same numbers);
- the parameters of each optimizer (`parameter_groups`: one group for most families, two for a GAN) and any
  options of its Adam (`optimizer_options`: a GAN's β1);
- one training step (`step`): it yields one `Phase` per optimizer step, the loss and the terms to log, and the
  trainer takes that optimizer step before asking for the next phase (so a discriminator step can come first);
- its validation numbers (`validate`), with the one that selects the best checkpoint (`selection`, higher is
  better; None keeps the last epoch's weights) and the few of them the epoch's line shows (`summary`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from vaelab.models.options import ModelConfig


class RunSettings(Protocol):
    """What an objective reads of its run's configuration; `vaelab.config.RunConfig` is one. The model's options,
    and of the other sections: `data.labels`, `data.split_seed`, `data.input_mode`, `train.epochs`,
    `train.batch_size` (the models never import the config module: it is built from theirs)."""

    @property
    def model(self) -> ModelConfig: ...

    @property
    def data(self) -> Any: ...

    @property
    def train(self) -> Any: ...


@dataclass
class Phase:
    """One optimizer step within a training step: minimise `loss` with the optimizer named `optimizer`; `logged`
    holds per-image (or scalar) terms whose batch means go into the epoch's averages as `train_<name>`."""

    loss: torch.Tensor
    logged: dict[str, torch.Tensor] = field(default_factory=dict)
    optimizer: str = "model"


@dataclass
class StepContext:
    """What the trainer gives an objective for one step."""

    step: int  # steps taken so far in the run
    total_steps: int
    generators: dict[str, torch.Generator]  # the objective's own, by name, plus "binarize"
    modelled: Callable[[torch.Tensor], torch.Tensor]  # intensities → what the likelihood models (a fresh draw for
    # a binarized run), in the run's memory format
    prepared: Callable[[torch.Tensor], torch.Tensor]  # a batch in the run's memory format
    autocast: Callable[[], AbstractContextManager]  # the run's precision
    train_images: torch.Tensor  # the whole training split, uint8 on the device (float per batch: `to_float`)
    train_labels: torch.Tensor


@dataclass
class ValidationData:
    """The validation split as the trainer prepared it: `inputs` as the likelihood models them (one fixed
    binarization for a binarized run), `intensities` the images themselves, `labels`, and the seed of any draw."""

    inputs: torch.Tensor
    intensities: torch.Tensor
    labels: torch.Tensor
    seed: int


@dataclass(frozen=True)
class GeneratorSpec:
    """A seeded generator an objective draws from: seeded with the run's seed + `offset`, on the CPU or on the
    run's device."""

    offset: int
    cpu: bool = False


class TrainingStep:
    """Base of every family's objective; `config` is the run's, `train_labels` the training split's labels (a
    semi-supervised objective keeps only some of them)."""

    # The validation number that picks model.safetensors (higher is better); None: the last epoch's weights.
    selection: str | None = "val_elbo"

    def __init__(self, config: RunSettings, train_labels: torch.Tensor) -> None:
        self.config = config
        self.pool = torch.arange(train_labels.numel())  # the training images an epoch runs over
        train = config.train
        self.set_run_length(train.epochs * (len(self.pool) // train.batch_size))

    def set_run_length(self, steps: int) -> None:
        """The run's optimiser steps, once the trainer knows them (`steps`, or bought by a time budget). A warm-up
        given in steps belongs to the recipe's `epochs`, and keeps its share of a run of another length."""
        train = self.config.train
        recipe_steps = max(train.epochs * (len(self.pool) // train.batch_size), 1)
        self.run_steps, self.length_scale = steps, steps / recipe_steps

    def scaled_steps(self, steps: int) -> int:
        """A length in steps given for the recipe's `epochs`, for this run's length."""
        return round(steps * self.length_scale)

    def generators(self) -> dict[str, GeneratorSpec]:
        """The seeded generators the steps draw from, by name (the trainer's own is "binarize", seed + 1)."""
        return {}

    def parameter_groups(self, model: nn.Module) -> dict[str, Iterable[nn.Parameter]]:
        """The parameters of each optimizer, by optimizer name."""
        return {"model": model.parameters()}

    def optimizer_options(self, name: str) -> dict[str, Any]:
        """Keyword arguments of the Adam optimizer `name` beyond the learning rate (e.g. `betas`)."""
        return {}

    def step(
        self, model: nn.Module, intensities: torch.Tensor, labels: torch.Tensor, context: StepContext
    ) -> Iterator[Phase]:
        raise NotImplementedError

    def validate(self, model: nn.Module, data: ValidationData) -> dict[str, Any]:
        raise NotImplementedError

    def schedule_values(self, step: int) -> dict[str, float]:
        """The objective's scheduled weights at `step`, for the epoch's metrics row."""
        return {}

    def summary(self, row: dict[str, Any]) -> str:
        """The validation numbers of an epoch's metrics row that its progress line shows."""
        return f"{self.selection} {row[self.selection]:.2f}"


def kl_weight(step: int, beta: float, warmup_steps: int) -> float:
    """β, ramped linearly from 0 over the first `warmup_steps` steps (KL annealing, Bowman et al. 2016)."""
    if warmup_steps <= 0:
        return beta
    return beta * min(1.0, step / warmup_steps)


def kl_with_free_bits(kl: torch.Tensor, kl_per_dim: torch.Tensor, free_bits: float) -> torch.Tensor:
    """Per-image KL to penalise, `[N]`, from the KL `[N]` and its per-dimension terms `[N, D]`. With free bits λ
    (Kingma et al. 2016), a dimension whose batch-mean KL is below λ nats is not pushed further down, which keeps
    dimensions from collapsing early."""
    if free_bits <= 0:
        return kl
    batch_mean = kl_per_dim.mean(0, keepdim=True)
    # A dimension below the floor is counted as λ, without gradient. The KL itself is kept (not the per-dimension
    # sum): under a VampPrior the per-dimension terms do not add up to it.
    floored = torch.where(batch_mean > free_bits, torch.zeros_like(kl_per_dim), free_bits - kl_per_dim)
    return kl + floored.sum(1)
