import subprocess
import sys

import pytest
import torch

from vaelab.analysis.samplers import (
    GMM_FILE,
    TWO_STAGE_FILE,
    TwoStageConfig,
    fit_gmm,
    fit_two_stage,
    load_or_fit_gmm,
    load_or_fit_two_stage,
    sample_images,
)
from vaelab.errors import VaelabError
from vaelab.rundir import load_model, read_config


def test_gmm_sampler_returns_the_requested_count_and_shape_reproducibly(trained_run):
    model = load_model(trained_run)
    mixture = fit_gmm(model, read_config(trained_run).data, components=3, limit=2000)
    assert mixture.weights.shape == (3,) and mixture.means.shape == (3, 8)
    codes = mixture.sample(500, torch.Generator().manual_seed(0))
    assert codes.shape == (500, 8)
    assert torch.equal(codes, mixture.sample(500, torch.Generator().manual_seed(0)))
    # The draws follow the fitted mixture: their mean is the weighted mean of the components.
    expected = (mixture.weights.float()[:, None] * mixture.means).sum(0)
    assert torch.allclose(codes.mean(0), expected, atol=0.25)


def test_gmm_fit_is_stored_in_the_run_and_reused(trained_run):
    model = load_model(trained_run)
    first = load_or_fit_gmm(trained_run, model, components=2)
    stored = (trained_run / GMM_FILE).read_bytes()
    again = load_or_fit_gmm(trained_run, model, components=2)
    assert torch.equal(first.means, again.means) and (trained_run / GMM_FILE).read_bytes() == stored
    images = sample_images(model, trained_run, 7, "gmm", seed=1, components=2)
    assert images.shape == (7, 1, 28, 28) and images.min() >= 0.0 and images.max() <= 1.0


def test_unknown_sampler_and_bad_component_counts_are_refused(trained_run):
    model = load_model(trained_run)
    with pytest.raises(VaelabError, match="unknown --sampler 'flow'"):
        sample_images(model, trained_run, 4, "flow")
    with pytest.raises(VaelabError, match="--components must be at least 1"):
        fit_gmm(model, read_config(trained_run).data, components=0, limit=100)


def test_sample_command_with_the_gmm_sampler_writes_a_png(trained_run, tmp_path):
    out = tmp_path / "gmm.png"
    result = subprocess.run(
        [sys.executable, "-m", "vaelab.cli", "sample", str(trained_run), "-n", "9", "--sampler", "gmm",
         "--components", "2", "--out", str(out)], capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_two_stage_sampler_learns_codes_the_prior_does_not_match():
    # First-stage codes far from N(0, I): shifted, one dimension wide. The prior puts its mass at 0 with unit spread;
    # a second stage that learned the codes moves its samples to their mean and widens the wide dimension.
    generator = torch.Generator().manual_seed(0)
    centre, spread = torch.tensor([2.0, -1.5, 0.5, 0.0]), torch.tensor([0.5, 2.5, 1.0, 1.0])
    codes = centre + spread * torch.randn(4000, 4, generator=generator)
    stage = fit_two_stage(codes, TwoStageConfig(hidden=128, depth=2, epochs=30))
    samples = stage.sample(4000, torch.Generator().manual_seed(1))
    assert samples.shape == (4000, 4)
    assert torch.allclose(samples.mean(0), centre, atol=0.3), samples.mean(0)
    assert 2.0 < samples[:, 1].std().item() < 3.0 and samples[:, 0].std().item() < 0.8


def test_two_stage_fit_is_stored_in_the_run_and_used_by_the_sampler(trained_run):
    model = load_model(trained_run)
    quick = TwoStageConfig(hidden=64, epochs=1)
    fitted = load_or_fit_two_stage(trained_run, model, quick, log=lambda m: None)
    stored = (trained_run / TWO_STAGE_FILE).read_bytes()
    images = sample_images(model, trained_run, 5, "two-stage", seed=2, log=lambda m: None)
    assert images.shape == (5, 1, 28, 28) and (trained_run / TWO_STAGE_FILE).read_bytes() == stored
    expected = model.decode(fitted.sample(5, torch.Generator().manual_seed(2)))
    assert torch.allclose(images, expected, atol=1e-6)
