"""The model families: name → where its model and training step live, what it can do and the option groups it takes.

A family is one file (its model class and its `TrainingStep`, see `vaelab.models.training_step`) and one line in
`FAMILIES`. Code above the models asks a family's capabilities, never its class or name: "can it encode?",
"is it conditional?". The classes are imported on first use, so that reading the registry (the config, the
command line's help) imports no torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, Any

from vaelab.errors import VaelabError
from vaelab.models.options import Capabilities, ModelConfig, either

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class Family:
    model: str  # "module:Class" of its model (an nn.Module built from a ModelConfig), imported on first use
    training_step: str  # "module:Class" of its training step (a vaelab.models.training_step.TrainingStep)
    capabilities: Capabilities
    options: tuple[str, ...] = ()  # the option groups of the model section it takes (vaelab.models.options)

    def model_class(self) -> type:
        return _load(self.model)

    def training_step_class(self) -> type:
        return _load(self.training_step)


def _load(path: str) -> type:
    module, _, name = path.partition(":")
    return getattr(import_module(module), name)


ELBO = "vaelab.models.vae:ELBOStep"
SEMI_SUPERVISED = "vaelab.models.semi_supervised:SemiSupervisedStep"

VAE_OPTIONS = ("objective", "prior", "decoder")

FAMILIES: dict[str, Family] = {
    "vae": Family("vaelab.models.vae:VAE", ELBO, Capabilities(), VAE_OPTIONS),
    "cvae": Family("vaelab.models.cvae:ConditionalVAE", ELBO, Capabilities(conditional=True),
                   (*VAE_OPTIONS, "cvae")),
    "vae-classifier": Family("vaelab.models.classifier:ClassifierVAE", SEMI_SUPERVISED,
                             Capabilities(classifier=True), (*VAE_OPTIONS, "classifier")),
    "m2": Family("vaelab.models.classifier:M2", SEMI_SUPERVISED, Capabilities(conditional=True, classifier=True),
                 (*VAE_OPTIONS, "classifier")),
    "gan": Family("vaelab.models.gan:GAN", "vaelab.models.gan:GANStep",
                  Capabilities(encoder=False, likelihood=False)),
    "ddpm": Family("vaelab.models.diffusion:DDPM", "vaelab.models.diffusion:DiffusionStep",
                   Capabilities(encoder=False, likelihood=False, sampling="diffusion", inversion=True), ("ddpm",)),
}


def family(name: str) -> Family:
    if name not in FAMILIES:
        raise VaelabError(f"model family '{name}' is unknown; choose one of: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def register_family(name: str, entry: Family) -> Family:
    """Add a family defined outside vaelab (a plug-in, a test); a name already taken is an error."""
    if name in FAMILIES:
        raise VaelabError(f"a model family named '{name}' is already registered")
    FAMILIES[name] = entry
    return entry


def build_model(config: ModelConfig) -> nn.Module:
    """The model a config describes, by its family."""
    return family(config.family).model_class()(config)


def decodes_sequentially(config: ModelConfig) -> bool:
    """A decoder that draws an image pixel by pixel, one network pass per pixel (the PixelCNN: about 0.15 s per
    MNIST image on one CPU thread against well under a millisecond): what decodes thousands of images decodes fewer
    of its images, and says how many."""
    return config.decoder.name == "pixelcnn"


def model_label(config: ModelConfig) -> str:
    """The family, and what sets the model apart from the family's default: `vae + VampPrior (100)`."""
    parts = [config.family]
    if config.prior.name != "standard":
        parts.append(f"VampPrior ({config.prior.components})")
    if decodes_sequentially(config):
        parts.append(f"PixelCNN decoder ({config.decoder.pixelcnn_layers} layers)")
    return " + ".join(parts)


def capabilities(model: Any) -> Capabilities:
    """What a built model can do, from its family (every family's model keeps its ModelConfig as `config`)."""
    return family(model.config.family).capabilities


def require_conditional(model: Any, what: str) -> None:
    if not capabilities(model).conditional:
        raise VaelabError(f"{what} needs a conditional run (train one with `vaelab train --model cvae`)")


def require_classifier(model: Any, what: str) -> None:
    if not capabilities(model).classifier:
        raise VaelabError(
            f"{what} needs a run that predicts classes (train one with `vaelab train --model vae-classifier` or m2)"
        )


def require_image_shape(config: ModelConfig) -> None:
    """Every family builds its networks from the image shape the dataset's description put in the config."""
    if config.image_shape is None:
        raise VaelabError("the model config has no image_shape; build it with RunConfig, which takes the shape "
                          "from the dataset's description")


def require_images(x: Any, config: ModelConfig, what: str) -> None:
    """A one-line error for input that is not a batch of the run's images, a float tensor `[N, C, H, W]` in
    [0, 1]: checked where images enter a family's public methods (`encode`), on every call, since it costs two
    comparisons."""
    expected = [*config.image_shape]
    shape = [*x.shape] if hasattr(x, "shape") else None
    if shape is None or len(shape) != 4 or shape[1:] != expected:
        raise VaelabError(f"{what} expects images of shape [N, {', '.join(map(str, expected))}] (the run's dataset), "
                          f"got {shape if shape is not None else type(x).__name__}")
    if not (hasattr(x, "is_floating_point") and x.is_floating_point()):
        raise VaelabError(f"{what} expects a float tensor of intensities in [0, 1], got {type(x).__name__} of "
                          f"{getattr(x, 'dtype', '?')} (divide 8-bit pixels by 255)")


def families_that(can: Callable[[Capabilities], bool]) -> str:
    """`vae, cvae, vae-classifier or m2`: the families whose capabilities pass `can`."""
    return either([name for name, entry in FAMILIES.items() if can(entry.capabilities)])


def require_encoder(model: Any, what: str) -> None:
    """A one-line error for what needs q(z|x): the codes of test images, per-dimension analyses."""
    if not capabilities(model).encoder:
        raise VaelabError(f"a {model.config.family} has no encoder: {what} needs a run of "
                          f"{families_that(lambda can: can.encoder)}")


def require_codes_of_images(model: Any, what: str) -> None:
    """A one-line error for what needs a code for a given image: an encoder or a deterministic inversion."""
    can = capabilities(model)
    if not (can.encoder or can.inversion):
        raise VaelabError(f"a {model.config.family} has no encoder: {what} needs a run of "
                          f"{families_that(lambda can: can.encoder or can.inversion)}")


def refuse_conditional(model: Any, what: str) -> None:
    """A one-line error for the analyses that only know the unconditional API (they would call encode(x))."""
    if capabilities(model).conditional:
        raise VaelabError(
            f"{what} does not support conditional runs yet; use `vaelab sample --class/--grid-classes`, "
            "`vaelab restyle` or `vaelab eval` on a cvae run"
        )
