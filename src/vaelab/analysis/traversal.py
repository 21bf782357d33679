"""Latent traversals: decode one base code with a single dimension swept across the prior.

A row of the picture is one dimension; its columns set that dimension to evenly spaced values from −r to +r
prior standard deviations (the prior is N(0, I), so σ = 1), in increasing order, while every other dimension keeps
the base code's value. The base code is the prior mean (all zeros) or the posterior mean of one test image.

A conditional run decodes every frame as one class: the base image's own label, or the class asked for (a
traversal from the prior needs one). Its z holds the style, so the rows show style factors written as that class.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from vaelab.config import DataConfig
from vaelab.data.datasets import ImageSet, iterate_batches, load_split, prepare_inputs
from vaelab.errors import VaelabError
from vaelab.evaluation.evaluate import EVAL_SEED
from vaelab.evaluation.latents import active_units, dimensions_by_kl
from vaelab.images import DISPLAY_SCALE, make_grid, upscale
from vaelab.io import atomic_write
from vaelab.models.base import EncodingModel, GenerativeModel, kl_per_dimension, posterior_moments
from vaelab.models.registry import capabilities, require_codes_of_images, require_encoder
from vaelab.rundir import EVAL, load_model, read_artefact_if_present, read_config

KL_ESTIMATE_IMAGES = 2000  # test images used for KL per dimension when the run has no eval.json
DECODE_BATCH_SIZE = 2000  # codes per decoder call: bounds memory for large traversals
INVERT_BATCH_SIZE = 500  # images per DDIM inversion
GRID_PADDING = 2  # make_grid's default, needed to place the row labels
GIF_FRAME_MS = 80


@dataclass(frozen=True)
class LatentUsage:
    """How much each latent dimension is used: mean KL in nats, and whether it is an active unit."""

    kl_per_dim: list[float] | None  # None: a family without an encoder
    active: list[bool]
    source: str  # where the numbers come from, to print beside them


@dataclass(frozen=True)
class Traversal:
    images: torch.Tensor  # [dims, steps, C, H, W] in [0, 1]
    dims: list[int]  # the latent dimension of each row
    values: torch.Tensor  # [steps], increasing: the value each column sets
    usage: LatentUsage
    base: str  # "prior" or "test:INDEX"
    label: int | None = None  # the class every frame is decoded as (conditional runs only)


# --- test images and their codes -------------------------------------------------------------------------------


def load_test_inputs(data: DataConfig) -> tuple[ImageSet, torch.Tensor]:
    """The test split, and all of it as the model sees it in evaluation (the same fixed binarization, so a test
    image has the same code whichever analysis asks for it)."""
    test = load_split(data.dataset, "test")
    return test, prepare_inputs(test.images, data.input_mode, EVAL_SEED)


BASE_PRIOR = "prior (the prior's mode)"  # the other form of --base, for its error message


def parse_test_reference(spec: str, what: str, test_count: int, others: tuple[str, ...] = ()) -> int:
    """`test:INDEX` → INDEX, checked against the size of the test split; `what` names the option in errors, and
    `others` the other forms it accepts (e.g. "random:SEED (…)"), so that the message lists every one."""
    prefix, _, number = spec.partition(":")
    if prefix != "test" or not number.isdecimal():
        forms = [f"test:INDEX (INDEX a test image number from 0 to {test_count - 1})", *others]
        raise VaelabError(f"{what} {spec!r} is not valid; write {' or '.join(forms)}")
    index = int(number)
    if index >= test_count:
        raise VaelabError(
            f"{what} {spec!r} is out of range; the test split has {test_count:,} images (INDEX 0 to {test_count - 1})"
        )
    return index


def image_codes(
    model: EncodingModel, inputs: torch.Tensor, labels: torch.Tensor | None = None, what: str = "a test image's code"
) -> torch.Tensor:
    """The code of each image `[N, D]`, on the CPU: its posterior mean (a family with an encoder) or its
    deterministic inversion (ddpm: DDIM run backwards); a GAN has neither, a one-line error naming `what`."""
    require_codes_of_images(model, what)
    if capabilities(model).encoder:
        return posterior_moments(model, inputs, labels)[0]
    return torch.cat([model.invert(batch).cpu() for batch in inputs.split(INVERT_BATCH_SIZE)])


def prior_marginals(model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """The prior's mean and standard deviation per dimension, `[D]` each: a learned prior's (the VampPrior's),
    else N(0, I)'s."""
    marginals = getattr(model, "prior_marginals", None)
    return marginals() if marginals is not None else (torch.zeros(model.latent_dim), torch.ones(model.latent_dim))


def base_code(
    model: EncodingModel, base: str, inputs: torch.Tensor, labels: torch.Tensor | None = None
) -> torch.Tensor:
    """The code `[D]` a traversal starts from: the prior's mode (`prior`: 0 for N(0, I)) or a test image's
    posterior mean (`test:INDEX`, an index into the prepared test inputs, whose `labels` a conditional model
    needs)."""
    if base == "prior":
        mode = getattr(model, "prior_mode", None)  # a learned prior (VampPrior); every other code is N(0, I)'s
        return mode() if mode is not None else torch.zeros(model.latent_dim)
    if not base.startswith("test:"):
        raise VaelabError(
            f"base {base!r} is not valid; use prior or test:INDEX (INDEX from 0 to {inputs.shape[0] - 1})"
        )
    index = parse_test_reference(base, "base", inputs.shape[0], (BASE_PRIOR,))
    return image_codes(model, inputs[index : index + 1], None if labels is None else labels[index : index + 1],
                       "a traversal from a test image")[0]


# --- which dimensions ------------------------------------------------------------------------------------------


def usage_from_posteriors(mu: torch.Tensor, logvar: torch.Tensor, source: str) -> LatentUsage:
    kl = kl_per_dimension(mu, logvar).mean(dim=0)
    return LatentUsage(kl.tolist(), active_units(mu).tolist(), source)


def latent_usage(
    run_dir: str | Path, model: EncodingModel, inputs: torch.Tensor, labels: torch.Tensor | None = None
) -> LatentUsage:
    """KL per dimension and active units from the run's eval.json (the whole test split, as of the last
    `vaelab eval`), or else computed on the first KL_ESTIMATE_IMAGES of the prepared test inputs. A family without
    an encoder has no KL: every dimension counts as used, in order."""
    if not capabilities(model).encoder:
        return LatentUsage(None, [True] * model.latent_dim, f"a {model.config.family} has no encoder, so no KL")
    result = read_artefact_if_present(run_dir, EVAL)
    if isinstance(result, dict):
        kl = result.get("kl_per_dim")
        if isinstance(kl, list) and len(kl) == model.latent_dim and "active_dims" in result:
            active_dims = set(result["active_dims"])
            return LatentUsage(kl, [d in active_dims for d in range(model.latent_dim)], str(Path(run_dir) / EVAL))
    count = min(KL_ESTIMATE_IMAGES, inputs.shape[0])
    moments = posterior_moments(model, inputs[:count], None if labels is None else labels[:count])
    return usage_from_posteriors(*moments, f"first {count:,} test images")


def select_dimensions(spec: str, kl_per_dim: Sequence[float] | None, latent_dim: int | None = None) -> list[int]:
    """`auto` → every dimension, largest KL first (in order when there is no KL: `kl_per_dim` None, `latent_dim`
    given); `0,3,7` → those dimensions in that order (each in range, none twice)."""
    latent_dim = len(kl_per_dim) if kl_per_dim is not None else latent_dim
    if spec.strip() == "auto":
        return dimensions_by_kl(list(kl_per_dim)) if kl_per_dim is not None else list(range(latent_dim))
    try:
        dims = [int(part) for part in spec.split(",")]
    except ValueError:
        raise VaelabError(
            f"dims {spec!r} is not valid; use auto or dimension numbers separated by commas, such as 0,3,7"
        ) from None
    outside = [d for d in dims if not 0 <= d < latent_dim]
    if outside:
        raise VaelabError(
            f"dims {spec!r}: dimension {outside[0]} does not exist; this model has dimensions 0 to {latent_dim - 1}"
        )
    repeated = sorted({d for d in dims if dims.count(d) > 1})
    if repeated:
        raise VaelabError(f"dims {spec!r} lists dimension {repeated[0]} more than once; list each dimension once")
    return dims


# --- traversing ------------------------------------------------------------------------------------------------


MAX_RADIUS = 100.0  # prior standard deviations; far beyond anything the decoder saw in training
MAX_STEPS = 1000  # frames per traversal or interpolation


def traversal_values(radius: float, steps: int) -> torch.Tensor:
    """`steps` evenly spaced values from −radius to +radius, increasing."""
    if not (math.isfinite(radius) and 0 < radius <= MAX_RADIUS):
        raise VaelabError(f"range must be a number of standard deviations in (0, {MAX_RADIUS}] (got {radius})")
    if not 2 <= steps <= MAX_STEPS:
        raise VaelabError(f"steps must be between 2 and {MAX_STEPS} to go from −range to +range (got {steps})")
    return torch.linspace(-radius, radius, steps)


@torch.no_grad()
def decode_codes(model: GenerativeModel, codes: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """Mean images `[N, C, H, W]` of codes `[N, D]` (as classes `labels` `[N]` for a conditional model), decoded
    in batches, on the CPU."""
    batches = iterate_batches(codes.shape[0], DECODE_BATCH_SIZE)
    return torch.cat([
        model.decode(codes[index].to(model.device), None if labels is None else labels[index]).cpu()
        for index in batches
    ])


def traverse_from_bases(
    model: GenerativeModel, base_codes: torch.Tensor, dim: int, values: torch.Tensor,
    base_labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Each base code `[B, D]` with dimension `dim` set to each value `[S]`, decoded (a conditional model: as the
    base's class, `base_labels` `[B]`): `[B, S, C, H, W]`. Values are in the prior's units: standard deviations
    from its mean in that dimension (for N(0, I), the values themselves)."""
    steps = values.shape[0]
    codes = base_codes[:, None, :].repeat(1, steps, 1)
    centre, scale = prior_marginals(model)
    codes[:, :, dim] = (centre[dim] + scale[dim] * values).to(codes.dtype)
    labels = None if base_labels is None else base_labels.repeat_interleave(steps)
    images = decode_codes(model, codes.flatten(end_dim=1), labels)
    return images.unflatten(0, (base_codes.shape[0], steps))


def traversal_images(
    model: GenerativeModel, code: torch.Tensor, dims: Sequence[int], values: torch.Tensor, label: int | None = None
) -> torch.Tensor:
    """One code `[D]` traversed along each of `dims` (decoded as class `label` if given):
    `[len(dims), S, C, H, W]`."""
    labels = None if label is None else torch.tensor([label])
    return torch.stack([traverse_from_bases(model, code[None], dim, values, labels)[0] for dim in dims])


def decoding_label(model: GenerativeModel, base: str, label: int | None, test_labels: torch.Tensor) -> int | None:
    """The class a traversal (or an interpolation starting at `base`) is decoded as: None for an unconditional
    model; else `label`, or the base test image's own label; from the prior without a class it is an error."""
    if not capabilities(model).conditional:
        if label is not None:
            raise VaelabError("--class applies to conditional runs only (cvae, m2); leave it out for this run")
        return None
    if label is not None:
        model.check_labels(torch.tensor([label]))
        return label
    if base == "prior":
        raise VaelabError(
            f"a conditional run decodes a traversal as one class; add --class C (0 to {model.classes - 1}) "
            "or start from a test image with --base test:INDEX"
        )
    return int(test_labels[parse_test_reference(base, "base", len(test_labels), (BASE_PRIOR,))])


def traverse_run(
    run_dir: str | Path, dims: str = "auto", radius: float = 3.0, steps: int = 11, base: str = "prior",
    label: int | None = None,
) -> Traversal:
    """Traverse the run's model: `dims` is `auto` (all, largest KL first) or a list like `0,3,7`; `base` is
    `prior` or `test:INDEX`; `label` the class of a conditional run (default: the base image's)."""
    values = traversal_values(radius, steps)
    model = load_model(run_dir)
    if capabilities(model).sampling == "diffusion":
        raise VaelabError(f"a {model.config.family}'s code is its whole starting noise ({model.latent_dim:,} values), "
                          "not factors: traverse needs a vae or gan run (compare them with `vaelab compare`)")
    if base != "prior":
        require_encoder(model, "a traversal from a test image (use --base prior)")
    test, inputs = load_test_inputs(read_config(run_dir).data)
    label = decoding_label(model, base, label, test.labels)
    code = base_code(model, base, inputs, test.labels)
    usage = latent_usage(run_dir, model, inputs, test.labels)
    chosen = select_dimensions(dims, usage.kl_per_dim, model.latent_dim)
    return Traversal(traversal_images(model, code, chosen, values, label), chosen, values, usage, base, label)


# --- pictures --------------------------------------------------------------------------------------------------


def row_label(dim: int, usage: LatentUsage) -> str:
    """`z3`, or `z3 off` for a dimension that is not an active unit."""
    return f"z{dim}" if usage.active[dim] else f"z{dim} off"


def add_row_labels(
    picture: np.ndarray, labels: Sequence[str], row_pitch: int, padding: int = GRID_PADDING,
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont | None = None,
) -> np.ndarray:
    """A white strip with one label per grid row, joined to the left of a grid made by `make_grid` (`font`: Pillow's
    default bitmap font, which has no Greek letters, unless given)."""
    font = font or ImageFont.load_default()
    mode = "L" if picture.ndim == 2 else "RGB"  # the strip takes the grid's colour mode
    white, black = (255, 0) if mode == "L" else ((255, 255, 255), (0, 0, 0))
    text_width = max(ImageDraw.Draw(Image.new("L", (1, 1))).textlength(label, font) for label in labels)
    strip = Image.new(mode, (math.ceil(text_width) + 2 * padding, picture.shape[0]), white)
    draw = ImageDraw.Draw(strip)
    for row, label in enumerate(labels):
        centre = padding + row * row_pitch + (row_pitch - padding) / 2
        draw.text((padding, centre), label, fill=black, font=font, anchor="lm")
    return np.concatenate([np.asarray(strip), picture], axis=1)


def traversal_grid(traversal: Traversal, labels: bool = True) -> np.ndarray:
    """One row per dimension, columns −r → +r; labelled `z{dim}` (`off` for inactive units) when `labels`."""
    _, steps, _, height, _ = traversal.images.shape
    picture = make_grid(traversal.images.flatten(end_dim=1), columns=steps, padding=GRID_PADDING)
    if not labels:
        return picture
    return add_row_labels(picture, [row_label(d, traversal.usage) for d in traversal.dims], height + GRID_PADDING)


def save_gif(path: str | Path, frames: Sequence[Image.Image], frame_ms: int = GIF_FRAME_MS) -> Path:
    """An endlessly looping GIF of the frames, written atomically."""
    path = Path(path)
    first, *rest = frames
    atomic_write(
        path, lambda tmp: first.save(tmp, format="GIF", save_all=True, append_images=rest, duration=frame_ms, loop=0)
    )
    return path


def save_traversal_gifs(traversal: Traversal, folder: str | Path, scale: int = DISPLAY_SCALE) -> list[Path]:
    """One looping GIF per dimension, `dim{d:02d}.gif`: frames −r → +r → −r, upscaled nearest-neighbour."""
    paths = []
    for dim, row in zip(traversal.dims, traversal.images, strict=True):
        frames = [upscale(make_grid(image[None], columns=1, padding=0), scale) for image in row]
        # Out and back without repeating the turning frames, so the loop does not pause at ±r.
        paths.append(save_gif(Path(folder) / f"dim{dim:02d}.gif", frames + frames[-2:0:-1]))
    return paths
