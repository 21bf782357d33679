"""The noise schedule of a diffusion model (`ddpm`), as one small object: how much noise each timestep holds, the
forward draw x_t ~ q(x_t | x_0), and the reverse updates, DDIM's deterministic one and Ho et al.'s ancestral one.

Time runs 0 … T−1 (Ho et al.'s t = 1 … T): x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε with ᾱ_t = Π_{s ≤ t} (1 − β_s), images in
[−1, 1]. The schedule holds no weights: it is rebuilt from the config, so it is never stored in a checkpoint.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from vaelab.errors import VaelabError
from vaelab.models.options import NOISE_SCHEDULES

COSINE_OFFSET = 0.008  # s of Nichol & Dhariwal: keeps β small near t = 0
MAX_BETA = 0.999


def noise_schedule(kind: str, steps: int) -> torch.Tensor:
    """β_t for t = 0 … steps−1 (float64): the cosine schedule of Nichol & Dhariwal 2021, or Ho et al.'s linear one
    from 1e-4 to 0.02 (scaled to `steps`)."""
    if kind == "linear":
        scale = 1000 / steps
        return torch.linspace(scale * 1e-4, scale * 0.02, steps, dtype=torch.float64)
    if kind != "cosine":
        raise VaelabError(f"unknown noise_schedule '{kind}'; choose one of: {', '.join(NOISE_SCHEDULES)}")
    t = torch.arange(steps + 1, dtype=torch.float64) / steps
    alpha_bar = torch.cos((t + COSINE_OFFSET) / (1 + COSINE_OFFSET) * math.pi / 2) ** 2
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=MAX_BETA)


def estimated_image(x: torch.Tensor, eps: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """x̂_0 = (x_t − √(1 − ᾱ_t) ε) / √ᾱ_t: the clean image that x_t and its noise ε imply."""
    return (x - (1 - alpha_bar).sqrt() * eps) / alpha_bar.sqrt()


class NoiseSchedule(nn.Module):
    """β_t and ᾱ_t of `steps` timesteps (float32 buffers that follow the model's device, not saved)."""

    def __init__(self, kind: str, steps: int) -> None:
        super().__init__()
        betas = noise_schedule(kind, steps)
        self.register_buffer("betas", betas.float(), persistent=False)
        self.register_buffer("alpha_bar", torch.cumprod(1 - betas, 0).float(), persistent=False)

    @property
    def steps(self) -> int:
        return self.betas.shape[0]

    def alpha_bar_at(self, t: int) -> torch.Tensor:
        """ᾱ_t, with ᾱ_{−1} = 1 (the clean image)."""
        return self.alpha_bar[t] if t >= 0 else torch.ones((), device=self.alpha_bar.device)

    def add_noise(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε: a draw of q(x_t | x_0) for images `[N, C, H, W]` at timesteps `t` `[N]`."""
        alpha_bar = self.alpha_bar[t].view(-1, 1, 1, 1)
        return alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * noise

    def ddim_times(self, steps: int) -> list[int]:
        """The `steps` timesteps DDIM visits, ascending and evenly spaced, the last one T−1 (the "trailing"
        spacing of Lin et al. 2024: even one step starts from pure noise)."""
        if not 1 <= steps <= self.steps:
            raise VaelabError(f"--steps must be between 1 and the model's {self.steps} diffusion steps")
        return (torch.arange(1, steps + 1) * self.steps // steps - 1).tolist()

    def ddim_step(self, x: torch.Tensor, eps: torch.Tensor, t: int, earlier: int, clip: bool = True) -> torch.Tensor:
        """DDIM's deterministic update (η = 0) from x_t, whose noise is predicted as `eps`, to x_earlier (earlier = −1:
        the clean image); `clip` keeps the implied clean image in [−1, 1] and re-derives the noise from it."""
        alpha_bar, alpha_bar_earlier = self.alpha_bar_at(t), self.alpha_bar_at(earlier)
        x0 = estimated_image(x, eps, alpha_bar)
        if clip:
            x0 = x0.clamp(-1, 1)
            eps = (x - alpha_bar.sqrt() * x0) / (1 - alpha_bar).sqrt()
        return alpha_bar_earlier.sqrt() * x0 + (1 - alpha_bar_earlier).sqrt() * eps

    def ddim_inverse_step(self, x: torch.Tensor, eps: torch.Tensor, earlier: int, t: int) -> torch.Tensor:
        """DDIM's update run backwards: from x_earlier, whose noise is predicted as `eps`, to x_t."""
        alpha_bar_earlier, alpha_bar = self.alpha_bar_at(earlier), self.alpha_bar_at(t)
        x0_estimate = estimated_image(x, eps, alpha_bar_earlier)
        return alpha_bar.sqrt() * x0_estimate + (1 - alpha_bar).sqrt() * eps

    def posterior(
        self, x0: torch.Tensor, x: torch.Tensor, t: int | torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of q(x_{t−1} | x_t, x_0) for t ≥ 1 (Ho et al. eq. 7); `t` one step or one per image."""
        t = torch.as_tensor(t, device=self.alpha_bar.device)
        shape = (-1, 1, 1, 1) if t.ndim else ()
        alpha_bar, alpha_bar_earlier = self.alpha_bar[t].reshape(shape), self.alpha_bar[t - 1].reshape(shape)
        beta = self.betas[t].reshape(shape)
        mean = alpha_bar_earlier.sqrt() * beta * x0 + (1 - beta).sqrt() * (1 - alpha_bar_earlier) * x
        return mean / (1 - alpha_bar), beta * (1 - alpha_bar_earlier) / (1 - alpha_bar)

    def step(
        self, x: torch.Tensor, eps: torch.Tensor, t: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Ho et al.'s ancestral update from x_t, whose noise is predicted as `eps`, to x_{t−1}: the posterior mean
        at the implied clean image (kept in [−1, 1]) plus fresh noise of variance β̃_t (drawn on the CPU from
        `generator`); at t = 0, the clean image itself."""
        x0 = estimated_image(x, eps, self.alpha_bar[t]).clamp(-1, 1)
        if t == 0:
            return x0
        mean, variance = self.posterior(x0, x, t)
        return mean + variance.sqrt() * torch.randn(x.shape, generator=generator).to(x.device)
