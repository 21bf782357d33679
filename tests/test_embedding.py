import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.conftest import tiny_config
from vaelab.analysis.embedding import embed, manifold_grid, spread_points
from vaelab.errors import VaelabError
from vaelab.rundir import load_model
from vaelab.training import train


def test_pca_keeps_the_two_directions_of_largest_variance():
    rng = np.random.default_rng(0)
    means = np.zeros((500, 6))
    means[:, 2] = 5 * rng.standard_normal(500)
    means[:, 4] = 2 * rng.standard_normal(500)
    means += 0.01 * rng.standard_normal(means.shape)
    coords = embed(means, "pca")
    assert coords.shape == (500, 2)
    assert abs(np.corrcoef(coords[:, 0], means[:, 2])[0, 1]) > 0.99
    assert abs(np.corrcoef(coords[:, 1], means[:, 4])[0, 1]) > 0.99


def test_unknown_embedding_method_is_refused():
    with pytest.raises(VaelabError, match="unknown embedding method 'mds'"):
        embed(np.zeros((10, 4)), "mds")


def test_spread_points_are_far_apart_on_the_map():
    grid = np.stack(np.meshgrid(np.arange(10.0), np.arange(10.0)), -1).reshape(-1, 2)
    points = grid[spread_points(grid, 5)]
    pairwise = np.linalg.norm(points[:, None] - points[None], axis=-1)[np.triu_indices(5, 1)]
    # Farthest-point sampling keeps 5 points on a 10×10 grid at least 4 apart; the closest pair of 5 random
    # grid points is usually nearer than 3.
    assert pairwise.min() >= 4.0


def test_two_dimensional_model_gets_the_decoded_manifold_grid(tmp_path):
    train(tiny_config(epochs=1, latent_dim=2), tmp_path / "run", progress=False, log=lambda m: None)
    picture = manifold_grid(load_model(tmp_path / "run"), size=12)
    assert picture.shape == (12 * 28, 12 * 28) and picture.dtype == np.uint8
    assert picture.std() > 0  # not one flat colour


def test_manifold_grid_refuses_a_latent_other_than_two(trained_run):
    with pytest.raises(VaelabError, match="needs a model with --latent-dim 2"):
        manifold_grid(load_model(trained_run))


def test_embed_command_writes_a_latent_map_png(trained_run, tmp_path):
    out = tmp_path / "map.png"
    result = subprocess.run([sys.executable, "-m", "vaelab.cli", "embed", str(trained_run), "--limit", "500",
                             "--out", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    with Image.open(out) as image:
        assert image.format == "PNG" and image.width > 400
