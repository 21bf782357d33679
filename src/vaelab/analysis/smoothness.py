"""How evenly a sequence of images changes, and how many of its frames look like real examples.

Pure functions on tensors: a sequence is `[S, ...]` (frames first), e.g. `[S, C, H, W]` in [0, 1].
"""

from __future__ import annotations

import torch
from torch import nn

from vaelab.errors import VaelabError
from vaelab.evaluation.reference_classifier import predict_probabilities

CONFIDENCE_THRESHOLD = 0.9


def _check_sequence(frames: torch.Tensor) -> None:
    if frames.ndim < 1 or frames.shape[0] < 2:
        raise VaelabError(f"a sequence needs at least 2 frames, got shape {list(frames.shape)}")


def step_distances(frames: torch.Tensor) -> torch.Tensor:
    """Pixel-space L2 distance between each pair of consecutive frames: `[S, ...]` → `[S - 1]`."""
    _check_sequence(frames)
    steps = frames[1:].double() - frames[:-1].double()
    return steps.flatten(start_dim=1).norm(dim=1)


def smoothness_ratio(frames: torch.Tensor) -> float:
    """Largest step over mean step between consecutive frames.

    1.0 when every step changes the picture by the same amount; large when one step holds most of the change
    (a jump). A sequence that does not change at all counts as perfectly even (1.0).
    """
    distances = step_distances(frames)
    mean_step = distances.mean().item()
    if mean_step == 0.0:
        return 1.0
    return distances.max().item() / mean_step


def confident_fraction(
    frames: torch.Tensor, classifier: nn.Module, threshold: float = CONFIDENCE_THRESHOLD
) -> float:
    """Fraction of frames `[S, C, H, W]` (in [0, 1]) that the classifier assigns to some class with a softmax
    probability of at least `threshold`: how many frames look like a clean example of one class."""
    if not 0.0 < threshold <= 1.0:
        raise VaelabError(f"confidence threshold must be in (0, 1], got {threshold}")
    if frames.shape[0] == 0:
        raise VaelabError("confident_fraction needs at least one frame")
    probabilities = predict_probabilities(classifier, frames)
    return (probabilities.max(dim=1).values >= threshold).double().mean().item()
