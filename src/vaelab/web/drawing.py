"""A drawing (or any picture of one digit or garment) → a 28×28 image prepared the way the dataset's were.

MNIST (LeCun et al.): each digit was size-normalised to fit a 20×20 box with its aspect ratio kept (the
anti-aliasing gives the grey levels), then placed in the 28×28 field so that its centre of mass sits at the
centre. Measured on the MNIST test split, the centre of mass is at pixel (14.0, 14.0) ± 0.3 in row/column
index coordinates, so the shift is a whole number of pixels that brings it to (14, 14). Fashion-MNIST items were
resized so their longest edge fills the whole 28 pixels; the same function with a 28-pixel box prepares those.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

IMAGE_SIZE = 28
CENTRE = 14.0  # where the centre of mass of an MNIST digit lies, in pixel index coordinates (measured above)
DRAWING_BOX = {"mnist": 20, "fashion-mnist": 28}  # side of the box the longest edge is scaled to, per dataset
INK_THRESHOLD = 0.05  # intensities at or below this are background when finding the drawing's bounding box


def prepare_drawing(image: np.ndarray, box: int = 20) -> np.ndarray:
    """Grayscale `[H, W]` in [0, 1], ink bright on a dark background, of any size → float32 `[28, 28]` in [0, 1]:
    cropped to the ink, scaled (anti-aliased, aspect ratio kept) so the longest edge is `box` pixels, and shifted
    so the centre of mass lies at (14, 14). A picture without ink gives an all-zero image."""
    image = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
    if image.ndim != 2:
        raise ValueError(f"expected a 2-d grayscale image, got shape {image.shape}")
    ink_rows = np.flatnonzero((image > INK_THRESHOLD).any(axis=1))
    ink_cols = np.flatnonzero((image > INK_THRESHOLD).any(axis=0))
    if ink_rows.size == 0:
        return np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    crop = image[ink_rows[0] : ink_rows[-1] + 1, ink_cols[0] : ink_cols[-1] + 1]
    height, width = crop.shape
    scale = box / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # Pillow's bilinear filter widens with the reduction factor when shrinking: an area average, not point samples.
    scaled = np.clip(np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.BILINEAR)), 0.0, 1.0)
    return _centre_by_mass(scaled)


def _centre_by_mass(patch: np.ndarray) -> np.ndarray:
    """Place `patch` (at most 28×28) in a 28×28 field with its centre of mass at (CENTRE, CENTRE), shifted by
    whole pixels and kept inside the field."""
    height, width = patch.shape
    mass = patch.sum()
    com_row = (patch.sum(axis=1) * np.arange(height)).sum() / mass
    com_col = (patch.sum(axis=0) * np.arange(width)).sum() / mass
    top = int(np.clip(round(CENTRE - com_row), 0, IMAGE_SIZE - height))
    left = int(np.clip(round(CENTRE - com_col), 0, IMAGE_SIZE - width))
    field = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    field[top : top + height, left : left + width] = patch
    return field
