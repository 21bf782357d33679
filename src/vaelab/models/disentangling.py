"""The pieces of the VAE's disentangling objectives (`model.objective`), apart from the networks they train.

- `beta` (the default): −log p(x|z) + β·KL, the β-VAE (Higgins et al. 2017); β = 1 is the ELBO.
- `tcvae`, β-TCVAE (Chen et al. 2018): the KL split into index-code mutual information, total correlation (TC) and
  dimension-wise KL, each estimated on the batch with minibatch-weighted sampling; the TC gets the weight
  `tc_weight`, the other two keep weight 1.
- `factorvae`, FactorVAE (Kim & Mnih 2018): the ELBO plus `tc_weight` × a TC estimate read from a discriminator
  that tells codes of the batch from codes whose dimensions were shuffled independently across the batch (a draw
  from the product of the marginals). The discriminator has its own optimizer.
- `capacity`, annealed capacity (Burgess et al. 2018): −log p(x|z) + γ·|KL − C|, where C rises linearly from 0 to
  `capacity_max` nats over `capacity_steps` steps (0: the whole run): the latent may carry C nats, no more, no less.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vaelab.models.base import gaussian_log_density_per_dimension

DISCRIMINATOR_WIDTH = 512  # three hidden layers (Kim & Mnih used six of 1,000: a CPU cannot afford them per step)
DISCRIMINATOR_BETAS = (0.5, 0.9)  # Kim & Mnih's Adam settings for the discriminator


def total_correlation_terms(
    z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, log_prior: torch.Tensor, dataset_size: int
) -> dict[str, torch.Tensor]:
    """β-TCVAE's split of the KL, per image `[N]`, with the minibatch-weighted sampling estimator of q(z):
    log q(z_i) ≈ logsumexp_j log q(z_i | x_j) − log(N·dataset_size), and the same per dimension for the marginals.

    Returns `mi` (log q(z|x) − log q(z)), `tc` (log q(z) − Σ_d log q(z_d)) and `dim_kl` (Σ_d log q(z_d) − log p(z)):
    the three add up to log q(z|x) − log p(z) (`log_prior` `[N]`: the model's prior at z), the one-sample estimate
    of the KL, for every image. Taken apart they
    are biased, as Chen et al. note: each log q(z_d) carries its own −log(N·dataset_size), so the TC comes out up to
    (D − 1)·log(N·dataset_size) nats too high (hundreds of nats for 32 dimensions) and the dimension-wise KL as much
    too low. The offset is a constant of the batch and has no gradient; the logged values carry it.
    """
    n = z.shape[0]
    pairs = gaussian_log_density_per_dimension(z[:, None], mu[None], logvar[None])  # [i, j, d]: log q(z_i,d | x_j)
    log_q_given_x = pairs.diagonal(dim1=0, dim2=1).sum(0)
    log_weight = math.log(n * dataset_size)
    log_q = torch.logsumexp(pairs.sum(2), dim=1) - log_weight
    log_product_of_marginals = (torch.logsumexp(pairs, dim=1) - log_weight).sum(1)
    return {"mi": log_q_given_x - log_q, "tc": log_q - log_product_of_marginals,
            "dim_kl": log_product_of_marginals - log_prior}


def permute_dimensions(z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each dimension of the batch `[N, D]` shuffled on its own: samples of the product of the marginals."""
    order = torch.rand(z.shape, generator=generator, device=z.device).argsort(dim=0)
    return z.gather(0, order)


def capacity_at(step: int, capacity_max: float, capacity_steps: int) -> float:
    """C after `step` steps: rising linearly from 0 to `capacity_max` nats over `capacity_steps`, then flat."""
    return capacity_max * min(1.0, step / max(capacity_steps, 1))


class TCDiscriminator(nn.Module):
    """FactorVAE's discriminator: a code `[N, D]` → the logit that it came from q(z) rather than from the product of
    its marginals. At its optimum the logit is log q(z) − log Π_d q(z_d), so its mean over codes of q(z) estimates
    the total correlation."""

    def __init__(self, latent_dim: int, width: int = DISCRIMINATOR_WIDTH) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(latent_dim, width), nn.LeakyReLU(0.2),
            nn.Linear(width, width), nn.LeakyReLU(0.2),
            nn.Linear(width, width), nn.LeakyReLU(0.2),
            nn.Linear(width, 1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.layers(z).squeeze(1)
