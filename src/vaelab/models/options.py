"""The model's options (the `model` section of a run's config): the architecture every family shares, and one
small dataclass per option group that belongs to some families only, each with its help and its own checks.

    model:
      family: vae                 # --model
      latent_dim: 32
      channels: [32, 64]
      objective: {name: tcvae, tc_weight: 6}      # vae, cvae; vae-classifier and m2 take beta's options
      prior: vamp                 # a bare name stands for {name: vamp}
      decoder: {name: pixelcnn, pixelcnn_layers: 3}
      cvae: {label_at_input: true}
      classifier: {head_input: trunk, head_shift: 2}   # vae-classifier, m2
      ddpm: {diffusion_steps: 1000}

Which groups a family takes is written in its registry line (`vaelab.models.registry.FAMILIES`); a group given to a
family that does not take it is an error naming the families that do. Every option also has a flat command-line
name (`--tc-weight`, `--prior-components`), the flag `vaelab train` builds from its field.

This module imports no torch, so that the command line's help answers at once; the models import it, and it
imports no other part of vaelab but the errors.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from vaelab.errors import VaelabError

FEATURE_SIDE = 7  # the encoder's stages stop once its features are at most this many pixels a side
MAX_STAGE_WIDTH = 256  # the widest stage that the extension adds (a wider one is given in `channels`)
MAX_WIDTH = 4096  # widths above this cannot fit a small-image model in memory; refuse them before allocating
MAX_HEAD_SHIFT_SHARE = 4  # at most a quarter of the image side: further moves the object out of the frame
MAX_HEAD_ROTATE = 45.0  # degrees; handwriting and photographed clothes lean far less
MAX_PRIOR_COMPONENTS = 5000  # each one is encoded at every training step

# The choices of the options that name a piece of a model; the pieces themselves (torch) live in their modules:
# vaelab.models.priors, .noise_schedule, .disentangling, .pixelcnn. The likelihoods are a table an extension adds
# to (`vaelab.models.likelihoods.LIKELIHOODS`), read when a config is checked.
PRIORS = ("standard", "vamp")
NOISE_SCHEDULES = ("cosine", "linear")
DECODERS = ("factorised", "pixelcnn")
HEAD_INPUTS = ("mean", "trunk")
OBJECTIVE_WEIGHTS = {"tcvae": ("tc_weight",), "factorvae": ("tc_weight",),
                     "capacity": ("capacity_max", "capacity_steps", "capacity_weight")}
KL_SHAPING = ("beta", "kl_warmup_steps", "free_bits")  # the weights of objective beta
OBJECTIVES = ("beta", *OBJECTIVE_WEIGHTS)


def option(default: Any, help: str, flag: str | None = None, shown: str | None = None) -> Any:
    """A config field with its help text, its command-line flag when that is not `--field-name`, and how the
    command line shows its default when that is not the value itself (a None that means "all" or "the dataset's")."""
    metadata = {"help": help, "flag": flag, "shown": shown}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def group(group_type: type, help: str) -> Any:
    """A config field that is an option group (a dataclass of its own)."""
    return field(default_factory=group_type, metadata={"help": help, "group": True})


@dataclass(frozen=True)
class Capabilities:
    """What a family can do: code above the models asks these, never a family's class or name."""

    encoder: bool = True  # q(z|x): `encode(x, labels)`, so reconstructions, traversals from test images, codes
    likelihood: bool = True  # p(x|z) gives a density: ELBO and IWAE bounds on held-out images
    conditional: bool = False  # encoding and decoding need the class of every image (`labels`)
    classifier: bool = False  # predicts classes: `classify(x)` → logits
    sampling: str = "prior"  # how it draws images: "prior" decodes z ~ N(0, I) (`sample(n, generator, labels)`);
    # "diffusion" too, but its code is the whole starting noise and decoding it costs `sampling_steps` passes
    inversion: bool = False  # a deterministic code for any image (`invert(x)`): reconstructions, interpolations


@dataclass(frozen=True)
class OptionContext:
    """What an option group's checks may need beyond its own values: the family and the data it will model."""

    family: str
    capabilities: Capabilities
    image_shape: list[int]
    dataset: str
    input_mode: str
    likelihood: str
    penalties: bool  # the family's objective takes the disentangling penalties (tcvae, factorvae, capacity)


@dataclass
class ObjectiveOptions:
    """The VAE's latent penalty (`model.objective`): β-VAE, β-TCVAE, FactorVAE or annealed capacity, and its
    weights (vaelab.models.disentangling)."""

    name: str = option("beta", "vae/cvae: beta (β-VAE; β = 1 is the ELBO), tcvae (β-TCVAE), factorvae (FactorVAE) "
                               "or capacity (annealed capacity).", flag="--objective")
    beta: float = option(1.0, "beta: weight of the KL term (β-VAE; 1 is the ELBO).")
    kl_warmup_steps: int = option(0, "beta: β rises linearly from 0 over this many steps (0: off).")
    free_bits: float = option(0.0, "beta: nats per latent dimension below which the KL is not penalised (0: off).")
    tc_weight: float = option(6.0, "tcvae, factorvae: weight of the total correlation.")
    capacity_max: float = option(25.0, "capacity: nats the latent may carry at the end of the ramp.")
    capacity_steps: int = option(0, "capacity: steps of the linear ramp from 0 nats (0: the whole run).")
    capacity_weight: float = option(100.0, "capacity: γ of γ·|KL − C|.")

    def validate(self, context: OptionContext) -> None:
        _check(self.name in OBJECTIVES, f"objective must be one of {', '.join(OBJECTIVES)} (got '{self.name}')")
        for name in ("beta", "free_bits", "tc_weight", "capacity_max", "capacity_weight", "capacity_steps"):
            value = getattr(self, name)
            _check(math.isfinite(value) and value >= 0, f"{name} must be a finite number ≥ 0 (got {value})")
        _check(self.kl_warmup_steps >= 0, "kl_warmup_steps must be ≥ 0")
        if self.name != "beta":
            _check(context.penalties, f"objective {self.name} applies to --model vae or cvae, not {context.family}")
            shaped = [name for name in KL_SHAPING if getattr(self, name) != _default(ObjectiveOptions, name)]
            _check(not shaped, f"{', '.join(shaped)}: options of objective beta alone; objective {self.name} is "
                               f"weighted by {', '.join(OBJECTIVE_WEIGHTS[self.name])}")
        own = OBJECTIVE_WEIGHTS.get(self.name, ())
        for name in {name for names in OBJECTIVE_WEIGHTS.values() for name in names} - set(own):
            users = [objective for objective, names in OBJECTIVE_WEIGHTS.items() if name in names]
            _check(getattr(self, name) == _default(ObjectiveOptions, name),
                   f"{name} applies to objective {' or '.join(users)}; add --objective {users[0]}")

    def settings(self) -> dict[str, Any]:
        """The objective and the weights it uses, e.g. `{"name": "tcvae", "tc_weight": 6.0}`, as eval.json,
        disentanglement.json and the report name them."""
        names = KL_SHAPING if self.name == "beta" else OBJECTIVE_WEIGHTS[self.name]
        return {"name": self.name, **{name: getattr(self, name) for name in names}}


@dataclass
class PriorOptions:
    """The prior p(z) of the VAE kinds (`model.prior`, vaelab.models.priors)."""

    # The prior lives with the model: the VampPrior's pseudo-inputs are weights of the model.
    name: str = option("standard", "VAE kinds: p(z), standard (N(0, I)) or vamp (the VampPrior: a mixture of the "
                                   "posteriors of learned pseudo-inputs, Tomczak & Welling 2018).", flag="--prior")
    # Tomczak & Welling used 500; each training step encodes every pseudo-input, so fewer is cheaper on a CPU
    components: int = option(100, "vamp: pseudo-inputs K, the mixture's components.", flag="--prior-components")

    def validate(self, context: OptionContext) -> None:
        _check(self.name in PRIORS, f"prior must be one of {', '.join(PRIORS)} (got '{self.name}')")
        _check(1 <= self.components <= MAX_PRIOR_COMPONENTS,
               f"prior_components must be between 1 and {MAX_PRIOR_COMPONENTS:,} (got {self.components})")
        _check(self.name != "standard" or self.components == _default(PriorOptions, "components"),
               "prior_components applies to prior vamp; add --prior vamp")


@dataclass
class DecoderOptions:
    """p(x|z)'s decoder (`model.decoder`): factorised over pixels, or an autoregressive gated PixelCNN
    (vaelab.models.pixelcnn)."""

    name: str = option("factorised", "VAE kinds: p(x|z) factorised over pixels, or pixelcnn (autoregressive: a "
                                     "gated PixelCNN conditioned on z; one-channel images).", flag="--decoder")
    pixelcnn_layers: int = option(3, "pixelcnn: gated layers (each sees 2 more rows up).")
    pixelcnn_channels: int = option(16, "pixelcnn: width of its layers and of the maps z conditions it with.")

    def validate(self, context: OptionContext) -> None:
        _check(self.name in DECODERS, f"decoder must be one of {', '.join(DECODERS)} (got '{self.name}')")
        _check(1 <= self.pixelcnn_layers <= 16,
               f"pixelcnn_layers must be between 1 and 16 (got {self.pixelcnn_layers})")
        _check(1 <= self.pixelcnn_channels <= 512,
               f"pixelcnn_channels must be between 1 and 512 (got {self.pixelcnn_channels})")
        if self.name == "factorised":
            for name in ("pixelcnn_layers", "pixelcnn_channels"):
                _check(getattr(self, name) == _default(DecoderOptions, name),
                       f"{name} applies to decoder pixelcnn; add --decoder pixelcnn")
            return
        _check(context.image_shape[0] == 1, f"decoder pixelcnn models one image channel; {context.dataset} images "
                                            f"have {context.image_shape[0]} (use the factorised decoder)")
        _check(context.likelihood in ("bernoulli", "logistic"),
               f"decoder pixelcnn samples from bernoulli or logistic, not {context.likelihood}")
        _check(context.likelihood != "bernoulli" or context.input_mode == "binarized",
               "decoder pixelcnn with bernoulli needs input_mode binarized (it samples 0/1 pixels, so it must be "
               "trained on them); or use --likelihood logistic for intensities")


@dataclass
class ConditionalOptions:
    """The cvae's own options (`model.cvae`, vaelab.models.cvae)."""

    # the one-hot label also enters the encoder at its input, as constant planes beside the image, so the whole
    # encoder (not only its read-out) can discount what the class explains
    label_at_input: bool = option(False, "cvae: also feed the label to the encoder's first layer.")

    def validate(self, context: OptionContext) -> None:
        pass


@dataclass
class ClassifierOptions:
    """The classifier head of vae-classifier and m2 (`model.classifier`, vaelab.models.classifier): its weight in the
    objective, what it reads, and how its labelled images are changed."""

    # α of Kingma et al. 2014: the weight of the labelled examples' mean cross-entropy in the objective summed over
    # the training set (so each labelled example's is α / labels)
    weight: float | None = option(None, "α of the cross-entropy, summed over the training set (Kingma et al. 2014).",
                                  flag="--classifier-weight", shown="0.1 × training images")
    head_input: str = option(
        "mean", "vae-classifier: the head reads the posterior mean (mean) or the encoder's hidden features (trunk).")
    head_shift: int = option(0, "The cross-entropy reads labelled images moved by up to ±N pixels.")
    head_flip: bool = option(False, "… half of them mirrored left–right (clothes, not digits).")
    head_rotate: float = option(0.0, "… turned by up to ±N degrees.")

    def validate(self, context: OptionContext) -> None:
        _check(self.weight is None or (math.isfinite(self.weight) and self.weight >= 0),
               f"classifier_weight must be a finite number ≥ 0 (got {self.weight})")
        _check(self.head_input in HEAD_INPUTS, f"head_input must be one of {', '.join(HEAD_INPUTS)}")
        _check(self.head_input == "mean" or not context.capabilities.conditional,
               f"head_input applies to --model vae-classifier only, not {context.family}")
        max_shift = min(context.image_shape[1:]) // MAX_HEAD_SHIFT_SHARE
        _check(0 <= self.head_shift <= max_shift,
               f"head_shift must be between 0 and {max_shift} pixels (a quarter of the {context.dataset} image side)")
        _check(0 <= self.head_rotate <= MAX_HEAD_ROTATE,
               f"head_rotate must be between 0 and {MAX_HEAD_ROTATE:g} degrees (got {self.head_rotate:g})")


@dataclass
class DiffusionOptions:
    """The ddpm's own options (`model.ddpm`, vaelab.models.diffusion and .noise_schedule)."""

    diffusion_steps: int = option(1000, "ddpm: noising steps T.")
    noise_schedule: str = option("cosine", "ddpm: β_t schedule, cosine (Nichol & Dhariwal) or linear (Ho et al.).")
    ema_decay: float = option(0.999, "ddpm: decay of the weights' moving average that samples.")
    sampling_steps: int = option(50, "ddpm: DDIM steps of sampling and inversion (commands' --steps overrides).")

    def validate(self, context: OptionContext) -> None:
        _check(2 <= self.diffusion_steps <= 10_000, "diffusion_steps must be between 2 and 10,000")
        _check(self.noise_schedule in NOISE_SCHEDULES,
               f"noise_schedule must be one of {', '.join(NOISE_SCHEDULES)}")
        _check(0 <= self.ema_decay < 1, "ema_decay must be in [0, 1)")
        _check(1 <= self.sampling_steps <= self.diffusion_steps,
               f"sampling_steps must be between 1 and diffusion_steps ({self.diffusion_steps})")


# The option groups of the model section, by field name (the family's registry line lists the ones it takes).
OPTION_GROUPS: dict[str, type] = {"objective": ObjectiveOptions, "prior": PriorOptions, "decoder": DecoderOptions,
                                  "cvae": ConditionalOptions, "classifier": ClassifierOptions,
                                  "ddpm": DiffusionOptions}


@dataclass
class ModelConfig:
    """The model family, the architecture every family shares and the option groups (the `model` section).
    `image_shape` is filled from the dataset."""

    family: str = option(
        "vae", "Model family: vae, cvae (conditioned on the class), vae-classifier or m2 (semi-supervised), gan "
               "(DCGAN) or ddpm (diffusion).",
        flag="--model",
    )
    latent_dim: int = option(32, "Latent dimensions.")
    channels: list[int] = option(
        [32, 64], "Widths of the stride-2 conv stages, e.g. 32,64; larger images add stages (each twice as wide, at "
                  "most 256) until the features are 7×7 or smaller."
    )
    blocks_per_stage: int = option(0, "Residual 3×3 blocks after each stage.")
    hidden_dim: int = option(512, "Fully connected layer between the conv features and the latent (0: none).")
    likelihood: str | None = option(
        None, "p(x|z): bernoulli, gaussian (one learned σ), gaussian-pixel (per-pixel σ) or logistic (discretised "
        "over the 256 levels).", shown="the dataset's")
    classes: int | None = option(None, "Classes a cvae is conditioned on or a classifier predicts.",
                                 shown="the dataset's")
    objective: ObjectiveOptions = group(ObjectiveOptions, "The latent penalty and its weights.")
    prior: PriorOptions = group(PriorOptions, "The prior p(z).")
    decoder: DecoderOptions = group(DecoderOptions, "The decoder of p(x|z).")
    cvae: ConditionalOptions = group(ConditionalOptions, "The cvae's options.")
    classifier: ClassifierOptions = group(ClassifierOptions, "The classifier head (vae-classifier, m2).")
    ddpm: DiffusionOptions = group(DiffusionOptions, "The ddpm's options.")
    # Filled from the dataset's description, recorded so that a run directory rebuilds its model on its own.
    image_shape: list[int] | None = option(None, "Channels, height, width (set from the dataset, not an option).")

    @property
    def stage_widths(self) -> list[int]:
        """The widths of the stride-2 stages: `channels`, extended while the features are larger than
        FEATURE_SIDE pixels a side and still even, each new stage twice as wide as the last (at most
        MAX_STAGE_WIDTH). So the architecture follows the resolution: 28 → 7×7 features with two stages, 64 → 4×4
        with four, 128 → 4×4 with five."""
        widths = list(self.channels)
        side = min(self.image_shape[1:]) if self.image_shape else 0
        while side / 2 ** len(widths) > FEATURE_SIDE and (side // 2 ** len(widths)) % 2 == 0:
            widths.append(min(2 * widths[-1], MAX_STAGE_WIDTH))
        return widths

    def validate(self, context: OptionContext, groups_of: dict[str, tuple[str, ...]]) -> None:
        """The shared architecture's ranges, then each option group: those the family takes (`groups_of`: every
        family's groups, from the registry) check their values, the others must be left at their defaults."""
        _check(1 <= self.latent_dim <= MAX_WIDTH, f"latent_dim must be between 1 and {MAX_WIDTH}")
        _check(1 <= len(self.channels) <= 4 and all(1 <= c <= MAX_WIDTH for c in self.channels),
               f"channels must be 1 to 4 widths between 1 and {MAX_WIDTH}, e.g. 32,64")
        _check(0 <= self.blocks_per_stage <= 16, "blocks_per_stage must be between 0 and 16")
        _check(0 <= self.hidden_dim <= MAX_WIDTH, f"hidden_dim must be between 0 and {MAX_WIDTH}")
        from vaelab.models.likelihoods import LIKELIHOODS  # torch: only when a config is checked, never for --help

        _check(self.likelihood in LIKELIHOODS, f"likelihood must be one of {', '.join(LIKELIHOODS)}")
        for name, group_type in OPTION_GROUPS.items():
            options = getattr(self, name)
            if name in groups_of[context.family]:
                options.validate(context)
                continue
            changed = [f.name for f in dataclasses.fields(group_type)
                       if getattr(options, f.name) != _default(group_type, f.name)]
            if changed:
                takers = [family for family, groups in groups_of.items() if name in groups]
                given = option_name(group_type, changed[0])
                if changed[0] == "name":  # the group's choice: name it, `prior vamp`
                    given += f" {options.name}"
                raise VaelabError(f"{given} applies to --model {either(takers)}, not {context.family}; leave it out")


def either(names: list[str]) -> str:
    """`vae, cvae or m2`."""
    return " or ".join(names) if len(names) < 3 else f"{', '.join(names[:-1])} or {names[-1]}"


def option_name(section: type, name: str) -> str:
    """The flat name of a field, as the command line and overrides spell it: its flag without the dashes
    (`tc_weight`, `prior_components`, `objective` for the objective's `name`)."""
    flag = section.__dataclass_fields__[name].metadata.get("flag")
    return (flag or "--" + name).removeprefix("--").replace("-", "_")


def _default(section: type, name: str) -> Any:
    found = section.__dataclass_fields__[name]
    return found.default_factory() if found.default is dataclasses.MISSING else found.default


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise VaelabError(message)
