"""The classifier variants: a VAE that also predicts the class, q(y|x).

`ClassifierVAE` (kind "vae-classifier") is the plain VAE with a small MLP on its posterior mean (or, with
`head_input: trunk`, on the encoder's hidden features): trained jointly, the cross-entropy of labelled images
shapes the encoder as well as the head, and the latent stays the VAE's.

`M2` (kind "m2") is the semi-supervised model of Kingma et al. 2014: the conditional VAE's p(x|y, z) and
q(z|x, y), plus q(y|x). An image without a label is explained by every class in turn, weighted by q(y|x):

    −U(x) = Σ_y q(y|x) [log p(x|y, z) − KL(q(z|x, y) ‖ p(z))] − KL(q(y|x) ‖ p(y)),   p(y) uniform

q(y|x) reads the encoder's label-free trunk (the layers before the label is appended), so the unlabelled bound
also shapes the features the classifier uses; the trunk runs once per image, only the read-out and the decoder
once per class. That bound lives in `UnlabelledBound`, shared with the M2 stacked on codes (`models.code_m2`).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from vaelab.models.cvae import ConditionalVAE
from vaelab.models.options import ModelConfig
from vaelab.models.vae import VAE, reparameterised_terms

CLASSIFIER_HIDDEN = 256  # one hidden layer: enough for a head on 32 numbers, small beside the VAE


def classifier_mlp(in_features: int, classes: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_features, CLASSIFIER_HIDDEN), nn.ReLU(), nn.Linear(CLASSIFIER_HIDDEN, classes))


def trunk_width(config: ModelConfig, feature_shape: tuple[int, int]) -> int:
    """Width of the encoder's hidden features, the layer before the read-out of mu and log-variance."""
    return config.hidden_dim or config.stage_widths[-1] * feature_shape[0] * feature_shape[1]


class LabelledBound:
    """The labelled half of the classifier kinds' objective, for a model with a label-free trunk
    (`trunk_features(x)`), the read-out of q(z|x, y) from it (`posterior_from_trunk(hidden, labels)`), a head
    (`head_logits(hidden, mu)`), p(x|y, z) (`decode_dist(z, labels)`) and the KL terms of its prior
    (`kl_terms(z, mu, logvar)`): the trunk runs once for both."""

    def labelled_terms(
        self, x: torch.Tensor, labels: torch.Tensor, noise: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """`loss_terms(x, noise, labels)` plus "logits" `[N, classes]` of q(y|x)."""
        hidden = self.trunk_features(x)
        mu, logvar = self.posterior_from_trunk(hidden, labels)
        terms = reparameterised_terms(x, mu, logvar, noise, lambda z: self.decode_dist(z, labels), self.kl_terms)
        terms["logits"] = self.head_logits(hidden, mu)
        return terms

    def head_logits(self, hidden: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
        """q(y|x) as logits from the trunk's features (float32)."""
        return self.classifier(hidden).float()


class ClassifierVAE(LabelledBound, VAE):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        reads_trunk = config.classifier.head_input == "trunk"
        self.classifier = classifier_mlp(
            trunk_width(config, self.feature_shape) if reads_trunk else config.latent_dim, config.classes
        )

    @property
    def classes(self) -> int:
        return self.config.classes

    def posterior_from_trunk(
        self, hidden: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder[-1](hidden).float().chunk(2, dim=1)
        return mu, logvar

    def head_logits(self, hidden: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
        """The head on the hidden features (`head_input: trunk`) or on the posterior mean."""
        return self.classifier(hidden if self.config.classifier.head_input == "trunk" else mu).float()

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """q(y|x) as logits `[N, classes]`: the head on each image's posterior mean (or hidden features)."""
        hidden = self.trunk_features(x)
        return self.head_logits(hidden, self.posterior_from_trunk(hidden)[0])


class UnlabelledBound(LabelledBound):
    """M2's bound for inputs without a label, for a model with a label-free trunk (`trunk_features(x)`), the read-out
    of q(z|x, y) from it (`posterior_from_trunk(hidden, labels)`), q(y|x) on it (`classifier`) and p(x|y, z)
    (`decode_dist(z, labels)`)."""

    classes: int
    latent_dim: int
    classifier: nn.Module

    def unlabelled_terms(
        self, x: torch.Tensor, noise: torch.Tensor | None = None, classified_x: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Every input with every class: "recon" `[K, N]`, "kl_per_dim" `[K, N, D]`, "kl" `[K, N]` for y = 0 … K−1
        (the same `noise` for every class), "logits" `[N, K]` of q(y|x) and "kl_y" `[N]` = KL(q(y|x) ‖ uniform).
        q(y|x) reads `classified_x` when given (the images before binarizing: any q gives a bound), else `x`."""
        n, k = x.shape[0], self.classes
        hidden = self.trunk_features(x)
        logits = self.classifier(hidden if classified_x is None else self.trunk_features(classified_x)).float()
        labels = torch.arange(k, device=x.device).repeat_interleave(n)  # class-major: rows y·N … y·N + N − 1
        mu, logvar = self.posterior_from_trunk(hidden.repeat(k, 1), labels)
        if noise is None:
            noise = torch.randn(n, self.latent_dim, device=x.device)
        repeated_x = x.repeat(k, *[1] * (x.dim() - 1))
        terms = reparameterised_terms(
            repeated_x, mu, logvar, noise.repeat(k, 1), lambda z: self.decode_dist(z, labels), self.kl_terms
        )
        log_q = F.log_softmax(logits, dim=1)
        return {
            "recon": terms["recon"].view(k, n),
            "kl_per_dim": terms["kl_per_dim"].view(k, n, -1),
            "kl": terms["kl"].view(k, n),
            "logits": logits,
            "kl_y": (log_q.exp() * log_q).sum(1) + math.log(k),
        }

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """q(y|x) as logits `[N, classes]`, from the label-free trunk."""
        return self.classifier(self.trunk_features(x)).float()


class M2(UnlabelledBound, ConditionalVAE):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.classifier = classifier_mlp(trunk_width(config, self.feature_shape), config.classes)

    def posterior_from_trunk(self, hidden: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder[-1](torch.cat([hidden, self.one_hot(labels, hidden)], dim=1)).float().chunk(2, 1)
        return mu, logvar

