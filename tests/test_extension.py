"""ARCHITECTURE.md's "How to extend", followed to the letter: a colour dataset, a model family with two optimizers and
a likelihood with two decoder planes per channel, each added by its description or class and one registry line,
then trained, resumed, loaded and shown by the unchanged trainer, run directory, reference classifier and grids."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.distributions import Distribution, Independent, Normal

from tests.conftest import train_straight_and_with_a_stop
from vaelab.config import RunConfig
from vaelab.data.catalog import DATASETS, register_dataset
from vaelab.data.description import DatasetDescription
from vaelab.errors import VaelabError
from vaelab.evaluation.reference_classifier import train_classifier
from vaelab.images import make_grid
from vaelab.models.likelihoods import LIKELIHOODS
from vaelab.models.registry import FAMILIES, Capabilities, Family, build_model, capabilities, register_family
from vaelab.models.training_step import Phase, StepContext, TrainingStep, ValidationData
from vaelab.rundir import BEST, load_model, load_tensors, read_metrics
from vaelab.training import train

# --- a dataset: one description (its "file") and one registry line ----------------------------------------------

COLOURS = np.array([[1.0, 0.1, 0.1], [0.1, 1.0, 0.1], [0.1, 0.1, 1.0]])  # class c: a square of colour c
SIDE, SQUARE = 8, 4


def read_squares(description: DatasetDescription, split: str, root: Any) -> tuple[np.ndarray, np.ndarray]:
    """Coloured squares on black at seeded positions: 6,000 training and 300 test images, `[N, 3, 8, 8]` uint8 (the
    reference classifier keeps the first 5,000 training images for validation, as for MNIST)."""
    count, seed = (6000, 0) if split == "train" else (300, 1)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(COLOURS), count)
    images = np.zeros((count, 3, SIDE, SIDE), dtype=np.uint8)
    for image, label, (top, left) in zip(images, labels, rng.integers(0, SIDE - SQUARE + 1, (count, 2)), strict=True):
        image[:, top : top + SQUARE, left : left + SQUARE] = (COLOURS[label] * 255).astype(np.uint8)[:, None, None]
    return images, labels.astype(np.int64)


SQUARES = DatasetDescription(
    name="toy-squares",
    shape=(3, SIDE, SIDE),
    class_names=("red", "green", "blue"),
    reader=read_squares,
    default_likelihood="gaussian",
)


# --- a likelihood: one class with its planes per channel, one line in LIKELIHOODS --------------------------------


class PerPixelGaussian(nn.Module):
    """Normal(sigmoid(mean plane), σ from a second plane) per pixel: two decoder planes per image channel."""

    planes_per_channel = 2

    def forward(self, decoder_output: torch.Tensor) -> Distribution:
        mean, log_sigma = decoder_output.chunk(2, dim=1)
        return Independent(Normal(torch.sigmoid(mean), log_sigma.clamp(-6, 2).exp(), validate_args=False), 3)


# --- a model family: its own model and objective, one registry line ---------------------------------------------


class TinyAutoencoder(nn.Module):
    """A deterministic autoencoder: an encoder (one optimizer) and a decoder (another), trained in two phases."""

    def __init__(self, config) -> None:
        super().__init__()
        self.config = config
        channels, height, width = config.image_shape
        pixels = channels * height * width
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(pixels, config.latent_dim))
        self.decoder = nn.Sequential(nn.Linear(config.latent_dim, pixels), nn.Unflatten(1, (channels, height, width)))

    def reconstruct(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return torch.sigmoid(self.decoder(self.encoder(x)))


class TwoPhaseStep(TrainingStep):
    """Squared error; the encoder steps first, then the decoder on the updated encoder's codes."""

    selection = "val_negative_mse"

    def parameter_groups(self, model: TinyAutoencoder) -> dict[str, Any]:
        return {"encoder": model.encoder.parameters(), "decoder": model.decoder.parameters()}

    def step(
        self, model: TinyAutoencoder, intensities: torch.Tensor, labels: torch.Tensor, context: StepContext
    ) -> Iterator[Phase]:
        x = context.modelled(intensities)
        for optimizer in ("encoder", "decoder"):
            squared = (model.reconstruct(x) - x).pow(2).flatten(1).sum(1)
            yield Phase(squared.mean(), {"mse": squared}, optimizer=optimizer)

    def validate(self, model: TinyAutoencoder, data: ValidationData) -> dict[str, Any]:
        mse = (model.reconstruct(data.inputs) - data.inputs).pow(2).flatten(1).sum(1).mean().item()
        return {"val_mse": mse, "val_negative_mse": -mse}


@pytest.fixture(scope="module", autouse=True)
def extended():
    """The three registry lines (`register_*` from outside the package; LIKELIHOODS is a plain dict)."""
    register_dataset(SQUARES)
    register_family("tiny-ae", Family("tests.test_extension:TinyAutoencoder", "tests.test_extension:TwoPhaseStep",
                                      Capabilities(likelihood=False)))
    LIKELIHOODS["per-pixel-gaussian"] = PerPixelGaussian
    yield
    del DATASETS[SQUARES.name], FAMILIES["tiny-ae"], LIKELIHOODS["per-pixel-gaussian"]


SMALL = {"dataset": "toy-squares", "val_size": 100, "train_limit": 500, "batch_size": 50, "channels": [8, 16],
         "hidden_dim": 32, "latent_dim": 4, "epochs": 2, "input_mode": "intensities", "checkpoint_every": 3}


def test_a_registered_dataset_gives_the_config_its_shape_classes_and_likelihood():
    config = RunConfig().with_overrides({"dataset": "toy-squares", "val_size": 100, "channels": [8, 16]})
    assert config.model.image_shape == [3, SIDE, SIDE] and config.model.classes == 3
    assert config.model.likelihood == "gaussian"  # the dataset's default
    with pytest.raises(VaelabError, match=r"toy-squares images are 3×8×8 .* leave it out"):
        RunConfig().with_overrides({**SMALL, "image_shape": [1, 28, 28]})
    with pytest.raises(VaelabError, match="must be divisible by 2\\*\\*stages = 16"):
        RunConfig().with_overrides({**SMALL, "channels": [8, 8, 8, 8]})


def test_a_colour_vae_with_a_two_plane_likelihood_trains_and_its_samples_are_colour_grids(tmp_path):
    config = RunConfig().with_overrides(
        {**SMALL, "likelihood": "per-pixel-gaussian", "train_limit": 2000, "epochs": 6, "lr": 3e-3}
    )
    model = build_model(config.model)
    assert model.decoder[-1][-1].out_channels == 3 * PerPixelGaussian.planes_per_channel
    result = train(config, tmp_path / "vae", progress=False, log=lambda message: None)
    history = read_metrics(tmp_path / "vae")
    assert result.finished and result.selection == "val_elbo" and math.isfinite(result.best_score)
    assert history[-1]["val_elbo"] > history[0]["val_elbo"] + 50  # it learns
    trained = load_model(tmp_path / "vae")
    samples = trained.sample(6, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (6, 3, SIDE, SIDE)
    picture = make_grid(samples, columns=3)
    assert picture.shape == (2 * (SIDE + 2) + 2, 3 * (SIDE + 2) + 2, 3)
    assert history[-1]["val_kl"] > 1.0  # the code carries information about the images
    # Every channel of every sample lands in the picture (the grid of a grey model kept only the first).
    first = (samples[0].detach().permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    assert np.array_equal(picture[2 : 2 + SIDE, 2 : 2 + SIDE], first)


def test_a_family_with_two_optimizers_trains_and_resumes_bit_identically_with_its_own_selection(tmp_path):
    config = RunConfig().with_overrides({**SMALL, "family": "tiny-ae"})
    straight, resumed = train_straight_and_with_a_stop(config, tmp_path, stop_at=7)
    assert straight.selection == "val_negative_mse" and resumed.steps == straight.steps == 2 * (500 // 50)
    first, _ = load_tensors(tmp_path / "straight" / BEST)
    second, metadata = load_tensors(tmp_path / "split" / BEST)
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    assert float(metadata["val_negative_mse"]) == straight.best_score
    last, _ = load_tensors(tmp_path / "split" / "last.safetensors")
    assert any(name.startswith("optimizer-encoder.") for name in last)
    assert any(name.startswith("optimizer-decoder.") for name in last)
    assert not capabilities(load_model(tmp_path / "split")).likelihood
    assert read_metrics(tmp_path / "split")[-1]["train_mse"] < read_metrics(tmp_path / "split")[0]["train_mse"]


def test_the_reference_classifier_takes_the_shape_and_classes_of_a_registered_dataset():
    classifier, info = train_classifier("toy-squares", epochs=2, log=lambda message: None)
    assert classifier.head[-1].out_features == 3
    assert info["test_accuracy"] > 0.9  # three colours are easy to tell apart
