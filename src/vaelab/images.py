"""Image grids and PNG files, without torchvision. Images keep their dataset's size in the data; only the saved
picture is upscaled (nearest-neighbour by default, so pixels stay honest)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vaelab.data.description import DatasetDescription
from vaelab.errors import VaelabError
from vaelab.io import atomic_write_bytes, require_suffix

DISPLAY_SCALE = 4
# The largest picture, in pixels a side, that vaelab reads from a user (`vaelab classify`, the explorer's upload):
# checked from the PNG header before anything is decompressed, so a small file cannot expand into gigabytes.
MAX_IMAGE_SIDE = 1024


def make_grid(images: torch.Tensor | np.ndarray, columns: int, padding: int = 2, pad_value: float = 1.0) -> np.ndarray:
    """Images in [0, 1] → one uint8 picture of `columns` images a row: `[N, 1, H, W]` or `[N, H, W]` give a grey
    `[rows·(H+p)+p, columns·(W+p)+p]` picture, `[N, 3, H, W]` a colour one with a last axis of 3."""
    array = display_array(images)
    n, h, w = array.shape[:3]
    rows = max(1, -(-n // columns))
    grid = np.full((rows * (h + padding) + padding, columns * (w + padding) + padding, *array.shape[3:]), pad_value,
                   dtype=float)
    for i in range(n):
        r, c = divmod(i, columns)
        top, left = padding + r * (h + padding), padding + c * (w + padding)
        grid[top : top + h, left : left + w] = array[i]
    return (np.clip(grid, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def display_array(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """Images `[N, C, H, W]` (or `[N, H, W]`) → float numpy for display: `[N, H, W]` for one channel,
    `[N, H, W, 3]` for three (RGB)."""
    array = images.detach().float().cpu().numpy() if torch.is_tensor(images) else np.asarray(images, dtype=float)
    if array.ndim == 3:
        return array
    if array.ndim != 4 or array.shape[1] not in (1, 3):
        raise VaelabError(f"images to show must be [N, H, W], [N, 1, H, W] or [N, 3, H, W], got {list(array.shape)}")
    return array[:, 0] if array.shape[1] == 1 else array.transpose(0, 2, 3, 1)


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
# How a drawing is prepared is the dataset's own description (`DatasetDescription.drawing`): crop to the ink, scale
# so the longest edge is `drawing.box` pixels, shift by whole pixels so the centre of mass lies at `drawing.centre`.
INK_THRESHOLD = 0.05  # intensities at or below this are background when finding the drawing's bounding box


def prepare_drawing(image: np.ndarray, description: DatasetDescription) -> np.ndarray:
    """Grayscale `[H, W]` in [0, 1], ink bright on a dark background, of any size → float32 `[H, W]` of the
    dataset's images, in [0, 1]: cropped to the ink, scaled (anti-aliased, aspect ratio kept) so the longest edge
    is the dataset's drawing box, and shifted so the centre of mass lies at its centre. A picture without ink gives
    an all-zero image."""
    drawing, field_shape = description.drawing, description.shape[1:]
    if drawing is None:
        raise VaelabError(f"{description.name} images are not drawings; give an image of the dataset's size instead")
    image = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
    if image.ndim != 2:
        raise ValueError(f"expected a 2-d grayscale image, got shape {image.shape}")
    ink_rows = np.flatnonzero((image > INK_THRESHOLD).any(axis=1))
    ink_cols = np.flatnonzero((image > INK_THRESHOLD).any(axis=0))
    if ink_rows.size == 0:
        return np.zeros(field_shape, dtype=np.float32)
    crop = image[ink_rows[0] : ink_rows[-1] + 1, ink_cols[0] : ink_cols[-1] + 1]
    height, width = crop.shape
    scale = drawing.box / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # Pillow's bilinear filter widens with the reduction factor when shrinking: an area average, not point samples.
    scaled = np.clip(np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.BILINEAR)), 0.0, 1.0)
    return _centre_by_mass(scaled, drawing.centre, field_shape)


def _centre_by_mass(patch: np.ndarray, centre: tuple[float, float], field_shape: tuple[int, int]) -> np.ndarray:
    """Place `patch` (at most the field's size) in a field with its centre of mass at `centre`, shifted by whole
    pixels and kept inside the field."""
    height, width = patch.shape
    mass = patch.sum()
    com_row = (patch.sum(axis=1) * np.arange(height)).sum() / mass
    com_col = (patch.sum(axis=0) * np.arange(width)).sum() / mass
    top = int(np.clip(round(centre[0] - com_row), 0, field_shape[0] - height))
    left = int(np.clip(round(centre[1] - com_col), 0, field_shape[1] - width))
    field = np.zeros(field_shape, dtype=np.float32)
    field[top : top + height, left : left + width] = patch
    return field


# The first bytes of the image files a user may give instead of a PNG, to name them in the refusal.
OTHER_IMAGE_SIGNATURES = {b"\xff\xd8\xff": "a JPEG image", b"GIF8": "a GIF image", b"BM": "a BMP image",
                          b"II*\x00": "a TIFF image", b"MM\x00*": "a TIFF image"}


def other_image_kind(path: Path) -> str | None:
    """What a file that is not a PNG is, when it is another common image format ("a JPEG image"); else None."""
    try:
        with open(path, "rb") as file:
            head = file.read(12)
    except OSError:
        return None
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image"
    return next((kind for signature, kind in OTHER_IMAGE_SIGNATURES.items() if head.startswith(signature)), None)


def read_picture(path: str | Path, description: DatasetDescription) -> np.ndarray:
    """A PNG of one digit or garment → float32 `[H, W]` in [0, 1], bright ink on black, as the dataset's images.

    Any mode is read as grayscale (transparent pixels count as background). A picture with a light background
    (dark ink on white paper) is inverted. A picture of the dataset's size is taken as it is (a saved dataset
    image); any other size is cropped, scaled and centred as the dataset's images were (`prepare_drawing`). A
    picture over MAX_IMAGE_SIDE pixels a side is refused."""
    path = Path(path)
    if not path.is_file():
        raise VaelabError(f"image {path} does not exist")
    limit = f"larger than {MAX_IMAGE_SIDE} px a side, the most vaelab reads; scale it down"
    try:
        with Image.open(path, formats=["PNG"]) as image:
            if max(image.size) > MAX_IMAGE_SIDE:  # from the header, before decompressing anything
                raise VaelabError(f"{path} is {image.width}×{image.height} px, {limit}")
            gray_alpha = np.asarray(image.convert("LA"), dtype=np.float32) / 255.0
    except Image.DecompressionBombError:  # Pillow's own limit, hit while reading a header far beyond ours
        raise VaelabError(f"{path} is {limit}") from None
    except (OSError, SyntaxError):
        kind = other_image_kind(path)
        raise VaelabError(f"{path} is not a readable PNG image{f' (it is {kind})' if kind else ''}; save it as a PNG "
                          "file and give that") from None
    picture = gray_alpha[..., 0] * gray_alpha[..., 1]
    border = np.concatenate([picture[0], picture[-1], picture[:, 0], picture[:, -1]])
    if np.median(border) > 0.5:  # the dataset's background is black: dark ink on a light page is inverted
        picture = (1.0 - gray_alpha[..., 0]) * gray_alpha[..., 1]
    if picture.shape == tuple(description.shape[1:]):
        return picture
    return prepare_drawing(picture, description)
