"""Schedules and penalties that change over training: learning rate, KL warm-up, free bits."""

from __future__ import annotations

import math

import torch


def learning_rate(step: int, total_steps: int, base_lr: float, min_lr: float, schedule: str) -> float:
    """Cosine decay from `base_lr` to `min_lr` over the run, or constant."""
    if schedule == "constant" or total_steps <= 1:
        return base_lr
    progress = min(step / (total_steps - 1), 1.0)
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def kl_weight(step: int, beta: float, warmup_steps: int) -> float:
    """β, ramped linearly from 0 over the first `warmup_steps` steps (KL annealing, Bowman et al. 2016)."""
    if warmup_steps <= 0:
        return beta
    return beta * min(1.0, step / warmup_steps)


def kl_with_free_bits(kl_per_dim: torch.Tensor, free_bits: float) -> torch.Tensor:
    """Per-image KL to penalise, `[N]`. With free bits λ (Kingma et al. 2016), a dimension whose batch-mean KL
    is below λ nats is not pushed further down, which keeps dimensions from collapsing early."""
    if free_bits <= 0:
        return kl_per_dim.sum(1)
    batch_mean = kl_per_dim.mean(0, keepdim=True)
    # Only dimensions above the floor carry gradient; the per-image sum keeps the loss in nats per image.
    return torch.where(batch_mean > free_bits, kl_per_dim, torch.full_like(kl_per_dim, free_bits)).sum(1)
