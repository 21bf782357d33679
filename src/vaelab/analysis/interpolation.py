"""Interpolation between two test images, in latent space and — for contrast — in pixel space.

The latent path runs between the posterior means of the two images and is decoded frame by frame; the pixel
path is the plain cross-fade of the two images' intensities. A model with a useful latent space turns one image
into the other through images that look like data, where the cross-fade shows two faint images on top of each
other.

A conditional run encodes each image with its own label and decodes the whole path as one class (`label`, by
default the first image's): it interpolates the style while the class stays put. A ddpm's codes are the DDIM
inversions of the two images (slerp suits them: they are Gaussian noise); a GAN has no code for a given image, so
its ends are random codes (`random:SEED`), which any family accepts, and its cross-fade blends their images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vaelab.analysis.traversal import (
    GRID_PADDING,
    MAX_STEPS,
    add_row_labels,
    decode_codes,
    decoding_label,
    image_codes,
    load_test_inputs,
    parse_test_reference,
)
from vaelab.data.datasets import to_float
from vaelab.errors import VaelabError
from vaelab.images import make_grid
from vaelab.models.registry import Capabilities
from vaelab.rundir import load_model, read_config

MODES = ("linear", "slerp")
TEST_PAIR = ("test:0", "test:1")  # the ends of the interpolation an overview (report, compare) shows
RANDOM_PAIR = ("random:1", "random:2")  # … for a GAN, which has no code for a test image
RANDOM_FORM = "random:SEED (a code drawn from the prior, SEED a whole number)"  # for the message of a wrong end
PARALLEL_TOLERANCE = 1e-6  # below this sine of the angle between the codes, slerp has no plane to rotate in


@dataclass(frozen=True)
class Interpolation:
    codes: torch.Tensor  # [S, D], codes[0] and codes[-1] are the codes of the two ends
    decoded: torch.Tensor  # [S, C, H, W]: the decoded latent path
    crossfade: torch.Tensor  # [S, C, H, W]: the pixel-space path between the two ends' images
    ends: tuple[str, str]  # test:INDEX or random:SEED
    mode: str
    label: int | None = None  # the class every frame is decoded as (conditional runs only)


def check_arguments(steps: int, mode: str) -> None:
    if not 2 <= steps <= MAX_STEPS:
        raise VaelabError(f"steps must be between 2 and {MAX_STEPS} to include both ends (got {steps})")
    if mode not in MODES:
        raise VaelabError(f"mode {mode!r} is not known; use one of: {', '.join(MODES)}")


def interpolation_weights(steps: int) -> torch.Tensor:
    """`steps` evenly spaced weights from 0 to 1, both ends included (float64)."""
    return torch.linspace(0.0, 1.0, steps, dtype=torch.float64)


def lerp(start: torch.Tensor, end: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Points on the straight line from `start` to `end` (same shape `[...]`) at `weights` `[S]`: `[S, ...]`."""
    w = weights.reshape(-1, *([1] * start.ndim)).to(torch.float64)
    return (1.0 - w) * start.double() + w * end.double()


def slerp(start: torch.Tensor, end: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of codes `[D]` at `weights` `[S]`: `[S, D]` (float64).

    The direction turns along the great circle from `start` to `end` at constant angular speed while the norm
    changes linearly from |start| to |end|, so every point's norm lies between the two endpoint norms. (The
    textbook formula applied to vectors of different norms can overshoot both; a straight line dips towards the
    origin, where the prior puts almost no codes in high dimension.) When the codes are parallel, antiparallel or
    one is zero there is no unique great circle, and the straight line is returned.
    """
    a, b = start.double(), end.double()
    norm_a, norm_b = a.norm(), b.norm()
    if norm_a == 0 or norm_b == 0:
        return lerp(a, b, weights)
    unit_a, unit_b = a / norm_a, b / norm_b
    angle = torch.arccos(torch.clamp(unit_a @ unit_b, -1.0, 1.0))
    if torch.sin(angle) < PARALLEL_TOLERANCE:
        return lerp(a, b, weights)
    w = weights.to(torch.float64)[:, None]
    directions = (torch.sin((1.0 - w) * angle) * unit_a + torch.sin(w * angle) * unit_b) / torch.sin(angle)
    return directions * ((1.0 - w) * norm_a + w * norm_b)


def interpolate_codes(start: torch.Tensor, end: torch.Tensor, steps: int, mode: str = "linear") -> torch.Tensor:
    """`steps` codes `[steps, D]` from `start` to `end`, both included, in `linear` or `slerp` mode."""
    check_arguments(steps, mode)
    path = (lerp if mode == "linear" else slerp)(start, end, interpolation_weights(steps)).to(start.dtype)
    # The ends are the given codes themselves, not a float64 round trip of them.
    path[0], path[-1] = start, end
    return path


def crossfade(start_image: torch.Tensor, end_image: torch.Tensor, steps: int) -> torch.Tensor:
    """The pixel-space blend `(1 − w)·start + w·end` for `steps` weights from 0 to 1: `[steps, ...]`."""
    return lerp(start_image, end_image, interpolation_weights(steps)).to(start_image.dtype)


def random_code(spec: str, what: str, model: torch.nn.Module) -> torch.Tensor | None:
    """`random:SEED` → a code `[D]` drawn from the model's prior with that seed (on the CPU); anything else →
    None."""
    prefix, _, seed = spec.partition(":")
    if prefix != "random":
        return None
    if not seed.isdecimal():
        raise VaelabError(f"--{what} {spec!r} is not valid; write random:SEED with SEED a whole number")
    return model.sample_prior(1, torch.Generator().manual_seed(int(seed)))[0].cpu()


def interpolation_ends(can: Capabilities) -> tuple[str, str, str]:
    """The two ends and the mode of a family's interpolation row: test images for a family that has codes for
    them (slerp for a ddpm, whose codes are Gaussian noise), random codes for a GAN."""
    if can.encoder:
        return (*TEST_PAIR, "linear")
    if can.inversion:
        return (*TEST_PAIR, "slerp")
    return (*RANDOM_PAIR, "linear")


def interpolate_run(
    run_dir: str | Path, start: str, end: str, steps: int = 10, mode: str = "linear", label: int | None = None
) -> Interpolation:
    """Interpolate between two ends, each a test image (`test:INDEX`) or a random code (`random:SEED`), in latent
    space (decoded) and in pixel space; a conditional run decodes the path as class `label` (default: the first
    image's class)."""
    check_arguments(steps, mode)  # before any loading
    model = load_model(run_dir)
    test, inputs = load_test_inputs(read_config(run_dir).data)
    codes, images = [], []
    for spec, what in ((start, "from"), (end, "to")):
        code = random_code(spec, what, model)
        if code is None:
            index = parse_test_reference(spec, f"--{what}", len(test), (RANDOM_FORM,))
            code = image_codes(model, inputs[index : index + 1], test.labels[index : index + 1],
                               f"interpolation between test images (use --{what} random:SEED)")[0]
            # The cross-fade blends the real intensities, not the binarized inputs some models are fed.
            images.append(to_float(test.images[index]))
        else:
            images.append(None)
        codes.append(code)
    label = decoding_label(model, start if start.startswith("test:") else "prior", label, test.labels)
    labels = None if label is None else torch.full((steps,), label)
    path = interpolate_codes(codes[0], codes[1], steps, mode)
    decoded = decode_codes(model, path, labels)
    images = [decoded[0] if images[0] is None else images[0], decoded[-1] if images[1] is None else images[1]]
    return Interpolation(path, decoded, crossfade(images[0], images[1], steps), (start, end), mode, label)


def interpolation_grid(interpolation: Interpolation, labels: bool = True) -> np.ndarray:
    """The decoded latent path in the top row, the pixel cross-fade below it; rows labelled when `labels`."""
    steps, _, height, _ = interpolation.decoded.shape
    rows = torch.cat([interpolation.decoded, interpolation.crossfade])
    picture = make_grid(rows, columns=steps, padding=GRID_PADDING)
    if not labels:
        return picture
    return add_row_labels(picture, [interpolation.mode, "pixels"], height + GRID_PADDING)

