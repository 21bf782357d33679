"""The VampPrior (`model.prior: vamp`): its density is a density, one pseudo-input pinned to N(0, I) is the standard
prior, its estimated KL agrees with its exact density, the IWAE bound under it is above the ELBO, every VAE kind
trains with it on real MNIST and resumes bit-identically, and wrong combinations of options are refused."""

from __future__ import annotations

import math

import pytest
import torch

from tests.conftest import tiny_config, train_straight_and_with_a_stop
from tests.faults import identical_weights
from vaelab.data import load_split
from vaelab.errors import VaelabError
from vaelab.evaluation.likelihood import elbo_terms, importance_weights, iwae_bound
from vaelab.models.priors import (
    mixture_kl_terms,
    mixture_log_density,
    sample_mixture,
    standard_normal_log_density,
)
from vaelab.models.vae import VAE
from vaelab.rundir import load_model, load_tensors, read_metrics


def toy_components(k: int = 5, d: int = 2, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return 2 * torch.randn(k, d, generator=generator), torch.randn(k, d, generator=generator) - 1.0


def test_the_mixture_density_integrates_to_one_on_a_two_dimensional_toy():
    means, logvars = toy_components()
    # Monte Carlo with a broad Gaussian proposal g = N(0, 4²I): ∫ p = E_g[p(z) / g(z)]
    z = 4 * torch.randn(400_000, 2, generator=torch.Generator().manual_seed(1))
    log_proposal = standard_normal_log_density(z / 4) - 2 * math.log(4)
    ratio = (mixture_log_density(z, means, logvars) - log_proposal).exp()
    standard_error = ratio.std() / math.sqrt(len(z))
    assert abs(ratio.mean() - 1) < max(4 * standard_error, 1e-3)
    assert standard_error < 0.01  # the check could fail: the estimate is precise to about 1%


def test_the_estimated_kl_terms_use_the_same_density_as_the_expanded_one_and_draws_follow_it():
    means, logvars = toy_components(k=7, d=3)
    mu, logvar = torch.randn(64, 3), torch.randn(64, 3) - 1
    z = mu + torch.randn(64, 3) * (0.5 * logvar).exp()
    terms = mixture_kl_terms(z, mu, logvar, means, logvars)
    assert torch.allclose(terms["log_prior"], mixture_log_density(z, means, logvars), atol=1e-4)
    # Draws from the mixture have the mixture's mean.
    draws = sample_mixture(200_000, means, logvars, torch.Generator().manual_seed(2))
    assert torch.allclose(draws.mean(0), means.mean(0), atol=0.03)


def pinned_vamp_model() -> tuple[VAE, VAE]:
    """A VampPrior VAE with one pseudo-input whose posterior is pinned to N(0, I) (the read-out of mu and
    log-variance zeroed: every input's posterior is N(0, I)), and a standard-prior VAE with the same weights."""
    torch.manual_seed(0)
    vamp = VAE(tiny_config(prior="vamp", prior_components=1).model).eval()
    standard = VAE(tiny_config().model).eval()
    with torch.no_grad():
        vamp.encoder[-1].weight.zero_()
        vamp.encoder[-1].bias.zero_()
    standard.load_state_dict({name: value for name, value in vamp.state_dict().items() if name != "pseudo_inputs"})
    return vamp, standard


def test_one_pseudo_input_pinned_to_the_standard_normal_is_the_standard_prior():
    vamp, standard = pinned_vamp_model()
    z = 3 * torch.randn(1000, vamp.latent_dim)
    assert torch.allclose(vamp.prior_log_density(z), standard.prior_log_density(z), atol=1e-5)
    images = load_split("mnist", "test").images[:32].float() / 255
    vamp_weights = importance_weights(vamp, images, 20, torch.Generator().manual_seed(3))
    standard_weights = importance_weights(standard, images, 20, torch.Generator().manual_seed(3))
    assert torch.allclose(vamp_weights, standard_weights, atol=1e-3)
    # The one-sample KL estimate is 0 here (q(z|x) = p(z)), as is the closed form of the standard prior.
    terms = vamp.loss_terms(images, torch.randn(32, vamp.latent_dim))
    assert terms["kl"].abs().max() < 1e-4 and standard.loss_terms(images)["kl"].abs().max() < 1e-5


@pytest.fixture(scope="module")
def vamp_run(tmp_path_factory):
    """A small VampPrior VAE trained for two epochs on 2,048 real MNIST images."""
    from vaelab.training import train

    run_dir = tmp_path_factory.mktemp("runs") / "vamp"
    config = tiny_config(prior="vamp", prior_components=20, train_limit=2048, epochs=2, lr=2e-3)
    train(config, run_dir, progress=False, log=lambda message: None)
    return run_dir


def test_the_iwae_bound_under_the_vampprior_is_above_its_elbo(vamp_run):
    model = load_model(vamp_run)
    images = load_split("mnist", "test").images[:200].float() / 255
    x = torch.bernoulli(images, generator=torch.Generator().manual_seed(0))
    elbo_parts = elbo_terms(model, x, torch.Generator().manual_seed(1))
    elbo = -(elbo_parts["recon"] + elbo_parts["kl"])
    iwae = iwae_bound(importance_weights(model, x, 100, torch.Generator().manual_seed(2)))
    difference = iwae - elbo
    assert difference.mean() > 4 * difference.std() / math.sqrt(len(x))  # a gap, not noise
    assert math.isfinite(read_metrics(vamp_run)[-1]["val_elbo"])


def test_a_vampprior_run_samples_from_its_mixture_and_stores_its_pseudo_inputs(vamp_run):
    model = load_model(vamp_run)
    tensors = load_tensors(vamp_run / "model.safetensors")[0]
    assert tensors["pseudo_inputs"].shape == (20, 1, 28, 28)
    first = model.sample(8, torch.Generator().manual_seed(5))
    assert first.shape == (8, 1, 28, 28) and torch.equal(first, model.sample(8, torch.Generator().manual_seed(5)))
    # Codes drawn from the prior sit where its density is high: above the standard normal's at the same codes.
    codes = model.sample_prior(500, torch.Generator().manual_seed(6))
    assert (model.prior_log_density(codes) - standard_normal_log_density(codes)).mean() > 0


@pytest.mark.parametrize("kind", ["vae", "cvae", "vae-classifier"])
def test_each_vae_kind_trains_with_the_vampprior_and_resumes_bit_identically(kind, tmp_path):
    config = tiny_config(family=kind, prior="vamp", prior_components=10, epochs=1)  # 16 steps
    straight, resumed = train_straight_and_with_a_stop(config, tmp_path, stop_at=7)
    assert resumed.finished and resumed.steps == straight.steps == 16
    assert identical_weights(tmp_path / "straight" / "last.safetensors", tmp_path / "split" / "last.safetensors")


@pytest.mark.parametrize(("overrides", "message"), [
    ({"family": "gan", "prior": "vamp"}, "prior vamp applies to --model vae, cvae, vae-classifier or m2, not gan"),
    ({"prior": "mixture"}, "prior must be one of standard, vamp"),
    ({"prior_components": 50}, "prior_components applies to prior vamp"),
    ({"prior": "vamp", "prior_components": 0}, "prior_components must be between 1 and"),
])
def test_wrong_prior_options_are_refused_in_one_line(overrides, message):
    with pytest.raises(VaelabError, match=message):
        tiny_config(**overrides)


def test_the_report_of_a_vampprior_run_names_the_prior_and_shows_its_pseudo_inputs(vamp_run, tmp_path):
    from tests.test_report import with_small_analyses
    from vaelab.report.html import build_report

    page = build_report(with_small_analyses(vamp_run), tmp_path / "report.html").read_text()
    assert "<h2>VampPrior: pseudo-inputs" in page
    assert "VampPrior (20 pseudo-inputs)" in page
    assert "<h2>Latent traversals, most informative first (±3σ around the prior&#x27;s mode)" in page
