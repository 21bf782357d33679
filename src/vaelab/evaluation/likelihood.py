"""Likelihood bounds on held-out images: the ELBO and the importance-weighted bound (Burda et al. 2016).

    log p(x) ≥ IWAE_k = E[log (1/k) Σ_i p(x, z_i) / q(z_i|x)] ≥ ELBO,   z_i ~ q(z|x)

IWAE_k approaches log p(x) as k grows; −IWAE_k on binarized MNIST is the standard "test NLL".
"""

from __future__ import annotations

import math

import torch

from vaelab.models.base import LikelihoodModel, gaussian_log_density


@torch.no_grad()
def elbo_terms(
    model: LikelihoodModel, x: torch.Tensor, generator: torch.Generator | None = None,
    labels: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Per-image reconstruction term (one z sample), the KL and the KL per dimension (see `VAE.kl_terms`). A
    conditional model needs the images' `labels`: its bound is on log p(x|y)."""
    noise = torch.randn(x.shape[0], model.latent_dim, generator=generator).to(x.device)
    terms = model.loss_terms(x, noise, labels)
    return {"recon": terms["recon"], "kl": terms["kl"], "kl_per_dim": terms["kl_per_dim"], "mu": terms["mu"]}


@torch.no_grad()
def importance_weights(
    model: LikelihoodModel,
    x: torch.Tensor,
    k: int,
    generator: torch.Generator | None = None,
    chunk: int = 250,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """log p(x, z_i) − log q(z_i|x) for k draws z_i ~ q(z|x): `[N, k]` (given the `labels` for a conditional
    model: then the bound is on log p(x|y))."""
    mu, logvar = model.encode(x, labels)
    n, d = mu.shape
    columns = []
    for start in range(0, k, chunk):
        m = min(chunk, k - start)
        eps = torch.randn(n, m, d, generator=generator).to(mu.device)
        z = mu[:, None] + eps * (0.5 * logvar[:, None]).exp()
        log_q = gaussian_log_density(z, mu[:, None], logvar[:, None])
        log_prior = model.prior_log_density(z)  # N(0, I), or the VampPrior's mixture
        x_rep = x[:, None].expand(n, m, *x.shape[1:]).reshape(n * m, *x.shape[1:])
        repeated_labels = None if labels is None else labels.to(mu.device).repeat_interleave(m)
        log_px = model.decode_dist(z.reshape(n * m, d), repeated_labels).log_prob(x_rep).view(n, m)
        columns.append(log_px + log_prior - log_q)
    return torch.cat(columns, dim=1)


def iwae_bound(log_weights: torch.Tensor) -> torch.Tensor:
    """IWAE_k per image from its `[N, k]` log weights: logmeanexp over the k draws."""
    return torch.logsumexp(log_weights, dim=1) - math.log(log_weights.shape[1])


def bits_per_dim(nats_per_image: float, dims: int) -> float:
    """A negative log-likelihood in nats per image as bits per dimension (`dims`: values per image, C·H·W)."""
    return nats_per_image / (dims * math.log(2))
