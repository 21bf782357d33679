"""How the latent space is used: KL per dimension and active units."""

from __future__ import annotations

import torch

ACTIVE_UNIT_THRESHOLD = 0.01


def active_units(posterior_means: torch.Tensor, threshold: float = ACTIVE_UNIT_THRESHOLD) -> torch.Tensor:
    """Boolean `[D]`: Cov_x(E_q[z_i]) > threshold (Burda et al. 2016) — the dimensions whose posterior mean
    actually moves with the input."""
    return posterior_means.var(dim=0, unbiased=True) > threshold


def dimensions_by_kl(kl_per_dim: torch.Tensor | list[float]) -> list[int]:
    """Dimension indices, most informative (largest KL) first."""
    values = torch.as_tensor(kl_per_dim)
    return torch.argsort(values, descending=True).tolist()
