"""Models: the registry of model families (`registry`), each family's model and objective, and the pieces they
share (likelihoods, blocks). The names below are loaded on first use (PEP 562): the registry and the config read
the families without importing torch."""

from importlib import import_module
from typing import Any

_HOMES = {
    "VAE": "vae", "gaussian_log_density": "base", "kl_per_dimension": "base", "posterior_moments": "base",
    "Posterior": "base", "GenerativeModel": "base", "EncodingModel": "base",
    "ConditionalVAE": "cvae", "ClassifierVAE": "classifier", "M2": "classifier",
    "BernoulliLikelihood": "likelihoods", "GaussianLikelihood": "likelihoods", "LIKELIHOODS": "likelihoods",
    "PixelGaussianLikelihood": "likelihoods", "DiscretizedLogisticLikelihood": "likelihoods",
    "FAMILIES": "registry", "Capabilities": "registry", "Family": "registry", "build_model": "registry",
    "capabilities": "registry", "family": "registry", "register_family": "registry",
    "refuse_conditional": "registry", "require_classifier": "registry", "require_conditional": "registry",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'vaelab.models' has no attribute '{name}'")
    return getattr(import_module(f"vaelab.models.{_HOMES[name]}"), name)
