"""`gan`: a DCGAN (Radford et al. 2016) sized by the dataset's shape, trained with the non-saturating loss and a
spectrally normalised discriminator (Miyato et al. 2018).

Why this objective: spectral normalisation bounds the discriminator's Lipschitz constant with one power-iteration
step per layer and forward pass, so it costs almost nothing on a CPU, while WGAN-GP and R1 each need a second
backward pass through the discriminator (double backpropagation) on every step. The non-saturating generator loss
−log D(G(z)) keeps its gradient when the discriminator wins, which the original minimax loss does not.

The generator mirrors the VAE's decoder: z → a linear layer → the smallest feature map → one stride-2 transposed
convolution per stage (`ModelConfig.stage_widths`, so the architecture follows the resolution), batch norm and ReLU
between them, tanh at the end. The discriminator mirrors the encoder: stride-2 convolutions with leaky ReLU, then
one linear logit, every layer spectrally normalised. Images are [0, 1] outside and [−1, 1] inside.

The model API it shares with the VAE: `latent_dim`, `decode(z)` (the image for a code, in [0, 1]) and
`sample(n, generator)`, so prior samples, interpolation between codes and traversals work unchanged. It has no
encoder and no likelihood (the registry's capabilities say so).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from vaelab.data.datasets import iterate_batches
from vaelab.models.base import FamilyModule
from vaelab.models.options import ModelConfig
from vaelab.models.registry import require_image_shape
from vaelab.models.training_step import GeneratorSpec, Phase, StepContext, TrainingStep, ValidationData

LEAK = 0.2  # the leaky ReLU slope of DCGAN's discriminator
ADAM_BETAS = (0.5, 0.999)  # DCGAN's: a lower β1 damps the oscillation of the two players' momenta


class Generator(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        channels, height, width = config.image_shape
        widths = [channels, *config.stage_widths]
        stride = 2 ** (len(widths) - 1)
        self.feature_shape = (widths[-1], height // stride, width // stride)
        features = widths[-1] * self.feature_shape[1] * self.feature_shape[2]
        self.project = nn.Sequential(nn.Linear(config.latent_dim, features), nn.BatchNorm1d(features), nn.ReLU())
        layers: list[nn.Module] = []
        for i in reversed(range(1, len(widths))):
            layers.append(nn.ConvTranspose2d(widths[i], widths[i - 1], 4, stride=2, padding=1, bias=i == 1))
            layers += [nn.BatchNorm2d(widths[i - 1]), nn.ReLU()] if i > 1 else [nn.Tanh()]
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Codes `[N, latent_dim]` → images `[N, C, H, W]` in [−1, 1]."""
        return self.body(self.project(z).view(-1, *self.feature_shape))


class Discriminator(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        channels, height, width = config.image_shape
        widths = [channels, *config.stage_widths]
        layers: list[nn.Module] = []
        for i in range(len(widths) - 1):
            layers += [spectral_norm(nn.Conv2d(widths[i], widths[i + 1], 4, stride=2, padding=1)), nn.LeakyReLU(LEAK)]
        stride = 2 ** (len(widths) - 1)
        layers += [nn.Flatten(), spectral_norm(nn.Linear(widths[-1] * (height // stride) * (width // stride), 1))]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images `[N, C, H, W]` in [−1, 1] → one logit per image `[N]` (positive: judged real)."""
        return self.body(x).squeeze(1).float()


class GAN(FamilyModule):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        require_image_shape(config)
        self.generator = Generator(config)
        self.discriminator = Discriminator(config)

    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The generator's image for each code, in [0, 1], float32."""
        return (self.generator(z).float() + 1) / 2

    def sample(
        self, n: int, generator: torch.Generator | None = None, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """`n` images from codes z ~ N(0, I): `[n, C, H, W]` in [0, 1]."""
        return self.decode(self.sample_prior(n, generator))

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """`n` codes z ~ N(0, I) `[n, latent_dim]` on the model's device, drawn on the CPU from `generator`."""
        return torch.randn(n, self.latent_dim, generator=generator).to(self.device)

    def judge(self, images: torch.Tensor) -> torch.Tensor:
        """The discriminator's logit for images in [0, 1]."""
        return self.discriminator(images * 2 - 1)


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Per image −log D(x) − log(1 − D(G(z))), with D = sigmoid(logit)."""
    return F.softplus(-real_logits) + F.softplus(fake_logits)


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """The non-saturating loss −log D(G(z)) per image."""
    return F.softplus(-fake_logits)


class GANStep(TrainingStep):
    """One discriminator step on a real batch and as many generated images, then one generator step on fresh
    codes; both draw from the run's "codes" generator. There is no held-out score that tracks sample quality
    without a trained judge, so the last epoch's weights are kept (`selection` None)."""

    selection = None

    def generators(self) -> dict[str, GeneratorSpec]:
        return {"codes": GeneratorSpec(2)}

    def parameter_groups(self, model: GAN) -> dict[str, Iterable[nn.Parameter]]:
        return {"discriminator": model.discriminator.parameters(), "generator": model.generator.parameters()}

    def optimizer_options(self, name: str) -> dict[str, Any]:
        return {"betas": ADAM_BETAS}

    def codes(self, n: int, context: StepContext, device: torch.device) -> torch.Tensor:
        return torch.randn(n, self.config.model.latent_dim, generator=context.generators["codes"], device=device)

    def step(
        self, model: GAN, intensities: torch.Tensor, labels: torch.Tensor, context: StepContext
    ) -> Iterator[Phase]:
        # A GAN models the intensities themselves: a binarized run's fresh draw would only add noise to the real side.
        real = context.prepared(intensities)
        n = real.shape[0]
        with context.autocast():
            with torch.no_grad():
                fake = model.decode(self.codes(n, context, real.device))
            real_logits, fake_logits = model.judge(real), model.judge(context.prepared(fake))
            loss_d = discriminator_loss(real_logits, fake_logits)
        yield Phase(loss_d.mean(), {"loss_d": loss_d, "d_real": torch.sigmoid(real_logits),
                                    "d_fake": torch.sigmoid(fake_logits)}, optimizer="discriminator")

        # The generator's step back-propagates through the discriminator without keeping its gradients.
        model.discriminator.requires_grad_(False)
        try:
            with context.autocast():
                fake = context.prepared(model.decode(self.codes(n, context, real.device)))
                loss_g = generator_loss(model.judge(fake))
            yield Phase(loss_g.mean(), {"loss": loss_g}, optimizer="generator")
        finally:
            model.discriminator.requires_grad_(True)

    def validate(self, model: GAN, data: ValidationData) -> dict[str, Any]:
        """The discriminator's mean belief on the validation images and on as many images from fixed codes, and the
        generator's loss on those: how far the two players are from balance (½ and ½ at the equilibrium)."""
        device = data.intensities.device
        generator = torch.Generator(device).manual_seed(data.seed)
        sums = {"val_d_real": 0.0, "val_d_fake": 0.0, "val_loss_g": 0.0}
        for index in iterate_batches(data.intensities.shape[0], 1000):
            real = data.intensities[index.to(device)]
            z = torch.randn(real.shape[0], model.latent_dim, generator=generator, device=device)
            fake_logits = model.judge(model.decode(z))
            sums["val_d_real"] += torch.sigmoid(model.judge(real)).sum().item()
            sums["val_d_fake"] += torch.sigmoid(fake_logits).sum().item()
            sums["val_loss_g"] += generator_loss(fake_logits).sum().item()
        return {name: value / data.intensities.shape[0] for name, value in sums.items()}

    def summary(self, row: dict[str, Any]) -> str:
        return f"val D(real) {row['val_d_real']:.3f}  D(fake) {row['val_d_fake']:.3f}"
