"""CelebA (Liu et al. 2015), the aligned and cropped faces, from a copy the user already has.

The folder (given once with `--data-dir PATH` or `vaelab data fetch celeba --data-dir PATH`, or by `VAELAB_CELEBA`)
must hold the official layout: `img_align_celeba/*.jpg` (178×218), `list_eval_partition.txt` and
`list_attr_celeba.txt`. The official partition gives train (162,770), validation (19,867) and test (19,962).

Preprocessing, the standard one of the VAE literature at 64×64 (e.g. PyTorch-VAE, Dai & Wipf 2019): a 148×148
centre crop (left 15, top 35 on the 178×218 images), then a resize to 64×64 with antialiasing (Lanczos); another
`--image-size` resizes the same crop. The 40 binary attributes are annotations for analysis (0/1), not training
labels: the dataset has no classes.

A missing file, a wrong layout or an image that does not decode is a one-line error naming the file: the set is
never read partially. The decoded images are cached, keyed by the manifest of the folder (size and modification
time of every image, SHA-256 of the two lists).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from vaelab.data import colour
from vaelab.data.description import DatasetDescription
from vaelab.data.imagefiles import cached_arrays, decode_file
from vaelab.data.sources import data_root, dataset_dir
from vaelab.errors import VaelabError
from vaelab.io import atomic_write_json

IMAGES = "img_align_celeba"
PARTITION = "list_eval_partition.txt"
ATTRIBUTES = "list_attr_celeba.txt"
CROP = 148
DEFAULT_SIZE = 64
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
ENVIRONMENT = "VAELAB_CELEBA"
HOW_TO_POINT = f"pass --data-dir PATH (or set {ENVIRONMENT}) to the folder holding {IMAGES}/, {PARTITION} and " \
               f"{ATTRIBUTES}"


def _pointer(root: Path | None) -> Path:
    return (root or data_root()) / "celeba-source.json"


def remember_folder(folder: str | Path, root: Path | None = None) -> Path:
    """Record where the user's CelebA lies, so that every later command finds it; returns the folder."""
    folder = Path(folder).expanduser().resolve()
    check_layout(folder)
    atomic_write_json(_pointer(root), {"folder": str(folder)})
    return folder


def celeba_folder(root: Path | None = None) -> Path:
    if os.environ.get(ENVIRONMENT):
        return Path(os.environ[ENVIRONMENT]).expanduser()
    pointer = _pointer(root)
    if pointer.exists():
        try:
            return Path(json.loads(pointer.read_text())["folder"])
        except (ValueError, KeyError):
            raise VaelabError(f"{pointer} is damaged; {HOW_TO_POINT}") from None
    raise VaelabError(f"CelebA is read from your own copy, and none is known yet; {HOW_TO_POINT}")


def check_layout(folder: Path) -> None:
    for needed in (folder / IMAGES, folder / PARTITION, folder / ATTRIBUTES):
        if not needed.exists():
            raise VaelabError(f"{needed} is missing: not the CelebA layout; {HOW_TO_POINT}")


def read_partition(path: Path) -> list[tuple[str, int]]:
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise VaelabError(f"{path} line {number} is not `<image> <0|1|2>`: {line[:60]!r}")
        rows.append((fields[0], int(fields[1])))
    return rows


def read_attributes(path: Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """The 40 attribute names and, per image file, its 0/1 values."""
    lines = path.read_text().splitlines()
    if len(lines) < 3:
        raise VaelabError(f"{path} is too short: a count, the attribute names, then one line per image")
    names = lines[1].split()
    values = {}
    for number, line in enumerate(lines[2:], 3):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != len(names) + 1 or any(v not in ("1", "-1") for v in fields[1:]):
            raise VaelabError(f"{path} line {number} does not hold {len(names)} values of ±1: {line[:60]!r}")
        values[fields[0]] = (np.asarray(fields[1:], dtype=np.int64) > 0).astype(np.int64)
    return names, values


def _decode(folder: Path, rows, attribute_names, attribute_values, size) -> dict[str, np.ndarray]:
    images = np.empty((len(rows), 3, size, size), dtype=np.uint8)
    for index, (file_name, _) in enumerate(rows):
        images[index] = decode_file(folder / IMAGES / file_name, size, 3, crop=CROP)
    table = np.stack([attribute_values[file_name] for file_name, _ in rows])
    return {"images": images, "partition": np.asarray([code for _, code in rows], dtype=np.int64),
            "attributes": table, "attribute_names": np.asarray(attribute_names)}


def read_celeba(description: DatasetDescription, split: str, root: Path | None = None):
    folder = celeba_folder(root)
    check_layout(folder)
    rows = read_partition(folder / PARTITION)
    attribute_names, attribute_values = read_attributes(folder / ATTRIBUTES)
    manifest_files = []
    for file_name, _ in rows:
        path = folder / IMAGES / file_name
        if not path.is_file():
            raise VaelabError(f"{path} is missing (listed in {PARTITION}); CelebA must be complete")
        if file_name not in attribute_values:
            raise VaelabError(f"{file_name} has no line in {folder / ATTRIBUTES}; CelebA must be complete")
        status = path.stat()
        manifest_files.append([file_name, status.st_size, status.st_mtime_ns])
    lists = {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in (PARTITION, ATTRIBUTES)}
    manifest = {"images": manifest_files, "lists": lists, "shape": description.shape, "crop": CROP}
    size = description.shape[1]
    arrays = cached_arrays(dataset_dir(description, root), manifest,
                           lambda: _decode(folder, rows, attribute_names, attribute_values, size))
    chosen = np.asarray(arrays["partition"]) == SPLIT_CODES[split]
    table = np.asarray(arrays["attributes"])[chosen]
    annotations = {str(name): table[:, i] for i, name in enumerate(np.asarray(arrays["attribute_names"]))}
    return np.asarray(arrays["images"])[chosen], np.zeros(int(chosen.sum()), dtype=np.int64), annotations


def celeba_description(name: str, size: int | None) -> DatasetDescription:
    size = size or DEFAULT_SIZE
    if size > CROP:
        raise VaelabError(f"CelebA images are cropped to {CROP}×{CROP}; --image-size {size} would upscale them")
    return DatasetDescription(
        name=name,
        shape=(3, size, size),
        class_names=None,
        reader=read_celeba,
        default_likelihood="logistic",
        default_input_mode="intensities",
        splits=("train", "val", "test"),
        attributes=colour.MEASURERS,
    )
