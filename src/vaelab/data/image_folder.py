"""`folder:PATH`: any folder of PNG, JPEG or WebP images, as a dataset.

Every image under the folder is read (any depth; hidden files skipped), composited onto white where it has
transparency, centre-cropped to its largest square and resized to `size`×`size` with antialiasing, in RGB or (with
one channel) grey. When every image lies in a subfolder, the first-level subfolder names are the classes (sorted);
otherwise the dataset has no classes. Files that do not decode are listed, skipped and counted.

The test split is a tenth of the images, chosen by a permutation seeded with SPLIT_SEED; validation is carved
from the rest as for every dataset. The decoded images are cached, keyed by the folder's manifest (each file's
path, size and modification time): adding, removing or changing a file is noticed and the folder decoded again.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vaelab.data import colour
from vaelab.data.description import DatasetDescription
from vaelab.data.imagefiles import cached_arrays, decode_file, file_manifest, image_files
from vaelab.data.sources import dataset_dir
from vaelab.errors import VaelabError

PREFIX = "folder:"
DEFAULT_SIZE = 64
TEST_SHARE = 0.1
SPLIT_SEED = 0


def _classes(folder: Path, files: list[Path]) -> tuple[str, ...] | None:
    parts = [path.relative_to(folder).parts for path in files]
    if not parts or any(len(p) < 2 for p in parts):
        return None
    return tuple(sorted({p[0] for p in parts}))


def _decode(folder: Path, files: list[Path], size: int, channels: int, classes, log) -> dict[str, np.ndarray]:
    images, labels, skipped = [], [], []
    for path in files:
        try:
            images.append(decode_file(path, size, channels))
        except VaelabError as error:
            skipped.append(f"{path.relative_to(folder)} ({str(error).split('(', 1)[-1].rstrip(')')})")
            continue
        labels.append(classes.index(path.relative_to(folder).parts[0]) if classes else 0)
    if skipped:
        log(f"{folder}: skipped {len(skipped)} file(s) that do not decode: {'; '.join(skipped[:20])}"
            + (" …" if len(skipped) > 20 else ""))
    if not images:
        raise VaelabError(f"no image in {folder} decodes; it needs PNG, JPEG or WebP files")
    return {"images": np.stack(images), "labels": np.asarray(labels, dtype=np.int64)}


def _test_count(count: int) -> int:
    return max(1, round(count * TEST_SHARE))


def existing_folder(path: str | Path) -> Path:
    """The folder of `folder:PATH` (with ~ expanded); one that does not exist is a one-line error."""
    if not str(path).strip():  # `folder:` alone would read the current folder, which the user did not name
        raise VaelabError("folder: needs the path of a folder of images after it, e.g. folder:~/pictures")
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise VaelabError(f"{folder} is not a folder; pass folder:PATH with an existing folder of images")
    return folder


def shape(size: int | None, channels: int | None) -> tuple[int, int, int]:
    """(channels, size, size) with the defaults: 64 pixels, RGB."""
    return (channels or 3, size or DEFAULT_SIZE, size or DEFAULT_SIZE)


def read_folder(description: DatasetDescription, split: str, root: Path | None = None, log=print):
    folder = existing_folder(description.name[len(PREFIX):].split("?")[0])
    files = image_files(folder)
    if not files:
        raise VaelabError(f"{folder} holds no PNG, JPEG or WebP files")
    channels, size, _ = description.shape
    manifest = {"files": file_manifest(folder, files), "shape": description.shape}
    arrays = cached_arrays(dataset_dir(description, root), manifest,
                           lambda: _decode(folder, files, size, channels, description.class_names, log), log)
    count = arrays["labels"].shape[0]
    if count < 10:
        raise VaelabError(f"{folder} has {count} decodable images; a dataset needs at least 10 (train and test)")
    in_test = np.zeros(count, dtype=bool)
    in_test[np.random.default_rng(SPLIT_SEED).permutation(count)[: _test_count(count)]] = True
    chosen = in_test if split == "test" else ~in_test
    return np.asarray(arrays["images"])[chosen], np.asarray(arrays["labels"])[chosen]


def folder_description(name: str, path: str, size: int | None, channels: int | None) -> DatasetDescription:
    """The description of `folder:PATH` at `size` (default 64) with `channels` (3, or 1 for grey)."""
    folder = existing_folder(path)
    files = image_files(folder)
    return DatasetDescription(
        name=name,
        shape=shape(size, channels),
        class_names=_classes(folder, files),
        reader=read_folder,
        default_likelihood="logistic",
        default_input_mode="intensities",
        default_val_size=0.1,
        train_images=len(files) - _test_count(len(files)),
        attributes=colour.GREY_MEASURERS if channels == 1 else colour.MEASURERS,
    )
