"""The datasets vaelab knows: name → description. A new dataset is one file with its `DatasetDescription` and one
line in `DATASETS` below (or, from outside the package, one call of `register_dataset`)."""

from __future__ import annotations

from pathlib import Path

from vaelab.data.description import DatasetDescription, Log
from vaelab.data.fashion_mnist import FASHION_MNIST
from vaelab.data.mnist import MNIST
from vaelab.data.sources import fetch_files
from vaelab.errors import VaelabError

DATASETS: dict[str, DatasetDescription] = {description.name: description for description in (MNIST, FASHION_MNIST)}


def describe(name: str) -> DatasetDescription:
    """The description of a dataset; an unknown name is a one-line error listing the known ones."""
    if name not in DATASETS:
        raise VaelabError(f"unknown dataset '{name}'; choose one of: {', '.join(DATASETS)}")
    return DATASETS[name]


def register_dataset(description: DatasetDescription) -> DatasetDescription:
    """Add a dataset defined outside vaelab (a plug-in, a test); a name already taken is an error."""
    if description.name in DATASETS:
        raise VaelabError(f"a dataset named '{description.name}' is already registered")
    DATASETS[description.name] = description
    return description


def fetch(name: str, root: Path | None = None, log: Log = print) -> Path:
    """Fill the cache with every file of dataset `name`, each verified; returns the dataset's cache folder."""
    return fetch_files(describe(name), root, log)
