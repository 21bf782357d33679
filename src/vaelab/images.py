"""Image grids and PNG files, without torchvision. Images stay 28×28 in the data; only the saved picture is
upscaled (nearest-neighbour by default, so pixels stay honest)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

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
