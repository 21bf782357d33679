"""Conditional accuracy: does a conditional model draw the class it is asked for?

Samples are generated for each class c from prior draws z ~ N(0, I) and judged by vaelab's own reference
classifier (which never saw the VAE); the accuracy for c is the fraction it assigns to c. The classifier's
accuracy on real test images is reported beside it: the judge's own error rate bounds what can be read from it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vaelab.data.datasets import iterate_batches
from vaelab.errors import VaelabError
from vaelab.evaluation.reference_classifier import predict_probabilities
from vaelab.models.base import GenerativeModel
from vaelab.models.registry import require_conditional

SAMPLE_BATCH_SIZE = 1000


@torch.no_grad()
def class_samples(model: GenerativeModel, label: int, n: int, seed: int = 0) -> torch.Tensor:
    """`n` images `[n, C, H, W]` generated as class `label` from z ~ p(z), reproducible by seed, on the CPU."""
    require_conditional(model, "class samples")
    model.check_labels(torch.tensor([label]))  # an unknown class is an error before any work
    generator = torch.Generator().manual_seed(seed)
    z = model.sample_prior(n, generator).cpu()
    labels = torch.full((n,), label, dtype=torch.long)
    batches = iterate_batches(n, SAMPLE_BATCH_SIZE)
    return torch.cat([model.decode(z[i].to(model.device), labels[i]).cpu() for i in batches])


@torch.no_grad()
def conditional_accuracy(
    model: GenerativeModel, classifier: nn.Module, per_class_n: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Per-class and overall fraction of `per_class_n` samples per class that `classifier` assigns to the class
    asked for. Class c draws its z with seed `seed + c`, so each class's samples do not depend on the others."""
    require_conditional(model, "conditional accuracy")
    if per_class_n < 1:
        raise VaelabError(f"samples per class must be at least 1 (got {per_class_n})")
    per_class = []
    for label in range(model.classes):
        predicted = predict_probabilities(classifier, class_samples(model, label, per_class_n, seed + label))
        per_class.append((predicted.argmax(dim=1) == label).float().mean().item())
    return {
        "per_class": per_class,
        "overall": sum(per_class) / len(per_class),
        "samples_per_class": per_class_n,
        "seed": seed,
    }
