"""The interface every model family implements, and the posterior an encoder returns.

Everything above the models (training, evaluation, analysis, the report, the explorer) holds a model as a
`GenerativeModel`, and as an `EncodingModel` where it needs codes of images; what else a family can do it says in
its `Capabilities` (`vaelab.models.registry`), never by its class. A new family implements these members (see
ARCHITECTURE.md, "How to extend"); `tests/test_model_interface.py` checks every registered family against them.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Protocol, runtime_checkable

import torch
from torch import nn


def kl_per_dimension(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) in closed form, per image and dimension: `[N, D]` nats."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def gaussian_log_density_per_dimension(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, exp(logvar)) of each coordinate (broadcasting), without summing."""
    return -0.5 * (math.log(2 * math.pi) + logvar + (z - mu).pow(2) / logvar.exp())


def gaussian_log_density(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, exp(logvar)) summed over the last dimension."""
    return gaussian_log_density_per_dimension(z, mu, logvar).sum(-1)


class Posterior(NamedTuple):
    """q(z|x), a diagonal Gaussian per image: `mean` and `logvar` `[N, D]`, float32.

    A tuple, so `mu, logvar = model.encode(x)` reads it as the pair it is; its methods name what is drawn from it.
    """

    mean: torch.Tensor
    logvar: torch.Tensor

    @property
    def std(self) -> torch.Tensor:
        return (0.5 * self.logvar).exp()

    def sample(self, generator: torch.Generator | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
        """One reparameterised code per image, `mean + std · ε`: ε is `noise` when given (standard normal,
        `[N, D]`), else drawn from `generator` on the CPU."""
        if noise is None:
            noise = torch.randn(self.mean.shape, generator=generator).to(self.mean.device)
        return self.mean + noise * self.std

    def mode(self) -> torch.Tensor:
        """The most probable code of each image: its mean."""
        return self.mean

    def kl_per_dimension(self) -> torch.Tensor:
        """KL(q(z|x) ‖ N(0, I)) per image and dimension, `[N, D]` nats (closed form)."""
        return kl_per_dimension(self.mean, self.logvar)

    def kl(self) -> torch.Tensor:
        """KL(q(z|x) ‖ N(0, I)) per image, `[N]` nats."""
        return self.kl_per_dimension().sum(-1)

    def log_density(self, z: torch.Tensor) -> torch.Tensor:
        """log q(z|x) of codes `[..., N, D]`: `[..., N]`."""
        return gaussian_log_density(z, self.mean, self.logvar)

    def cpu(self) -> Posterior:
        return Posterior(self.mean.cpu(), self.logvar.cpu())


@runtime_checkable
class GenerativeModel(Protocol):
    """What every family offers: codes from its prior, decoded into images.

    `config` is the run's model options; `config.family` names the family, whose capabilities say what more it can
    do. `labels` (the class of each image, int64 `[N]`) is required by the conditional families and ignored by the
    others, so that code above the models is written once for both.
    """

    config: Any

    @property
    def latent_dim(self) -> int:
        """Dimensions of a code z."""

    @property
    def device(self) -> torch.device:
        """The device of the model's weights."""

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """`n` codes drawn from the prior, `[n, latent_dim]` on the model's device (drawn on the CPU from
        `generator`, so that a seed gives the same codes on any device)."""

    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Codes `[N, latent_dim]` → images `[N, C, H, W]` in [0, 1]."""

    def sample(
        self, n: int, generator: torch.Generator | None = None, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """`n` images decoded from prior codes: `decode(sample_prior(n, generator), labels)`."""


@runtime_checkable
class EncodingModel(GenerativeModel, Protocol):
    """A family with an encoder (`Capabilities.encoder`): images to a posterior over codes."""

    def encode(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> Posterior:
        """Images `[N, C, H, W]` in [0, 1] → q(z|x)."""


class FamilyModule(nn.Module):
    """What every family's model shares: it is built from its model options, kept as `config`; its code has
    `config.latent_dim` dimensions (a family whose code is something else says so); it lives where its weights are."""

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config

    @property
    def latent_dim(self) -> int:
        """Dimensions of a code z."""
        return self.config.latent_dim

    @property
    def device(self) -> torch.device:
        """The device of the model's weights."""
        return next(self.parameters()).device


@torch.no_grad()
def posterior_moments(
    model: EncodingModel, x: torch.Tensor, labels: torch.Tensor | None = None, batch_size: int = 1000
) -> Posterior:
    """q(z|x) of inputs `[N, C, H, W]` (with their `labels` `[N]`, which a conditional model needs), encoded in
    batches on the model's device and returned on the CPU."""
    label_batches = [None] * len(x.split(batch_size)) if labels is None else labels.split(batch_size)
    parts = [model.encode(batch.to(model.device), batch_labels).cpu() for batch, batch_labels in
             zip(x.split(batch_size), label_batches, strict=True)]
    return Posterior(torch.cat([part.mean for part in parts]), torch.cat([part.logvar for part in parts]))


@runtime_checkable
class LikelihoodModel(EncodingModel, Protocol):
    """A family with a density p(x|z) (`Capabilities.likelihood`): ELBO and IWAE bounds on held-out images."""

    def loss_terms(
        self, x: torch.Tensor, noise: torch.Tensor | None = None, labels: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Per image: "recon" −log p(x|z) at one reparameterised z (from `noise`), "kl", "kl_per_dim", "mu"."""

    def decode_dist(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.distributions.Distribution:
        """p(x|z) over whole images: `log_prob(x)` is `[N]`."""

    def prior_log_density(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) of codes `[..., D]`: `[...]`."""


@runtime_checkable
class ClassifyingModel(EncodingModel, Protocol):
    """A family that predicts classes (`Capabilities.classifier`)."""

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Images `[N, C, H, W]` → class logits `[N, classes]`."""
