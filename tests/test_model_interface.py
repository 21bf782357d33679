"""Every registered family keeps the model interface (`vaelab.models.base`) on every dataset shape: built from its
default options it trains, saves and loads, resumes bit-identically, samples, decodes, and refuses in one line what
its capabilities deny. A toy family written from ARCHITECTURE.md's recipe alone passes the same test, and the
commands that only know the interface (sample, interpolate, explore) work on it."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from tests.conftest import DDPM, GAN, TINY, train_straight_and_with_a_stop
from tests.test_web import serving
from vaelab.config import RunConfig
from vaelab.data.shapes import write_shapes_folder
from vaelab.errors import VaelabError
from vaelab.models.base import (
    ClassifyingModel,
    EncodingModel,
    FamilyModule,
    GenerativeModel,
    LikelihoodModel,
    Posterior,
)
from vaelab.models.registry import FAMILIES, Capabilities, Family, capabilities, register_family
from vaelab.models.training_step import Phase, StepContext, TrainingStep, ValidationData
from vaelab.rundir import LAST, load_model, load_tensors, model_tensors
from vaelab.training import train

# --- the toy family: ARCHITECTURE.md's "A model family" recipe, to the letter -----------------------------------


class ToyAutoencoder(FamilyModule):
    """A linear Gaussian encoder and a linear decoder, trained on squared error: the least a family can be."""

    def __init__(self, config) -> None:
        super().__init__(config)
        channels, height, width = config.image_shape
        pixels = channels * height * width
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(pixels, 2 * config.latent_dim))
        self.decoder = nn.Sequential(nn.Linear(config.latent_dim, pixels), nn.Unflatten(1, (channels, height, width)))

    def encode(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> Posterior:
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return Posterior(mean, logvar)

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, self.latent_dim, generator=generator).to(self.device)

    def decode(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z))

    def sample(
        self, n: int, generator: torch.Generator | None = None, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.decode(self.sample_prior(n, generator), labels)


class ToyStep(TrainingStep):
    """Its objective, as the recipe says: squared error of the decoded posterior mean, one optimizer."""

    selection = "val_negative_mse"

    def squared_error(self, model: ToyAutoencoder, x: torch.Tensor) -> torch.Tensor:
        return (model.decode(model.encode(x).mode()) - x).pow(2).flatten(1).sum(1)

    def step(
        self, model: ToyAutoencoder, intensities: torch.Tensor, labels: torch.Tensor, context: StepContext
    ) -> Iterator[Phase]:
        squared = self.squared_error(model, context.modelled(intensities))
        yield Phase(squared.mean(), {"mse": squared})

    def validate(self, model: ToyAutoencoder, data: ValidationData) -> dict[str, Any]:
        mse = self.squared_error(model, data.inputs).mean().item()
        return {"val_mse": mse, "val_negative_mse": -mse}


@pytest.fixture(scope="module", autouse=True)
def toy_family():
    register_family("toy", Family("tests.test_model_interface:ToyAutoencoder",
                                  "tests.test_model_interface:ToyStep", Capabilities(likelihood=False)))
    yield
    del FAMILIES["toy"]


# --- every family, every shape ------------------------------------------------------------------------------------

FAMILY_OPTIONS = {
    "vae": {}, "cvae": {"family": "cvae"}, "vae-classifier": {"family": "vae-classifier"}, "m2": {"family": "m2"},
    "gan": GAN, "ddpm": DDPM, "toy": {"family": "toy"},
}
SHAPES = ("1x28x28", "3x64x64")


def test_every_family_of_the_package_is_checked():
    """The registry as a fresh process reads it: other tests of this process register families of their own."""
    listed = subprocess.run([sys.executable, "-c", "from vaelab.models.registry import FAMILIES; print(*FAMILIES)"],
                            capture_output=True, text=True, check=True).stdout.split()
    assert listed and set(listed) <= set(FAMILY_OPTIONS)


@pytest.fixture(scope="module")
def shapes_folder(tmp_path_factory) -> Path:
    """120 coloured shapes, 64×64 RGB, three classes (subfolders)."""
    return write_shapes_folder(tmp_path_factory.mktemp("shapes") / "folder", count=120, size=64)


def family_config(kind: str, shape: str, folder: Path) -> RunConfig:
    """Four steps: one epoch of 64 images in batches of 16."""
    data = {"dataset": "mnist"} if shape == "1x28x28" else {"dataset": f"folder:{folder}"}
    return RunConfig().with_overrides({**TINY, **data, "train_limit": 64, "val_limit": 32, "batch_size": 16,
                                       **FAMILY_OPTIONS[kind], "epochs": 1, "checkpoint_every": 2})


def one_line_refusal(call) -> str:
    with pytest.raises(VaelabError) as refused:
        call()
    message = str(refused.value)
    assert message and "\n" not in message
    return message


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", list(FAMILY_OPTIONS))
def test_a_family_trains_saves_loads_resumes_samples_decodes_and_refuses_in_one_line(kind, shape, shapes_folder,
                                                                                      tmp_path):
    torch.set_num_threads(1)
    config = family_config(kind, shape, shapes_folder)
    straight, resumed = train_straight_and_with_a_stop(config, tmp_path, stop_at=2)
    for name in (LAST,):
        assert load_tensors(tmp_path / "straight" / name)[0].keys() == load_tensors(tmp_path / "split" / name)[0].keys()
        for key, value in load_tensors(tmp_path / "straight" / name)[0].items():
            assert torch.equal(value, load_tensors(tmp_path / "split" / name)[0][key]), f"{name}: {key} differs"

    model = load_model(tmp_path / "straight")
    saved, _ = load_tensors(tmp_path / "straight" / "model.safetensors")
    loaded = model_tensors(model)
    assert all(torch.equal(loaded[key].float(), saved[key].float()) for key in saved)

    can = capabilities(model)
    assert isinstance(model, GenerativeModel)
    assert isinstance(model, EncodingModel) == can.encoder
    assert isinstance(model, LikelihoodModel) == can.likelihood
    assert isinstance(model, ClassifyingModel) == can.classifier
    channels, height, width = model.config.image_shape
    assert [channels, height, width] == ([1, 28, 28] if shape == "1x28x28" else [3, 64, 64])

    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(3) % 3 if can.conditional else None
    codes = model.sample_prior(3, generator)
    assert codes.shape[0] == 3 and codes.shape[1] == model.latent_dim
    for images in (model.decode(codes, labels), model.sample(3, torch.Generator().manual_seed(0), labels)):
        assert images.shape == (3, channels, height, width)
        assert images.min() >= 0 and images.max() <= 1

    x = load_model(tmp_path / "straight").sample(2, torch.Generator().manual_seed(1), labels[:2] if can.conditional
                                                  else None)
    if can.encoder:
        posterior = model.encode(x, labels[:2] if can.conditional else None)
        assert isinstance(posterior, Posterior) and posterior.mean.shape == (2, model.latent_dim)
        assert posterior.kl().shape == (2,)
    else:
        from vaelab.analysis.traversal import image_codes

        if not can.inversion:
            one_line_refusal(lambda: image_codes(model, x, what="a test image's code"))
    if not can.classifier:
        from vaelab.evaluation.classification import predict_probabilities

        one_line_refusal(lambda: predict_probabilities(model, x))
    if not can.conditional:
        from vaelab.analysis.class_style import class_grid

        one_line_refusal(lambda: class_grid(model, 3))


# --- the commands that only know the interface, on the toy family ----------------------------------------------------


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("toy") / "run"
    config = RunConfig().with_overrides({**TINY, "family": "toy", "train_limit": 512, "epochs": 2})
    train(config, run_dir, progress=False, log=lambda message: None)
    return run_dir


def test_sample_and_interpolate_work_on_a_family_written_from_the_recipe(toy_run):
    from vaelab.analysis.interpolation import interpolate_run
    from vaelab.analysis.samplers import sample_images

    images = sample_images(load_model(toy_run), toy_run, 6, "prior", seed=0)
    assert images.shape == (6, 1, 28, 28)
    for start, end in (("test:0", "test:1"), ("random:1", "random:2")):
        path = interpolate_run(toy_run, start, end, steps=5)
        assert path.decoded.shape == (5, 1, 28, 28)


def test_the_explorer_serves_a_family_written_from_the_recipe(toy_run):
    with serving(toy_run) as (host, port):
        connection = http.client.HTTPConnection(host, port, timeout=30)
        connection.request("GET", "/api/info")
        info = json.loads(connection.getresponse().read())
        assert info["latent_dim"] == TINY["latent_dim"]
        body = json.dumps({"z": [0.5] * TINY["latent_dim"]})
        connection.request("POST", "/api/decode", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        assert response.status == 200 and response.read().startswith(b"\x89PNG")
        connection.close()
