"""Generation quality as numbers. Sharpness: the blur the seed mentions, measured."""

from __future__ import annotations

import torch


def sharpness(images: torch.Tensor) -> float:
    """Mean gradient magnitude of `[N, C, H, W]` images in [0, 1] (central differences): lower = blurrier.
    Compare a model's samples with real test images of the same dataset."""
    images = images.float()
    dx = images[..., :, 2:] - images[..., :, :-2]
    dy = images[..., 2:, :] - images[..., :-2, :]
    magnitude = torch.sqrt(dx[..., 1:-1, :].pow(2) + dy[..., :, 1:-1].pow(2)) / 2.0
    return magnitude.mean().item()
