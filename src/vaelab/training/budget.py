"""Training sized by time: `--time-budget 8m` buys the optimiser steps that fit in eight minutes on this machine.

The run first measures itself: a few real training steps (after two that warm the kernels up), one validation pass
and one checkpoint write. Those steps are then undone (`Snapshot`): weights, optimizer moments and every random
state go back to where they were, so the run that follows is the same as `vaelab train --steps N` with the number
bought, on any machine, bit for bit. The measuring is paid from the budget. The steps bought are those whose
estimated time (steps, each epoch's validation and checkpoints) fits in what is left, less a safety margin; the
learning-rate schedule and the warm-ups then span exactly those steps. The plan is stored in every checkpoint, so a
resumed run finishes the same steps (spending what was left) instead of buying new ones.
"""

from __future__ import annotations

import copy
import math
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from vaelab.config import format_duration
from vaelab.errors import VaelabError

WARMUP_STEPS = 2  # the first steps allocate and pick kernels (or compile): never timed
TIMED_STEPS = 5  # steps timed at least, when the budget allows
MEASURE_SECONDS = 2.0  # … and at least this long, so one slow step does not decide the run
MEASURE_SHARE = 0.1  # measuring takes at most this share of the budget
SAFETY = 0.95  # the steps bought fill this share of what is left: a machine's speed wanders by a few percent


@dataclass(frozen=True)
class Plan:
    """What a time budget bought on the machine that measured it (recorded in the checkpoint and in
    RUN/budget.json)."""

    time_budget: str  # as given
    budget_seconds: float
    steps: int  # the run's optimiser steps: `vaelab train --steps` with this number reproduces the run
    steps_per_epoch: int
    step_seconds: float  # measured: one training step
    validation_seconds: float  # one validation pass (each epoch's end)
    checkpoint_seconds: float  # one checkpoint write
    measure_seconds: float  # spent measuring, paid from the budget
    estimated_seconds: float  # the whole run, measuring included
    epochs_per_round: int = 1  # epochs between two validations (several on a small training set)

    @property
    def epochs(self) -> float:
        return self.steps / self.steps_per_epoch

    @property
    def steps_per_round(self) -> int:
        return self.steps_per_epoch * self.epochs_per_round

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "epochs": round(self.epochs, 3)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Plan:
        return cls(**{name: raw[name] for name in cls.__dataclass_fields__ if name in raw})

    def describe(self) -> str:
        return (f"time budget {self.time_budget}: {self.steps:,} steps ({self.epochs:.2f} epochs of "
                f"{self.steps_per_epoch:,} steps) at {self.step_seconds * 1000:.1f} ms a step, "
                f"≈ {format_duration(self.estimated_seconds)} on this machine")


def estimated_seconds(steps: int, steps_per_round: int, checkpoint_every: int, step_seconds: float,
                      validation_seconds: float, checkpoint_seconds: float) -> float:
    """The estimated training time of `steps` steps: the steps, a validation and a checkpoint at each (possibly
    partial) round's end, and the checkpoints written every `checkpoint_every` steps within rounds."""
    rounds = math.ceil(steps / steps_per_round)
    within = steps // checkpoint_every - steps // (checkpoint_every * steps_per_round) if checkpoint_every else 0
    return (steps * step_seconds + rounds * (validation_seconds + checkpoint_seconds)
            + max(within, 0) * checkpoint_seconds)


def steps_within(seconds: float, steps_per_round: int, checkpoint_every: int, step_seconds: float,
                 validation_seconds: float, checkpoint_seconds: float) -> int:
    """The most steps whose `estimated_seconds` fit in `seconds` (0 when not even one does)."""
    def fits(steps: int) -> bool:
        return estimated_seconds(steps, steps_per_round, checkpoint_every, step_seconds, validation_seconds,
                                 checkpoint_seconds) <= seconds

    if not fits(1):
        return 0
    low, high = 1, 2
    while fits(high):  # the time grows with the steps: double, then bisect
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


def measure_and_plan(
    time_budget: str,
    budget_seconds: float,
    steps_per_epoch: int,
    checkpoint_every: int,
    take_step: Callable[[int], None],
    validate: Callable[[], None],
    write_checkpoint: Callable[[], None],
    clock: Callable[[], float] = time.perf_counter,
    agree: Callable[[bool], bool] = lambda stop: stop,
    epochs_per_round: int = 1,
) -> Plan:
    """Measure a step, a validation pass and a checkpoint write with `clock`, then buy the steps that fit.
    `take_step(i)` takes training step i (the caller undoes them afterwards); `agree` turns this process's "enough
    steps measured" into every process's (rank 0's)."""
    started = clock()
    limit = MEASURE_SHARE * budget_seconds
    durations: list[float] = []
    while True:
        before = clock()
        take_step(len(durations))
        after = clock()
        durations.append(after - before)
        timed = durations[WARMUP_STEPS:]
        elapsed = after - started
        enough = len(timed) >= TIMED_STEPS and elapsed >= min(MEASURE_SECONDS, limit)
        # steps too slow to time many (or any, after the warm-up): the last ones stand for all
        out_of_time = elapsed >= limit and (bool(timed) or elapsed >= budget_seconds / 2)
        if agree(enough or out_of_time):
            break
    step_seconds = statistics.median(durations[WARMUP_STEPS:] or durations[-1:])
    before = clock()
    validate()
    validation_seconds = clock() - before
    before = clock()
    write_checkpoint()
    checkpoint_seconds = clock() - before
    measure_seconds = clock() - started
    costs = (step_seconds, validation_seconds, checkpoint_seconds)
    steps_per_round = steps_per_epoch * epochs_per_round
    steps = steps_within(SAFETY * (budget_seconds - measure_seconds), steps_per_round, checkpoint_every, *costs)
    if steps < 1:
        needed = measure_seconds + estimated_seconds(1, steps_per_round, checkpoint_every, *costs) / SAFETY
        raise VaelabError(
            f"a time budget of {time_budget} buys no training step on this machine (measuring took "
            f"{format_duration(measure_seconds)}, one step and a validation ≈ "
            f"{format_duration(step_seconds + validation_seconds)}); give --time-budget {math.ceil(needed * 2)}s or "
            "more")
    total = measure_seconds + estimated_seconds(steps, steps_per_round, checkpoint_every, *costs)
    return Plan(time_budget, budget_seconds, steps, steps_per_epoch, step_seconds, validation_seconds,
                checkpoint_seconds, measure_seconds, total, epochs_per_round)


class Snapshot:
    """Everything a training step changes: weights and buffers, optimizer moments, the run's generators and the
    global random states, taken before the measuring steps and put back after them."""

    def __init__(self, model: torch.nn.Module, optimizers: dict[str, torch.optim.Optimizer],
                 generators: dict[str, torch.Generator]) -> None:
        self.model, self.optimizers, self.generators = model, optimizers, generators
        self.weights = copy.deepcopy(model.state_dict())
        self.moments = {name: copy.deepcopy(optimizer.state_dict()) for name, optimizer in optimizers.items()}
        self.generator_states = {name: generator.get_state() for name, generator in generators.items()}
        self.torch_state = torch.get_rng_state()
        self.cuda_states = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        self.numpy_state = np.random.get_state()
        self.python_state = random.getstate()

    def restore(self) -> None:
        self.model.load_state_dict(self.weights)
        for name, optimizer in self.optimizers.items():
            optimizer.state.clear()  # moments made by the measuring steps: a fresh optimizer has none
            optimizer.load_state_dict(self.moments[name])
        for name, generator in self.generators.items():
            generator.set_state(self.generator_states[name])
        torch.set_rng_state(self.torch_state)
        if self.cuda_states is not None:
            torch.cuda.set_rng_state_all(self.cuda_states)
        np.random.set_state(self.numpy_state)
        random.setstate(self.python_state)
