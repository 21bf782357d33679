"""Pictures of a conditional VAE: samples of one class, the class × style grid, and restyling a test image.

In a conditional VAE the label says what is drawn and z how: decoding one z as every class writes one style as
every digit (the style/content analogy of Kingma et al. 2014, figure 1). `class_grid` shows that with one row
per class and one z per column; `restyle` takes the z of a real test image (encoded with its own label), and
`style_traversal` sweeps one dimension of z while writing every class, so a style factor can be seen (and
measured) to be the same for every class.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vaelab.analysis.traversal import load_test_inputs, parse_test_reference, traverse_from_bases
from vaelab.evaluation.conditional_accuracy import class_samples, conditional_accuracy
from vaelab.images import make_grid
from vaelab.models.base import EncodingModel, GenerativeModel
from vaelab.models.registry import require_conditional
from vaelab.rundir import load_model, read_config

__all__ = [
    "class_grid", "class_grid_picture", "class_samples", "conditional_accuracy", "restyle", "restyle_run",
    "restyle_strip", "style_traversal",
]


@torch.no_grad()
def class_grid(model: GenerativeModel, columns: int, seed: int = 0) -> torch.Tensor:
    """Images `[classes, columns, C, H, W]`: row c is class c, and every row decodes the same `columns` draws
    z ~ p(z), so a column is one style written as every class."""
    require_conditional(model, "the class grid")
    z = model.sample_prior(columns, torch.Generator().manual_seed(seed))
    rows = [model.decode(z, torch.full((columns,), label, dtype=torch.long)).cpu() for label in range(model.classes)]
    return torch.stack(rows)


@torch.no_grad()
def restyle(model: EncodingModel, inputs: torch.Tensor, labels: torch.Tensor, index: int) -> torch.Tensor:
    """The style of `inputs[index]` written as every class: its posterior mean under its own label, decoded with
    each label in turn. Returns `[classes, C, H, W]`."""
    require_conditional(model, "restyle")
    x = inputs[index : index + 1].to(model.device)
    mu, _ = model.encode(x, labels[index : index + 1])
    return model.decode(mu.expand(model.classes, -1), torch.arange(model.classes)).cpu()


@torch.no_grad()
def style_traversal(
    model: GenerativeModel, dim: int, values: torch.Tensor, code: torch.Tensor | None = None
) -> torch.Tensor:
    """`code` `[D]` (default the prior mean) with dimension `dim` set to each of `values` `[S]`, decoded as every
    class: `[classes, S, C, H, W]`, a row per class."""
    require_conditional(model, "a style traversal")
    code = torch.zeros(model.latent_dim) if code is None else code
    return traverse_from_bases(model, code.expand(model.classes, -1), dim, values, torch.arange(model.classes))


def restyle_run(run_dir: str | Path, source: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    """`vaelab restyle RUN --from test:INDEX`: the test image as the model sees it `[1, C, H, W]`, its label's
    restyling `[classes, C, H, W]`, and its label."""
    model = load_model(run_dir)
    require_conditional(model, "restyle")
    test, inputs = load_test_inputs(read_config(run_dir).data)
    index = parse_test_reference(source, "--from", len(test))
    return inputs[index : index + 1], restyle(model, inputs, test.labels, index), int(test.labels[index])


def restyle_strip(original: torch.Tensor, restyled: torch.Tensor) -> np.ndarray:
    """One row: the original image, then its style as class 0, 1, …"""
    return make_grid(torch.cat([original, restyled]), columns=len(restyled) + 1)


def class_grid_picture(grid: torch.Tensor) -> np.ndarray:
    """`[classes, columns, C, H, W]` → one picture, a row per class."""
    classes, columns = grid.shape[:2]
    return make_grid(grid.reshape(classes * columns, *grid.shape[2:]), columns=columns)
