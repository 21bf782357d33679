"""Evaluation: numbers computed on the test split from a run directory."""

from vaelab.evaluation.evaluate import evaluate_run
from vaelab.evaluation.latents import active_units, dimensions_by_kl
from vaelab.evaluation.likelihood import bits_per_dim, elbo_terms, importance_weights, iwae_bound

__all__ = [
    "active_units", "bits_per_dim", "dimensions_by_kl", "elbo_terms", "evaluate_run", "importance_weights",
    "iwae_bound",
]
