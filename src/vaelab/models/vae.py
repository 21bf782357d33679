"""The convolutional VAE: encoder → diagonal Gaussian q(z|x), standard normal prior, decoder → p(x|z).

The public surface (kept stable for outside tools): `encode(x) → (mu, logvar)`, `decode_dist(z)` (a torch
distribution whose `log_prob(x)` is `[N]`), `sample(n, generator)`, `latent_dim`. Loss terms are per image,
in nats. Every method also takes `labels` (the class of each image, int64 `[N]`): the conditional variants need
them, the plain VAE ignores them, so that code written once serves both.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.distributions import Distribution

from vaelab.config import ModelConfig
from vaelab.models.blocks import down_stage, up_stage
from vaelab.models.likelihoods import make_likelihood


def kl_per_dimension(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) in closed form, per image and dimension: `[N, D]` nats."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def gaussian_log_density(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, exp(logvar)) summed over the last dimension."""
    return -0.5 * (math.log(2 * math.pi) + logvar + (z - mu).pow(2) / logvar.exp()).sum(-1)


def reparameterised_terms(
    x: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    noise: torch.Tensor | None,
    decode_dist: Callable[[torch.Tensor], Distribution],
) -> dict[str, torch.Tensor]:
    """The loss terms once q(z|x) is known: −log p(x|z) at one reparameterised z (standard normal `noise`, drawn
    when None) and the KL per dimension. Each model passes its own `decode_dist` (e.g. with the label bound)."""
    if noise is None:
        noise = torch.randn_like(mu)
    z = mu + noise * (0.5 * logvar).exp()
    recon = -decode_dist(z).log_prob(x)
    kl_dims = kl_per_dimension(mu, logvar)
    return {"recon": recon, "kl_per_dim": kl_dims, "kl": kl_dims.sum(1), "mu": mu, "logvar": logvar}


class VAE(nn.Module):
    def __init__(self, config: ModelConfig, condition_dim: int = 0, input_planes: int = 0) -> None:
        """`condition_dim` widens the encoder's last layer and the decoder's first by a condition vector (the
        one-hot label of the conditional variant), `input_planes` the encoder's input by that many image planes;
        0 and 0 give the plain VAE, whose parameter names it keeps."""
        super().__init__()
        self.config = config
        widths = [config.image_channels, *config.channels]
        encoder_widths = [config.image_channels + input_planes, *config.channels]
        self.feature_size = config.image_size // 2 ** len(config.channels)
        features = config.channels[-1] * self.feature_size**2

        encoder: list[nn.Module] = [
            down_stage(encoder_widths[i], encoder_widths[i + 1], config.blocks_per_stage)
            for i in range(len(config.channels))
        ]
        encoder.append(nn.Flatten())
        decoder_input: list[nn.Module] = []
        decoder_width = config.latent_dim + condition_dim
        if config.hidden_dim:
            encoder += [nn.Linear(features, config.hidden_dim), nn.ReLU()]
            decoder_input += [nn.Linear(decoder_width, config.hidden_dim), nn.ReLU()]
        encoder.append(nn.Linear((config.hidden_dim or features) + condition_dim, 2 * config.latent_dim))
        decoder_input += [nn.Linear(config.hidden_dim or decoder_width, features), nn.ReLU()]
        self.encoder = nn.Sequential(*encoder)
        self.decoder_input = nn.Sequential(*decoder_input)
        self.decoder = nn.Sequential(
            *[
                up_stage(widths[i + 1], widths[i], config.blocks_per_stage, last=(i == 0))
                for i in reversed(range(len(config.channels)))
            ]
        )
        self.likelihood = make_likelihood(config.likelihood)

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def encode(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x `[N, C, H, W]` in [0, 1] → posterior mean and log-variance, each `[N, latent_dim]`, float32."""
        mu, logvar = self.encoder(x).float().chunk(2, dim=1)
        return mu, logvar

    def trunk_features(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's hidden features, before the read-out of mu and log-variance (where a conditional variant
        appends the label)."""
        return self.encoder[:-1](x)

    def decoder_output(self, z: torch.Tensor) -> torch.Tensor:
        """Raw decoder output (logits for Bernoulli), float32 `[N, C, H, W]`."""
        c = self.config
        h = self.decoder_input(z).view(-1, c.channels[-1], self.feature_size, self.feature_size)
        return self.decoder(h).float()

    def decode_dist(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> Distribution:
        """p(x|z) as a distribution over whole images: `log_prob(x)` is `[N]`, `.mean` is `[N, C, H, W]`."""
        return self.likelihood(self.decoder_output(z))

    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The mean image of p(x|z), in [0, 1]."""
        return self.decode_dist(z, labels).mean

    def sample(
        self, n: int, generator: torch.Generator | None = None, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """`n` images decoded from prior draws z ~ N(0, I): `[n, C, H, W]` in [0, 1]."""
        z = torch.randn(n, self.latent_dim, generator=generator).to(self.device)
        return self.decode(z, labels)

    def reconstruct(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Decode the posterior mean of each input."""
        mu, _ = self.encode(x, labels)
        return self.decode(mu, labels)

    def loss_terms(
        self, x: torch.Tensor, noise: torch.Tensor | None = None, labels: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Per-image reconstruction −log p(x|z) with one reparameterised z, and the KL per dimension.

        `noise` (standard normal, `[N, latent_dim]`) may be passed so that callers control the randomness.
        """
        mu, logvar = self.encode(x, labels)
        return reparameterised_terms(x, mu, logvar, noise, lambda z: self.decode_dist(z, labels))


@torch.no_grad()
def posterior_moments(
    model: VAE, x: torch.Tensor, labels: torch.Tensor | None = None, batch_size: int = 1000
) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior means and log-variances `[N, D]` of inputs `[N, C, H, W]` (with their `labels` `[N]`, which a
    conditional model needs), encoded in batches on the model's device and returned on the CPU."""
    label_batches = [None] * len(x.split(batch_size)) if labels is None else labels.split(batch_size)
    moments = [model.encode(batch.to(model.device), batch_labels) for batch, batch_labels in
               zip(x.split(batch_size), label_batches, strict=True)]
    return torch.cat([mu.cpu() for mu, _ in moments]), torch.cat([logvar.cpu() for _, logvar in moments])


def build_model(config: ModelConfig) -> VAE:
    """The model a config describes: the plain VAE, the conditional one (`kind: cvae`) or a classifier variant."""
    if config.kind in ("vae-classifier", "m2"):
        from vaelab.models.classifier import M2, ClassifierVAE  # they subclass VAE, so they import this module

        return ClassifierVAE(config) if config.kind == "vae-classifier" else M2(config)
    if config.kind == "cvae":
        from vaelab.models.conditional import ConditionalVAE  # it subclasses VAE, so it imports this module

        return ConditionalVAE(config)
    return VAE(config)
