"""The datasets vaelab knows: name → description. A new dataset is one file with its `DatasetDescription` and one
line in `DATASETS` below (or, from outside the package, one call of `register_dataset`).

Two kinds of dataset take parameters, written into the name so that the name alone says what the images are:
`folder:PATH?size=64&channels=3` (any folder of images; both parameters always written) and `celeba?size=128`
(the size only where it is not the default). `dataset_name` builds that canonical name from the `--dataset`,
`--image-size` and `--image-channels` options.
"""

from __future__ import annotations

import difflib
from functools import lru_cache
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote

from vaelab.data.celeba import celeba_description, remember_folder
from vaelab.data.description import DatasetDescription, Log
from vaelab.data.emoji import EMOJI
from vaelab.data.fashion_mnist import FASHION_MNIST
from vaelab.data.image_folder import PREFIX as FOLDER_PREFIX
from vaelab.data.image_folder import existing_folder, folder_description
from vaelab.data.image_folder import shape as folder_shape
from vaelab.data.mnist import MNIST
from vaelab.data.sources import fetch_files
from vaelab.errors import VaelabError

DATASETS: dict[str, DatasetDescription] = {
    description.name: description for description in (MNIST, FASHION_MNIST, EMOJI)
}
# Datasets whose images are resized at reading: name → (description at a size, or at the default for None).
SIZED = {"celeba": celeba_description}
KNOWN_TEXT = ", ".join([*DATASETS, *SIZED, "folder:PATH"])


def _parameters(query: str, name: str) -> tuple[int | None, int | None]:
    values = parse_qs(query, strict_parsing=bool(query)) if query else {}
    unknown = set(values) - {"size", "channels"}
    if unknown:
        raise VaelabError(f"dataset '{name}': unknown parameter(s) {sorted(unknown)}; allowed: size, channels")
    try:
        size, channels = (int(values[key][-1]) if key in values else None for key in ("size", "channels"))
    except ValueError:
        raise VaelabError(f"dataset '{name}': size and channels must be whole numbers") from None
    if size is not None and not 8 <= size <= 1024:
        raise VaelabError(f"dataset '{name}': image size {size} must be between 8 and 1024 pixels")
    if channels not in (None, 1, 3):
        raise VaelabError(f"dataset '{name}': channels must be 1 (grey) or 3 (RGB), not {channels}")
    return size, channels


def dataset_name(name: str, image_size: int | None = None, image_channels: int | None = None) -> str:
    """The canonical name of a dataset at a size and channel count (None: as the name already says, or the
    dataset's default): `folder:~/a` → `folder:/home/u/a?size=64&channels=3`, `celeba` at 128 → `celeba?size=128`."""
    base, _, query = name.partition("?")
    size, channels = _parameters(query, name)
    size, channels = image_size or size, image_channels or channels
    if base.startswith(FOLDER_PREFIX):
        path = existing_folder(unquote(base[len(FOLDER_PREFIX):])).resolve()  # not listed: only named
        channels, size, _ = folder_shape(size, channels)
        return f"{FOLDER_PREFIX}{quote(str(path), safe='/:')}?size={size}&channels={channels}"
    if base in SIZED:
        if channels not in (None, 3):
            raise VaelabError(f"{base} images are RGB; --image-channels does not apply")
        default = SIZED[base](base, None).shape[1]
        return base if size in (None, default) else f"{base}?size={size}"
    if base in DATASETS:
        shape = DATASETS[base].shape
        options = (("--image-size", size, shape[1]), ("--image-channels", channels, shape[0]))
        given = [flag for flag, value, own in options if value not in (None, own)]  # name only what was given
        if given:
            raise VaelabError(f"{base} images are {'×'.join(map(str, shape))} and are not resized; leave out "
                              f"{' and '.join(given)}")
        return base
    raise unknown_dataset(name)


SHORT_NAMES = {"fmnist": "fashion-mnist", "fashion": "fashion-mnist"}  # names people use for a known dataset


def unknown_dataset(name: str) -> VaelabError:
    """The one-line error for a name that is no dataset, with the likely meant one: another spelling of a known
    name (`MNIST`, `fashion_mnist`), or `folder:NAME` for a name that is a folder of this machine."""
    def plain(text: str) -> str:  # MNIST, Fashion_MNIST, celeb-a: the same name for a person
        return "".join(c for c in text.lower() if c.isalnum())

    known = {plain(known_name): known_name for known_name in [*DATASETS, *SIZED]}
    base = name.partition("?")[0]
    meant = known.get(plain(base)) or SHORT_NAMES.get(plain(base))
    close = difflib.get_close_matches(plain(base), known, n=1, cutoff=0.75)
    if meant or close:
        hint = f" (did you mean {meant or known[close[0]]}?)"
    elif base and Path(base).expanduser().is_dir():
        hint = f" (for the images in that folder, write folder:{base})"
    else:
        hint = ""
    return VaelabError(f"unknown dataset '{name}'{hint}; choose one of: {KNOWN_TEXT}")


def describe(name: str) -> DatasetDescription:
    """The description of a dataset; an unknown name is a one-line error listing the known ones."""
    if name in DATASETS:
        return DATASETS[name]
    return _parametrised(name)


@lru_cache(maxsize=64)
def _parametrised(name: str) -> DatasetDescription:
    base, _, query = name.partition("?")
    size, channels = _parameters(query, name)
    if base.startswith(FOLDER_PREFIX):
        return folder_description(name, unquote(base[len(FOLDER_PREFIX):]), size, channels)
    if base in SIZED and channels in (None, 3):
        return SIZED[base](name, size)
    raise unknown_dataset(name)


def cache_name(name: str) -> str:
    """The one file-safe name under which everything cached per dataset is kept (data, reference classifier, FID
    statistics): that of the dataset's canonical name, so `folder:~/a` and `folder:/home/u/a?size=64&channels=3`
    share one cache (see `DatasetDescription.cache_name`: plain names such as `mnist` stay as they are)."""
    return describe(canonical_name(name)).cache_name


def canonical_name(name: str) -> str:
    """The dataset's canonical name (`dataset_name` with the sizes the name already says); a registered name as
    it is."""
    return name if name in DATASETS else dataset_name(name)


def register_dataset(description: DatasetDescription) -> DatasetDescription:
    """Add a dataset defined outside vaelab (a plug-in, a test); a name already taken is an error."""
    if description.name in DATASETS:
        raise VaelabError(f"a dataset named '{description.name}' is already registered")
    DATASETS[description.name] = description
    return description


def use_data_dir(name: str, data_dir: str | Path | None, root: Path | None = None) -> None:
    """Remember the folder of a dataset the user keeps (`--data-dir`: CelebA), so every later command finds it."""
    if data_dir is None:
        return
    if name.partition("?")[0] != "celeba":
        raise VaelabError(f"--data-dir applies to celeba (your own copy), not to {name}; leave it out")
    remember_folder(data_dir, root)


def fetch(name: str, root: Path | None = None, log: Log = print, data_dir: str | Path | None = None) -> Path:
    """Fill the cache with every file of dataset `name`, each verified, and decode datasets of image files into
    their cached arrays; returns the dataset's cache folder."""
    use_data_dir(name, data_dir, root)
    description = describe(name)
    folder = fetch_files(description, root, log)
    for split in description.splits:  # readable too; image files are decoded once here into the cache
        description.reader(description, split, root)
    return folder
