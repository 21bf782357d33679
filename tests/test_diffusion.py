"""The `ddpm` family: the forward process, DDIM and its inversion checked against a perfect noise oracle, the
variational bound, and a real tiny run that trains, samples, inverts and evaluates."""

from __future__ import annotations

import math

import pytest
import torch

from tests.conftest import DDPM as DDPM_OPTIONS
from tests.conftest import tiny_config, train_straight_and_with_a_stop
from tests.faults import identical_weights
from vaelab.data import load_split
from vaelab.data.datasets import to_float
from vaelab.evaluation.diffusion_bound import bound_terms, discretised_gaussian_log_prob
from vaelab.models import build_model
from vaelab.models.diffusion import DDPM
from vaelab.models.noise_schedule import NoiseSchedule, noise_schedule
from vaelab.rundir import load_model, read_metrics


def tiny_ddpm(**overrides) -> DDPM:
    torch.manual_seed(0)
    return build_model(tiny_config(**{**DDPM_OPTIONS, **overrides}).model).eval()


def with_oracle(model: DDPM, x0: torch.Tensor) -> DDPM:
    """The model with a perfect ε-predictor for the one image batch `x0` (in [−1, 1]):
    ε = (x_t − √ᾱ_t x_0) / √(1 − ᾱ_t), the noise that explains x_t exactly."""
    def oracle(x: torch.Tensor, t, ema: bool = True) -> torch.Tensor:
        t = torch.full((x.shape[0],), t) if isinstance(t, int) else t
        alpha_bar = model.schedule.alpha_bar[t].view(-1, 1, 1, 1)
        return (x - alpha_bar.sqrt() * x0) / (1 - alpha_bar).sqrt()

    model.predicted_noise = oracle
    return model


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return to_float(load_split("mnist", "test").images[:4])


def test_the_cosine_schedule_rises_from_near_zero_and_the_signal_fades_to_noise():
    betas = noise_schedule("cosine", 1000)
    alpha_bar = torch.cumprod(1 - betas, 0)
    assert betas[0] < 1e-4 and torch.all(betas[1:] >= betas[:-1] - 1e-12) and betas.max() <= 0.999
    assert alpha_bar[0] > 0.9999 and alpha_bar[-1] < 1e-4


def test_the_cosine_schedule_keeps_its_closed_form_signal_level_where_beta_is_not_clipped():
    """ᾱ_t = f(t + 1) / f(0) with f(t) = cos²((t/T + s) / (1 + s) · π/2) (Nichol & Dhariwal eq. 17), T = 1000."""
    schedule = NoiseSchedule("cosine", 1000)
    t = torch.arange(1, 1001, dtype=torch.float64) / 1000
    f = torch.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2 / math.cos(0.008 / 1.008 * math.pi / 2) ** 2
    unclipped = slice(0, 990)  # β is capped at 0.999 only in the last steps
    assert torch.allclose(schedule.alpha_bar[unclipped].double(), f[unclipped], rtol=1e-4, atol=1e-6)


def test_one_ancestral_step_draws_from_the_closed_form_posterior_of_ho_et_al(images):
    """With the true noise, x_{t−1} = μ̃_t(x_0, x_t) + √β̃_t z: its mean and variance over many draws are eq. 7's."""
    schedule = NoiseSchedule("linear", 100)
    x0 = (images[:1] * 2 - 1).expand(4000, -1, -1, -1)
    t, noise = 30, torch.randn(4000, *x0.shape[1:], generator=torch.Generator().manual_seed(1))
    x_t = schedule.add_noise(x0, torch.full((4000,), t), noise)
    earlier = schedule.step(x_t, noise, t, torch.Generator().manual_seed(2))
    alpha_bar, alpha_bar_earlier, beta = schedule.alpha_bar[t], schedule.alpha_bar[t - 1], schedule.betas[t]
    mean = (alpha_bar_earlier.sqrt() * beta * x0 + (1 - beta).sqrt() * (1 - alpha_bar_earlier) * x_t) / (1 - alpha_bar)
    variance = beta * (1 - alpha_bar_earlier) / (1 - alpha_bar)
    assert torch.allclose((earlier - mean).mean(0), torch.zeros_like(x0[0]), atol=4 * variance.sqrt().item() / 60)
    assert abs((earlier - mean).var().item() - variance.item()) < 0.05 * variance.item()
    x_first = schedule.add_noise(x0[:2], torch.zeros(2, dtype=torch.long), noise[:2])
    assert torch.allclose(schedule.step(x_first, noise[:2], 0), x0[:2], atol=1e-4)  # t = 0: the clean image


def test_a_ddim_step_with_the_true_noise_lands_on_the_forward_draw_of_the_earlier_time(images):
    """η = 0: x_earlier = √ᾱ_earlier x_0 + √(1 − ᾱ_earlier) ε, the same ε; and the inverse step undoes it."""
    schedule = NoiseSchedule("cosine", 200)
    x0 = images * 2 - 1
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(3))
    x_t = schedule.add_noise(x0, torch.full((len(x0),), 150), noise)
    x_earlier = schedule.ddim_step(x_t, noise, 150, 60, clip=False)
    assert torch.allclose(x_earlier, schedule.add_noise(x0, torch.full((len(x0),), 60), noise), atol=1e-4)
    assert torch.allclose(schedule.ddim_inverse_step(x_earlier, noise, 60, 150), x_t, atol=1e-4)
    assert torch.allclose(schedule.ddim_step(x_t, noise, 150, -1), x0, atol=1e-4)  # to the clean image


def test_forward_noising_matches_its_closed_form_mean_and_variance(images):
    model = tiny_ddpm()
    x0 = images[:1] * 2 - 1
    t = torch.full((20_000,), 40)
    noise = torch.randn(20_000, *x0.shape[1:], generator=torch.Generator().manual_seed(0))
    noisy = model.schedule.add_noise(x0.expand(20_000, -1, -1, -1), t, noise)
    alpha_bar = model.schedule.alpha_bar[40]
    assert torch.allclose(noisy.mean(0), alpha_bar.sqrt() * x0[0], atol=0.03)
    assert torch.allclose(noisy.var(0), torch.full_like(x0[0], 1 - alpha_bar.item()), rtol=0.06)


@pytest.mark.parametrize("steps", [1, 10, 100])
def test_ddim_with_a_perfect_noise_oracle_returns_the_image(images, steps):
    x0 = images * 2 - 1
    model = with_oracle(tiny_ddpm(), x0)
    start = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
    # float32: x̂_0 divides by √ᾱ_{T−1} ≈ 5e-4 at the first step, so rounding errors of 1e-7 grow to ~2e-4
    assert torch.allclose(model.ddim_generate(start, steps), x0, atol=1e-3)


def test_ddim_inversion_with_the_oracle_then_generation_reconstructs_the_image(images):
    x0 = images * 2 - 1
    model = with_oracle(tiny_ddpm(), x0)
    code = model.ddim_invert(x0, 10)
    assert not torch.allclose(code, x0, atol=0.1)  # the code is x_{T−1}, far from the image
    assert torch.allclose(model.ddim_generate(code, 10, clip=False), x0, atol=1e-3)


def test_the_discretised_gaussian_sums_to_one_over_the_256_levels_of_a_pixel():
    levels = (torch.arange(256, dtype=torch.float64) / 255 * 2 - 1).view(256, 1, 1, 1)
    for mean in (-1.0, -0.3, 0.0, 0.999):
        log_prob = discretised_gaussian_log_prob(levels, torch.full_like(levels, mean), 0.05)
        assert math.isclose(log_prob.exp().sum().item(), 1.0, abs_tol=1e-9)


def test_with_a_perfect_oracle_the_bound_is_its_prior_and_decoder_terms_alone(images):
    """Every L_t of the middle of the bound is a KL between q(x_{t−1} | x_t, x_0) and the model's step, zero when
    the model knows x_0; what is left is L_T and L_0 in closed form."""
    x0 = images * 2 - 1
    model = with_oracle(tiny_ddpm(), x0)
    bound = bound_terms(model, images, 3, torch.Generator().manual_seed(0))
    last = model.schedule.alpha_bar[-1]
    prior = 0.5 * (last * x0.pow(2) + (1 - last) - 1 - (1 - last).log()).flatten(1).sum(1)
    decoder = -discretised_gaussian_log_prob(x0, x0, model.schedule.betas[0].sqrt().item())
    assert torch.allclose(bound, prior + decoder, rtol=1e-4)


def test_a_ddpm_trains_into_a_run_directory_and_its_ema_samples_lie_in_the_unit_range(ddpm_run):
    rows = read_metrics(ddpm_run)
    assert len(rows) == 2 and rows[1]["val_eps_mse"] < rows[0]["val_eps_mse"] < 1.0
    model = load_model(ddpm_run)
    assert not any(p.requires_grad for p in model.ema.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(model.ema.parameters(), model.net.parameters(), strict=True))
    samples = model.sample(6, torch.Generator().manual_seed(0), steps=5)
    assert samples.shape == (6, 1, 28, 28) and samples.min() >= 0 and samples.max() <= 1
    ancestral = model.ancestral_sample(2, torch.Generator().manual_seed(0))
    assert ancestral.shape == (2, 1, 28, 28) and ancestral.min() >= 0 and ancestral.max() <= 1


def test_a_trained_ddpm_reconstructs_a_test_image_through_its_inversion_better_than_a_random_code(ddpm_run, images):
    model = load_model(ddpm_run)
    reconstructed = model.decode(model.invert(images))
    random = model.sample(len(images), torch.Generator().manual_seed(3))
    assert (reconstructed - images).pow(2).mean() < 0.5 * (random - images).pow(2).mean()


def test_eval_of_a_ddpm_reports_its_estimated_bound_in_bits_per_dim_below_that_of_its_initial_weights(ddpm_run):
    from vaelab.evaluation import evaluate_run

    result = evaluate_run(ddpm_run, iw_images=40, write=False)
    bound = result["bound"]
    assert "elbo" not in result and bound["images"] == 40 and "estimate" in bound["note"]
    assert bound["bits_per_dim"] > 0 and bound["bits_per_dim_standard_error"] > 0
    assert math.isclose(bound["bits_per_dim"], bound["nll_bound_nats"] / (784 * math.log(2)))
    untrained = bound_terms(tiny_ddpm(), to_float(load_split("mnist", "test").images[:40]), 4,
                            torch.Generator().manual_seed(0))
    assert bound["nll_bound_nats"] < untrained.mean().item()


def test_a_ddpm_stopped_mid_epoch_resumes_to_the_same_weights_and_ema(tmp_path):
    """The EMA copy and the noise and timestep draws are in the checkpoint: a stop costs nothing but time."""
    config = tiny_config(**{**DDPM_OPTIONS, "channels": [8, 16]}, train_limit=256, val_limit=32, batch_size=32,
                         epochs=2)
    straight, resumed = train_straight_and_with_a_stop(config, tmp_path, stop_at=11)
    assert resumed.finished and resumed.steps == straight.steps == 16
    assert identical_weights(tmp_path / "straight" / "last.safetensors", tmp_path / "split" / "last.safetensors")
