"""Data layer: dataset descriptions, verified files → in-memory tensors.

The names below are loaded on first use (PEP 562), so that reading a dataset's description (the command line's
help, the config) does not import torch.
"""

from importlib import import_module
from typing import Any

_HOMES = {
    "random_flip": "augment", "random_rotation": "augment", "random_translation": "augment", "rotate": "augment",
    "ImageSet": "datasets", "balanced_label_subset": "datasets", "binarize": "datasets",
    "fixed_binarization": "datasets", "iterate_batches": "datasets", "load_split": "datasets",
    "prepare_inputs": "datasets", "to_float": "datasets",
    "DATASETS": "catalog", "describe": "catalog", "fetch": "catalog", "register_dataset": "catalog",
    "DatasetDescription": "description", "Drawing": "description", "OfflineSource": "description",
    "data_root": "sources",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'vaelab.data' has no attribute '{name}'")
    return getattr(import_module(f"vaelab.data.{_HOMES[name]}"), name)
