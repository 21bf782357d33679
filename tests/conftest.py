"""Shared fixtures: real data (small slices) and quickly trained real models (a VAE and a conditional VAE)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vaelab.config import RunConfig
from vaelab.training import train

if os.environ.get("PYTEST_XDIST_WORKER"):  # one thread per worker: see tests/__init__.py
    import torch

    torch.set_num_threads(1)

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package, installed by `make test`; no browser download
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def launch_chromium(playwright):
    """Headless Debian Chromium driven by Playwright, with no background traffic of its own."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)


TINY = {
    "train_limit": 2048, "val_limit": 512, "batch_size": 128, "channels": [16, 32], "hidden_dim": 64, "latent_dim": 8,
}


def tiny_config(**overrides) -> RunConfig:
    return RunConfig().with_overrides({**TINY, "epochs": 2, **overrides})


def train_straight_and_with_a_stop(config: RunConfig, folder: Path, stop_at: int):
    """`config` trained into folder/straight uninterrupted, and into folder/split stopped after `stop_at` steps
    then resumed to the end; returns both results."""
    from vaelab.training.runs import start_or_resume

    quiet = {"progress": False, "log": lambda message: None}
    straight = train(config, folder / "straight", **quiet)
    start_or_resume(folder / "split", None, None, {**config.options(), "max_steps": stop_at}, **quiet)
    return straight, start_or_resume(None, folder / "split", None, {}, **quiet)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """A small MNIST model trained for a few epochs on 4,096 real images: real numbers, seconds of CPU."""
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    config = RunConfig().with_overrides({**TINY, "train_limit": 4096, "epochs": 4, "lr": 2e-3})
    train(config, run_dir, progress=False, log=lambda message: None)
    return run_dir


@pytest.fixture(scope="session")
def cvae_run(tmp_path_factory) -> Path:
    """A small MNIST cvae trained on 4,096 real images: long enough (8 epochs) to use its labels."""
    run_dir = tmp_path_factory.mktemp("runs") / "tiny-cvae"
    # Free bits keep z in use: without them the label carries everything and the style collapses (0.2 nats).
    config = RunConfig().with_overrides({**TINY, "train_limit": 4096, "epochs": 8, "lr": 3e-3, "family": "cvae",
                                         "free_bits": 0.5})
    train(config, run_dir, progress=False, log=lambda message: None)
    return run_dir


GAN = {"family": "gan", "channels": [16, 32], "latent_dim": 16, "lr": 2e-4, "lr_schedule": "constant"}
DDPM = {"family": "ddpm", "channels": [16, 32], "blocks_per_stage": 1, "diffusion_steps": 100, "sampling_steps": 10,
        "lr": 1e-3}


@pytest.fixture(scope="session")
def gan_run(tmp_path_factory) -> Path:
    """A tiny DCGAN, one epoch on 512 real MNIST images."""
    run_dir = tmp_path_factory.mktemp("gan") / "run"
    train(tiny_config(**GAN, train_limit=512, epochs=1), run_dir, progress=False, log=lambda message: None)
    return run_dir


@pytest.fixture(scope="session")
def ddpm_run(tmp_path_factory) -> Path:
    """A tiny DDPM (T = 100), two epochs on 1,024 real MNIST images."""
    run_dir = tmp_path_factory.mktemp("ddpm") / "run"
    train(tiny_config(**DDPM, train_limit=1024, epochs=2), run_dir, progress=False, log=lambda message: None)
    return run_dir
