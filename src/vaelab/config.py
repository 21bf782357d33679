"""Configuration: one dataclass per concern (data, model, training), read from YAML, overridden by CLI flags,
validated with one-line errors. The resolved `RunConfig` is what a run directory's `config.json` records.

Every field carries its help text (`option(default, help)`): `vaelab train` builds one flag per field from it, so
the flags, their help and their defaults cannot drift from the config. The image shape is not an option: it comes
from the dataset's description. This module imports no torch (the command line's help must answer at once).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vaelab.data import sizing
from vaelab.data.catalog import KNOWN_TEXT, dataset_name, describe
from vaelab.data.description import DatasetDescription
from vaelab.errors import VaelabError

INPUT_MODES = ("grayscale", "binarized")
LR_SCHEDULES = ("cosine", "constant")
PRECISIONS = ("auto", "bf16", "fp32")
DEVICES = ("auto", "cpu", "cuda")
HEAD_INPUTS = ("mean", "trunk")
FEATURE_SIDE = 7  # the encoder's stages stop once its features are at most this many pixels a side
MAX_STAGE_WIDTH = 256  # the widest stage that the extension adds (a wider one is given in `channels`)
MAX_WIDTH = 4096  # widths above this cannot fit a small-image model in memory; refuse them before allocating
MAX_HEAD_SHIFT_SHARE = 4  # at most a quarter of the image side: further moves the object out of the frame
MAX_HEAD_ROTATE = 45.0  # degrees; handwriting and photographed clothes lean far less
MAX_PRIOR_COMPONENTS = 5000  # each one is encoded at every training step


def option(default: Any, help: str, flag: str | None = None, shown: str | None = None) -> Any:
    """A config field with its help text, its command-line flag when that is not `--field-name`, and how the
    command line shows its default when that is not the value itself (a None that means "all" or "the dataset's")."""
    metadata = {"help": help, "flag": flag, "shown": shown}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class DataConfig:
    """Which images a run trains on and how they are fed to the model (the `data` section)."""

    dataset: str = option("mnist", f"Dataset: {KNOWN_TEXT} (any folder of PNG/JPEG/WebP images).")
    image_size: int | None = option(None, "Resize to N×N (celeba, folder:PATH).", shown="the dataset's")
    image_channels: int | None = option(None, "folder:PATH: 3 (RGB) or 1 (grey).", shown="the dataset's")
    data_dir: str | None = option(None, "celeba: the folder holding your copy (img_align_celeba/ and the lists).",
                                  shown="the one given before")
    input_mode: str | None = option(
        None, "binarized (a fresh Bernoulli draw of each image per step) or grayscale (the intensities, grey or "
              "colour).", shown="the dataset's: binarized for mnist, fashion-mnist"
    )
    val_size: int | None = option(
        None, "Images carved from the official train split for validation (model selection).", shown="the dataset's"
    )
    split_seed: int = option(0, "Seed of the train/validation split and of the kept labels.")
    train_limit: int | None = option(None, "Use only the first N training images (quick runs and tests).",
                                     shown="all")
    val_limit: int | None = option(None, "Use only the first N validation images.", shown="all")
    labels: int | None = option(
        None, "vae-classifier/m2: keep N training labels (balanced over classes, by split_seed).", shown="all"
    )


@dataclass
class ModelConfig:
    """The model family and its architecture (the `model` section). `image_shape` is filled from the dataset."""

    kind: str = option(
        "vae", "Model family: vae, cvae (conditioned on the class), vae-classifier or m2 (semi-supervised), gan "
               "(DCGAN) or ddpm (diffusion).",
        flag="--model",
    )
    classes: int | None = option(None, "Classes a cvae is conditioned on or a classifier predicts.",
                                 shown="the dataset's")
    # α of Kingma et al. 2014: the weight of the labelled examples' mean cross-entropy in the objective summed over
    # the training set (so each labelled example's is α / labels)
    classifier_weight: float | None = option(
        None, "α of the cross-entropy, summed over the training set (Kingma et al. 2014).",
        shown="0.1 × training images",
    )
    # the one-hot label also enters the encoder at its input, as constant planes beside the image, so the whole
    # encoder (not only its read-out) can discount what the class explains
    label_at_input: bool = option(False, "cvae: also feed the label to the encoder's first layer.")
    head_input: str = option(
        "mean", "vae-classifier: the head reads the posterior mean (mean) or the encoder's hidden features (trunk)."
    )
    # The objective and its weights live with the model (as in pythae): factorvae's discriminator is part of it.
    objective: str = option(
        "beta", "vae/cvae: beta (β-VAE; β = 1 is the ELBO), tcvae (β-TCVAE), factorvae (FactorVAE) or capacity "
                "(annealed capacity)."
    )
    tc_weight: float = option(6.0, "tcvae, factorvae: weight of the total correlation.")
    capacity_max: float = option(25.0, "capacity: nats the latent may carry at the end of the ramp.")
    capacity_steps: int = option(0, "capacity: steps of the linear ramp from 0 nats (0: the whole run).")
    capacity_weight: float = option(100.0, "capacity: γ of γ·|KL − C|.")
    # The prior lives with the model too: the VampPrior's pseudo-inputs are weights of the model.
    prior: str = option("standard", "VAE kinds: p(z), standard (N(0, I)) or vamp (the VampPrior: a mixture of the "
                                    "posteriors of learned pseudo-inputs, Tomczak & Welling 2018).")
    # Tomczak & Welling used 500; each training step encodes every pseudo-input, so fewer is cheaper on a CPU
    prior_components: int = option(100, "vamp: pseudo-inputs K, the mixture's components.")
    latent_dim: int = option(32, "Latent dimensions.")
    decoder: str = option("factorised", "VAE kinds: p(x|z) factorised over pixels, or pixelcnn (autoregressive: a "
                                        "gated PixelCNN conditioned on z; one-channel images).")
    pixelcnn_layers: int = option(3, "pixelcnn: gated layers (each sees 2 more rows up).")
    pixelcnn_channels: int = option(16, "pixelcnn: width of its layers and of the maps z conditions it with.")
    channels: list[int] = option(
        [32, 64], "Widths of the stride-2 conv stages, e.g. 32,64; larger images add stages (each twice as wide, at "
                  "most 256) until the features are 7×7 or smaller."
    )
    blocks_per_stage: int = option(0, "Residual 3×3 blocks after each stage.")
    hidden_dim: int = option(512, "Fully connected layer between the conv features and the latent (0: none).")
    likelihood: str | None = option(
        None, "p(x|z): bernoulli, gaussian (one learned σ), gaussian-pixel (per-pixel σ) or logistic (discretised "
        "over the 256 levels).", shown="the dataset's")
    diffusion_steps: int = option(1000, "ddpm: noising steps T.")
    noise_schedule: str = option("cosine", "ddpm: β_t schedule, cosine (Nichol & Dhariwal) or linear (Ho et al.).")
    ema_decay: float = option(0.999, "ddpm: decay of the weights' moving average that samples.")
    sampling_steps: int = option(50, "ddpm: DDIM steps of sampling and inversion (commands' --steps overrides).")
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


@dataclass
class TrainConfig:
    """The optimisation: epochs, batch, learning rate, β and KL schedule, seed, precision, checkpoints (the `train`
    section)."""

    epochs: int | None = option(
        None, "Passes over the training images. Warm-ups given in steps (kl_warmup_steps, capacity_steps) belong to "
              "this length: a run of other --steps keeps their share.",
        shown=f"{sizing.DEFAULT_EPOCHS}, or enough for {sizing.MIN_STEPS:,} steps on a small training set")
    steps: int | None = option(None, "Optimiser steps of the whole run, instead of whole epochs (the last epoch may "
                                     "be partial); the schedules span them.", shown="epochs × steps per epoch")
    time_budget: str | None = option(
        None, "Train for this long, e.g. 90s, 8m or 1h30m: the run measures its speed, buys the steps that fit and "
              "spans its schedules over them (training seconds; data loading and start-up not counted).",
        shown="none")
    batch_size: int | None = option(
        None, "Images per step.",
        shown=f"{sizing.DEFAULT_BATCH}, or fewer on under {sizing.FULL_BATCH_IMAGES:,} training images")
    lr: float | None = option(None, "Peak learning rate of Adam.",
                              shown=f"{sizing.DEFAULT_LR:g} at batches of {sizing.DEFAULT_BATCH}, √(batch / "
                                    f"{sizing.DEFAULT_BATCH}) times that for smaller ones")
    lr_schedule: str = option("cosine", "cosine (decay to min_lr over the run) or constant.")
    min_lr: float = option(1e-5, "Learning rate at the end of the cosine schedule.")
    grad_clip: float = option(100.0, "Largest gradient norm; larger gradients are scaled down to it.")
    beta: float = option(1.0, "Weight of the KL term (β-VAE; 1 is the ELBO).")
    kl_warmup_steps: int = option(0, "β rises linearly from 0 over this many steps (0: off).")
    free_bits: float = option(0.0, "Nats per latent dimension below which the KL is not penalised (0: off).")
    seed: int = option(0, "Seed of the weights, the batch order and every random draw of training.")
    precision: str = option("auto", "auto (bf16 where the CPU/GPU supports it, else fp32), bf16 or fp32.")
    channels_last: bool = option(True, "Channels-last memory layout for the convolutions (faster on CPUs).")
    device: str = option("auto", "auto, cpu or cuda.")
    compile: bool = option(False, "Compile the model's networks with torch.compile (slow start, faster steps).")
    max_steps: int | None = option(None, "Stop (with a resumable checkpoint) after this many steps in total.",
                                   shown="none")
    checkpoint_every: int = option(500, "Steps between resumable checkpoints besides each epoch's end (0: epochs "
                                        "only).")
    skip_nonfinite: int = option(
        0, "Skip (and report) up to N batches with a non-finite loss or gradient instead of stopping."
    )
    head_shift: int = option(0, "vae-classifier/m2: the cross-entropy reads labelled images moved by up to ±N pixels.")
    head_flip: bool = option(False, "vae-classifier/m2: … half of them mirrored left–right (clothes, not digits).")
    head_rotate: float = option(0.0, "vae-classifier/m2: … turned by up to ±N degrees.")
    tensorboard: bool = option(False, "Also write TensorBoard logs to RUN/tensorboard (needs tensorboard).")


OBJECTIVE_WEIGHTS = {"tcvae": ("tc_weight",), "factorvae": ("tc_weight",),
                     "capacity": ("capacity_max", "capacity_steps", "capacity_weight")}
OBJECTIVES = ("beta", *OBJECTIVE_WEIGHTS)  # see vaelab.models.disentangling
KL_SHAPING = ("beta", "kl_warmup_steps", "free_bits")  # the options of objective beta
DECODERS = ("factorised", "pixelcnn")  # see vaelab.models.pixelcnn
SECTIONS: tuple[tuple[str, type], ...] = (("data", DataConfig), ("model", ModelConfig), ("train", TrainConfig))
# How long a run is: `epochs`, or `steps`, or the steps a `time_budget` buys. An override of one replaces the others
# (the epochs stay, as the length the warm-ups in steps were written for).
LENGTH_REPLACES = {"epochs": ("steps", "time_budget"), "steps": ("time_budget",), "time_budget": ("steps",)}
DERIVED_FIELDS = ("image_shape",)  # filled by resolution, never given on the command line
# Fields of config.json files written before the image shape came from the dataset; read, checked, then dropped.
LEGACY_MODEL_FIELDS = ("image_size", "image_channels")


@dataclass(frozen=True)
class OptionDescription:
    """One option as the command line and the configuration reference show it."""

    section: str
    field: dataclasses.Field
    flag: str
    default: Any
    default_text: str
    help: str


def default_text(value: Any) -> str:
    """A default as the command line prints it: lists comma-separated, booleans lower-case."""
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def described_options() -> list[OptionDescription]:
    """Every option a run can be given, in section order: its YAML section, flag, default and help."""
    described = []
    for section, section_type in SECTIONS:
        defaults = section_type()
        for field_ in dataclasses.fields(section_type):
            if field_.name in DERIVED_FIELDS:
                continue
            flag = field_.metadata.get("flag") or "--" + field_.name.replace("_", "-")
            default = getattr(defaults, field_.name)
            shown = field_.metadata.get("shown") or default_text(default)
            described.append(OptionDescription(section, field_, flag, default, shown, field_.metadata["help"]))
    return described


@dataclass
class RunConfig:
    """The whole configuration of a run: what a run directory's `config.json` records.

    Building one resolves what the dataset decides (image shape, classes, likelihood, input mode); `from_dict`,
    `with_overrides` and `load_yaml_config` also validate it, raising a one-line `VaelabError` for a bad value.

    Examples:
        ```python
        import vaelab

        config = vaelab.RunConfig.from_dict({"data": {"dataset": "fashion-mnist"}, "model": {"latent_dim": 16}})
        config.model.image_shape                                   # [1, 28, 28], from the dataset
        quick = config.with_overrides({"epochs": 1, "train_limit": 500})
        ```
    """

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        # What was given, before the dataset filled the rest: overrides start from it, so that a new dataset brings
        # its own shape, classes and likelihood instead of inheriting the old dataset's.
        self._given = dataclasses.asdict(self)
        self.resolve()

    def to_dict(self) -> dict[str, Any]:
        """The nested mapping `{"data": {...}, "model": {...}, "train": {...}}` that `config.json` holds."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config") -> RunConfig:
        """A validated config from a mapping with the sections data/model/train (each optional). `source` names
        the mapping in error messages (a file's path). Unknown sections or options and wrong types or values raise
        a one-line `VaelabError`."""
        if not isinstance(raw, dict):
            raise VaelabError(f"{source} must be a mapping with sections data/model/train")
        unknown_sections = set(raw) - {name for name, _ in SECTIONS}
        if unknown_sections:
            raise VaelabError(
                f"{source}: unknown section(s) {sorted(unknown_sections)}; allowed: data, model, train"
            )
        model_raw = dict(raw.get("model") or {}) if isinstance(raw.get("model"), dict) else raw.get("model")
        legacy = {}
        if isinstance(model_raw, dict):
            legacy = {name: model_raw.pop(name) for name in LEGACY_MODEL_FIELDS if name in model_raw}
        parts = {
            name: _build(section_type, (model_raw if name == "model" else raw.get(name)) or {}, f"{source} [{name}]")
            for name, section_type in SECTIONS
        }
        config = cls(**parts)
        if legacy:
            shape = [legacy.get("image_channels", 1), legacy.get("image_size"), legacy.get("image_size")]
            _check(shape == config.model.image_shape,
                   f"{source}: image_size/image_channels {legacy} do not match {config.data.dataset}'s images")
        config.validate()
        return config

    def objective_settings(self) -> dict[str, Any]:
        """The objective of the run and its weights, e.g. `{"name": "tcvae", "tc_weight": 6.0}` (β for `beta`), as
        eval.json, disentanglement.json and the report name them."""
        if self.model.objective == "beta":
            settings = {"name": "beta", "beta": self.train.beta, "kl_warmup_steps": self.train.kl_warmup_steps,
                        "free_bits": self.train.free_bits}
        else:
            names = OBJECTIVE_WEIGHTS[self.model.objective]
            settings = {"name": self.model.objective, **{name: getattr(self.model, name) for name in names}}
        if self.model.prior != "standard":  # named only when not the default, so earlier runs read the same
            settings.update(prior=self.model.prior, prior_components=self.model.prior_components)
        return settings

    def with_overrides(self, overrides: dict[str, Any]) -> RunConfig:
        """A copy with flat `name=value` overrides (CLI flags); each name belongs to exactly one section."""
        raw = copy.deepcopy(self._given)
        for key, value in overrides.items():
            if value is None:
                continue
            section = _section_of(key)
            raw[section][key] = value
            for replaced in LENGTH_REPLACES.get(key, ()):  # a length given here wins over the file's other one
                if overrides.get(replaced) is None:
                    raw["train"][replaced] = None
        return RunConfig.from_dict(raw, COMMAND_LINE)

    def resolve(self) -> None:
        """Fill what the dataset decides when the config leaves it open: the image shape (always the dataset's),
        the number of classes and the likelihood."""
        try:
            self.data.dataset = dataset_name(self.data.dataset, self.data.image_size, self.data.image_channels)
            description = describe(self.data.dataset)
        except VaelabError:
            return  # validate() names the problem
        self.data.image_channels, self.data.image_size = description.shape[0], description.shape[1]
        if self.data.input_mode is None:
            # A family without a likelihood (gan, ddpm) models the intensities, never a binarization.
            models_likelihood = _family_models_likelihood(self.model.kind)
            self.data.input_mode = description.default_input_mode if models_likelihood else "grayscale"
        if self.data.val_size is None and "val" not in description.splits:
            self.data.val_size = _images(description.default_val_size)
        if self.model.image_shape is None:
            self.model.image_shape = list(description.shape)
        if self.model.classes is None:
            self.model.classes = description.classes
        if self.model.likelihood is None:
            self.model.likelihood = description.default_likelihood
        train_images = self.train_images(description)
        if self.train.batch_size is None:
            self.train.batch_size = sizing.default_batch_size(train_images)
        if self.train.epochs is None:
            self.train.epochs = sizing.default_epochs(train_images, self.train.batch_size)
        if self.train.lr is None:
            self.train.lr = sizing.default_lr(self.train.batch_size)

    def train_images(self, description: DatasetDescription) -> int | None:
        """How many images the run trains on, where the dataset is small enough to say without reading it (None:
        a large dataset): its train split less the validation images, at most `train_limit`."""
        if description.train_images is None:
            return self.data.train_limit
        held_out = self.data.val_size or description.default_validation_images(description.train_images)
        available = max(description.train_images - held_out, 1)
        return min(available, self.data.train_limit or available)

    def validate(self) -> None:
        """Raise a one-line `VaelabError` naming the first value that is out of range or does not fit the dataset
        or the model family."""
        from vaelab.models.registry import FAMILIES  # imports no torch

        d, m, t = self.data, self.model, self.train
        # The dataset first: when its name or size is wrong, `resolve` left the fields it fills (input_mode among
        # them) empty, and the dataset's own error is the one that names what to change.
        dataset_name(d.dataset, d.image_size, d.image_channels)
        description = describe(d.dataset)
        _check(d.input_mode in INPUT_MODES, f"input_mode must be one of {', '.join(INPUT_MODES)}")
        _check(d.val_size is None or d.val_size > 0, "val_size must be a positive number of images")
        _check(d.data_dir is None or d.dataset.partition("?")[0] == "celeba",
               f"data_dir applies to celeba (your own copy), not to {d.dataset}; leave it out")
        for name, value in (("split_seed", d.split_seed), ("seed", t.seed)):
            _check(0 <= value < 2**31, f"{name} must be between 0 and 2**31 − 1 (got {value})")
        for name in ("train_limit", "val_limit"):
            value = getattr(d, name)
            _check(value is None or value > 0, f"{name} must be a positive number of images")
        _check(m.kind in FAMILIES, f"model kind '{m.kind}' is unknown; choose one of: {', '.join(FAMILIES)}")
        can = FAMILIES[m.kind].capabilities
        uses_labels = can.conditional or can.classifier
        _check(
            not uses_labels or m.classes == description.classes,
            f"classes must be {description.classes} for a {m.kind} on {d.dataset} (its number of classes), "
            f"got {m.classes}",
        )
        _check(not uses_labels or description.classes >= 2,
               f"a {m.kind} needs class labels, and {d.dataset} has none; use --model vae")
        classifier_kinds = " or ".join(kind for kind, family in FAMILIES.items() if family.capabilities.classifier)
        _check(d.labels is None or can.classifier,
               f"labels (semi-supervised training) needs --model {classifier_kinds}, not {m.kind}")
        _check(not m.label_at_input or (can.conditional and not can.classifier),
               f"label_at_input applies to --model cvae only (m2's q(y|x) reads the label-free trunk), not {m.kind}")
        _check(m.head_input in HEAD_INPUTS, f"head_input must be one of {', '.join(HEAD_INPUTS)}")
        _check(m.head_input == "mean" or (can.classifier and not can.conditional),
               f"head_input applies to --model vae-classifier only, not {m.kind}")
        _check(d.labels is None or d.labels >= 1, "labels must be a positive number of training labels")
        max_shift = min(description.shape[1:]) // MAX_HEAD_SHIFT_SHARE
        _check(0 <= t.head_shift <= max_shift,
               f"head_shift must be between 0 and {max_shift} pixels (a quarter of the {d.dataset} image side)")
        for name, active in (("head_shift", t.head_shift), ("head_flip", t.head_flip), ("head_rotate", t.head_rotate)):
            _check(not active or can.classifier,
                   f"{name} (changed images for the classifier) needs --model {classifier_kinds}")
        _check(0 <= t.head_rotate <= MAX_HEAD_ROTATE,
               f"head_rotate must be between 0 and {MAX_HEAD_ROTATE:g} degrees (got {t.head_rotate:g})")
        _check(
            m.classifier_weight is None or (math.isfinite(m.classifier_weight) and m.classifier_weight >= 0),
            f"classifier_weight must be a finite number ≥ 0 (got {m.classifier_weight})",
        )
        _check(1 <= m.latent_dim <= MAX_WIDTH, f"latent_dim must be between 1 and {MAX_WIDTH}")
        self._validate_objective()
        self._validate_prior()
        self._validate_decoder()
        _check(
            1 <= len(m.channels) <= 4 and all(1 <= c <= MAX_WIDTH for c in m.channels),
            f"channels must be 1 to 4 widths between 1 and {MAX_WIDTH}, e.g. 32,64",
        )
        shape_text = "×".join(str(n) for n in description.shape)
        _check(
            m.image_shape == list(description.shape),
            f"{d.dataset} images are {shape_text} (channels×height×width); image_shape comes from the dataset, "
            "leave it out",
        )
        _check(can.likelihood or d.input_mode == "grayscale",
               f"a {m.kind} models the intensities; input_mode binarized applies to a likelihood, leave it out")
        if can.sampling == "diffusion":  # U-Net levels: `channels` as given, any size (skips are resized)
            from vaelab.models.noise_schedule import NOISE_SCHEDULES  # torch, as the likelihoods below

            _check(all(c % 8 == 0 for c in m.channels), "ddpm channels must be multiples of 8 (GroupNorm groups)")
            _check(2 <= m.diffusion_steps <= 10_000, "diffusion_steps must be between 2 and 10,000")
            _check(m.noise_schedule in NOISE_SCHEDULES, f"noise_schedule must be one of {', '.join(NOISE_SCHEDULES)}")
            _check(0 <= m.ema_decay < 1, "ema_decay must be in [0, 1)")
            _check(1 <= m.sampling_steps <= m.diffusion_steps,
                   f"sampling_steps must be between 1 and diffusion_steps ({m.diffusion_steps})")
        else:
            stride = 2 ** len(m.stage_widths)
            _check(
                all(side % stride == 0 for side in m.image_shape[1:]),
                f"the {shape_text} images must be divisible by 2**stages = {stride}; use fewer channel widths",
            )
        _check(0 <= m.blocks_per_stage <= 16, "blocks_per_stage must be between 0 and 16")
        _check(0 <= m.hidden_dim <= MAX_WIDTH, f"hidden_dim must be between 0 and {MAX_WIDTH}")
        from vaelab.models.likelihoods import LIKELIHOODS  # torch: only when a config is checked, never for --help

        _check(m.likelihood in LIKELIHOODS, f"likelihood must be one of {', '.join(LIKELIHOODS)}")
        _check(1 <= t.epochs <= 100_000, "epochs must be between 1 and 100,000")
        _check(1 <= t.batch_size <= 60_000, "batch_size must be between 1 and 60,000")
        for name in ("lr", "beta", "grad_clip", "min_lr", "free_bits"):
            value = getattr(t, name)
            _check(math.isfinite(value) and value >= 0, f"{name} must be a finite number ≥ 0 (got {value})")
        _check(t.lr > 0, "lr must be > 0")
        _check(t.kl_warmup_steps >= 0, "kl_warmup_steps must be ≥ 0")
        _check(t.lr_schedule in LR_SCHEDULES, f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}")
        _check(t.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}")
        _check(t.device in DEVICES, f"device must be one of {', '.join(DEVICES)}")
        _check(t.max_steps is None or t.max_steps >= 1, "max_steps must be at least 1")
        _check(t.steps is None or t.steps >= 1, "steps must be at least 1")
        if t.time_budget is not None:
            parse_duration(t.time_budget, "time_budget")
            _check(t.steps is None, "give the run's length once: steps or time_budget, not both")
        _check(t.checkpoint_every >= 0, "checkpoint_every must be ≥ 0 steps (0: checkpoint at epoch ends only)")
        _check(t.skip_nonfinite >= 0, "skip_nonfinite must be ≥ 0 batches")

    def _validate_prior(self) -> None:
        """The prior is an option of the kinds with an encoder and a likelihood: the VampPrior is made of posteriors."""
        from vaelab.models.priors import PRIORS
        from vaelab.models.registry import FAMILIES

        m = self.model
        _check(m.prior in PRIORS, f"prior must be one of {', '.join(PRIORS)} (got '{m.prior}')")
        _check(1 <= m.prior_components <= MAX_PRIOR_COMPONENTS,
               f"prior_components must be between 1 and {MAX_PRIOR_COMPONENTS:,} (got {m.prior_components})")
        if m.prior != "standard":
            can = FAMILIES[m.kind].capabilities
            vae_kinds = " or ".join(kind for kind, entry in FAMILIES.items()
                                    if entry.capabilities.encoder and entry.capabilities.likelihood)
            _check(can.encoder and can.likelihood, f"prior {m.prior} applies to --model {vae_kinds}, not {m.kind}")
        else:
            _check(m.prior_components == _default(ModelConfig, "prior_components"),
                   "prior_components applies to prior vamp; add --prior vamp")

    def _validate_decoder(self) -> None:
        """The autoregressive decoder: VAE kinds, one image channel, a discrete likelihood it can sample from."""
        from vaelab.models.registry import FAMILIES

        m, d = self.model, self.data
        _check(m.decoder in DECODERS, f"decoder must be one of {', '.join(DECODERS)} (got '{m.decoder}')")
        _check(1 <= m.pixelcnn_layers <= 16, f"pixelcnn_layers must be between 1 and 16 (got {m.pixelcnn_layers})")
        _check(1 <= m.pixelcnn_channels <= 512,
               f"pixelcnn_channels must be between 1 and 512 (got {m.pixelcnn_channels})")
        if m.decoder == "factorised":
            for name in ("pixelcnn_layers", "pixelcnn_channels"):
                _check(getattr(m, name) == _default(ModelConfig, name), f"{name} applies to decoder pixelcnn; "
                                                                         "add --decoder pixelcnn")
            return
        can = FAMILIES[m.kind].capabilities
        _check(can.encoder and can.likelihood, f"decoder pixelcnn applies to the VAE kinds, not {m.kind}")
        _check(m.image_shape[0] == 1, f"decoder pixelcnn models one image channel; {d.dataset} images have "
                                      f"{m.image_shape[0]} (use the factorised decoder)")
        _check(m.likelihood in ("bernoulli", "logistic"),
               f"decoder pixelcnn samples from bernoulli or logistic, not {m.likelihood}")
        _check(m.likelihood != "bernoulli" or d.input_mode == "binarized",
               "decoder pixelcnn with bernoulli needs input_mode binarized (it samples 0/1 pixels, so it must be "
               "trained on them); or use --likelihood logistic for grayscale")

    def _validate_objective(self) -> None:
        """The objective is an option of the VAE family; each objective's weights apply to it alone."""
        from vaelab.models.registry import ELBO, FAMILIES

        m, t = self.model, self.train
        _check(m.objective in OBJECTIVES, f"objective must be one of {', '.join(OBJECTIVES)} (got '{m.objective}')")
        for name in ("tc_weight", "capacity_max", "capacity_weight", "capacity_steps"):
            value = getattr(m, name)
            _check(math.isfinite(value) and value >= 0, f"{name} must be a finite number ≥ 0 (got {value})")
        if m.objective != "beta":
            elbo_kinds = " or ".join(kind for kind, entry in FAMILIES.items() if entry.objective == ELBO)
            _check(FAMILIES[m.kind].objective == ELBO,
                   f"objective {m.objective} applies to --model {elbo_kinds}, not {m.kind}")
            shaped = [name for name in KL_SHAPING if getattr(t, name) != _default(TrainConfig, name)]
            _check(not shaped, f"{', '.join(shaped)}: options of objective beta alone; objective {m.objective} is "
                               f"weighted by {', '.join(OBJECTIVE_WEIGHTS[m.objective])}")
        own = OBJECTIVE_WEIGHTS.get(m.objective, ())
        for name in {name for names in OBJECTIVE_WEIGHTS.values() for name in names} - set(own):
            users = [objective for objective, names in OBJECTIVE_WEIGHTS.items() if name in names]
            _check(getattr(m, name) == _default(ModelConfig, name),
                   f"{name} applies to objective {' or '.join(users)}; add --objective {users[0]}")


def _family_models_likelihood(kind: str) -> bool:
    from vaelab.models.registry import FAMILIES  # imports no torch

    return kind not in FAMILIES or FAMILIES[kind].capabilities.likelihood


def _images(share_or_count: int | float) -> int | None:
    """A dataset's default validation size: a count, or (a float below 1) a share that `load_split` applies to
    the train split it reads — recorded as None."""
    return share_or_count if isinstance(share_or_count, int) else None


def load_yaml_config(path: str | Path) -> RunConfig:
    """A validated config from a YAML file with the sections data/model/train (as `vaelab train --config` reads
    it)."""
    path = Path(path)
    fix = "give a .yaml file such as configs/mnist.yaml"
    if path.is_dir():
        raise VaelabError(f"config {path} is a folder, not a YAML config file; {fix}")
    if not path.is_file():
        raise VaelabError(f"config file {path} does not exist; pass an existing YAML file to --config")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise VaelabError(f"cannot read config {path} ({error.strerror}); {fix}") from None
    # An image, an archive or a checkpoint given by mistake: name it as such, not as a decoding or YAML error.
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise VaelabError(f"{path} is not a YAML config file (binary data, not text: byte 0x{data[error.start]:02x} "
                          f"at offset {error.start}); {fix}") from None
    if "\x00" in text:
        raise VaelabError(f"{path} is not a YAML config file (binary data, not text: a NUL byte at offset "
                          f"{text.index(chr(0))}); {fix}")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise VaelabError(f"{path} is not valid YAML ({_yaml_problem(error)}); correct it, or {fix}") from None
    if raw is not None and not isinstance(raw, dict):  # plain text or a list parses as YAML, but is no config
        raise VaelabError(f"{path} is not a YAML config file (it holds {_yaml_kind(raw)}, not the sections "
                          f"data/model/train); {fix}")
    return RunConfig.from_dict(raw or {}, str(path))


def _yaml_kind(value: Any) -> str:
    """What a parsed YAML document is, as a person would name it: "a list", "plain text", "a number"."""
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "plain text"
    if isinstance(value, bool):
        return "a true/false value"
    return "a number" if isinstance(value, int | float) else f"a {type(value).__name__}"


def _yaml_problem(error: yaml.YAMLError) -> str:
    """The parser's problem and where it is, e.g. "mapping values are not allowed here at line 3, column 8"."""
    problem, mark = getattr(error, "problem", None), getattr(error, "problem_mark", None)
    if problem is None:
        return str(error).splitlines()[0]
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else problem


def load_json_config(path: str | Path) -> RunConfig:
    """A validated config from a run directory's `config.json`; an unreadable file is a one-line error."""
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise VaelabError(f"{path} is unreadable or not valid JSON ({error}); the run directory is damaged") from None
    return RunConfig.from_dict(raw, str(path))


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600}
# A unit as people also write it (`5min`, `5 minutes`, `2 hrs`): read by its first letter; longest names first.
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(seconds?|secs?|minutes?|mins?|hours?|hrs?|[smh]?)")


def parse_duration(text: str, name: str = "duration") -> float:
    """Seconds of a duration such as `90s`, `8m`, `1.5h`, `1h30m` or `5 minutes` (a bare number is seconds); a one-line
    `VaelabError` names anything else, and a duration that is not more than 0."""
    cleaned = str(text).strip().lower().replace(" ", "")
    parts = _DURATION_PART.findall(cleaned)
    if not cleaned or "".join(number + unit for number, unit in parts) != cleaned:
        raise VaelabError(f"{name} must be a duration such as 90s, 8m or 1h30m (got '{text}')")
    seconds = sum(float(number) * _DURATION_UNITS[unit[:1] or "s"] for number, unit in parts)
    _check(math.isfinite(seconds) and seconds > 0, f"{name} must be more than 0 seconds (got '{text}')")
    return seconds


def format_duration(seconds: float) -> str:
    """`7 min 40 s`, `42 s`, `1 h 05 min`: a time as a person reads it."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _default(section: type, name: str) -> Any:
    return section.__dataclass_fields__[name].default


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise VaelabError(message)


def _section_of(key: str) -> str:
    for section, section_type in SECTIONS:
        if key in {f.name for f in dataclasses.fields(section_type)}:
            return section
    raise VaelabError(f"unknown option '{key}'")


def _build(section_type: type, values: dict[str, Any], where: str) -> Any:
    if not isinstance(values, dict):
        raise VaelabError(f"{where} must be a mapping")
    fields = {f.name: f for f in dataclasses.fields(section_type)}
    unknown = set(values) - set(fields)
    if unknown:
        raise VaelabError(f"{where}: unknown option(s) {sorted(unknown)}; allowed: {', '.join(fields)}")
    defaults = section_type()
    converted = {}
    for name, value in values.items():
        flag = fields[name].metadata.get("flag") or f"--{name.replace('_', '-')}"
        label = flag if where.startswith(COMMAND_LINE) else f"{where} {name}"  # what the user typed
        converted[name] = _coerce(value, getattr(defaults, name), fields[name].type, label)
    return section_type(**{**dataclasses.asdict(defaults), **converted})


COMMAND_LINE = "command-line options"
TYPE_WORDS = {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "text",
              "list[int]": "whole numbers separated by commas, e.g. 32,64"}


def _coerce(value: Any, default: Any, type_name: str, where: str) -> Any:
    """Check a value against its field's declared type (YAML gives ints for floats, lists for tuples; the command
    line gives text, which is read the same way)."""
    optional = "None" in str(type_name)
    if value is None:
        if optional:
            return None
        raise VaelabError(f"{where} must not be empty")
    base = str(type_name).replace(" | None", "")
    try:
        if base == "bool":
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            if not isinstance(value, bool):
                raise TypeError
            return value
        if base == "int":
            if isinstance(value, bool) or not float(value).is_integer():
                raise TypeError
            return int(float(value)) if isinstance(value, str) else int(value)
        if base == "float":
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if base == "str":
            if not isinstance(value, str):
                raise TypeError
            return value
        if base == "list[int]":
            if isinstance(value, str):
                value = [v for v in value.split(",") if v.strip()]
            return [_coerce(v, 0, "int", where) for v in value]
    except (TypeError, ValueError, OverflowError):
        raise VaelabError(f"{where} must be {TYPE_WORDS.get(base, base)} (got {value!r})") from None
    raise AssertionError(f"no coercion for {type_name}")
