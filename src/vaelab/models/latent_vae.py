"""The second stage of Dai & Wipf's two-stage VAE (ICLR 2019): a small fully connected VAE whose data are the
first stage's latent codes.

The first stage's aggregate posterior q(z) is not N(0, I); the second stage learns it: u ~ N(0, I) → z ~ p(z|u).
p(z|u) is a Gaussian with one variance γ shared by all dimensions; Dai & Wipf show that γ → 0 lets the second stage
match q(z) where the first stage could not. γ is not a slowly learned parameter here but its optimum for the batch,
the mean squared residual (Rybkin et al. 2021, "σ-VAE"): a learned log γ moving at Adam's step size stayed near 1
for thousands of steps, long enough for the second stage to ignore low-variance code dimensions.
Same API as the image VAE: `encode`, `loss_terms`, `sample`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vaelab.models.base import kl_per_dimension

MIN_LOG_GAMMA = -12.0  # γ ≥ 6e-6: keeps the reconstruction term finite as γ shrinks


def _mlp(inputs: int, hidden: int, depth: int, outputs: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = inputs
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.GELU()]
        width = hidden
    layers.append(nn.Linear(width, outputs))
    return nn.Sequential(*layers)


class LatentVAE(nn.Module):
    def __init__(self, dim: int, hidden: int = 512, depth: int = 2) -> None:
        super().__init__()
        self.dim, self.hidden, self.depth = dim, hidden, depth
        self.encoder = _mlp(dim, hidden, depth, 2 * dim)
        self.decoder = _mlp(dim, hidden, depth, dim)
        self.register_buffer("log_gamma", torch.zeros(()))  # the last batch's optimal log γ, for logs only

    @property
    def latent_dim(self) -> int:
        return self.dim

    def encode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(z).chunk(2, dim=-1)
        return mu, logvar

    def decode(self, u: torch.Tensor) -> torch.Tensor:
        """The mean of p(z|u): what sampling uses (γ is tiny once trained)."""
        return self.decoder(u)

    def loss_terms(self, z: torch.Tensor, noise: torch.Tensor) -> dict[str, torch.Tensor]:
        """−log p(z|u) and KL(q(u|z) ‖ N(0, I)) per code, in nats; `noise` is the reparameterisation ε."""
        mu, logvar = self.encode(z)
        u = mu + noise * (0.5 * logvar).exp()
        squared = (z - self.decode(u)).pow(2).sum(-1)
        log_gamma = (squared.mean() / self.dim).log().clamp(min=MIN_LOG_GAMMA)  # argmax_γ of the batch likelihood
        self.log_gamma.copy_(log_gamma.detach())
        recon = 0.5 * (squared / log_gamma.exp() + self.dim * (log_gamma + math.log(2 * math.pi)))
        return {"recon": recon, "kl": kl_per_dimension(mu, logvar).sum(-1)}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """`n` first-stage codes `[n, dim]`: u ~ N(0, I) decoded to the mean of p(z|u)."""
        device = self.log_gamma.device
        return self.decode(torch.randn(n, self.dim, generator=generator).to(device))
