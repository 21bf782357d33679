"""The objective of the classifier kinds (vae-classifier, m2), with all training labels or only some.

All labels: each batch is labelled, loss per image = −ELBO(x, y) + w · CE(q(y|x), y).
Some labels (`--labels N`): each step takes one batch from the unlabelled rest and one from the N labelled images
(sampled by its own seeded generator, which the checkpoint stores, so a resumed run draws the same batches):

    loss = mean over unlabelled U(x) + mean over labelled [−ELBO(x, y) + w · CE]

U(x) is the plain VAE's −ELBO for vae-classifier, and M2's bound with y summed out under q(y|x) for m2.

The weight w: Kingma et al. 2014 add α · E_labelled[−log q(y|x)] to the bound summed over the training set, with
α = 0.1 · N_total. Drawing a labelled batch every step oversamples each labelled image by N_total / N; with both
batches averaged, the labelled image's cross-entropy then weighs w = α / N against its own −ELBO, as in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from vaelab.config import RunConfig
from vaelab.data import balanced_label_subset
from vaelab.models import VAE
from vaelab.models.classifier import LabelledBound, UnlabelledBound
from vaelab.training.schedules import kl_with_free_bits

PAPER_ALPHA_PER_IMAGE = 0.1  # α = 0.1 · N_total (Kingma et al. 2014, section 3.1.2)


@dataclass
class LabelledSet:
    """Which training images keep their label, and how the classification term is weighted."""

    labelled: torch.Tensor  # indices into the training split, sorted
    unlabelled: torch.Tensor  # the rest (empty when every label is kept)
    weight: float  # w: cross-entropy weight per labelled image, against its −ELBO
    alpha: float  # α of the paper

    @property
    def all_labelled(self) -> bool:
        return self.unlabelled.numel() == 0


def labelled_set(config: RunConfig, train_labels: torch.Tensor) -> LabelledSet:
    """The kept labels of a run: a balanced subset by `split_seed` for `--labels N`, otherwise all of them."""
    total = train_labels.numel()
    if config.data.labels is None or config.data.labels == total:
        labelled = torch.arange(total)
    else:
        labelled = balanced_label_subset(train_labels, config.data.labels, config.data.split_seed, config.model.classes)
    keep = torch.zeros(total, dtype=torch.bool)
    keep[labelled] = True
    alpha = config.model.classifier_weight
    if alpha is None:
        alpha = PAPER_ALPHA_PER_IMAGE * total
    return LabelledSet(labelled, (~keep).nonzero().flatten(), alpha / labelled.numel(), alpha)


def labelled_loss(
    model: LabelledBound,
    x: torch.Tensor,
    labels: torch.Tensor,
    noise: torch.Tensor,
    beta: float,
    free_bits: float,
    weight: float,
    classified_x: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-image −ELBO(x, y) + w · CE, and the terms (recon, kl, ce, logits). The cross-entropy reads
    `classified_x` when given (the same images before binarizing, moved, mirrored or turned), otherwise `x` itself."""
    terms = model.labelled_terms(x, labels, noise)
    logits = terms["logits"] if classified_x is None else model.classify(classified_x)
    ce = F.cross_entropy(logits, labels, reduction="none")
    loss = terms["recon"] + beta * kl_with_free_bits(terms["kl_per_dim"], free_bits) + weight * ce
    return loss, {"recon": terms["recon"], "kl": terms["kl"], "ce": ce, "logits": logits}


def unlabelled_loss(
    model: VAE,
    x: torch.Tensor,
    noise: torch.Tensor,
    beta: float,
    free_bits: float,
    classified_x: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-image U(x) and its expected terms (recon, kl; for m2 the kl includes KL(q(y|x) ‖ p(y))). M2's q(y|x)
    reads `classified_x` when given (the same images before binarizing), otherwise `x`."""
    if not isinstance(model, UnlabelledBound):
        terms = model.loss_terms(x, noise)
        loss = terms["recon"] + beta * kl_with_free_bits(terms["kl_per_dim"], free_bits)
        return loss, {"recon": terms["recon"], "kl": terms["kl"]}
    terms = model.unlabelled_terms(x, noise, classified_x)
    k, n = terms["recon"].shape
    # Free bits act per class on the batch of images decoded as that class.
    penalised_kl = torch.stack([kl_with_free_bits(terms["kl_per_dim"][y], free_bits) for y in range(k)])
    q = F.softmax(terms["logits"], dim=1).T  # [K, N]
    loss = (q * (terms["recon"] + beta * penalised_kl)).sum(0) + terms["kl_y"]
    return loss, {"recon": (q * terms["recon"]).sum(0), "kl": (q * terms["kl"]).sum(0) + terms["kl_y"]}


def train_labelled_only(
    config: RunConfig, images: torch.Tensor, labels: torch.Tensor, steps: int, device: str | torch.device = "cpu"
) -> VAE:
    """The baseline semi-supervised training must beat: the same model's q(y|x), trained by cross-entropy on the
    labelled images alone (`images` uint8 `[N, 28, 28]`, `labels` `[N]`, read as intensities like every q(y|x))
    for `steps` Adam steps of `config.train.batch_size`, with the run's lr and seed. The VAE parts are never used."""
    from vaelab.data import iterate_batches, to_float
    from vaelab.models import build_model

    torch.manual_seed(config.train.seed)
    model = build_model(config.model).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.lr)
    x_all, y_all = to_float(images).to(device), labels.to(device)
    generator = torch.Generator().manual_seed(config.train.seed + 1)
    batch_size, step = min(config.train.batch_size, len(y_all)), 0
    while step < steps:
        for index in iterate_batches(len(y_all), batch_size, generator, drop_last=True):
            loss = F.cross_entropy(model.classify(x_all[index.to(device)]), y_all[index.to(device)])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step == steps:
                break
    return model.eval()
