"""Posterior collapse, diagnosed from numbers a run already has.

A collapsed VAE's encoder says the same thing about every image (q(z|x) ≈ p(z)) and its decoder has learnt to
ignore z: every sample, reconstruction and traversal is the same mean image. Its signs:

- **KL per image under COLLAPSE_KL_NATS.** One nat cannot even tell three equally likely kinds of image apart
  (ln 3 ≈ 1.10). An 8-d MNIST VAE carries 17 nats after 32 steps at β = 1, and 0.03 at β = 50.
- **No informative dimension**: none is both an active unit (`vaelab.evaluation.latents.active_units`) and
  carries at least WEAK_KL_NATS, the one definition of weak used by the factors, the report and the explorer. A
  collapsed model's posterior means still wander a little, so some dimensions pass the active-unit test alone;
  and free bits can hold the KL above COLLAPSE_KL_NATS with no dimension in use (β = 50 with `--free-bits 0.5`:
  2.9 nats, no active unit).
- **Samples that do not differ**: the mean pairwise pixel distance of prior samples is under
  ALIKE_SAMPLES_SHARE of that of real images.

A run is collapsed when its KL is under COLLAPSE_KL_NATS or no dimension is informative. Alike samples are named
beside those signs, never alone: a working model's samples are blurry means too, so their spread is small on
images of thin strokes (on MNIST, 9% for the 17-nat model above, 10% for the collapsed one). During training only
the validation KL is known: the trainer warns once, after the KL warm-up and SETTLED_SHARE of the run's steps,
when it is under COLLAPSE_KL_NATS.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from vaelab.config import RunConfig
from vaelab.data import sizing
from vaelab.evaluation.latents import WEAK_KL_NATS, informative_dimensions
from vaelab.models.base import GenerativeModel
from vaelab.models.registry import capabilities
from vaelab.rundir import read_metrics

COLLAPSE_KL_NATS = 1.0
ALIKE_SAMPLES_SHARE = 0.2
# of the run's steps before the trainer judges its KL: early on it still moves a lot (300 shape images in batches
# of 16 sit under 0.2 nats for their first 300 steps, then rise to 80)
SETTLED_SHARE = 0.5
SHORT_RUN_STEPS = 1000  # fewer steps than this are named as a likely cause
SUGGESTED_FREE_BITS = 0.5  # nats per dimension: each dimension then holds well above WEAK_KL_NATS
SPREAD_IMAGES = 64  # prior samples, and real images, whose pairwise distances are compared
TRAINING_WARNING = "collapse_warning"  # the key of the metrics row on which the trainer warned


@dataclass(frozen=True)
class CollapseDiagnosis:
    """What the numbers say: the signs of collapse found (none: not collapsed) and, when there are any, the
    likely causes with their fixes."""

    kl_per_image: float
    latent_dim: int
    informative_dims: int | None = None  # None: not measured (during training)
    sample_spread: float | None = None  # the samples' mean pairwise distance over the real images'
    causes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def collapsed(self) -> bool:
        return self.kl_per_image < COLLAPSE_KL_NATS or self.informative_dims == 0

    @property
    def signs(self) -> list[str]:
        """The signs of collapse found, in words; none when the run did not collapse."""
        if not self.collapsed:
            return []
        found = []
        if self.kl_per_image < COLLAPSE_KL_NATS:
            found.append(f"the latent carries {self.kl_per_image:.2f} nats per image (under {COLLAPSE_KL_NATS:g})")
        if self.informative_dims == 0:
            found.append(f"none of its {self.latent_dim} dimensions is active with {WEAK_KL_NATS:g} nats or more")
        if self.sample_spread is not None and self.sample_spread < ALIKE_SAMPLES_SHARE:
            found.append(f"prior samples differ {self.sample_spread:.0%} as much as real images do")
        return found

    def warning(self) -> str | None:
        """One line naming the problem and the fixes, or None when the run did not collapse."""
        if not self.collapsed:
            return None
        return (f"warning: posterior collapse: {', '.join(self.signs)}; the decoder ignores z and every sample is "
                f"the same image. Try: {'; '.join(self.causes)}")

    def to_dict(self) -> dict[str, Any]:
        """As eval.json keeps it; the causes only of a collapsed run (a working one's settings are not to blame)."""
        return {**asdict(self), "causes": list(self.causes) if self.collapsed else [], "collapsed": self.collapsed,
                "signs": self.signs, "warning": self.warning()}


def likely_causes(config: RunConfig, steps: int | None) -> tuple[str, ...]:
    """What in the run's settings makes collapse likely, each with its fix; a smaller decoder last, always."""
    train, model, objective = config.train, config.model, config.model.objective
    causes = []
    if objective.name == "beta":
        if objective.beta > 1:
            causes.append(f"β = {objective.beta:g} weighs the KL heavily: lower --beta (1 is the ELBO)")
        if objective.kl_warmup_steps == 0:
            causes.append("no KL warm-up: --kl-warmup-steps (a third of the run's steps)")
        if objective.free_bits == 0:
            causes.append(f"no free bits: --free-bits {SUGGESTED_FREE_BITS:g}")
    sized_lr = sizing.default_lr(train.batch_size)
    if train.lr > 1.5 * sized_lr:  # measured: at 1e-3 in batches of 16 the encoder's ReLUs die in 100 steps
        causes.append(f"a learning rate of {train.lr:g} for batches of {train.batch_size} can silence the encoder: "
                      f"--lr {sized_lr:.2g}")
    if steps is not None and steps < SHORT_RUN_STEPS:
        causes.append(f"only {steps:,} steps: more --steps, or a --time-budget")
    if model.decoder.name == "pixelcnn":
        causes.append("an autoregressive decoder models the images without z: fewer --pixelcnn-layers")
    else:
        causes.append("a decoder strong enough to draw the mean image without z: fewer --channels or --hidden-dim")
    return tuple(causes)


def mean_pairwise_distance(images: torch.Tensor) -> float:
    """Root-mean-square pixel distance `[N, …]` averaged over every pair of distinct images."""
    flat = images.flatten(1).double()
    distances = torch.cdist(flat, flat) / math.sqrt(flat.shape[1])
    return (distances.sum() / (len(flat) * (len(flat) - 1))).item()


def sample_spread(samples: torch.Tensor, real: torch.Tensor) -> float:
    """How much the samples differ from each other, as a share of how much the real images do."""
    return mean_pairwise_distance(samples) / max(mean_pairwise_distance(real), 1e-12)


def diagnose(
    config: RunConfig,
    kl_per_image: float,
    kl_per_dim: Sequence[float],
    active: Sequence[bool],
    spread: float | None,
    steps: int | None,
) -> CollapseDiagnosis:
    """The diagnosis of a trained run from its test numbers: KL per image, KL per dimension and active units (as
    `vaelab eval` measures them), the samples' spread (`sample_spread`) and the steps it trained for."""
    return CollapseDiagnosis(kl_per_image, len(kl_per_dim), informative_dimensions(list(kl_per_dim), list(active)),
                             spread, likely_causes(config, steps))


def training_warning(
    config: RunConfig, row: dict[str, Any], history: list[dict[str, Any]], total_steps: int, warmup_steps: int
) -> str | None:
    """The warning for an epoch's metrics `row` whose validation KL per image is under COLLAPSE_KL_NATS, once the
    KL warm-up (`warmup_steps`) and SETTLED_SHARE of `total_steps` are behind it; None when the run shows no
    collapse yet, has no KL, or warned already (a row of `history` holds TRAINING_WARNING)."""
    if "val_kl" not in row or any(TRAINING_WARNING in past for past in history):
        return None
    if row["step"] < max(warmup_steps, SETTLED_SHARE * total_steps):
        return None
    diagnosis = CollapseDiagnosis(row["val_kl"], len(row.get("val_kl_per_dim", [])),
                                  causes=likely_causes(config, total_steps))
    return diagnosis.warning()


@torch.no_grad()
def diagnose_run(
    run_dir: str | Path, model: GenerativeModel, config: RunConfig, evaluation: dict[str, Any], real: torch.Tensor,
    seed: int = 0,
) -> CollapseDiagnosis:
    """The diagnosis of a run from its `evaluation` (eval.json's numbers), SPREAD_IMAGES prior samples (drawn with
    `seed`; a conditional model's as the classes in turn) set beside as many `real` images `[N, C, H, W]` in [0, 1],
    and the steps its metrics.jsonl says it trained for."""
    labels = torch.arange(SPREAD_IMAGES) % config.model.classes if capabilities(model).conditional else None
    samples = model.sample(SPREAD_IMAGES, torch.Generator().manual_seed(seed), labels).cpu()
    history = read_metrics(run_dir)
    active_dims = set(evaluation["active_dims"])
    return diagnose(config, evaluation["kl"], evaluation["kl_per_dim"],
                    [d in active_dims for d in range(len(evaluation["kl_per_dim"]))],
                    sample_spread(samples, real[:SPREAD_IMAGES]), history[-1]["step"] if history else None)
