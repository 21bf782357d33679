"""Observation models p(x|z): turn the decoder's output into a distribution over whole images.

Each returns `Independent(..., 3)` so `log_prob(x)` sums over channels and pixels and has shape `[N]`, in nats,
and `.mean` is the image in [0, 1]. A likelihood declares how many decoder output planes it reads per image channel
(`planes_per_channel`: 1 for a mean or logits, 2 for a mean and a per-pixel scale), and the decoder is built to
match; with 2, the first C planes are the mean and the next C the log-scale.

- "bernoulli": logits; exact on binarized data, a cross-entropy on grayscale intensities.
- "gaussian": Normal with one learned σ for all pixels; a density on [0, 1]-scaled values.
- "gaussian-pixel": Normal with a per-pixel σ from the decoder; a density on [0, 1]-scaled values, so its nats
  are not a discrete probability of the 8-bit image (no dequantisation: compare it with "gaussian", not with the
  discrete likelihoods).
- "logistic": a discretised logistic over the 256 levels k/255 (PixelCNN++, single component): a true
  probability of the 8-bit image, so −log_prob / (C·H·W·ln 2) is bits/dim comparable across papers.

A new likelihood is one class here and one line in `LIKELIHOODS`. The two discrete ones also read one pixel's planes
`[N, planes]` at a time (`pixel_value` from a uniform draw, `pixel_mean`), which the autoregressive decoder of
`vaelab.models.pixelcnn` samples with.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Bernoulli, Distribution, Independent, Normal, constraints

LEVELS = 256  # 8-bit intensities k/255
HALF_BIN = 0.5 / (LEVELS - 1)  # half the width of a level's bin on the [0, 1] scale


def floored_exp(log_value: torch.Tensor, min_log_value: float) -> torch.Tensor:
    """exp(log_value) with a floor: on pixels that are always 0 an unbounded density would reward σ → 0 forever."""
    return log_value.clamp(min=min_log_value).exp()


def mean_and_log_scale_planes(
    decoder_output: torch.Tensor, initial_scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """`[N, 2C, H, W]` → (mean planes as they are, log-scale), each `[N, C, H, W]`. The log-scale planes are
    read as offsets from log(initial_scale): a decoder that starts near 0 starts at a sensible scale, where a raw
    log-scale near 0 (a scale of the whole intensity range) would take Adam thousands of steps to walk down."""
    mean_planes, log_scale = decoder_output.chunk(2, dim=1)
    return mean_planes, log_scale + math.log(initial_scale)


class BernoulliLikelihood(nn.Module):
    """Pixels as independent Bernoulli variables with decoder logits. On binarized data this is an exact
    likelihood; on grayscale intensities it is the usual cross-entropy objective (not a normalised density)."""

    planes_per_channel = 1

    def forward(self, decoder_output: torch.Tensor) -> Distribution:
        # validate_args=False: grayscale targets in [0,1] are allowed (cross-entropy against soft targets).
        return Independent(Bernoulli(logits=decoder_output, validate_args=False), 3)

    def pixel_value(self, planes: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
        """A draw for each pixel of `[N, C]` logits, by its uniform `[N, C]`: 1 with probability sigmoid(logit)."""
        return (uniform < torch.sigmoid(planes)).to(uniform.dtype)

    def pixel_mean(self, planes: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(planes)


class GaussianLikelihood(nn.Module):
    """Pixels as Normal(sigmoid(decoder output), σ²) with one learned σ shared by all pixels (the σ-VAE of
    Rybkin et al. 2021): a proper density, where a bare MSE would fix σ arbitrarily."""

    planes_per_channel = 1

    def __init__(self, initial_sigma: float = 0.1, min_sigma: float = 1e-3) -> None:
        super().__init__()
        self.log_sigma = nn.Parameter(torch.tensor(math.log(initial_sigma)))
        self.min_log_sigma = math.log(min_sigma)

    def forward(self, decoder_output: torch.Tensor) -> Distribution:
        sigma = floored_exp(self.log_sigma, self.min_log_sigma)
        return Independent(Normal(torch.sigmoid(decoder_output), sigma, validate_args=False), 3)


class PixelGaussianLikelihood(nn.Module):
    """Pixels as Normal(sigmoid(first C planes), σ²) with log σ = log(initial_sigma) + the next C planes per
    pixel, floored at `min_sigma`. A density over [0, 1]-scaled values: its nats are a density, not a probability
    of the 8-bit image (no dequantisation), so they can exceed 0 and are not comparable with the discrete
    likelihoods."""

    planes_per_channel = 2

    def __init__(self, initial_sigma: float = 0.1, min_sigma: float = 1e-3) -> None:
        super().__init__()
        self.initial_sigma = initial_sigma
        self.min_log_sigma = math.log(min_sigma)

    def forward(self, decoder_output: torch.Tensor) -> Distribution:
        mean_logits, log_sigma = mean_and_log_scale_planes(decoder_output, self.initial_sigma)
        sigma = floored_exp(log_sigma, self.min_log_sigma)
        return Independent(Normal(torch.sigmoid(mean_logits), sigma, validate_args=False), 3)


def log_sigmoid_difference(upper: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
    """log(σ(upper) − σ(upper − width)) for width > 0, exactly and stably everywhere.

    σ(b) − σ(a) = σ(b) · (1 − e^(a−b)) / (1 + e^a), so the log is logsigmoid(b) − softplus(a) + log(−expm1(a − b)):
    no difference of two CDFs that both round to 0 or 1, hence none of PixelCNN++'s pdf × bin-width fallback (and
    its `where` over a branch whose gradient may be NaN). `width` is passed, not recomputed as b − a, so a narrow
    bin far in the tail keeps its digits; its floor only matters for an absurd scale (> e^80), where it would
    underflow to 0 and give −∞."""
    lower = upper - width
    log_width_term = torch.log(-torch.expm1(-width.clamp(min=torch.finfo(width.dtype).tiny)))
    return F.logsigmoid(upper) - F.softplus(lower) + log_width_term


class DiscretizedLogistic(Distribution):
    """Elementwise logistic(loc, scale) on the [0, 1] scale, discretised to the 256 levels k/255: level k has
    the bin [k/255 − 0.5/255, k/255 + 0.5/255], with the bins of 0 and 255 extended to −∞ and +∞, so the 256
    probabilities sum to 1. `log_prob(x)` wants x on the levels (it takes the bin centred on x);
    `.mean` is `loc` clamped to [0, 1], a close approximation of the discretised mean (which the open edge bins
    pull slightly towards the middle when loc is within a few scales of 0 or 1). `loc` itself may lie outside."""

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.unit_interval
    has_rsample = False

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor, validate_args: bool | None = False) -> None:
        self.loc, self.scale = torch.broadcast_tensors(loc, scale)
        super().__init__(self.loc.shape, validate_args=validate_args)

    @property
    def mean(self) -> torch.Tensor:
        return self.loc.clamp(0.0, 1.0)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        inverse_scale = self.scale.reciprocal()
        upper = (value - self.loc + HALF_BIN) * inverse_scale  # standardised upper edge of the bin
        width = (2 * HALF_BIN) * inverse_scale  # standardised bin width, > 0
        # Level 0: log CDF(upper) (bin open below); level 255: log(1 − CDF(lower)) (open above). Thresholds at
        # half a level, so values a rounding error off k/255 still find their bin. Every branch is finite.
        lowest = F.logsigmoid(upper)
        highest = F.logsigmoid(width - upper)
        interior = log_sigmoid_difference(upper, width)
        return torch.where(value < HALF_BIN, lowest, torch.where(value > 1 - HALF_BIN, highest, interior))

    @torch.no_grad()
    def sample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        """Levels k/255 by the inverse CDF of the logistic, rounded to the nearest level and clamped to [0, 255]."""
        shape = self._extended_shape(sample_shape)
        return self.quantile(torch.rand(shape, dtype=self.loc.dtype, device=self.loc.device))

    def quantile(self, uniform: torch.Tensor) -> torch.Tensor:
        """The level each uniform draw maps to: the logistic's quantile, rounded to a level and clamped."""
        uniform = uniform.clamp(torch.finfo(uniform.dtype).tiny, 1 - 1e-7)
        continuous = self.loc + self.scale * (uniform.log() - (-uniform).log1p())  # logit(u): the logistic's quantile
        return (continuous * (LEVELS - 1)).round().clamp(0, LEVELS - 1) / (LEVELS - 1)


class DiscretizedLogisticLikelihood(nn.Module):
    """Pixels as a discretised logistic over the 256 levels (PixelCNN++ / IAF / NVAE, one component): location
    0.5 + the first C planes (unbounded), log-scale log(initial_scale) + the next C planes, clamped below at
    PixelCNN++'s −7 on the [−1, 1] scale (−7 − ln 2 on this [0, 1] scale): a scale of about 1/2200, so half a
    level's bin is 4.3 scales and a pixel predicted exactly costs at least −log tanh(4.3 / 2) ≈ 0.027 nats
    (0.04 bits) while the gradients stay bounded."""

    planes_per_channel = 2
    min_log_scale = -7.0 - math.log(2.0)
    initial_scale = 0.05  # a standard deviation of 0.09 (23 levels) where the decoder's planes start at 0

    def forward(self, decoder_output: torch.Tensor) -> Distribution:
        return Independent(self.elementwise(decoder_output), 3, validate_args=False)

    def elementwise(self, planes: torch.Tensor) -> DiscretizedLogistic:
        """The per-value distribution of planes `[N, 2C, …]` (location planes, then log-scale planes)."""
        loc_offset, log_scale = mean_and_log_scale_planes(planes, self.initial_scale)
        # The location is not squashed into [0, 1]: white and black pixels (most of an emoji's) get their open edge
        # bin with a probability near 1 at a moderate scale only when the location may pass beyond the edge, as in
        # PixelCNN++. A sigmoid location would cap them near 1/2 until the scale shrank to its floor.
        return DiscretizedLogistic(0.5 + loc_offset, floored_exp(log_scale, self.min_log_scale), validate_args=False)

    def pixel_value(self, planes: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
        """A level for each pixel of `[N, 2C]` planes, by its uniform `[N, C]` (the logistic's quantile)."""
        return self.elementwise(planes).quantile(uniform)

    def pixel_mean(self, planes: torch.Tensor) -> torch.Tensor:
        return self.elementwise(planes).mean


LIKELIHOODS: dict[str, type[nn.Module]] = {
    "bernoulli": BernoulliLikelihood,
    "gaussian": GaussianLikelihood,
    "gaussian-pixel": PixelGaussianLikelihood,
    "logistic": DiscretizedLogisticLikelihood,
}


def make_likelihood(name: str) -> nn.Module:
    return LIKELIHOODS[name]()
