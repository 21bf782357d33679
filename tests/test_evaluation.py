import json

import pytest
import torch

from vaelab.data import load_split, prepare_inputs
from vaelab.evaluation import active_units, evaluate_run, importance_weights, iwae_bound
from vaelab.rundir import load_model


@pytest.fixture(scope="module")
def test_inputs():
    return prepare_inputs(load_split("mnist", "test").images[:200], "binarized", 0)


def test_iwae_bound_is_at_least_the_elbo_on_every_real_test_image(trained_run, test_inputs):
    model = load_model(trained_run)
    log_w = importance_weights(model, test_inputs, k=64, generator=torch.Generator().manual_seed(0))
    assert log_w.shape == (200, 64)
    assert (iwae_bound(log_w) >= log_w.mean(1) - 1e-5).all()


def test_iwae_bound_increases_with_k_on_real_test_images(trained_run, test_inputs):
    model = load_model(trained_run)
    bounds = []
    for k in (1, 10, 100):
        log_w = importance_weights(model, test_inputs, k, generator=torch.Generator().manual_seed(1))
        bounds.append(iwae_bound(log_w).mean().item())
    assert bounds[0] < bounds[1] < bounds[2]
    assert bounds[2] - bounds[0] > 1.0  # a real gap on an imperfect posterior, not rounding


def test_active_units_counts_dimensions_whose_mean_moves():
    means = torch.zeros(1000, 4)
    means[:, 0] = torch.randn(1000)
    means[:, 1] = 0.05 * torch.randn(1000)  # variance 0.0025: inactive
    assert active_units(means).tolist() == [True, False, False, False]


def test_evaluate_run_writes_consistent_numbers(trained_run):
    result = evaluate_run(trained_run, iw_samples=50, iw_images=100, test_limit=500)
    saved = json.loads((trained_run / "eval.json").read_text())
    assert saved["images"] == 500 and saved["iwae"]["images"] == 100 and saved["iwae"]["k"] == 50
    assert result["elbo"] == pytest.approx(-(result["recon"] + result["kl"]), rel=1e-5)
    assert sum(result["kl_per_dim"]) == pytest.approx(result["kl"], rel=1e-4)
    assert result["iwae"]["images_below_elbo"] == 0
    assert result["iwae"]["nll"] < -result["elbo"] + 5  # IWAE on a subset, but a tighter bound
    assert 0 < result["mse"] < 0.1 and 0 <= result["active_units"] <= 8
