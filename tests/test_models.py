import math
from pathlib import Path

import pytest
import torch

from vaelab.config import RunConfig, load_yaml_config
from vaelab.models import VAE, GaussianLikelihood, build_model, kl_per_dimension
from vaelab.models.registry import capabilities


def test_closed_form_kl_matches_a_monte_carlo_estimate():
    gen = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(4, 3, generator=gen), torch.randn(4, 3, generator=gen) * 0.5
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    z = q.sample((200_000,))
    p = torch.distributions.Normal(0.0, 1.0)
    monte_carlo = (q.log_prob(z) - p.log_prob(z)).mean(0)
    assert torch.allclose(kl_per_dimension(mu, logvar), monte_carlo, atol=0.01)


def test_gaussian_likelihood_is_a_density_that_integrates_to_one():
    likelihood = GaussianLikelihood(initial_sigma=0.2)
    decoder_output = torch.tensor([[[[0.3]]]])  # one pixel; mean sigmoid(0.3)
    grid = torch.linspace(-3, 4, 20001)
    density = likelihood(decoder_output.expand(len(grid), 1, 1, 1)).log_prob(grid.view(-1, 1, 1, 1)).exp()
    assert torch.trapezoid(density, grid).item() == pytest.approx(1.0, abs=1e-4)
    mean = torch.trapezoid(density * grid, grid).item()
    assert mean == pytest.approx(torch.sigmoid(torch.tensor(0.3)).item(), abs=1e-4)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_public_api_shapes(likelihood):
    model = VAE(RunConfig().with_overrides({"likelihood": likelihood}).model).eval()
    x = torch.rand(5, 1, 28, 28)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (5, 32) and model.latent_dim == 32
    px = model.decode_dist(mu)
    assert px.log_prob(x).shape == (5,)
    assert px.mean.shape == (5, 1, 28, 28)
    images = model.sample(16, generator=torch.Generator().manual_seed(0))
    assert images.shape == (16, 1, 28, 28) and images.min() >= 0.0 and images.max() <= 1.0
    again = model.sample(16, generator=torch.Generator().manual_seed(0))
    assert torch.equal(images, again)


def test_bernoulli_log_prob_is_the_negative_binary_cross_entropy_summed_over_pixels():
    model = VAE(RunConfig().model).eval()
    x = (torch.rand(3, 1, 28, 28) > 0.5).float()
    z = torch.randn(3, 32)
    logits = model.decoder_output(z)
    expected = -torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum((1, 2, 3))
    assert torch.allclose(model.decode_dist(z).log_prob(x), expected, atol=1e-4)
    assert math.isclose(model.decode_dist(z).log_prob(x).sum().item(), expected.sum().item(), rel_tol=1e-5)


def test_deeper_and_wider_configurations_build_and_keep_shapes():
    config = RunConfig().with_overrides(
        {"channels": [16, 32], "blocks_per_stage": 1, "hidden_dim": 64, "latent_dim": 4}
    )
    model = VAE(config.model)
    terms = model.loss_terms(torch.rand(2, 1, 28, 28))
    assert terms["recon"].shape == (2,) and terms["kl_per_dim"].shape == (2, 4)


@pytest.mark.parametrize("path", sorted(Path("configs").glob("*.yaml")), ids=lambda path: path.name)
def test_every_shipped_config_loads_and_builds_a_model_that_decodes_its_image_shape(path):
    config = load_yaml_config(path)
    model = build_model(config.model)
    assert sum(parameter.numel() for parameter in model.parameters()) > 0
    if isinstance(model, VAE):
        labels = torch.tensor([0, 1]) if capabilities(model).conditional else None
        images = model.decode(torch.zeros(2, config.model.latent_dim), labels)
        assert images.shape == (2, *config.model.image_shape)
