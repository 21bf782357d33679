"""The disentangling objectives of the VAE family (β-TCVAE, FactorVAE, annealed capacity): the β-TCVAE split of
the KL adds up, FactorVAE's discriminator tells joint from shuffled codes, the capacity ramps, every objective
trains on real MNIST and resumes bit-identically, and wrong combinations of options are refused in one line."""

from __future__ import annotations

import math

import pytest
import torch

from tests.conftest import tiny_config, train_straight_and_with_a_stop
from tests.faults import identical_weights
from vaelab.errors import VaelabError
from vaelab.models.base import gaussian_log_density_per_dimension, kl_per_dimension
from vaelab.models.disentangling import (
    TCDiscriminator,
    capacity_at,
    permute_dimensions,
    total_correlation_terms,
)
from vaelab.models.priors import standard_normal_log_density
from vaelab.rundir import load_tensors, read_metrics


def posterior_batch(n: int, d: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    mu = torch.randn(n, d, generator=generator)
    logvar = torch.randn(n, d, generator=generator) * 0.5 - 1.0
    z = mu + torch.randn(n, d, generator=generator) * (0.5 * logvar).exp()
    return z, mu, logvar


def test_the_three_tcvae_terms_add_up_to_the_kl_estimate_of_every_image():
    z, mu, logvar = posterior_batch(256, 6)
    log_q = gaussian_log_density_per_dimension(z, mu, logvar).sum(1)
    log_p = gaussian_log_density_per_dimension(z, torch.zeros_like(z), torch.zeros_like(z)).sum(1)
    parts = total_correlation_terms(z, mu, logvar, log_p, dataset_size=60_000)
    assert torch.allclose(parts["mi"] + parts["tc"] + parts["dim_kl"], log_q - log_p, atol=1e-4)
    # The one-sample estimate agrees with the closed-form KL on average (within 4 standard errors).
    estimate, exact = log_q - log_p, kl_per_dimension(mu, logvar).sum(1)
    assert abs((estimate - exact).mean()) < 4 * (estimate - exact).std() / math.sqrt(len(z))


def test_the_tcvae_total_correlation_is_larger_for_correlated_codes():
    z, mu, logvar = posterior_batch(512, 4)
    shared = torch.randn(512, 1, generator=torch.Generator().manual_seed(1))
    correlated_mu = mu * 0.3 + shared * 1.5  # every dimension mostly follows one shared number
    correlated_z = correlated_mu + (z - mu)
    independent = total_correlation_terms(z, mu, logvar, standard_normal_log_density(z), 60_000)["tc"].mean()
    correlated = total_correlation_terms(correlated_z, correlated_mu, logvar, standard_normal_log_density(correlated_z),
                                         60_000)["tc"].mean()
    assert correlated > independent + 1.0


def test_the_factorvae_discriminator_tells_shuffled_from_correlated_codes_and_reads_their_total_correlation():
    torch.manual_seed(0)
    rho = 0.9
    covariance = torch.tensor([[1.0, rho], [rho, 1.0]])
    draw = torch.distributions.MultivariateNormal(torch.zeros(2), covariance)
    discriminator = TCDiscriminator(2, width=64)
    optimizer = torch.optim.Adam(discriminator.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(600):
        z = draw.sample((256,))
        joint, product = discriminator(z), discriminator(permute_dimensions(z, generator))
        loss = (torch.nn.functional.softplus(-joint) + torch.nn.functional.softplus(product)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        z = draw.sample((4000,))
        joint, product = discriminator(z), discriminator(permute_dimensions(z, generator))
    accuracy = ((joint > 0).float().mean() + (product < 0).float().mean()) / 2
    assert accuracy > 0.7
    true_tc = -0.5 * math.log(1 - rho**2)  # 0.83 nats for a bivariate normal
    assert joint.mean().item() == pytest.approx(true_tc, abs=0.35)


def test_permuting_keeps_each_dimension_s_values_and_breaks_their_pairing():
    z = torch.arange(200.0).view(100, 2)
    shuffled = permute_dimensions(z, torch.Generator().manual_seed(0))
    for d in range(2):
        assert torch.equal(shuffled[:, d].sort().values, z[:, d])
    assert not torch.equal(shuffled[:, 1] - shuffled[:, 0], z[:, 1] - z[:, 0])


def test_the_capacity_rises_linearly_then_stays():
    assert capacity_at(0, 25.0, 100) == 0.0
    assert capacity_at(50, 25.0, 100) == pytest.approx(12.5)
    assert capacity_at(500, 25.0, 100) == 25.0


@pytest.mark.parametrize("objective, extra_metric", [("tcvae", "train_tc"), ("factorvae", "train_d_accuracy"),
                                                     ("capacity", "capacity")])
def test_each_objective_trains_on_mnist_and_resumes_bit_identically(objective, extra_metric, tmp_path):
    config = tiny_config(objective=objective, epochs=1)  # 16 steps
    straight, resumed = train_straight_and_with_a_stop(config, tmp_path, stop_at=7)
    assert resumed.finished and resumed.steps == straight.steps == 16
    assert identical_weights(tmp_path / "straight" / "last.safetensors", tmp_path / "split" / "last.safetensors")
    row = read_metrics(tmp_path / "straight")[0]
    assert extra_metric in row and math.isfinite(row["val_elbo"])
    names = load_tensors(tmp_path / "straight" / "last.safetensors")[0]
    assert any(name.startswith("tc_discriminator.") for name in names) == (objective == "factorvae")
    if objective == "factorvae":  # the discriminator's optimizer is stored beside the model's
        assert any("discriminator" in name and name.startswith("optimizer") for name in names)


@pytest.mark.parametrize("options, message", [
    ({"objective": "tcvae", "beta": 4.0}, "beta: options of objective beta alone; objective tcvae is weighted by "
                                          "tc_weight"),
    ({"tc_weight": 3.0}, "tc_weight applies to objective tcvae or factorvae; add --objective tcvae"),
    ({"objective": "capacity", "tc_weight": 3.0}, "tc_weight applies to objective tcvae or factorvae"),
    ({"objective": "factorvae", "family": "gan"}, "objective factorvae applies to --model vae, cvae"),
    ({"objective": "ica"}, "objective must be one of beta, tcvae, factorvae, capacity"),
    ({"objective": "capacity", "capacity_weight": -1.0}, "capacity_weight must be a finite number ≥ 0"),
])
def test_objective_options_that_do_not_fit_are_refused_in_one_line(options, message):
    with pytest.raises(VaelabError, match=message):
        tiny_config(**options)
