"""Models: the VAE, its conditional and classifier variants and their observation models."""

from vaelab.models.classifier import M2, ClassifierVAE, is_classifier
from vaelab.models.conditional import ConditionalVAE, is_conditional, refuse_conditional
from vaelab.models.likelihoods import BernoulliLikelihood, GaussianLikelihood, make_likelihood
from vaelab.models.vae import VAE, build_model, gaussian_log_density, kl_per_dimension, posterior_moments

__all__ = [
    "M2", "VAE", "BernoulliLikelihood", "ClassifierVAE", "ConditionalVAE", "GaussianLikelihood", "build_model",
    "gaussian_log_density", "is_classifier", "is_conditional", "kl_per_dimension", "make_likelihood",
    "posterior_moments", "refuse_conditional",
]
