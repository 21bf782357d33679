"""The per-pixel likelihoods ("logistic", "gaussian-pixel") on tiny synthetic tensors, and a real VAE with each."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal

from vaelab.config import RunConfig
from vaelab.data.datasets import load_split, to_float
from vaelab.models.likelihoods import LIKELIHOODS, DiscretizedLogisticLikelihood, make_likelihood
from vaelab.models.registry import build_model

LEVELS = torch.arange(256, dtype=torch.float32) / 255

# (mean logit, log-scale on the [0, 1] scale): central, means near 0 and 1 (saturated sigmoids), tiny (clamped)
# and large scales.
LOGISTIC_SETTINGS = [(0.0, -3.0), (0.3, -5.0), (-30.0, -2.0), (30.0, -2.0), (-8.0, -20.0), (8.0, -20.0),
                     (0.0, -20.0), (1.7, 3.0), (-2.0, 6.0), (0.0, 0.0)]


def decoder_planes(mean_logit: float, log_scale: float, n: int = 1) -> torch.Tensor:
    """A decoder output `[n, 2, 1, 1]` for one 1-channel pixel of that log-scale: the mean plane, then the
    log-scale plane (an offset from the likelihood's initial scale)."""
    # the location is 0.5 + the first plane; the settings give it as a logit, so that it spans (0, 1) and beyond
    location = 1 / (1 + math.exp(-mean_logit)) if abs(mean_logit) < 50 else float(mean_logit > 0)
    offset = log_scale - math.log(DiscretizedLogisticLikelihood.initial_scale)
    return torch.tensor([location - 0.5, offset]).view(1, 2, 1, 1).repeat(n, 1, 1, 1)


def logistic_log_probs_of_every_level(mean_logit: float, log_scale: float) -> torch.Tensor:
    """log p(level k) `[256]` of one pixel."""
    dist = make_likelihood("logistic")(decoder_planes(mean_logit, log_scale, 256))
    return dist.log_prob(LEVELS.view(256, 1, 1, 1))


def logistic_cdf(x: float, loc: float, scale: float) -> float:
    return 1 / (1 + math.exp(-(x - loc) / scale))


@pytest.mark.parametrize(("mean_logit", "log_scale"), LOGISTIC_SETTINGS)
def test_logistic_probabilities_of_the_256_levels_sum_to_one(mean_logit, log_scale):
    total = logistic_log_probs_of_every_level(mean_logit, log_scale).exp().sum().item()
    assert total == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("level", [0, 255])
@pytest.mark.parametrize(("mean_logit", "log_scale"), LOGISTIC_SETTINGS)
def test_logistic_gradients_are_finite_at_the_edge_levels(mean_logit, log_scale, level):
    output = decoder_planes(mean_logit, log_scale).requires_grad_()
    log_prob = make_likelihood("logistic")(output).log_prob(torch.full((1, 1, 1, 1), level / 255))
    log_prob.sum().backward()
    assert torch.isfinite(log_prob).all() and torch.isfinite(output.grad).all()


def test_logistic_with_a_tiny_scale_on_a_level_gives_that_level_probability_one():
    level = 77
    mean_logit = math.log(level / (255 - level))  # sigmoid(mean_logit) = 77/255
    log_probs = logistic_log_probs_of_every_level(mean_logit, -20.0)  # clamped to the minimum scale
    bits_per_dim = -log_probs[level].item() / math.log(2)
    # The floor (PixelCNN++'s −7 on the [−1, 1] scale) leaves half a bin ≈ 4.3 scales: p = tanh(4.3 / 2) ≈ 0.973.
    half_bin_in_scales = (0.5 / 255) / math.exp(DiscretizedLogisticLikelihood.min_log_scale)
    assert bits_per_dim == pytest.approx(-math.log2(math.tanh(half_bin_in_scales / 2)), rel=1e-3)
    assert bits_per_dim < 0.05
    assert log_probs.argmax().item() == level


def test_logistic_wide_enough_to_be_nearly_flat_costs_about_8_bits_in_the_interior():
    log_probs = logistic_log_probs_of_every_level(0.0, math.log(0.25))  # density ≈ 1 near the middle of [0, 1]
    bits_per_dim = -log_probs[100:156] / math.log(2)
    assert ((bits_per_dim > 7) & (bits_per_dim < 9)).all()


@pytest.mark.parametrize("level", [0, 3, 128, 200, 255])
def test_logistic_matches_the_cdf_computed_by_hand(level):
    mean_logit, log_scale = 0.4, -3.0
    loc, scale = 1 / (1 + math.exp(-mean_logit)), math.exp(log_scale)
    upper = 1.0 if level == 255 else logistic_cdf((level + 0.5) / 255, loc, scale)
    lower = 0.0 if level == 0 else logistic_cdf((level - 0.5) / 255, loc, scale)
    expected = math.log(upper - lower)
    assert logistic_log_probs_of_every_level(mean_logit, log_scale)[level].item() == pytest.approx(expected, rel=1e-4)


def test_logistic_samples_are_levels_in_the_unit_interval():
    torch.manual_seed(0)
    output = torch.randn(4, 6, 5, 5) * 3  # 3 channels: 3 mean planes, 3 log-scale planes
    samples = make_likelihood("logistic")(output).sample()
    assert samples.shape == (4, 3, 5, 5)
    assert samples.min() >= 0 and samples.max() <= 1
    levels = samples * 255
    assert torch.allclose(levels, levels.round(), atol=1e-4)


def test_pixel_gaussian_log_prob_is_the_sum_of_normal_log_probs():
    torch.manual_seed(1)
    output, x = torch.randn(3, 4, 2, 5), torch.rand(3, 2, 2, 5)
    sigma = 0.1 * output[:, 2:].exp()  # the planes are offsets from the initial σ of 0.1
    expected = Normal(torch.sigmoid(output[:, :2]), sigma).log_prob(x).sum((1, 2, 3))
    assert torch.allclose(make_likelihood("gaussian-pixel")(output).log_prob(x), expected, atol=1e-5)


def test_pixel_gaussian_sigma_is_floored():
    output = torch.cat([torch.zeros(2, 1, 3, 3), torch.full((2, 1, 3, 3), -50.0)], dim=1)
    dist = make_likelihood("gaussian-pixel")(output)
    assert torch.allclose(dist.base_dist.scale, torch.full_like(dist.base_dist.scale, 1e-3))
    assert torch.isfinite(dist.log_prob(torch.rand(2, 1, 3, 3))).all()


@pytest.mark.parametrize("name", ["logistic", "gaussian-pixel"])
def test_the_mean_is_an_image_in_the_unit_interval(name):
    torch.manual_seed(2)
    output = torch.randn(2, 6, 4, 3) * 20  # saturating means and scales of every size
    mean = make_likelihood(name)(output).mean
    assert mean.shape == (2, 3, 4, 3)
    assert mean.min() >= 0 and mean.max() <= 1


@pytest.mark.parametrize("name", ["logistic", "gaussian-pixel"])
def test_a_vae_with_the_likelihood_has_finite_loss_and_gradients_on_real_mnist(name):
    config = RunConfig().with_overrides({
        "likelihood": name, "input_mode": "intensities", "train_limit": 256, "val_limit": 128, "channels": [8, 16],
        "hidden_dim": 32, "latent_dim": 4, "epochs": 1, "dataset": "mnist",
    })
    assert LIKELIHOODS[config.model.likelihood].planes_per_channel == 2
    torch.manual_seed(3)
    model = build_model(config.model)
    x = to_float(load_split("mnist", "test").images[:8])
    terms = model.loss_terms(x)
    assert terms["recon"].shape == (8,)
    loss = (terms["recon"] + terms["kl"]).mean()
    assert torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert model.reconstruct(x).shape == x.shape


def test_a_location_beyond_the_edge_gives_white_pixels_their_open_bin_at_a_moderate_scale():
    """What made the location unbounded: most emoji pixels are white (level 255)."""
    planes = torch.tensor([1.05 - 0.5, math.log(0.01) - math.log(DiscretizedLogisticLikelihood.initial_scale)])
    white = torch.ones(1, 1, 1, 1)
    probability = make_likelihood("logistic")(planes.view(1, 2, 1, 1)).log_prob(white).exp().item()
    assert probability > 0.99
