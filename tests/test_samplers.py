import subprocess
import sys
from dataclasses import replace

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
    training_codes,
)
from vaelab.data import load_split, prepare_inputs
from vaelab.errors import VaelabError
from vaelab.evaluation.evaluate import EVAL_SEED, FIT_IMAGES, fit_images
from vaelab.models.base import posterior_moments
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
    stage = fit_two_stage(codes, TwoStageConfig(hidden=128, depth=2, steps=480))
    samples = stage.sample(4000, torch.Generator().manual_seed(1))
    assert samples.shape == (4000, 4)
    assert torch.allclose(samples.mean(0), centre, atol=0.3), samples.mean(0)
    assert 2.0 < samples[:, 1].std().item() < 3.0 and samples[:, 0].std().item() < 0.8


def test_two_stage_fit_is_stored_in_the_run_and_used_by_the_sampler(trained_run):
    model = load_model(trained_run)
    quick = TwoStageConfig(hidden=64, steps=16)
    fitted = load_or_fit_two_stage(trained_run, model, quick, log=lambda m: None)
    stored = (trained_run / TWO_STAGE_FILE).read_bytes()
    images = sample_images(model, trained_run, 5, "two-stage", seed=2, log=lambda m: None)
    assert images.shape == (5, 1, 28, 28) and (trained_run / TWO_STAGE_FILE).read_bytes() == stored
    expected = model.decode(fitted.sample(5, torch.Generator().manual_seed(2)))
    assert torch.allclose(images, expected, atol=1e-6)


def test_the_samplers_fit_on_no_more_than_the_images_the_run_trained_on(trained_run, tmp_path):
    model, data = load_model(trained_run), read_config(trained_run).data
    assert data.train_limit == 4096
    # The codes are those of the run's own first 4,096 training images, however many are asked for.
    codes = training_codes(model, data, limit=60_000)
    train = load_split(data.dataset, "train", data.val_size, data.split_seed).subset(4096)
    assert torch.equal(codes, posterior_moments(model, prepare_inputs(train.images, data.input_mode, EVAL_SEED))[0])
    messages: list[str] = []
    load_or_fit_gmm(trained_run, model, components=2, cache_dir=tmp_path / "cache", log=messages.append)
    load_or_fit_two_stage(trained_run, model, TwoStageConfig(hidden=64, steps=20), messages.append, tmp_path / "cache")
    assert "2 components on the codes of 4,096 training images" in messages[0]
    assert any("20 steps over 4,096 codes" in message for message in messages)
    assert sorted(path.name for path in (tmp_path / "cache").iterdir()) == [GMM_FILE, TWO_STAGE_FILE]


def test_a_run_trained_on_every_image_has_its_fits_capped_at_fit_images(trained_run):
    data = read_config(trained_run).data
    assert len(fit_images(replace(data, train_limit=None))) == FIT_IMAGES
    assert len(fit_images(data)) == len(fit_images(data, 50_000)) == 4096 and len(fit_images(data, 100)) == 100


def test_the_second_stage_takes_its_steps_whatever_the_number_of_codes():
    generator = torch.Generator().manual_seed(0)
    for count, epochs in ((100, "3 epochs"), (3000, "1 epoch")):
        messages: list[str] = []
        fit_two_stage(torch.randn(count, 4, generator=generator), TwoStageConfig(hidden=32, steps=12, batch_size=25),
                      messages.append)
        assert messages[0] == f"second stage: 12 steps over {count:,} codes ({epochs})"
        assert messages[-1].startswith("second stage: fitted in")

