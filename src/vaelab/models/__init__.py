"""Models: the VAE and its observation models."""

from vaelab.models.likelihoods import BernoulliLikelihood, GaussianLikelihood, make_likelihood
from vaelab.models.vae import VAE, build_model, gaussian_log_density, kl_per_dimension

__all__ = [
    "VAE", "BernoulliLikelihood", "GaussianLikelihood", "build_model", "gaussian_log_density",
    "kl_per_dimension", "make_likelihood",
]
