"""M2 stacked on a trained VAE's codes: the "M1+M2" model of Kingma et al. 2014.

M1 is an unsupervised vaelab run: its q(z1|x) turns each image into a code z1 (32 numbers for the demo model),
where the classes are far easier to separate than in pixels. `CodeM2` is the semi-supervised M2 model whose data
are those codes: q(y|z1), q(z2|z1, y) and p(z1|z2, y) are small MLPs, p(z1|z2, y) a diagonal Gaussian (mean and
log-variance from the decoder), p(z2) = N(0, I), p(y) uniform. It has the methods the semi-supervised objective
calls on M2 (`labelled_terms`, `classify`, `unlabelled_terms`), so `vaelab.training.m1m2` trains it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.distributions import Distribution, Independent, Normal

from vaelab.models.classifier import UnlabelledBound, classifier_mlp
from vaelab.models.cvae import one_hot
from vaelab.models.vae import standard_kl_terms

MIN_LOG_VARIANCE = -9.0  # p(z1|z2, y)'s variance ≥ 1.2e-4: keeps the density finite on near-constant dimensions


@dataclass(frozen=True)
class CodeM2Config:
    code_dim: int  # M1's latent width
    latent_dim: int = 50  # z2, as in the paper
    hidden: int = 500  # one hidden layer of 500 in the paper; two here (trunk and decoder each)
    classes: int = 10


def _mlp(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.Softplus(), nn.Linear(hidden, outputs))


class CodeM2(UnlabelledBound, nn.Module):
    def __init__(self, config: CodeM2Config) -> None:
        super().__init__()
        self.config = config
        self.trunk = nn.Sequential(nn.Linear(config.code_dim, config.hidden), nn.Softplus())
        self.readout = nn.Linear(config.hidden + config.classes, 2 * config.latent_dim)
        self.classifier = classifier_mlp(config.hidden, config.classes)
        self.decoder = _mlp(config.latent_dim + config.classes, config.hidden, 2 * config.code_dim)

    @property
    def classes(self) -> int:
        return self.config.classes

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def one_hot(self, labels: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return one_hot(labels, self.classes, like)

    def trunk_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(x)

    def posterior_from_trunk(self, hidden: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.readout(torch.cat([hidden, self.one_hot(labels, hidden)], dim=1)).float().chunk(2, 1)
        return mu, logvar

    def kl_terms(self, z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> dict[str, torch.Tensor]:
        """p(z2) = N(0, I): the KL in closed form."""
        return standard_kl_terms(z, mu, logvar)

    def decode_dist(self, z: torch.Tensor, labels: torch.Tensor) -> Distribution:
        """p(z1|z2, y): a diagonal Gaussian over codes, `log_prob` `[N]`."""
        mean, logvar = self.decoder(torch.cat([z, self.one_hot(labels, z)], dim=1)).float().chunk(2, 1)
        return Independent(Normal(mean, (0.5 * logvar.clamp(min=MIN_LOG_VARIANCE)).exp(), validate_args=False), 1)
