"""The `gan` family: it trains into a run directory, samples in [0, 1], its two players' losses move as they should,
and what needs an encoder is refused in one line."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import pytest
import torch

from tests.conftest import GAN, tiny_config
from tests.test_cli import vaelab
from vaelab.data import load_split
from vaelab.data.datasets import to_float
from vaelab.models import build_model
from vaelab.models.gan import GANStep, discriminator_loss, generator_loss
from vaelab.models.training_step import StepContext
from vaelab.rundir import load_model, read_metrics


def test_a_gan_trains_one_epoch_into_a_run_directory_and_samples_images_in_the_unit_range(gan_run):
    assert (gan_run / "model.safetensors").is_file() and (gan_run / "last.safetensors").is_file()
    row = read_metrics(gan_run)[0]
    assert 0 < row["val_d_real"] < 1 and 0 < row["val_d_fake"] < 1 and row["train_loss_d"] > 0
    model = load_model(gan_run)
    samples = model.sample(12, torch.Generator().manual_seed(0))
    assert samples.shape == (12, 1, 28, 28) and samples.min() >= 0 and samples.max() <= 1
    assert samples.std(0).mean() > 0.01  # different codes give different images


def test_the_mnist_gan_config_is_read_with_two_optimizers_and_grayscale_inputs():
    from vaelab.config import load_yaml_config

    config = load_yaml_config(Path("configs/gan-mnist.yaml"))
    assert config.model.family == "gan" and config.data.input_mode == "intensities"
    objective = GANStep(config, torch.zeros(10, dtype=torch.long))
    assert set(objective.parameter_groups(build_model(config.model))) == {"discriminator", "generator"}
    assert objective.optimizer_options("generator")["betas"] == (0.5, 0.999)


def test_one_step_lowers_the_discriminator_loss_then_the_generator_loss_on_a_fixed_batch():
    config = tiny_config(**GAN)
    torch.manual_seed(0)
    model = build_model(config.model)
    objective = GANStep(config, torch.zeros(64, dtype=torch.long))
    real = to_float(load_split("mnist", "test").images[:64])
    codes = torch.Generator().manual_seed(5)
    context = StepContext(0, 1, {"codes": codes}, lambda x: x, lambda x: x, nullcontext, real, torch.zeros(64))
    optimizers = {name: torch.optim.Adam(params, lr=1e-3, **objective.optimizer_options(name))
                  for name, params in objective.parameter_groups(model).items()}
    fixed_z = torch.randn(64, config.model.latent_dim, generator=torch.Generator().manual_seed(9))

    def losses() -> tuple[float, float]:
        with torch.no_grad():
            fake = model.decode(fixed_z)
            return (discriminator_loss(model.judge(real), model.judge(fake)).mean().item(),
                    generator_loss(model.judge(fake)).mean().item())

    model.train()
    steps = objective.step(model, real, torch.zeros(64), context)
    d_before, _ = losses()
    phase = next(steps)
    assert phase.optimizer == "discriminator"
    optimizers["discriminator"].zero_grad()
    phase.loss.backward()
    optimizers["discriminator"].step()
    d_after, g_before = losses()
    assert d_after < d_before  # the discriminator got better at telling real from generated

    phase = next(steps)
    assert phase.optimizer == "generator"
    optimizers["generator"].zero_grad()
    d_gradients = [p.grad.clone() for p in model.discriminator.parameters()]
    phase.loss.backward()
    # The generator's step leaves the discriminator's gradients as the discriminator's step left them.
    assert all(torch.equal(p.grad, g) for p, g in zip(model.discriminator.parameters(), d_gradients, strict=True))
    optimizers["generator"].step()
    _, g_after = losses()
    assert g_after < g_before  # the generator's images fool the (fixed) discriminator more


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["reconstruct"],
         "a gan has no encoder: vaelab reconstruct needs a run of vae, cvae, vae-classifier, m2 or ddpm"),
        (["factors", "--no-classify"], "a gan has no encoder: vaelab factors"),
        (["explore"], "a gan has no encoder: vaelab explore"),
        (["traverse", "--base", "test:0"], "a gan has no encoder: a traversal from a test image"),
        (["interpolate", "--from", "test:0", "--to", "test:1"], "use --from random:SEED"),
        (["sample", "--sampler", "gmm"], "a gan cannot use --sampler gmm; it offers: prior"),
    ],
)
def test_what_a_gan_cannot_do_is_refused_in_one_line(gan_run, tmp_path, command, message):
    output = ["--port", "0"] if command[0] == "explore" else [] if command[0] == "factors" else \
        ["--out", str(tmp_path / "out.png")]
    result = vaelab(command[0], str(gan_run), *command[1:], *output, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_gan_interpolates_between_random_codes_and_traverses_from_the_zero_code(gan_run, tmp_path):
    from vaelab.analysis.interpolation import interpolate_run
    from vaelab.analysis.traversal import traverse_run

    path = interpolate_run(gan_run, "random:1", "random:2", 6, "slerp")
    assert path.decoded.shape == (6, 1, 28, 28)
    assert torch.allclose(path.crossfade[0], path.decoded[0]) and torch.allclose(path.crossfade[-1], path.decoded[-1])
    traversal = traverse_run(gan_run, "auto", 3.0, 5, "prior")
    assert traversal.dims == list(range(16)) and traversal.usage.kl_per_dim is None
    assert traversal.images.shape == (16, 5, 1, 28, 28)
