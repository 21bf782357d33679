"""Observation models p(x|z): turn the decoder's output into a distribution over whole images.

Each returns `Independent(..., 3)` so `log_prob(x)` sums over channels and pixels and has shape `[N]`, in nats,
and `.mean` is the image in [0, 1]. A likelihood declares how many decoder output planes it reads per image channel
(`planes_per_channel`: 1 for a mean or logits; a per-pixel σ would need 2), and the decoder is built to match.
A new likelihood is one class here and one line in `LIKELIHOODS`.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.distributions import Bernoulli, Distribution, Independent, Normal


class BernoulliLikelihood(nn.Module):
    """Pixels as independent Bernoulli variables with decoder logits. On binarized data this is an exact
    likelihood; on grayscale intensities it is the usual cross-entropy objective (not a normalised density)."""

    planes_per_channel = 1

    def forward(self, decoder_output: torch.Tensor) -> Distribution:
        # validate_args=False: grayscale targets in [0,1] are allowed (cross-entropy against soft targets).
        return Independent(Bernoulli(logits=decoder_output, validate_args=False), 3)


class GaussianLikelihood(nn.Module):
    """Pixels as Normal(sigmoid(decoder output), σ²) with one learned σ shared by all pixels (the σ-VAE of
    Rybkin et al. 2021): a proper density, where a bare MSE would fix σ arbitrarily."""

    planes_per_channel = 1

    def __init__(self, initial_sigma: float = 0.1, min_sigma: float = 1e-3) -> None:
        super().__init__()
        self.log_sigma = nn.Parameter(torch.tensor(math.log(initial_sigma)))
        self.min_log_sigma = math.log(min_sigma)

    def forward(self, decoder_output: torch.Tensor) -> Distribution:
        # A floor on σ: on pixels that are always 0 an unbounded density would reward σ → 0 forever.
        sigma = self.log_sigma.clamp(min=self.min_log_sigma).exp()
        return Independent(Normal(torch.sigmoid(decoder_output), sigma, validate_args=False), 3)


LIKELIHOODS: dict[str, type[nn.Module]] = {"bernoulli": BernoulliLikelihood, "gaussian": GaussianLikelihood}


def make_likelihood(name: str) -> nn.Module:
    return LIKELIHOODS[name]()
