"""How the latent space is used: KL per dimension and active units."""

from __future__ import annotations

import torch

ACTIVE_UNIT_THRESHOLD = 0.01
# An active dimension carrying less KL than this is weak: its posterior mean moves, yet it holds too little
# information for its traversal to mean anything. The one definition of weak for the factors, the report, the
# explorer and the collapse diagnosis.
WEAK_KL_NATS = 0.1


def active_units(posterior_means: torch.Tensor, threshold: float = ACTIVE_UNIT_THRESHOLD) -> torch.Tensor:
    """Boolean `[D]`: Cov_x(E_q[z_i]) > threshold (Burda et al. 2016) — the dimensions whose posterior mean
    actually moves with the input."""
    return posterior_means.var(dim=0, unbiased=True) > threshold


def dimensions_by_kl(kl_per_dim: torch.Tensor | list[float]) -> list[int]:
    """Dimension indices, most informative (largest KL) first."""
    values = torch.as_tensor(kl_per_dim)
    return torch.argsort(values, descending=True).tolist()


def is_weak_dimension(active: bool, kl_nats: float) -> bool:
    """Whether a dimension is an active unit that carries under WEAK_KL_NATS of KL."""
    return bool(active) and kl_nats < WEAK_KL_NATS


def informative_dimensions(kl_per_dim: list[float], active: list[bool]) -> int:
    """How many dimensions are active units and not weak: those that carry information about the image."""
    return sum(bool(on) and not is_weak_dimension(on, kl) for kl, on in zip(kl_per_dim, active, strict=True))
