"""The variational bound of a ddpm on the 8-bit images, in nats and bits/dim, estimated with sampled timesteps.

−log p(x_0) ≤ L_T + Σ_{t=1}^{T−1} L_t + L_0 (Ho et al. 2020, eq. 5, with time running 0 … T−1 here):
- L_T = KL(q(x_{T−1} | x_0) ‖ N(0, I)), in closed form;
- L_t = KL(q(x_{t−1} | x_t, x_0) ‖ p_θ(x_{t−1} | x_t)): both Gaussians have the posterior variance β̃_t (the
  variance the ancestral sampler uses), so L_t = ‖μ̃_t(x_t, x_0) − μ_θ(x_t, t)‖² / (2 β̃_t) at one draw of x_t;
- L_0 = −log p(x_0 | x_0 noised once): the discretised Gaussian of Ho et al. (mean the predicted x_0, standard
  deviation √β_0, bins 2/255 wide, the two edge bins open), so the bound is on a probability of the 8-bit image.

The sum over t is estimated by (T − 1) times the mean of L_t at `timesteps` uniform draws of t per image, an
unbiased estimate whose standard error over images is reported beside it: the figure is marked as an estimate.
"""

from __future__ import annotations

import math

import torch

from vaelab.data.datasets import iterate_batches
from vaelab.evaluation.likelihood import bits_per_dim
from vaelab.models.diffusion import DDPM
from vaelab.models.noise_schedule import estimated_image

HALF_BIN = 1 / 255  # half the width of one of the 256 levels in [−1, 1]
LOG_FLOOR = 1e-12


def standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1 + torch.erf(x / math.sqrt(2)))


def discretised_gaussian_log_prob(x0: torch.Tensor, mean: torch.Tensor, std: float) -> torch.Tensor:
    """log P(x_0's level) per image `[N]` under N(mean, std²) cut into the 256 bins of [−1, 1] (edges open)."""
    upper = torch.where(x0 > 1 - HALF_BIN, torch.ones_like(x0), standard_normal_cdf((x0 + HALF_BIN - mean) / std))
    lower = torch.where(x0 < -1 + HALF_BIN, torch.zeros_like(x0), standard_normal_cdf((x0 - HALF_BIN - mean) / std))
    return (upper - lower).clamp(min=LOG_FLOOR).log().flatten(1).sum(1)


@torch.no_grad()
def bound_terms(model: DDPM, images: torch.Tensor, timesteps: int, generator: torch.Generator) -> torch.Tensor:
    """The estimated bound −log p(x_0) per image `[N]` in nats, for images in [0, 1] (multiples of 1/255)."""
    x0 = images.to(model.device) * 2 - 1
    n, steps = x0.shape[0], model.steps

    def draw(t: int | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.full((n,), t, device=x0.device) if isinstance(t, int) else t
        noisy = model.schedule.add_noise(x0, t, torch.randn(x0.shape, generator=generator).to(x0.device))
        alpha_bar = model.schedule.alpha_bar[t].view(-1, 1, 1, 1)
        return noisy, estimated_image(noisy, model.predicted_noise(noisy, t), alpha_bar)

    last = model.schedule.alpha_bar[-1]
    prior = 0.5 * (last * x0.pow(2) + (1 - last) - 1 - (1 - last).log()).flatten(1).sum(1)
    _, predicted = draw(0)
    decoder = -discretised_gaussian_log_prob(x0, predicted, model.schedule.betas[0].sqrt().item())
    middle = torch.zeros(n, device=x0.device)
    for _ in range(timesteps):
        t = torch.randint(1, steps, (n,), generator=generator).to(x0.device)
        noisy, predicted = draw(t)
        true_mean, variance = model.schedule.posterior(x0, noisy, t)
        model_mean, _ = model.schedule.posterior(predicted, noisy, t)
        middle += ((true_mean - model_mean).pow(2) / (2 * variance)).flatten(1).sum(1)
    return (prior + decoder + (steps - 1) * middle / timesteps).cpu()


def summarise_bound(per_image: torch.Tensor, pixels: int, timesteps: int) -> dict[str, float | int | str]:
    nats = per_image.mean().item()
    error = per_image.std().item() / math.sqrt(len(per_image)) if len(per_image) > 1 else math.nan
    return {
        "nll_bound_nats": nats,
        "bits_per_dim": bits_per_dim(nats, pixels),
        "bits_per_dim_standard_error": bits_per_dim(error, pixels),
        "images": len(per_image),
        "timesteps_per_image": timesteps,
        "note": "estimate: the sum over timesteps is sampled (see vaelab.evaluation.diffusion_bound)",
    }


BOUND_BATCH = 250  # test images per batch of the bound


@torch.no_grad()
def estimated_bound(model: DDPM, images: torch.Tensor, timesteps: int, seed: int) -> dict[str, float | int | str]:
    """The bound of `images` (in [0, 1]) summarised as eval.json holds it (`summarise_bound`): `timesteps` draws of
    t per image, the noise seeded by `seed`, so `vaelab eval` and `vaelab compare` give the same figure."""
    generator = torch.Generator().manual_seed(seed)
    per_image = torch.cat([bound_terms(model, images[index], timesteps, generator)
                           for index in iterate_batches(len(images), BOUND_BATCH)])
    return summarise_bound(per_image, images[0].numel(), timesteps)

