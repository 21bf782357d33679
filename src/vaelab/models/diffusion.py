"""`ddpm`: a denoising diffusion model (Ho et al. 2020) with a small U-Net, ε-prediction, a cosine noise schedule
(Nichol & Dhariwal 2021) and an exponential moving average of the weights; DDIM (Song et al. 2021) sampling and
inversion.

The noise schedule (ᾱ_t, the forward draw, the DDIM and ancestral updates) is its own object,
`vaelab.models.noise_schedule.NoiseSchedule`; images are in [−1, 1] inside and [0, 1] outside. The U-Net has one
level per entry of `channels` (each but the last halves the resolution), `blocks_per_stage` residual blocks per
level (at least one), a sinusoidal timestep embedding added in every block, and self-attention at the lowest
resolution.

The EMA copy (`ema`, decay `ema_decay`, warmed up as (1 + step) / (10 + step) so short runs are not held at their
initial weights) is stored with the weights and resumed, and it is what samples, inverts and is validated.

The model API it shares with the other families: its code is the whole starting noise x_T, flattened
(`latent_dim` = C·H·W), `decode(z)` runs DDIM from it for `sampling_steps` steps (deterministic: the same code always
gives the same image) and `sample(n, generator)` draws the codes from N(0, I). `invert(x)` runs DDIM backwards, a
deterministic code for every image, which interpolation and reconstruction use; `ancestral_sample` is the full
T-step stochastic sampler of Ho et al.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vaelab.data.datasets import iterate_batches
from vaelab.models.base import FamilyModule
from vaelab.models.noise_schedule import NoiseSchedule
from vaelab.models.options import ModelConfig
from vaelab.models.registry import require_image_shape
from vaelab.models.training_step import GeneratorSpec, Phase, StepContext, TrainingStep, ValidationData

GROUPS = 8  # GroupNorm groups: every width must be a multiple


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """The sinusoidal embedding of integer timesteps `[N]` → `[N, dim]` (Vaswani et al., as in Ho et al.)."""
    half = dim // 2
    frequencies = torch.exp(-math.log(10_000) * torch.arange(half, device=t.device) / half)
    angles = t.float()[:, None] * frequencies[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class ResidualBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, embedding_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(GROUPS, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time = nn.Linear(embedding_dim, out_channels)
        self.norm2 = nn.GroupNorm(GROUPS, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity (Ho et al.'s zero-initialised output)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time(embedding)[:, :, None, None]
        return self.skip(x) + self.conv2(F.silu(self.norm2(h)))


class SelfAttention(nn.Module):
    """One-head self-attention over the pixels of a feature map, with a residual connection."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(GROUPS, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(n, 3, c, h * w).transpose(2, 3).unbind(1)
        attended = F.scaled_dot_product_attention(q, k, v)  # [n, hw, c]
        return x + self.out(attended.transpose(1, 2).reshape(n, c, h, w))


class UNet(nn.Module):
    """ε̂(x_t, t): levels of residual blocks (`widths`), down by stride-2 convolutions, up by nearest-neighbour
    upsampling, one skip connection per level, self-attention at the lowest level and in the middle."""

    def __init__(self, image_channels: int, widths: list[int], blocks: int) -> None:
        super().__init__()
        self.base_width = widths[0]
        self.embedding_dim = 4 * widths[0]
        self.time = nn.Sequential(
            nn.Linear(widths[0], self.embedding_dim), nn.SiLU(), nn.Linear(self.embedding_dim, self.embedding_dim)
        )
        self.stem = nn.Conv2d(image_channels, widths[0], 3, padding=1)
        lowest = len(widths) - 1
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        previous = widths[0]
        for level, width in enumerate(widths):
            self.down.append(nn.ModuleList(
                [ResidualBlock(previous if b == 0 else width, width, self.embedding_dim) for b in range(blocks)]
            ))
            previous = width
            if level < lowest:
                self.downsample.append(nn.Conv2d(width, width, 3, stride=2, padding=1))
        self.middle = nn.ModuleList([ResidualBlock(widths[-1], widths[-1], self.embedding_dim),
                                     ResidualBlock(widths[-1], widths[-1], self.embedding_dim)])
        self.attention_down = SelfAttention(widths[-1])
        self.attention_middle = SelfAttention(widths[-1])
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for level in reversed(range(len(widths))):
            width = widths[level]
            self.up.append(nn.ModuleList(
                [ResidualBlock(2 * width if b == 0 else width, width, self.embedding_dim) for b in range(blocks)]
            ))
            if level > 0:
                self.upsample.append(nn.Conv2d(width, widths[level - 1], 3, padding=1))
        self.head = nn.Sequential(nn.GroupNorm(GROUPS, widths[0]), nn.SiLU(),
                                  nn.Conv2d(widths[0], image_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        embedding = self.time(timestep_embedding(t, self.base_width))
        h = self.stem(x)
        skips = []
        for level, blocks in enumerate(self.down):
            for block in blocks:
                h = block(h, embedding)
            if level == len(self.down) - 1:
                h = self.attention_down(h)
            skips.append(h)
            if level < len(self.downsample):
                h = self.downsample[level](h)
        h = self.middle[0](h, embedding)
        h = self.middle[1](self.attention_middle(h), embedding)
        for index, blocks in enumerate(self.up):
            skip = skips.pop()
            h = torch.cat([h, skip], dim=1)
            for block in blocks:
                h = block(h, embedding)
            if index < len(self.upsample):
                size = skips[-1].shape[-2:]
                h = self.upsample[index](F.interpolate(h, size=size, mode="nearest"))
        return self.head(h)


class DDPM(FamilyModule):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        require_image_shape(config)
        self.image_shape = tuple(config.image_shape)
        self.net = UNet(config.image_shape[0], list(config.channels), max(1, config.blocks_per_stage))
        self.ema = copy.deepcopy(self.net).requires_grad_(False)
        self.schedule = NoiseSchedule(config.ddpm.noise_schedule, config.ddpm.diffusion_steps)
        self.sampling_steps = config.ddpm.sampling_steps

    @property
    def latent_dim(self) -> int:
        """Its code is the whole starting noise x_T: C·H·W values."""
        return math.prod(self.image_shape)

    @property
    def steps(self) -> int:
        return self.config.ddpm.diffusion_steps

    def predicted_noise(self, x: torch.Tensor, t: torch.Tensor | int, ema: bool = True) -> torch.Tensor:
        """ε̂(x_t, t) of the EMA weights (or the trained ones), float32."""
        if isinstance(t, int):
            t = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        return (self.ema if ema else self.net)(x, t).float()

    @torch.no_grad()
    def ddim_generate(self, noise: torch.Tensor, steps: int, clip: bool = True) -> torch.Tensor:
        """Deterministic DDIM (η = 0) from x_{T−1} = `noise` `[N, C, H, W]` to x_0 in [−1, 1]."""
        x = noise
        times = self.schedule.ddim_times(steps)
        for t, earlier in zip(reversed(times), [*reversed(times[:-1]), -1], strict=True):
            x = self.schedule.ddim_step(x, self.predicted_noise(x, t), t, earlier, clip)
        return x

    @torch.no_grad()
    def ddim_invert(self, x0: torch.Tensor, steps: int) -> torch.Tensor:
        """DDIM run backwards from images in [−1, 1] to their x_{T−1}: the code `ddim_generate` maps back to them
        (up to the discretisation of `steps`)."""
        x = x0
        times = self.schedule.ddim_times(steps)
        for earlier, t in zip([-1, *times[:-1]], times, strict=True):
            x = self.schedule.ddim_inverse_step(x, self.predicted_noise(x, max(earlier, 0)), earlier, t)
        return x

    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None, steps: int | None = None) -> torch.Tensor:
        """The image DDIM makes of each code (flattened x_T, `[N, latent_dim]`), in [0, 1]."""
        noise = z.to(self.device).view(-1, *self.image_shape)
        return (self.ddim_generate(noise, steps or self.sampling_steps) + 1) / 2

    def sample(
        self, n: int, generator: torch.Generator | None = None, labels: torch.Tensor | None = None,
        steps: int | None = None,
    ) -> torch.Tensor:
        """`n` images by DDIM from codes z ~ N(0, I): `[n, C, H, W]` in [0, 1]."""
        return self.decode(self.sample_prior(n, generator), steps=steps)

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """`n` codes (flattened x_T) z ~ N(0, I) `[n, latent_dim]` on the model's device, drawn on the CPU."""
        return torch.randn(n, self.latent_dim, generator=generator).to(self.device)

    def invert(self, images: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """The DDIM code of each image in [0, 1]: `[N, latent_dim]`."""
        return self.ddim_invert(images.to(self.device) * 2 - 1, steps or self.sampling_steps).flatten(1)

    @torch.no_grad()
    def ancestral_sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Ho et al.'s sampler: all T steps, each adding fresh noise (variance β̃_t); `[n, C, H, W]` in [0, 1]."""
        x = torch.randn(n, *self.image_shape, generator=generator).to(self.device)
        for t in reversed(range(self.steps)):
            x = self.schedule.step(x, self.predicted_noise(x, t), t, generator)
        return (x + 1) / 2

    @torch.no_grad()
    def update_ema(self, step: int) -> None:
        decay = min(self.config.ddpm.ema_decay, (1 + step) / (10 + step))
        for average, current in zip(self.ema.parameters(), self.net.parameters(), strict=True):
            average.lerp_(current.detach(), 1 - decay)


class DiffusionStep(TrainingStep):
    """The simple loss of Ho et al.: the mean squared error of ε̂(x_t, t) per image, t uniform over 0 … T−1, both
    drawn from the run's "diffusion" generator; the EMA is updated after each optimizer step. The validation error
    of the EMA weights, on fixed draws, picks the stored weights."""

    selection = "val_neg_eps_mse"

    def generators(self) -> dict[str, GeneratorSpec]:
        return {"diffusion": GeneratorSpec(2)}

    def parameter_groups(self, model: DDPM) -> dict[str, Iterable[nn.Parameter]]:
        return {"model": model.net.parameters()}

    def noise_and_times(
        self, x0: torch.Tensor, steps: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.randint(0, steps, (x0.shape[0],), generator=generator, device=x0.device)
        return torch.randn(x0.shape, generator=generator, device=x0.device), t

    def step(
        self, model: DDPM, intensities: torch.Tensor, labels: torch.Tensor, context: StepContext
    ) -> Iterator[Phase]:
        # A diffusion model denoises the intensities themselves, never a binarization.
        x0 = context.prepared(intensities * 2 - 1)
        noise, t = self.noise_and_times(x0, model.steps, context.generators["diffusion"])
        with context.autocast():
            error = (model.predicted_noise(model.schedule.add_noise(x0, t, noise), t, ema=False) - noise).pow(2)
        loss = error.flatten(1).mean(1)
        yield Phase(loss.mean(), {"loss": loss})
        model.update_ema(context.step)  # the trainer took the optimizer step before coming back here

    def validate(self, model: DDPM, data: ValidationData) -> dict[str, Any]:
        device = data.intensities.device
        generator = torch.Generator(device).manual_seed(data.seed)
        total = 0.0
        for index in iterate_batches(data.intensities.shape[0], 500):
            x0 = data.intensities[index.to(device)] * 2 - 1
            noise, t = self.noise_and_times(x0, model.steps, generator)
            error = model.predicted_noise(model.schedule.add_noise(x0, t, noise), t) - noise
            total += error.pow(2).flatten(1).mean(1).sum().item()
        mse = total / data.intensities.shape[0]
        return {"val_eps_mse": mse, "val_neg_eps_mse": -mse}

    def summary(self, row: dict[str, Any]) -> str:
        return f"val ε-MSE (EMA) {row['val_eps_mse']:.4f}"
