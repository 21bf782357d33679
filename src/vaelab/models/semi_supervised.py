"""The objective of the classifier kinds (vae-classifier, m2), with all training labels or only some.

q(y|x) reads intensities, never a binarization: the cross-entropy reads the batch before binarizing (changed by
`vaelab.data.augment` when asked), while the ELBO models the binarized batch.

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

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from vaelab.data.augment import random_flip, random_rotation, random_translation
from vaelab.data.datasets import balanced_label_subset, iterate_batches, to_float
from vaelab.models.training_step import (
    GeneratorSpec,
    Phase,
    RunSettings,
    StepContext,
    ValidationData,
    kl_with_free_bits,
)
from vaelab.models.vae import VALIDATION_BATCH, ELBOStep

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


def labelled_set(config: RunSettings, train_labels: torch.Tensor) -> LabelledSet:
    """The kept labels of a run: a balanced subset by `split_seed` for `--labels N`, otherwise all of them."""
    total = train_labels.numel()
    if config.data.labels is None or config.data.labels == total:
        labelled = torch.arange(total)
    else:
        labelled = balanced_label_subset(train_labels, config.data.labels, config.data.split_seed, config.model.classes)
    keep = torch.zeros(total, dtype=torch.bool)
    keep[labelled] = True
    alpha = config.model.classifier.weight
    if alpha is None:
        alpha = PAPER_ALPHA_PER_IMAGE * total
    return LabelledSet(labelled, (~keep).nonzero().flatten(), alpha / labelled.numel(), alpha)


def labelled_loss(
    model: nn.Module,
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
    loss = terms["recon"] + beta * kl_with_free_bits(terms["kl"], terms["kl_per_dim"], free_bits) + weight * ce
    return loss, {"recon": terms["recon"], "kl": terms["kl"], "ce": ce, "logits": logits}


def unlabelled_loss(
    model: nn.Module,
    x: torch.Tensor,
    noise: torch.Tensor,
    beta: float,
    free_bits: float,
    classified_x: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Per-image U(x) and its expected terms (recon, kl; for m2 the kl includes KL(q(y|x) ‖ p(y))). M2's q(y|x)
    reads `classified_x` when given (the same images before binarizing), otherwise `x`. A model whose label is
    latent when unknown (M2: it has `unlabelled_terms`) sums y out; any other is the plain VAE's −ELBO."""
    if not hasattr(model, "unlabelled_terms"):
        terms = model.loss_terms(x, noise)
        loss = terms["recon"] + beta * kl_with_free_bits(terms["kl"], terms["kl_per_dim"], free_bits)
        return loss, {"recon": terms["recon"], "kl": terms["kl"]}
    terms = model.unlabelled_terms(x, noise, classified_x)
    k, n = terms["recon"].shape
    # Free bits act per class on the batch of images decoded as that class.
    penalised_kl = torch.stack([kl_with_free_bits(terms["kl"][y], terms["kl_per_dim"][y], free_bits) for y in range(k)])
    q = F.softmax(terms["logits"], dim=1).T  # [K, N]
    loss = (q * (terms["recon"] + beta * penalised_kl)).sum(0) + terms["kl_y"]
    return loss, {"recon": (q * terms["recon"]).sum(0), "kl": (q * terms["kl"]).sum(0) + terms["kl_y"]}




class SemiSupervisedStep(ELBOStep):
    """The classifier kinds' training step: the labelled objective on a labelled batch, or (with `--labels N`) the
    unlabelled one on the epoch's batch, whose labels are never read, plus the labelled one on a batch drawn from
    the kept labels. Validation adds the accuracy of q(y|x) on the validation intensities."""

    def __init__(self, config: RunSettings, train_labels: torch.Tensor) -> None:
        super().__init__(config, train_labels)
        self.kept = labelled_set(config, train_labels)
        if not self.kept.all_labelled:
            self.pool = self.kept.unlabelled

    def generators(self) -> dict[str, GeneratorSpec]:
        generators = super().generators()
        if not self.kept.all_labelled:
            generators["labelled"] = GeneratorSpec(3, cpu=True)  # which labelled images, each step
        head = self.config.model.classifier
        if head.head_shift or head.head_flip or head.head_rotate:
            generators["head_augment"] = GeneratorSpec(4, cpu=True)  # the classifier's changes
        return generators

    def step(
        self, model: nn.Module, intensities: torch.Tensor, labels: torch.Tensor, context: StepContext
    ) -> Iterator[Phase]:
        x = context.modelled(intensities)
        beta, free_bits, kept = self.beta(context.step), self.config.model.objective.free_bits, self.kept
        noise = self.noise(x, context)
        if kept.all_labelled:
            with context.autocast():
                per_image, terms = labelled_loss(model, x, labels, noise, beta, free_bits, kept.weight,
                                                 self.classified(intensities, context))
            loss = per_image.mean()
        else:
            count = min(self.config.train.batch_size, kept.labelled.numel())
            draw = torch.randperm(kept.labelled.numel(), generator=context.generators["labelled"])[:count]
            index = kept.labelled[draw].to(x.device)
            labelled_intensities = to_float(context.train_images[index])
            labelled_x = context.modelled(labelled_intensities)
            labelled_noise = self.noise(labelled_x, context)
            unlabelled_classified = context.prepared(intensities) if self.binarized else None
            with context.autocast():
                per_image, terms = unlabelled_loss(model, x, noise, beta, free_bits, unlabelled_classified)
                labelled_per_image, _ = labelled_loss(
                    model, labelled_x, context.train_labels[index], labelled_noise, beta, free_bits, kept.weight,
                    self.classified(labelled_intensities, context),
                )
            loss = per_image.mean() + labelled_per_image.mean()
        yield Phase(loss, {"loss": loss, "recon": terms["recon"], "kl": terms["kl"]})

    @property
    def binarized(self) -> bool:
        return self.config.data.input_mode == "binarized"

    def classified(self, images: torch.Tensor, context: StepContext) -> torch.Tensor | None:
        """What the cross-entropy reads when it is not the ELBO's batch itself: the intensities (q(y|x) never reads
        a random binarization), mirrored (`head_flip`), turned (`head_rotate`) and moved (`head_shift`) when asked."""
        changes = context.generators.get("head_augment")  # present when any change is asked for
        if not self.binarized and changes is None:
            return None
        head = self.config.model.classifier
        if head.head_flip:
            images = random_flip(images, changes)
        images = random_rotation(images, head.head_rotate, changes)
        images = random_translation(images, head.head_shift, changes)
        return context.prepared(images)

    def validate(self, model: nn.Module, data: ValidationData) -> dict[str, Any]:
        result = super().validate(model, data)
        correct = 0
        for index in iterate_batches(data.intensities.shape[0], VALIDATION_BATCH):
            index = index.to(data.intensities.device)
            correct += (model.classify(data.intensities[index]).argmax(1) == data.labels[index]).sum().item()
        result["val_accuracy"] = correct / data.intensities.shape[0]
        return result

    def summary(self, row: dict[str, Any]) -> str:
        return f"{super().summary(row)}  val accuracy {row['val_accuracy']:.2%}"

