"""Configuration: one dataclass per concern (data, model, training), read from YAML, overridden by CLI flags,
validated with one-line errors. The resolved `RunConfig` is what a run directory's `config.json` records."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vaelab.data.datasets import CLASS_NAMES, INPUT_MODES
from vaelab.data.sources import DATASETS
from vaelab.errors import VaelabError

LIKELIHOODS = ("bernoulli", "gaussian")
LR_SCHEDULES = ("cosine", "constant")
PRECISIONS = ("auto", "bf16", "fp32")
DEVICES = ("auto", "cpu", "cuda")
# cvae: encoder and decoder also see the class label (Kingma et al. 2014); vae-classifier: a VAE with a classifier
# q(y|x) on its posterior mean; m2: the semi-supervised M2 of Kingma et al. 2014 (a cvae with y latent when unknown)
MODEL_KINDS = ("vae", "cvae", "vae-classifier", "m2")
CLASSIFIER_KINDS = ("vae-classifier", "m2")
HEAD_INPUTS = ("mean", "trunk")
MAX_WIDTH = 4096  # widths above this cannot fit a 28×28 model in memory; refuse them before allocating
MAX_HEAD_SHIFT = 7  # a quarter of a 28-pixel image; further moves digits out of the frame
MAX_HEAD_ROTATE = 45.0  # degrees; handwriting and photographed clothes lean far less


@dataclass
class DataConfig:
    dataset: str = "mnist"
    input_mode: str = "binarized"  # "grayscale" (intensities in [0,1]) or "binarized" (dynamic binarization)
    val_size: int = 5000  # carved from the official train split for model selection
    split_seed: int = 0
    train_limit: int | None = None  # use only the first N training images (quick runs and tests)
    val_limit: int | None = None
    labels: int | None = None  # keep this many training labels (balanced over classes, by split_seed); None = all


@dataclass
class ModelConfig:
    kind: str = "vae"  # "vae" or "cvae" (conditioned on the class label; z then carries style)
    classes: int = 10  # labels a cvae is conditioned on (or a classifier predicts); must match the dataset
    # α of Kingma et al. 2014: the weight of the labelled examples' mean cross-entropy in the objective summed over
    # the training set (so each labelled example's is α / labels); None = 0.1 × training images, as in the paper
    classifier_weight: float | None = None
    # cvae: the one-hot label also enters the encoder at its input, as constant planes beside the image, so the
    # whole encoder (not only its read-out) can discount what the class explains
    label_at_input: bool = False
    # vae-classifier: the head reads the posterior mean ("mean", the latent code) or the encoder's hidden features
    # ("trunk", as M2's q(y|x) does)
    head_input: str = "mean"
    latent_dim: int = 32
    channels: list[int] = field(default_factory=lambda: [32, 64])  # one stride-2 conv stage each
    blocks_per_stage: int = 0  # residual 3×3 blocks after each stage
    hidden_dim: int = 512  # fully connected layer between conv features and the latent (0 = none)
    likelihood: str = "bernoulli"
    image_size: int = 28
    image_channels: int = 1


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    lr_schedule: str = "cosine"
    min_lr: float = 1e-5
    grad_clip: float = 100.0
    beta: float = 1.0
    kl_warmup_steps: int = 0  # β rises linearly from 0 over this many steps
    free_bits: float = 0.0  # nats per latent dimension below which KL is not penalised
    seed: int = 0
    precision: str = "auto"  # bf16 autocast where the CPU/GPU supports it, else fp32
    channels_last: bool = True
    device: str = "auto"
    max_steps: int | None = None  # stop (with a resumable checkpoint) after this many steps in total
    checkpoint_every: int = 500  # steps between resumable checkpoints, besides every epoch's end (0: epochs only)
    skip_nonfinite: int = 0  # batches with a non-finite loss or gradient to skip (and report) before stopping
    head_shift: int = 0  # classifier kinds: the cross-entropy reads labelled images moved by up to ±N pixels
    head_flip: bool = False  # classifier kinds: … half of them mirrored left–right (clothes, not digits)
    head_rotate: float = 0.0  # classifier kinds: … turned by up to ±N degrees
    tensorboard: bool = False


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config") -> RunConfig:
        if not isinstance(raw, dict):
            raise VaelabError(f"{source} must be a mapping with sections data/model/train")
        unknown_sections = set(raw) - {"data", "model", "train"}
        if unknown_sections:
            raise VaelabError(
                f"{source}: unknown section(s) {sorted(unknown_sections)}; allowed: data, model, train"
            )
        parts = {
            name: _build(section_type, raw.get(name) or {}, f"{source} [{name}]")
            for name, section_type in (("data", DataConfig), ("model", ModelConfig), ("train", TrainConfig))
        }
        config = cls(**parts)
        config.validate()
        return config

    def with_overrides(self, overrides: dict[str, Any]) -> RunConfig:
        """A copy with flat `name=value` overrides (CLI flags); each name belongs to exactly one section."""
        raw = self.to_dict()
        for key, value in overrides.items():
            if value is None:
                continue
            section = _section_of(key)
            raw[section][key] = value
        return RunConfig.from_dict(raw, "command-line options")

    def validate(self) -> None:
        d, m, t = self.data, self.model, self.train
        _check(d.dataset in DATASETS, f"unknown dataset '{d.dataset}'; choose one of: {', '.join(DATASETS)}")
        _check(d.input_mode in INPUT_MODES, f"input_mode must be one of {', '.join(INPUT_MODES)}")
        _check(0 < d.val_size < 60000, "val_size must be between 1 and 59,999")
        for name, value in (("split_seed", d.split_seed), ("seed", t.seed)):
            _check(0 <= value < 2**31, f"{name} must be between 0 and 2**31 − 1 (got {value})")
        for name in ("train_limit", "val_limit"):
            value = getattr(d, name)
            _check(value is None or value > 0, f"{name} must be a positive number of images")
        _check(m.kind in MODEL_KINDS, f"model kind '{m.kind}' is unknown; choose one of: {', '.join(MODEL_KINDS)}")
        dataset_classes = len(CLASS_NAMES.get(d.dataset, ()))
        _check(
            m.kind == "vae" or m.classes == dataset_classes,
            f"classes must be {dataset_classes} for a {m.kind} on {d.dataset} (its number of classes), got {m.classes}",
        )
        _check(
            d.labels is None or m.kind in CLASSIFIER_KINDS,
            f"labels (semi-supervised training) needs --model {' or '.join(CLASSIFIER_KINDS)}, not {m.kind}",
        )
        _check(not m.label_at_input or m.kind == "cvae",
               f"label_at_input applies to --model cvae only (m2's q(y|x) reads the label-free trunk), not {m.kind}")
        _check(m.head_input in HEAD_INPUTS, f"head_input must be one of {', '.join(HEAD_INPUTS)}")
        _check(m.head_input == "mean" or m.kind == "vae-classifier",
               f"head_input applies to --model vae-classifier only, not {m.kind}")
        _check(d.labels is None or d.labels >= 1, "labels must be a positive number of training labels")
        _check(0 <= t.head_shift <= MAX_HEAD_SHIFT, f"head_shift must be between 0 and {MAX_HEAD_SHIFT} pixels")
        _check(t.head_shift == 0 or m.kind in CLASSIFIER_KINDS,
               f"head_shift (translated images for the classifier) needs --model {' or '.join(CLASSIFIER_KINDS)}")
        _check(not t.head_flip or m.kind in CLASSIFIER_KINDS,
               f"head_flip (mirrored images for the classifier) needs --model {' or '.join(CLASSIFIER_KINDS)}")
        _check(0 <= t.head_rotate <= MAX_HEAD_ROTATE,
               f"head_rotate must be between 0 and {MAX_HEAD_ROTATE:g} degrees (got {t.head_rotate:g})")
        _check(t.head_rotate == 0 or m.kind in CLASSIFIER_KINDS,
               f"head_rotate (turned images for the classifier) needs --model {' or '.join(CLASSIFIER_KINDS)}")
        _check(
            m.classifier_weight is None or (math.isfinite(m.classifier_weight) and m.classifier_weight >= 0),
            f"classifier_weight must be a finite number ≥ 0 (got {m.classifier_weight})",
        )
        _check(1 <= m.latent_dim <= MAX_WIDTH, f"latent_dim must be between 1 and {MAX_WIDTH}")
        _check(
            1 <= len(m.channels) <= 4 and all(1 <= c <= MAX_WIDTH for c in m.channels),
            f"channels must be 1 to 4 widths between 1 and {MAX_WIDTH}, e.g. 32,64",
        )
        _check(
            (m.image_size, m.image_channels) == (28, 1),
            f"{d.dataset} images are 28×28 with 1 channel; image_size/image_channels must be 28/1",
        )
        _check(
            m.image_size % (2 ** len(m.channels)) == 0,
            f"image_size {m.image_size} must be divisible by 2**len(channels) = {2 ** len(m.channels)}",
        )
        _check(0 <= m.blocks_per_stage <= 16, "blocks_per_stage must be between 0 and 16")
        _check(0 <= m.hidden_dim <= MAX_WIDTH, f"hidden_dim must be between 0 and {MAX_WIDTH}")
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
        _check(t.checkpoint_every >= 0, "checkpoint_every must be ≥ 0 steps (0: checkpoint at epoch ends only)")
        _check(t.skip_nonfinite >= 0, "skip_nonfinite must be ≥ 0 batches")


def load_yaml_config(path: Path) -> RunConfig:
    path = Path(path)
    if not path.is_file():
        raise VaelabError(f"config file {path} does not exist; pass an existing YAML file to --config")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise VaelabError(f"{path} is not valid YAML ({str(error).splitlines()[0]})") from None
    return RunConfig.from_dict(raw or {}, str(path))


def load_json_config(path: Path) -> RunConfig:
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise VaelabError(f"{path} is unreadable or not valid JSON ({error}); the run directory is damaged") from None
    return RunConfig.from_dict(raw, str(path))


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise VaelabError(message)


def _section_of(key: str) -> str:
    for section, section_type in (("data", DataConfig), ("model", ModelConfig), ("train", TrainConfig)):
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
        converted[name] = _coerce(value, getattr(defaults, name), fields[name].type, f"{where} {name}")
    return section_type(**{**dataclasses.asdict(defaults), **converted})


def _coerce(value: Any, default: Any, type_name: str, where: str) -> Any:
    """Check a value against its field's declared type (YAML gives ints for floats, lists for tuples)."""
    optional = "None" in str(type_name)
    if value is None:
        if optional:
            return None
        raise VaelabError(f"{where} must not be empty")
    base = str(type_name).replace(" | None", "")
    try:
        if base == "bool":
            if not isinstance(value, bool):
                raise TypeError
            return value
        if base == "int":
            if isinstance(value, bool) or not float(value).is_integer():
                raise TypeError
            return int(value)
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
        raise VaelabError(f"{where} must be of type {base} (got {value!r})") from None
    raise AssertionError(f"no coercion for {type_name}")
