"""Data layer: verified files → in-memory tensors."""

from vaelab.data.augment import random_flip, random_rotation, random_translation, rotate
from vaelab.data.datasets import (
    CLASS_NAMES,
    INPUT_MODES,
    ImageSet,
    balanced_label_subset,
    binarize,
    fixed_binarization,
    iterate_batches,
    load_split,
    prepare_inputs,
    to_float,
)
from vaelab.data.sources import DATASETS, data_root, dataset_spec, fetch

__all__ = [
    "CLASS_NAMES", "DATASETS", "INPUT_MODES", "ImageSet", "balanced_label_subset", "binarize", "data_root",
    "dataset_spec", "fetch", "fixed_binarization", "iterate_batches", "load_split", "prepare_inputs",
    "random_flip", "random_rotation", "random_translation", "rotate", "to_float",
]
