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
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vaelab.data import sizing
from vaelab.data.catalog import KNOWN_TEXT, dataset_name, describe
from vaelab.data.description import DatasetDescription
from vaelab.errors import VaelabError
from vaelab.models.options import OPTION_GROUPS, ModelConfig, OptionContext, either, option, option_name
from vaelab.models.registry import ELBO, FAMILIES

INPUT_MODES = ("intensities", "binarized")
LR_SCHEDULES = ("cosine", "constant")
PRECISIONS = ("auto", "bf16", "fp32")
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class DataConfig:
    """Which images a run trains on and how they are fed to the model (the `data` section)."""

    dataset: str = option("mnist", f"Dataset: {KNOWN_TEXT} (any folder of PNG/JPEG/WebP images).")
    image_size: int | None = option(None, "Resize to N×N (celeba, folder:PATH).", shown="the dataset's")
    image_channels: int | None = option(None, "folder:PATH: 3 (RGB) or 1 (grey).", shown="the dataset's")
    data_dir: str | None = option(None, "celeba: the folder holding your copy (img_align_celeba/ and the lists).",
                                  shown="the one given before")
    input_mode: str | None = option(
        None, "binarized (a fresh Bernoulli draw of each image per step) or intensities (the pixels' values, grey or "
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
    tensorboard: bool = option(False, "Also write TensorBoard logs to RUN/tensorboard (needs tensorboard).")


SECTIONS: tuple[tuple[str, type], ...] = (("data", DataConfig), ("model", ModelConfig), ("train", TrainConfig))
# How long a run is: `epochs`, or `steps`, or the steps a `time_budget` buys. An override of one replaces the others
# (the epochs stay, as the length the warm-ups in steps were written for).
LENGTH_REPLACES = {"epochs": ("steps", "time_budget"), "steps": ("time_budget",), "time_budget": ("steps",)}
DERIVED_FIELDS = ("image_shape",)  # filled by resolution, never given on the command line
# Fields of config.json files written before the image shape came from the dataset; read, checked, then dropped.
LEGACY_MODEL_FIELDS = ("image_size", "image_channels")


# Keys of configs written before each family's options had their own group: read, with a note to move them (the
# run directories' config.json files are read silently: they are records, not a person's file).
MOVED_KEYS: dict[tuple[str, str], tuple[str, ...]] = {
    ("model", "kind"): ("model", "family"),
    **{("model", name): ("model", "objective", name) for name in
       ("tc_weight", "capacity_max", "capacity_steps", "capacity_weight")},
    **{("train", name): ("model", "objective", name) for name in ("beta", "kl_warmup_steps", "free_bits")},
    ("model", "prior_components"): ("model", "prior", "components"),
    **{("model", name): ("model", "decoder", name) for name in ("pixelcnn_layers", "pixelcnn_channels")},
    ("model", "label_at_input"): ("model", "cvae", "label_at_input"),
    ("model", "classifier_weight"): ("model", "classifier", "weight"),
    ("model", "head_input"): ("model", "classifier", "head_input"),
    **{("train", name): ("model", "classifier", name) for name in ("head_shift", "head_flip", "head_rotate")},
    **{("model", name): ("model", "ddpm", name) for name in
       ("diffusion_steps", "noise_schedule", "ema_decay", "sampling_steps")},
}
RENAMED_VALUES = {("data", "input_mode"): {"grayscale": "intensities"}}  # values of 0.1, read as their new name
MOVED_UNTIL = "0.3"  # the version that stops reading the moved keys and renamed values
OVERRIDE_ALIASES = {"kind": "family"}  # flat names of earlier versions, still taken by `with_overrides`


@dataclass(frozen=True)
class OptionDescription:
    """One option as the command line and the configuration reference show it: `name` is its flat name (the flag
    without dashes, what `with_overrides` takes), `path` where it sits in the config (`model.objective.tc_weight`)."""

    name: str
    path: tuple[str, ...]
    field: dataclasses.Field
    flag: str
    default: Any
    default_text: str
    help: str

    @property
    def section(self) -> str:
        return ".".join(self.path[:-1])


def default_text(value: Any) -> str:
    """A default as the command line prints it: lists comma-separated, booleans lower-case."""
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def described_options() -> list[OptionDescription]:
    """Every option a run can be given, in section order (a group's options after its section's own): its flat
    name, path, flag, default and help."""
    described = []

    def describe_section(path: tuple[str, ...], section_type: type, grouped: bool) -> None:
        defaults = section_type()
        for field_ in dataclasses.fields(section_type):
            if field_.name in DERIVED_FIELDS or field_.metadata.get("group"):
                continue
            name = option_name(section_type, field_.name) if grouped else field_.name
            flag = field_.metadata.get("flag") or "--" + field_.name.replace("_", "-")
            default = getattr(defaults, field_.name)
            shown = field_.metadata.get("shown") or default_text(default)
            described.append(OptionDescription(name, (*path, field_.name), field_, flag, default, shown,
                                               field_.metadata["help"]))
        for field_ in dataclasses.fields(section_type):
            if field_.metadata.get("group"):
                describe_section((*path, field_.name), OPTION_GROUPS[field_.name], True)

    for section, section_type in SECTIONS:
        describe_section((section,), section_type, False)
    return described


def option_paths() -> dict[str, tuple[str, ...]]:
    """Flat option name → its path in the config: `tc_weight` → ("model", "objective", "tc_weight")."""
    return {described.name: described.path for described in described_options()}


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
    def from_dict(cls, raw: dict[str, Any], source: str = "config", record: bool = False) -> RunConfig:
        """A validated config from a mapping with the sections data/model/train (each optional). `source` names
        the mapping in error messages (a file's path). Unknown sections or options and wrong types or values raise
        a one-line `VaelabError`. Keys of earlier versions (`MOVED_KEYS`) are read where they moved to, with a
        one-line `FutureWarning` unless the mapping is a run's `record` (its config.json)."""
        if not isinstance(raw, dict):
            raise VaelabError(f"{source} must be a mapping with sections data/model/train")
        unknown_sections = set(raw) - {name for name, _ in SECTIONS}
        if unknown_sections:
            raise VaelabError(
                f"{source}: unknown section(s) {sorted(unknown_sections)}; allowed: data, model, train"
            )
        raw = {name: copy.deepcopy(raw.get(name)) or {} for name, _ in SECTIONS}
        moved = _move_keys(raw)
        if moved and not record:
            warnings.warn(f"{source} is written as for vaelab 0.1 ({', '.join(moved)}); write it the new way, the old "
                          f"is read until vaelab {MOVED_UNTIL}", FutureWarning, stacklevel=2)
        legacy = {}
        if isinstance(raw["model"], dict):
            legacy = {name: raw["model"].pop(name) for name in LEGACY_MODEL_FIELDS if name in raw["model"]}
        parts = {name: _build(section_type, raw[name], source, name) for name, section_type in SECTIONS}
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
        settings = self.model.objective.settings()
        prior = self.model.prior
        if prior.name != "standard":  # named only when not the default, so earlier runs read the same
            settings.update(prior=prior.name, prior_components=prior.components)
        return settings

    def options(self) -> dict[str, Any]:
        """The config as flat option names and their values: what `with_overrides` and the flags take."""
        resolved = self.to_dict()
        return {described.name: _at(resolved, described.path) for described in described_options()}

    def with_overrides(self, overrides: dict[str, Any]) -> RunConfig:
        """A copy with flat `name=value` overrides (CLI flags, e.g. `tc_weight`, `prior_components`; each name is
        one option's, see `described_options`)."""
        raw = copy.deepcopy(self._given)
        paths = {**option_paths(), **{name: ("model", name) for name in DERIVED_FIELDS}}  # a derived one: refused
        for key, value in overrides.items():
            if value is None:
                continue
            key = OVERRIDE_ALIASES.get(key, key)
            if key not in paths:
                raise VaelabError(f"unknown option '{key}'")
            *sections, name = paths[key]
            _within(raw, sections)[name] = value
            for replaced in LENGTH_REPLACES.get(key, ()):  # a length given here wins over the file's other one
                if overrides.get(replaced) is None:
                    raw["train"][replaced] = None
        return RunConfig.from_dict(raw, COMMAND_LINE, record=True)

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
            models_likelihood = _family_models_likelihood(self.model.family)
            self.data.input_mode = description.default_input_mode if models_likelihood else "intensities"
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
        or the model family. The data and training sections are checked here; the model's options check
        themselves (`vaelab.models.options`), each group only for the families that take it."""
        d, m = self.data, self.model
        # The dataset first: when its name or size is wrong, `resolve` left the fields it fills (input_mode among
        # them) empty, and the dataset's own error is the one that names what to change.
        dataset_name(d.dataset, d.image_size, d.image_channels)
        description = describe(d.dataset)
        self._validate_data(description)
        _check(m.family in FAMILIES, f"model family '{m.family}' is unknown; choose one of: {', '.join(FAMILIES)}")
        entry = FAMILIES[m.family]
        can = entry.capabilities
        uses_labels = can.conditional or can.classifier
        _check(not uses_labels or m.classes == description.classes,
               f"classes must be {description.classes} for a {m.family} on {d.dataset} (its number of classes), "
               f"got {m.classes}")
        _check(not uses_labels or description.classes >= 2,
               f"a {m.family} needs class labels, and {d.dataset} has none; use --model vae")
        classifiers = either([name for name, family in FAMILIES.items() if family.capabilities.classifier])
        _check(d.labels is None or can.classifier,
               f"labels (semi-supervised training) needs --model {classifiers}, not {m.family}")
        shape_text = "×".join(str(n) for n in description.shape)
        _check(m.image_shape == list(description.shape),
               f"{d.dataset} images are {shape_text} (channels×height×width); image_shape comes from the dataset, "
               "leave it out")
        _check(can.likelihood or d.input_mode == "intensities",
               f"a {m.family} models the intensities; input_mode binarized applies to a likelihood, leave it out")
        context = OptionContext(m.family, can, m.image_shape, d.dataset, d.input_mode, m.likelihood,
                                penalties=entry.training_step == ELBO)
        m.validate(context, {name: family.options for name, family in FAMILIES.items()})
        if can.sampling == "diffusion":  # U-Net levels: `channels` as given, any size (skips are resized)
            _check(all(c % 8 == 0 for c in m.channels), "ddpm channels must be multiples of 8 (GroupNorm groups)")
        else:
            stride = 2 ** len(m.stage_widths)
            _check(all(side % stride == 0 for side in m.image_shape[1:]),
                   f"the {shape_text} images must be divisible by 2**stages = {stride}; use fewer channel widths")
        self._validate_train()

    def _validate_data(self, description: DatasetDescription) -> None:
        d = self.data
        _check(d.input_mode in INPUT_MODES, f"input_mode must be one of {', '.join(INPUT_MODES)}")
        _check(d.val_size is None or d.val_size > 0, "val_size must be a positive number of images")
        _check(d.data_dir is None or d.dataset.partition("?")[0] == "celeba",
               f"data_dir applies to celeba (your own copy), not to {d.dataset}; leave it out")
        _check(0 <= d.split_seed < 2**31, f"split_seed must be between 0 and 2**31 − 1 (got {d.split_seed})")
        for name in ("train_limit", "val_limit", "labels"):
            value = getattr(d, name)
            _check(value is None or value > 0, f"{name} must be a positive number of images")

    def _validate_train(self) -> None:
        t = self.train
        _check(0 <= t.seed < 2**31, f"seed must be between 0 and 2**31 − 1 (got {t.seed})")
        _check(1 <= t.epochs <= 100_000, "epochs must be between 1 and 100,000")
        _check(1 <= t.batch_size <= 60_000, "batch_size must be between 1 and 60,000")
        for name in ("lr", "grad_clip", "min_lr"):
            value = getattr(t, name)
            _check(math.isfinite(value) and value >= 0, f"{name} must be a finite number ≥ 0 (got {value})")
        _check(t.lr > 0, "lr must be > 0")
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


def _move_keys(raw: dict[str, Any]) -> list[str]:
    """Move the keys of earlier versions to where they are now and rename their renamed values (in place), and read
    a group given as a bare name (`prior: vamp`) as `{name: vamp}`; what changed, as `model.kind → model.family`."""
    if isinstance(raw.get("model"), dict):
        for name in OPTION_GROUPS:
            if isinstance(raw["model"].get(name), str):
                raw["model"][name] = {"name": raw["model"][name]}
    moved = []
    for (section, key), path in MOVED_KEYS.items():
        if isinstance(raw.get(section), dict) and key in raw[section]:
            value = raw[section].pop(key)
            _within(raw, path[:-1]).setdefault(path[-1], value)
            moved.append(f"{section}.{key} → {'.'.join(path)}")
    for (section, key), renamed in RENAMED_VALUES.items():
        value = raw.get(section, {}).get(key) if isinstance(raw.get(section), dict) else None
        if isinstance(value, str) and value in renamed:
            raw[section][key] = renamed[value]
            moved.append(f"{section}.{key} {value} → {renamed[value]}")
    return moved


def _at(raw: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        raw = raw[key]
    return raw


def _within(raw: dict[str, Any], path: Any) -> dict[str, Any]:
    """The mapping at `path` in `raw`, made where missing."""
    for key in path:
        if raw.get(key) is None:
            raw[key] = {}
        if not isinstance(raw[key], dict):
            raise VaelabError(f"{key} must be a mapping of its options")
        raw = raw[key]
    return raw


def _family_models_likelihood(name: str) -> bool:
    return name not in FAMILIES or FAMILIES[name].capabilities.likelihood


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
    return RunConfig.from_dict(raw, str(path), record=True)


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


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise VaelabError(message)


def _build(section_type: type, values: dict[str, Any], source: str, path: str) -> Any:
    """A section (or an option group, `path` `model.objective`) from its mapping, each value checked against its
    field's type."""
    where = f"{source} [{path}]"
    if not isinstance(values, dict):
        raise VaelabError(f"{where} must be a mapping")
    fields = {f.name: f for f in dataclasses.fields(section_type)}
    unknown = set(values) - set(fields)
    if unknown:
        raise VaelabError(f"{where}: unknown option(s) {sorted(unknown)}; allowed: {', '.join(fields)}")
    converted = {}
    for name, value in values.items():
        if fields[name].metadata.get("group"):
            converted[name] = _build(OPTION_GROUPS[name], value or {}, source, f"{path}.{name}")
            continue
        flag = fields[name].metadata.get("flag") or f"--{name.replace('_', '-')}"
        label = flag if source == COMMAND_LINE else f"{where} {name}"  # what the user typed
        converted[name] = _coerce(value, fields[name].type, label)
    return section_type(**converted)


COMMAND_LINE = "command-line options"
TYPE_WORDS = {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "text",
              "list[int]": "whole numbers separated by commas, e.g. 32,64"}


def _coerce(value: Any, type_name: str, where: str) -> Any:
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
            return [_coerce(v, "int", where) for v in value]
    except (TypeError, ValueError, OverflowError):
        raise VaelabError(f"{where} must be {TYPE_WORDS.get(base, base)} (got {value!r})") from None
    raise AssertionError(f"no coercion for {type_name}")
