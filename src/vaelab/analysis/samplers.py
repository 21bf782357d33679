"""Ex-post samplers: where to draw z from when the prior N(0, I) is not where the codes live.

The aggregate posterior of a trained VAE leaves holes in the prior; decoding prior draws that fall there gives
poor samples. A Gaussian mixture fitted on the training set's posterior means (Ghosh et al. 2020, "From
variational to deterministic autoencoders") is drawn from instead. The fit is stored in the run directory as
safetensors (`sampler-gmm.safetensors`): no pickle, and reused until deleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from vaelab.analysis.samples import prior_samples
from vaelab.analysis.traversal import posterior_moments
from vaelab.data import load_split, prepare_inputs
from vaelab.errors import VaelabError
from vaelab.evaluation.evaluate import EVAL_SEED
from vaelab.models import VAE
from vaelab.training.checkpoint import load_tensors, read_config, save_tensors

SAMPLERS = ("prior", "gmm")
GMM_FILE = "sampler-gmm.safetensors"


@dataclass(frozen=True)
class GaussianMixture:
    weights: torch.Tensor  # [K]
    means: torch.Tensor  # [K, D]
    cholesky: torch.Tensor  # [K, D, D], lower-triangular factors of the covariances

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """`n` codes `[n, D]`: a component by its weight, then mean + L·ε."""
        component = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        eps = torch.randn(n, self.means.shape[1], generator=generator)
        return self.means[component] + torch.einsum("nij,nj->ni", self.cholesky[component], eps)


def fit_gmm(
    model: VAE, dataset: str, input_mode: str, components: int = 10, limit: int | None = None, seed: int = 0
) -> GaussianMixture:
    """Fit a full-covariance mixture on the posterior means of the training split (never the test split)."""
    from sklearn.mixture import GaussianMixture as SklearnMixture

    if components < 1:
        raise VaelabError(f"--components must be at least 1 (got {components})")
    train = load_split(dataset, "train").subset(limit)
    means, _ = posterior_moments(model, prepare_inputs(train.images, input_mode, EVAL_SEED))
    if components > len(means):
        raise VaelabError(f"--components {components} is more than the {len(means)} training codes")
    fitted = SklearnMixture(components, covariance_type="full", random_state=seed, reg_covar=1e-4).fit(means.numpy())
    return GaussianMixture(
        torch.as_tensor(fitted.weights_, dtype=torch.float64),
        torch.as_tensor(fitted.means_, dtype=torch.float32),
        torch.linalg.cholesky(torch.as_tensor(fitted.covariances_, dtype=torch.float64)).float(),
    )


def read_gmm(run_dir: str | Path) -> GaussianMixture | None:
    """The run's stored mixture, or None when none has been fitted (never fits one)."""
    path = Path(run_dir) / GMM_FILE
    if not path.is_file():
        return None
    tensors, _ = load_tensors(path)
    return GaussianMixture(tensors["weights"], tensors["means"], tensors["cholesky"])


def load_or_fit_gmm(run_dir: str | Path, model: VAE, components: int = 10) -> GaussianMixture:
    """The run's stored mixture when it has `components` components, otherwise a new fit, stored."""
    path = Path(run_dir) / GMM_FILE
    stored = read_gmm(run_dir)
    if stored is not None and stored.weights.shape[0] == components:
        return stored
    data = read_config(run_dir).data
    mixture = fit_gmm(model, data.dataset, data.input_mode, components)
    save_tensors(path, {"weights": mixture.weights, "means": mixture.means, "cholesky": mixture.cholesky})
    return mixture


@torch.no_grad()
def sample_images(
    model: VAE, run_dir: str | Path, n: int, sampler: str = "prior", seed: int = 0, components: int = 10
) -> torch.Tensor:
    """`n` decoded samples `[n, C, H, W]` from the chosen sampler, reproducible by seed."""
    if sampler not in SAMPLERS:
        raise VaelabError(f"unknown --sampler '{sampler}'; choose one of: {', '.join(SAMPLERS)}")
    if sampler == "prior":
        return prior_samples(model, n, seed)
    codes = load_or_fit_gmm(run_dir, model, components).sample(n, torch.Generator().manual_seed(seed))
    return model.decode(codes.to(model.device)).cpu()
