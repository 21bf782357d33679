"""One fit loop for the small models trained beside a run: the reference classifier, the two-stage sampler's
second VAE, M1+M2's code model and the labelled-only baseline. (A run itself is trained by
`vaelab.training.trainer`, which adds checkpoints and exact resume; both follow the same rules.)

The rules: the batch order of epoch e depends only on (seed, e); the learning rate is set before every step from a
schedule over the whole fit; a non-finite loss stops the fit with a one-line error naming what diverged.

The scikit-learn estimators fitted inside an analysis (the linear probe, the gmm sampler's mixture) go through
`fit_estimator`, which says in one log line when one stopped before converging.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from vaelab.data.datasets import iterate_batches
from vaelab.errors import VaelabError
from vaelab.hardware import one_thread


def learning_rate(step: int, total_steps: int, base_lr: float, min_lr: float, schedule: str) -> float:
    """Cosine decay from `base_lr` to `min_lr` over the run, or constant."""
    if schedule == "constant" or total_steps <= 1:
        return base_lr
    progress = min(step / (total_steps - 1), 1.0)
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def epoch_order(seed: int, epoch: int) -> torch.Generator:
    """The generator of epoch `epoch`'s batch order: a resumed or repeated fit sees the same batches."""
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


@dataclass(frozen=True)
class FitPlan:
    epochs: int
    batch_size: int
    lr: float
    min_lr: float | None = None  # cosine decay to min_lr over the fit; None keeps lr constant
    seed: int = 0  # of the batch order
    drop_last: bool = False
    max_steps: int | None = None  # stop after this many steps, even within an epoch

    def steps_per_epoch(self, count: int) -> int:
        return count // self.batch_size if self.drop_last else -(-count // self.batch_size)


def fit(
    optimizers: Sequence[torch.optim.Optimizer],
    losses: Callable[[torch.Tensor], Sequence[torch.Tensor]],
    count: int,
    plan: FitPlan,
    after_epoch: Callable[[int, list[float]], None] | None = None,
    what: str = "the fit",
) -> int:
    """Adam (or any optimizer) steps over `count` examples. `losses(index)` gives one loss per optimizer for the
    batch of example indices `index`; each optimizer steps on its own loss. `after_epoch(epoch, last_losses)` runs
    after each epoch (validation, a log line). Returns the number of steps taken."""
    total = plan.epochs * plan.steps_per_epoch(count)
    if plan.max_steps is not None:
        total = min(total, plan.max_steps)
    schedule = "constant" if plan.min_lr is None else "cosine"
    step = 0
    for epoch in range(plan.epochs):
        values: list[float] = []
        for index in iterate_batches(count, plan.batch_size, epoch_order(plan.seed, epoch), plan.drop_last):
            lr = learning_rate(step, total, plan.lr, plan.min_lr or 0.0, schedule)
            for optimizer in optimizers:
                for group in optimizer.param_groups:
                    group["lr"] = lr
            batch_losses = losses(index)
            values = []
            for optimizer, loss in zip(optimizers, batch_losses, strict=True):
                if not torch.isfinite(loss):
                    raise VaelabError(f"{what} diverged at step {step} (loss {loss.item()}); lower its learning rate")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                values.append(loss.item())
            step += 1
            if plan.max_steps is not None and step >= plan.max_steps:
                return step
        if after_epoch is not None:
            after_epoch(epoch, values)
    return step


def fit_estimator(estimator: Any, *data: Any, what: str, log: Callable[[str], None] = lambda message: None) -> bool:
    """`estimator.fit(*data)` for a scikit-learn estimator; returns whether it converged. Its ConvergenceWarning
    (ten lines of advice on the terminal) becomes one `log` line naming `what` and where it stopped: the fit is
    used as it is, and eval.json or the sampler's log says so. Any other warning is passed on unchanged."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught, one_thread():  # small matrices: see one_thread
        warnings.simplefilter("always", ConvergenceWarning)
        estimator.fit(*data)
    unconverged = [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    for w in caught:
        if w not in unconverged:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if unconverged:
        first_line = str(unconverged[0].message).strip().splitlines()[0]
        log(f"{what}: stopped before converging ({first_line}); its result is used as it stands")
    return not unconverged
