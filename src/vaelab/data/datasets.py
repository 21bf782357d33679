"""Datasets as whole in-memory tensors: uint8 images, int64 labels, seeded splits, binarization, batches.

The whole of MNIST is 47 MB of uint8, so it is held as one tensor and batches are index slices of it: no
per-item Dataset/DataLoader in the hot path. Images are `[N, C, H, W]` in every layer, as the dataset's
description gives the shape.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from vaelab.data.catalog import describe
from vaelab.data.sources import fetch_files, is_fetched
from vaelab.errors import VaelabError

Split = Literal["train", "val", "test"]


@dataclass(frozen=True)
class ImageSet:
    """Images `[N, C, H, W]` uint8 and labels `[N]` int64 of one split, and the dataset's per-image annotations
    (name → `[N]` tensor; empty for most datasets)."""

    images: torch.Tensor
    labels: torch.Tensor
    dataset: str
    split: str
    annotations: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.images.shape[0]

    def select(self, index: torch.Tensor | slice) -> ImageSet:
        """The examples at `index`, with their labels and annotations."""
        annotations = {name: values[index] for name, values in self.annotations.items()}
        return ImageSet(self.images[index], self.labels[index], self.dataset, self.split, annotations)

    def subset(self, count: int | None) -> ImageSet:
        """The first `count` examples (all when `count` is None): the small real slices tests use."""
        return self if count is None else self.select(slice(0, count))


def _load_files(name: str, kind: str, root: Path | None) -> ImageSet:
    description = describe(name)
    if not is_fetched(description, root, kind):
        fetch_files(description, root, split=kind)
    images, labels, *rest = description.reader(description, kind, root)
    annotations = {key: torch.from_numpy(np.array(values)) for key, values in (rest[0] if rest else {}).items()}
    labels = torch.from_numpy(np.asarray(labels)).long()
    return ImageSet(torch.from_numpy(np.array(images)), labels, name, kind, annotations)


def load_split(
    name: str, split: Split, val_size: int | None = None, split_seed: int = 0, root: Path | None = None
) -> ImageSet:
    """One split of a dataset. `test` is the official test set. `val` is the official validation set where the
    dataset has one (CelebA); otherwise it is carved from the train set by a seeded permutation, so the same
    (val_size, split_seed) always gives the same split (val_size None: the dataset's default)."""
    description = describe(name)  # a clear error for an unknown name before touching files
    if split not in ("train", "val", "test"):
        raise ValueError(f"unknown split {split!r}")
    if split == "test" or "val" in description.splits:
        return _load_files(name, split, root)
    train = _load_files(name, "train", root)
    if val_size is None:
        val_size = description.default_validation_images(len(train))
    if not 0 < val_size < len(train):
        raise VaelabError(f"val_size {val_size:,} must be between 1 and the {len(train) - 1:,} images of {name}'s "
                          "train split less one; pass a smaller --val-size")
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(split_seed))
    chosen = order[:val_size] if split == "val" else order[val_size:]
    chosen, _ = torch.sort(chosen)  # keep file order inside a split: prefixes are stable slices
    return replace(train.select(chosen), split=split)


def balanced_label_subset(labels: torch.Tensor, n: int, seed: int, classes: int = 10) -> torch.Tensor:
    """Indices (sorted, int64) of `n` examples whose labels are kept, `n / classes` of each class, chosen by `seed`.

    Pass the training split's labels only: the subset is drawn from what it is given, so test labels are never
    read. Semi-supervised training (`--labels N`) and the linear probe's 100-label fit both use it."""
    labels = torch.as_tensor(labels).long().reshape(-1)
    if n < 1 or n > labels.numel():
        raise VaelabError(f"--labels {n} is not between 1 and the {labels.numel():,} training images")
    if n % classes:
        raise VaelabError(f"--labels {n} must be a multiple of the {classes} classes (a balanced subset)")
    per_class = n // classes
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for label in range(classes):
        members = (labels == label).nonzero().flatten()
        if members.numel() < per_class:
            raise VaelabError(
                f"--labels {n} needs {per_class} images of class {label}, the training images have {members.numel()}"
            )
        # Every class draws from the same generator in turn: the subset depends only on (labels, n, seed).
        chosen.append(members[torch.randperm(members.numel(), generator=generator)[:per_class]])
    return torch.sort(torch.cat(chosen)).values


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 `[N, C, H, W]` → float `[N, C, H, W]` in [0, 1]."""
    return images.float().div_(255.0)


def binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A Bernoulli draw per pixel with the intensity as probability (dynamic binarization)."""
    return torch.bernoulli(x, generator=generator)


def fixed_binarization(x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """The seeded binarization used for every evaluation, so likelihoods are comparable across runs."""
    return binarize(x, torch.Generator(device=x.device).manual_seed(seed))


def prepare_inputs(images: torch.Tensor, mode: str, seed: int = 0) -> torch.Tensor:
    """Evaluation inputs for an input mode: intensities, or their fixed seeded binarization."""
    x = to_float(images)
    return fixed_binarization(x, seed) if mode == "binarized" else x


def iterate_batches(
    count: int, batch_size: int, generator: torch.Generator | None = None, drop_last: bool = False
) -> Iterator[torch.Tensor]:
    """Index tensors covering `range(count)`: shuffled when a generator is given, in order otherwise."""
    order = torch.randperm(count, generator=generator) if generator is not None else torch.arange(count)
    stop = count - count % batch_size if drop_last else count
    for start in range(0, stop, batch_size):
        yield order[start : start + batch_size]
