"""Image files into uint8 arrays: decoding, the crops and resizes of each dataset, and the decoded-array cache.

Datasets of image files (emoji, CelebA, any folder) are decoded once into one uint8 array `[N, C, H, W]` and kept
in the cache as `decoded-<key>.npy` files, where the key is the SHA-256 of a manifest of the source files (their
SHA-256 for packaged files, their sizes and modification times for a user's folder). A changed source gives a
new key, so a stale array is never served; the old one is removed when the new one is written.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from vaelab.errors import VaelabError
from vaelab.io import atomic_write, atomic_write_json

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
Log = Callable[[str], None]


def centre_crop_box(width: int, height: int, crop: int | None) -> tuple[int, int, int, int]:
    """The (left, top, right, bottom) box of a centred square: `crop` pixels a side, or the largest square when
    `crop` is None. PIL's convention: right and bottom are exclusive."""
    side = min(width, height) if crop is None else crop
    if side > min(width, height):
        raise VaelabError(f"a {width}×{height} image is smaller than the {side}×{side} centre crop")
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def to_array(image: Image.Image, size: int, channels: int, crop: int | None = None,
             background: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """A decoded image → uint8 `[channels, size, size]`: transparency composited onto `background`, a centred
    square crop (`crop` pixels, or the largest square), then a resize to `size` with antialiasing (Lanczos)."""
    if image.mode in ("RGBA", "LA", "P", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        image = Image.alpha_composite(canvas, rgba)
    image = image.convert("RGB" if channels == 3 else "L")
    image = image.crop(centre_crop_box(*image.size, crop))
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.LANCZOS, reducing_gap=None)
    array = np.asarray(image, dtype=np.uint8)
    return array.transpose(2, 0, 1).copy() if channels == 3 else array[None].copy()


def decode_file(path: Path | Any, size: int, channels: int, crop: int | None = None,
                background: tuple[int, int, int] = (255, 255, 255), name: str | None = None) -> np.ndarray:
    """One image file (a path, or a file object called `name`) → uint8 `[channels, size, size]`; a file that does
    not decode is a `VaelabError` naming it."""
    name = name or str(path)
    try:
        with Image.open(path) as image:
            image.load()
            return to_array(image, size, channels, crop, background)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise VaelabError(f"{name} does not decode as an image ({error.__class__.__name__}: {error})") from None


def image_files(folder: Path) -> list[Path]:
    """Every PNG/JPEG/WebP file under `folder` (any depth, hidden files and folders skipped), in sorted order."""
    return sorted(path for path in folder.rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()
                  and not any(part.startswith(".") for part in path.relative_to(folder).parts))


def file_manifest(folder: Path, files: Iterable[Path]) -> list[list[Any]]:
    """[relative path, size in bytes, modification time in ns] of each file: what a user's folder is keyed by."""
    manifest = []
    for path in files:
        status = path.stat()
        manifest.append([path.relative_to(folder).as_posix(), status.st_size, status.st_mtime_ns])
    return manifest


def manifest_key(manifest: Any) -> str:
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:16]


def cached_arrays(folder: Path, manifest: Any, build: Callable[[], dict[str, np.ndarray]],
                  log: Log = print) -> dict[str, np.ndarray]:
    """The arrays `build()` decodes from the files of `manifest`, cached in `folder` under the manifest's key:
    decoded once, then read back (memory-mapped, so a large set is not all read at once)."""
    key = manifest_key(manifest)
    index_path = folder / f"decoded-{key}.json"
    if index_path.exists():
        try:
            names = json.loads(index_path.read_text())["arrays"]
            return {name: np.load(folder / f"decoded-{key}-{name}.npy", mmap_mode="r") for name in names}
        except (OSError, ValueError, KeyError):
            log(f"{index_path}: the decoded cache is damaged; decoding the files again")
    arrays = build()
    for name, array in arrays.items():
        atomic_write(folder / f"decoded-{key}-{name}.npy", lambda tmp, array=array: _save_npy(tmp, array))
    atomic_write_json(index_path, {"arrays": sorted(arrays), "manifest_key": key})  # written last: the commit
    for stale in folder.glob("decoded-*"):
        if not stale.name.startswith(f"decoded-{key}"):
            stale.unlink(missing_ok=True)
    return arrays


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as handle:
        np.save(handle, np.ascontiguousarray(array))
