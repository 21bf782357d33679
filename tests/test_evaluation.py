import json

import pytest
import torch

from vaelab.data import load_split, prepare_inputs
from vaelab.evaluation import active_units, evaluate_run, importance_weights, iwae_bound
from vaelab.evaluation.evaluate import IWAE_PROGRESS, importance_weighted_bounds
from vaelab.fitting import fit_estimator
from vaelab.rundir import load_model, read_config

CPU = torch.device("cpu")


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


def test_evaluate_run_writes_consistent_numbers_and_clears_iwae_progress(trained_run):
    (trained_run / IWAE_PROGRESS).write_bytes(b"left by an earlier pass")
    result = evaluate_run(trained_run, iw_samples=50, iw_images=100, test_limit=500)
    assert not (trained_run / IWAE_PROGRESS).exists()  # the bounds are in eval.json now
    saved = json.loads((trained_run / "eval.json").read_text())
    assert saved["images"] == 500 and saved["iwae"]["images"] == 100 and saved["iwae"]["k"] == 50
    assert result["elbo"] == pytest.approx(-(result["recon"] + result["kl"]), rel=1e-5)
    assert sum(result["kl_per_dim"]) == pytest.approx(result["kl"], rel=1e-4)
    assert result["iwae"]["images_below_elbo"] == 0
    assert result["iwae"]["nll"] < -result["elbo"] + 5  # IWAE on a subset, but a tighter bound
    assert 0 < result["mse"] < 0.1 and 0 <= result["active_units"] <= 8


class Interrupted(Exception):
    """Stands for a kill: raised from the progress log part-way through a pass."""


def interrupted_at(message: int):
    seen = []

    def log(text: str) -> None:
        seen.append(text)
        if len(seen) == message:
            raise Interrupted(text)

    return log


def test_an_iwae_pass_interrupted_part_way_continues_to_the_same_bounds_bit_for_bit(trained_run, test_inputs,
                                                                                    tmp_path):
    test_inputs = test_inputs[:100]
    model, labels, progress = load_model(trained_run), torch.zeros(100, dtype=torch.long), tmp_path / IWAE_PROGRESS
    uninterrupted = importance_weighted_bounds(model, test_inputs, labels, 250, CPU)
    # k = 250 draws: 80 images a pass, so 2 passes; the second one's log message stops it before it is saved.
    with pytest.raises(Interrupted):
        importance_weighted_bounds(model, test_inputs, labels, 250, CPU, interrupted_at(2), progress, save_every=0)
    messages = []
    resumed = importance_weighted_bounds(model, test_inputs, labels, 250, CPU, messages.append, progress, save_every=0)
    assert messages[0].startswith("IWAE-250: continuing at image 80 of 100")
    assert torch.equal(resumed[0], uninterrupted[0]) and torch.equal(resumed[1], uninterrupted[1])


@pytest.mark.parametrize("left", ["another k", "a damaged file"])
def test_iwae_progress_for_other_settings_or_damaged_is_ignored(trained_run, test_inputs, tmp_path, left):
    test_inputs = test_inputs[:100]
    model, labels, progress = load_model(trained_run), torch.zeros(100, dtype=torch.long), tmp_path / IWAE_PROGRESS
    with pytest.raises(Interrupted):
        importance_weighted_bounds(model, test_inputs, labels, 250, CPU, interrupted_at(2), progress, save_every=0)
    if left == "a damaged file":
        progress.write_bytes(progress.read_bytes()[:-40])
    k = 100 if left == "another k" else 250
    messages = []
    bounds = importance_weighted_bounds(model, test_inputs, labels, k, CPU, messages.append, progress)
    assert "starting over" in messages[0]
    assert torch.equal(bounds[0], importance_weighted_bounds(model, test_inputs, labels, k, CPU)[0])


def convergence_warnings(recorded) -> list:
    from sklearn.exceptions import ConvergenceWarning

    return [warning for warning in recorded if issubclass(warning.category, ConvergenceWarning)]


def test_eval_fits_its_linear_probe_on_no_more_than_the_images_the_run_trained_on(trained_run, recwarn):
    messages: list[str] = []
    result = evaluate_run(trained_run, iw_samples=0, test_limit=200, probe_images=50_000, write=False,
                          log=messages.append)
    assert result["linear_probe"]["train_images"] == read_config(trained_run).data.train_limit == 4096
    assert any("posterior means of 4,096 of the run's training images" in message for message in messages)
    assert result["linear_probe"]["converged"] and convergence_warnings(recwarn) == []


def test_a_fit_that_stops_before_converging_says_so_in_one_line_instead_of_a_warning(recwarn):
    from sklearn.linear_model import LogisticRegression

    test = load_split("mnist", "test").subset(500)
    messages: list[str] = []
    converged = fit_estimator(LogisticRegression(max_iter=2), test.images.flatten(1).numpy() / 255,
                              test.labels.numpy(), what="a probe of 500 images", log=messages.append)
    assert not converged and convergence_warnings(recwarn) == []
    assert len(messages) == 1 and "\n" not in messages[0]
    assert messages[0].startswith("a probe of 500 images: stopped before converging (lbfgs failed to converge")

