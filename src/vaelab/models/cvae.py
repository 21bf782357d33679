"""The conditional VAE (Kingma et al. 2014, "M1+M2"'s generative half without the classifier): encoder and
decoder both see the class label y as a one-hot vector, so q(z|x, y) and p(x|z, y). The label carries the
content (which digit or garment), so z is free to carry only the style (slant, thickness, size).

The label enters where it is cheapest and most direct: appended to the encoder's last hidden layer (the one
that reads out mu and log-variance) and to z at the decoder's input. With `label_at_input` it also enters the
encoder's first layer, as one constant plane per class beside the image. Everything else is the VAE's; each method
needs the labels `[N]` (int64, 0 … classes−1) that the plain VAE's methods accept and ignore.
"""

from __future__ import annotations

import torch
from torch.distributions import Distribution
from torch.nn import functional as F

from vaelab.errors import VaelabError
from vaelab.models.base import Posterior
from vaelab.models.options import ModelConfig
from vaelab.models.registry import require_images
from vaelab.models.vae import VAE


def one_hot(labels: torch.Tensor, classes: int, like: torch.Tensor) -> torch.Tensor:
    """Labels `[N]` → one-hot `[N, classes]` with the dtype and device of `like`."""
    return F.one_hot(labels.long().to(like.device), classes).to(like.dtype)


class ConditionalVAE(VAE):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config, condition_dim=config.classes, input_planes=config.classes * config.cvae.label_at_input)

    @property
    def classes(self) -> int:
        return self.config.classes

    def check_labels(self, labels: torch.Tensor | None) -> torch.Tensor:
        """Labels as int64 `[N]`; a class the model does not know, or none, is a one-line error."""
        if labels is None:
            raise VaelabError("a conditional model needs the class of every image; give one (e.g. --class C)")
        labels = torch.as_tensor(labels).long().reshape(-1)
        unknown = labels[(labels < 0) | (labels >= self.classes)]
        if unknown.numel():
            raise VaelabError(
                f"class {unknown[0].item()} is out of range; this model knows classes 0 to {self.classes - 1}"
            )
        return labels

    def one_hot(self, labels: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
        return one_hot(self.check_labels(labels), self.classes, like)

    def encode(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> Posterior:
        """q(z|x, y): the encoder's hidden features with the one-hot label appended, read out as mu, logvar."""
        require_images(x, self.config, "encode")
        one_hot = self.one_hot(labels, x)
        if self.config.cvae.label_at_input:
            x = torch.cat([x, one_hot[:, :, None, None].expand(-1, -1, *x.shape[2:])], dim=1)
        hidden = self.trunk_features(x)
        mu, logvar = self.encoder[-1](torch.cat([hidden, one_hot.to(hidden.dtype)], dim=1)).float().chunk(2, 1)
        return Posterior(mu, logvar)

    def decode_dist(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> Distribution:
        return self.output_dist(self.decoder_output(torch.cat([z, self.one_hot(labels, z)], dim=1)))

    def sample(
        self, n: int, generator: torch.Generator | None = None, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """`n` images from z ~ p(z) decoded as `labels` `[n]`; without labels, the classes in turn (0, 1, …)."""
        z = self.sample_prior(n, generator)
        if labels is None:
            labels = torch.arange(n) % self.classes
        return self.decode(z, labels)

