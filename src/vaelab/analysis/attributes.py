"""Attributes of images measured from the pixels alone, with the measurers a dataset's description lists
(`vaelab.data.measurers` holds the measurers and says how each is defined)."""

from __future__ import annotations

import numpy as np
import torch

from vaelab.data.catalog import describe
from vaelab.data.description import Measurer
from vaelab.errors import VaelabError


def _measurers(dataset: str) -> dict[str, Measurer]:
    measurers = describe(dataset).attributes
    if not measurers:
        raise VaelabError(f"dataset '{dataset}' has no attribute measurers; factors need them")
    return measurers


def attributes_for(dataset: str) -> tuple[str, ...]:
    """Attribute names of a dataset, in the order `measure` and `measure_batch` return them."""
    return tuple(_measurers(dataset))


def _check_intensities(images: np.ndarray) -> None:
    if images.size and (images.min() < 0 or images.max() > 1):
        raise VaelabError(
            f"attributes need intensities in [0, 1], got values in [{images.min()}, {images.max()}]; "
            "divide uint8 images by 255"
        )


def measure(image: np.ndarray, dataset: str) -> dict[str, float]:
    """Every attribute of one image: `[H, W]` for a grey dataset, `[3, H, W]` for a colour one."""
    image = np.asarray(image)
    if image.ndim != (2 if describe(dataset).channels == 1 else 3):
        raise VaelabError(f"measure takes one image, got shape {list(image.shape)}; use measure_batch")
    return {name: values[0] for name, values in measure_batch(np.asarray(image)[None], dataset).items()}


def measure_batch(images: torch.Tensor | np.ndarray, dataset: str) -> dict[str, np.ndarray]:
    """Every attribute of a batch, as one `[N]` array each: grey images `[N, H, W]` or `[N, 1, H, W]`, colour
    images `[N, 3, H, W]` (the dataset's measurers read one `[H, W]` grey or `[3, H, W]` colour image)."""
    measurers = _measurers(dataset)
    channels = describe(dataset).channels
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    images = np.asarray(images, dtype=np.float64)
    if channels == 1 and images.ndim == 4 and images.shape[1] == 1:
        images = images[:, 0]
    expected = 3 if channels == 1 else 4
    if images.ndim != expected or (channels > 1 and images.shape[1] != channels):
        shape = "[N, H, W] or [N, 1, H, W]" if channels == 1 else f"[N, {channels}, H, W]"
        raise VaelabError(f"{dataset} attributes are measured on {shape} images, got shape {list(images.shape)}")
    _check_intensities(images)
    # image by image, so that measures sharing work on one image (the stroke's skeleton) compute it once
    rows = np.array([[measurer(image) for measurer in measurers.values()] for image in images], dtype=np.float64)
    rows = rows.reshape(len(images), len(measurers))
    return {name: rows[:, k].copy() for k, name in enumerate(measurers)}
