"""The baseline semi-supervised training must beat (the objective itself is `vaelab.models.semi_supervised`)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from vaelab.config import RunConfig
from vaelab.data.datasets import to_float
from vaelab.fitting import FitPlan, fit
from vaelab.models.registry import build_model


def train_labelled_only(
    config: RunConfig, images: torch.Tensor, labels: torch.Tensor, steps: int, device: str | torch.device = "cpu"
) -> nn.Module:
    """The same model's q(y|x), trained by cross-entropy on the labelled images alone (`images` uint8
    `[N, C, H, W]`, `labels` `[N]`, read as intensities like every q(y|x)) for `steps` Adam steps of
    `config.train.batch_size`, with the run's lr and seed. The VAE parts are never used."""
    torch.manual_seed(config.train.seed)
    model = build_model(config.model).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.lr)
    x_all, y_all = to_float(images).to(device), labels.to(device)
    batch_size = min(config.train.batch_size, len(y_all))
    plan = FitPlan(epochs=math.ceil(steps / (len(y_all) // batch_size)), batch_size=batch_size, lr=config.train.lr,
                   seed=config.train.seed + 1, drop_last=True, max_steps=steps)

    def loss(index: torch.Tensor) -> list[torch.Tensor]:
        index = index.to(device)
        return [F.cross_entropy(model.classify(x_all[index]), y_all[index])]

    fit([optimizer], loss, len(y_all), plan, what="the labelled-only baseline")
    return model.eval()
