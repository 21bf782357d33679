"""Random changes of images that keep their class, for what the classifier reads (`--head-shift`, `--head-flip`,
`--head-rotate`). Every draw is made on the CPU from the given generator, so a CPU generator serves any device and
a resumed run draws the same changes.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def random_translation(
    x: torch.Tensor, max_pixels: int, generator: torch.Generator | None = None, padding: str = "constant"
) -> torch.Tensor:
    """Each image of `x` `[N, C, H, W]` moved by its own whole-pixel offset in [−max_pixels, max_pixels] along each
    axis; what moves in is background: 0 (`padding="constant"`, dark digits' background), or the image's own edge
    pixels repeated (`"replicate"`, for pictures on a background of any colour, such as white)."""
    if max_pixels == 0:
        return x
    n, _, height, width = x.shape
    offsets = torch.randint(0, 2 * max_pixels + 1, (2, n), generator=generator).to(x.device)
    padded = F.pad(x, (max_pixels,) * 4, mode=padding)
    rows = offsets[0][:, None] + torch.arange(height, device=x.device)  # [N, H]: the padded rows each image keeps
    cols = offsets[1][:, None] + torch.arange(width, device=x.device)
    batch = torch.arange(n, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def random_flip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """`x` `[N, C, H, W]` with each image mirrored left–right by its own fair coin."""
    flipped = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device)
    return torch.where(flipped[:, None, None, None], x.flip(-1), x)


def rotate(x: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Each image of `x` `[N, C, H, W]` turned about its centre by its angle in `degrees` `[N]` (counter-clockwise),
    resampled bilinearly (so a binary image gains grey edges); what turns in is background (0)."""
    angles = torch.deg2rad(degrees.to(x.device, x.dtype))
    cos, sin, zero = angles.cos(), angles.sin(), torch.zeros_like(angles)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)  # [N, 2, 3]
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_rotation(x: torch.Tensor, max_degrees: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each image of `x` turned by its own angle, uniform in [−max_degrees, max_degrees] (see `rotate`)."""
    if max_degrees == 0:
        return x
    return rotate(x, (torch.rand(x.shape[0], generator=generator) * 2 - 1) * max_degrees)
