"""Reader for the IDX format used by MNIST and Fashion-MNIST (http://yann.lecun.com/exdb/mnist/)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vaelab.data.description import DatasetDescription
from vaelab.data.sources import read_verified
from vaelab.errors import VaelabError

# The file names of every IDX image dataset (MNIST's, kept by Fashion-MNIST).
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

# Third byte of the magic number -> element dtype (big-endian where it matters).
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def parse_idx(raw: bytes, name: str = "IDX data") -> np.ndarray:
    """Parse the bytes of an uncompressed IDX file into an array of its declared shape."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise VaelabError(f"{name} is not an IDX file (bad magic number); delete it and fetch the data again")
    dtype = _IDX_DTYPES[raw[2]]
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise VaelabError(
            f"{name} has {len(raw)} bytes but its header promises {expected}; delete it and fetch the data again"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def idx_reader(description: DatasetDescription, split: str, root: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A split of an IDX dataset (the MNIST file names) → uint8 images `[N, C, H, W]`, int64 labels `[N]`."""
    image_file, label_file = IDX_FILES[split]
    images = parse_idx(read_verified(description, image_file, root), image_file)
    labels = parse_idx(read_verified(description, label_file, root), label_file)
    expected = tuple(description.shape)
    if images.shape[1:] != expected[1:] or images.shape[0] != labels.shape[0]:
        raise VaelabError(
            f"{image_file} holds images of shape {images.shape[1:]} (and {labels.shape[0]} labels), but "
            f"{description.name} images are {expected[1]}×{expected[2]}; fetch the data again"
        )
    return images.reshape(images.shape[0], *expected), labels.astype("int64")
