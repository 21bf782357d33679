"""The prior p(z) of the VAE kinds (`model.prior`), apart from the networks.

- `standard` (the default): N(0, I). The KL to it has a closed form, per dimension.
- `vamp`, the VampPrior (Tomczak & Welling 2018): the mixture of the posteriors of K learned pseudo-inputs u_k,

      p(z) = (1/K) Σ_k q(z | u_k),

  so the prior is learned with the encoder. Its KL has no closed form: it is estimated at the reparameterised z,
  KL ≈ log q(z|x) − log p(z) (one sample, unbiased). The KL "per dimension" is estimated the same way against the
  prior's marginal in each dimension (a mixture of 1-d Gaussians): those terms rank the dimensions, but they do not
  add up to the KL of the whole code, because the prior's dimensions are not independent.
"""

from __future__ import annotations

import math

import torch

from vaelab.models.base import gaussian_log_density_per_dimension

PSEUDO_INPUT_SCALE = 0.1  # pseudo-input logits start near 0: grey images, each a little different


def standard_normal_log_density(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I), summed over the last dimension."""
    return -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(-1)


def mixture_log_density(z: torch.Tensor, means: torch.Tensor, logvars: torch.Tensor) -> torch.Tensor:
    """log (1/K) Σ_k N(z; means_k, exp(logvars_k)) for codes `[..., D]` and K diagonal components `[K, D]`: `[...]`.

    The squared distances are expanded into matrix products, so memory grows with codes × K, not codes × K × D
    (an IWAE bound draws thousands of codes per image); float64, because the expansion subtracts large terms when
    a component is narrow."""
    shape, dims = z.shape[:-1], z.shape[-1]
    flat = z.reshape(-1, dims).double()
    means, logvars = means.double(), logvars.double()
    precision = (-logvars).exp()
    squared = (flat.pow(2) @ precision.T - 2 * flat @ (means * precision).T
               + (means.pow(2) * precision).sum(1))  # [codes, K]: Σ_d (z_d − mean_kd)² / var_kd
    log_components = -0.5 * (dims * math.log(2 * math.pi) + logvars.sum(1) + squared)
    log_density = torch.logsumexp(log_components, dim=1) - math.log(means.shape[0])
    return log_density.to(z.dtype).reshape(shape)


def mixture_kl_terms(
    z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, means: torch.Tensor, logvars: torch.Tensor
) -> dict[str, torch.Tensor]:
    """One-sample estimates at codes z `[N, D]` drawn from q(z|x) = N(mu, exp(logvar)), against the mixture prior of
    components `[K, D]`: "kl" = log q(z|x) − log p(z) `[N]`, "kl_per_dim" = log q(z_d|x) − log p_d(z_d) `[N, D]`
    against each dimension's marginal, and "log_prior" = log p(z) `[N]`."""
    log_q_per_dim = gaussian_log_density_per_dimension(z, mu, logvar)
    pairs = gaussian_log_density_per_dimension(z[:, None], means[None], logvars[None])  # [N, K, D]
    log_k = math.log(means.shape[0])
    log_prior = torch.logsumexp(pairs.sum(2), dim=1) - log_k
    log_prior_per_dim = torch.logsumexp(pairs, dim=1) - log_k
    return {"kl": log_q_per_dim.sum(1) - log_prior, "kl_per_dim": log_q_per_dim - log_prior_per_dim,
            "log_prior": log_prior}


def sample_mixture(
    n: int, means: torch.Tensor, logvars: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """`n` codes `[n, D]` from the equal-weight mixture of components `[K, D]` (drawn on the CPU from `generator`:
    a component for each, then its noise)."""
    means, logvars = means.detach().float().cpu(), logvars.detach().float().cpu()
    component = torch.randint(means.shape[0], (n,), generator=generator)
    noise = torch.randn(n, means.shape[1], generator=generator)
    return means[component] + noise * (0.5 * logvars[component]).exp()
