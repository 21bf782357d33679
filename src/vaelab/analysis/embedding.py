"""Latent maps: the test set's posterior means in 2-d (PCA, t-SNE, UMAP when installed), coloured by class,
and the decoded manifold of a model with a 2-d latent."""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import norm

from vaelab.errors import VaelabError
from vaelab.images import make_grid
from vaelab.models.base import GenerativeModel

METHODS = ("pca", "tsne", "umap")
TSNE_PERPLEXITY = 30


def embed(means: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """`[N, D]` → `[N, 2]` coordinates."""
    if method not in METHODS:
        raise VaelabError(f"unknown embedding method '{method}'; choose one of: {', '.join(METHODS)}")
    means = np.asarray(means, dtype=np.float64)
    if means.shape[1] <= 2:
        return np.pad(means, ((0, 0), (0, 2 - means.shape[1])))
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(means)
    if method == "tsne":
        from sklearn.manifold import TSNE

        # t-SNE needs a perplexity below the number of points: a small test split (30 images) gets a third of it.
        perplexity = min(TSNE_PERPLEXITY, max((len(means) - 1) / 3, 1.0))
        return TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=seed).fit_transform(means)
    try:
        import umap
    except ImportError:
        raise VaelabError("--method umap needs the umap-learn package; `pip install umap-learn` or use tsne") from None
    return umap.UMAP(n_components=2, random_state=seed).fit_transform(means)


def spread_points(coords: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """Indices of `count` points that cover the map (farthest-point sampling), for thumbnails."""
    rng = np.random.default_rng(seed)
    chosen = [int(rng.integers(len(coords)))]
    distance = np.linalg.norm(coords - coords[chosen[0]], axis=1)
    for _ in range(min(count, len(coords)) - 1):
        chosen.append(int(distance.argmax()))
        distance = np.minimum(distance, np.linalg.norm(coords - coords[chosen[-1]], axis=1))
    return np.array(chosen)


@torch.no_grad()
def manifold_grid(model: GenerativeModel, size: int = 20) -> np.ndarray:
    """For a 2-d latent: decode a `size`×`size` grid of z at evenly spaced prior quantiles (Kingma & Welling
    2014, Fig. 4), so equal steps in the picture are equal steps of prior probability."""
    if model.latent_dim != 2:
        raise VaelabError(f"the manifold grid needs a model with --latent-dim 2 (this one has {model.latent_dim})")
    quantiles = torch.tensor(norm.ppf(np.linspace(0.05, 0.95, size)), dtype=torch.float32)
    z = torch.stack(torch.meshgrid(quantiles, -quantiles, indexing="xy"), dim=-1).reshape(-1, 2)
    return make_grid(model.decode(z.to(model.device)).cpu(), columns=size, padding=0)
