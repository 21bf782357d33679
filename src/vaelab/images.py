"""Image grids and PNG files, without torchvision. Images stay 28×28 in the data; only the saved picture is
upscaled (nearest-neighbour by default, so pixels stay honest)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vaelab.errors import VaelabError
from vaelab.io import atomic_write_bytes, require_suffix

DISPLAY_SCALE = 4


def make_grid(images: torch.Tensor | np.ndarray, columns: int, padding: int = 2, pad_value: float = 1.0) -> np.ndarray:
    """`[N, 1, H, W]` (or `[N, H, W]`) in [0, 1] → one uint8 `[rows·(H+p)+p, columns·(W+p)+p]` picture."""
    array = images.detach().float().cpu().numpy() if torch.is_tensor(images) else np.asarray(images, dtype=float)
    if array.ndim == 4:
        array = array[:, 0]
    n, h, w = array.shape
    rows = max(1, -(-n // columns))
    grid = np.full((rows * (h + padding) + padding, columns * (w + padding) + padding), pad_value, dtype=float)
    for i in range(n):
        r, c = divmod(i, columns)
        top, left = padding + r * (h + padding), padding + c * (w + padding)
        grid[top : top + h, left : left + w] = array[i]
    return (np.clip(grid, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def upscale(picture: np.ndarray, scale: int = DISPLAY_SCALE, smooth: bool = False) -> Image.Image:
    image = Image.fromarray(picture)
    resample = Image.Resampling.BICUBIC if smooth else Image.Resampling.NEAREST
    return image.resize((image.width * scale, image.height * scale), resample)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def save_png(path: str | Path, picture: np.ndarray, scale: int = DISPLAY_SCALE, smooth: bool = False) -> Path:
    path = require_suffix(path, ".png")
    atomic_write_bytes(path, png_bytes(upscale(picture, scale, smooth)))
    return path


# --- a picture of one digit or garment → a model input --------------------------------------------------------
#
# MNIST (LeCun et al.): each digit was size-normalised to fit a 20×20 box with its aspect ratio kept (the
# anti-aliasing gives the grey levels), then placed in the 28×28 field so that its centre of mass sits at the
# centre. Measured on the MNIST test split, the centre of mass is at pixel (14.0, 14.0) ± 0.3 in row/column
# index coordinates, so the shift is a whole number of pixels that brings it to (14, 14). Fashion-MNIST items were
# resized so their longest edge fills the whole 28 pixels; the same function with a 28-pixel box prepares those.
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


def read_picture(path: str | Path, dataset: str) -> np.ndarray:
    """A PNG of one digit or garment → float32 `[28, 28]` in [0, 1], bright ink on black, as the dataset's images.

    Any mode is read as grayscale (transparent pixels count as background). A picture with a light background
    (dark ink on white paper) is inverted. A 28×28 picture is taken as it is (a saved dataset image); any other
    size is cropped, scaled and centred as the dataset's images were (`prepare_drawing`)."""
    path = Path(path)
    if not path.is_file():
        raise VaelabError(f"image {path} does not exist")
    try:
        with Image.open(path, formats=["PNG"]) as image:
            gray_alpha = np.asarray(image.convert("LA"), dtype=np.float32) / 255.0
    except (OSError, SyntaxError, Image.DecompressionBombError):
        raise VaelabError(f"{path} is not a readable PNG image") from None
    picture = gray_alpha[..., 0] * gray_alpha[..., 1]
    border = np.concatenate([picture[0], picture[-1], picture[:, 0], picture[:, -1]])
    if np.median(border) > 0.5:  # the dataset's background is black: dark ink on a light page is inverted
        picture = (1.0 - gray_alpha[..., 0]) * gray_alpha[..., 1]
    if picture.shape == (IMAGE_SIZE, IMAGE_SIZE):
        return picture
    return prepare_drawing(picture, DRAWING_BOX.get(dataset, 20))
