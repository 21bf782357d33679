"""Prior samples and reconstructions of a trained model, as image grids."""

from __future__ import annotations

import math

import numpy as np
import torch

from vaelab.analysis.traversal import decode_codes, image_codes
from vaelab.data.datasets import load_split, prepare_inputs
from vaelab.errors import VaelabError
from vaelab.evaluation.evaluate import EVAL_SEED
from vaelab.images import make_grid
from vaelab.models.base import EncodingModel, GenerativeModel
from vaelab.models.registry import capabilities


@torch.no_grad()
def prior_samples(model: GenerativeModel, n: int, seed: int = 0) -> torch.Tensor:
    """`n` images decoded from z ~ N(0, I), reproducible by seed."""
    return model.sample(n, generator=torch.Generator().manual_seed(seed)).cpu()


def sample_grid(images: torch.Tensor) -> np.ndarray:
    """Samples `[n, C, H, W]` in a square-ish grid."""
    return make_grid(images, columns=math.ceil(math.sqrt(len(images))))


@torch.no_grad()
def reconstruction_grid(
    model: EncodingModel, dataset: str, input_mode: str, n: int, start: int = 0, columns: int = 8
) -> np.ndarray:
    """Test images (as fed to the model) in one row, their reconstructions from the posterior mean (ddpm: DDIM
    from its DDIM inversion) in the row below, repeated until `n` images are shown."""
    test = load_split(dataset, "test")
    if not 0 <= start < len(test):
        raise VaelabError(f"--start must be a test image index from 0 to {len(test) - 1} (got {start})")
    x = prepare_inputs(test.images[start : start + n], input_mode, EVAL_SEED)  # as evaluation sees them
    if capabilities(model).encoder:
        reconstructions = model.reconstruct(x.to(model.device), test.labels[start : start + n]).cpu()
    else:
        reconstructions = decode_codes(model, image_codes(model, x, what="vaelab reconstruct"))
    rows = []
    for first in range(0, len(x), columns):
        rows += [x[first : first + columns], reconstructions[first : first + columns]]
        if len(rows[-1]) < columns:  # keep every row the same width
            filler = torch.ones(columns - len(rows[-1]), *x.shape[1:])
            rows[-2], rows[-1] = torch.cat([rows[-2], filler]), torch.cat([rows[-1], filler])
    return make_grid(torch.cat(rows), columns=columns)
