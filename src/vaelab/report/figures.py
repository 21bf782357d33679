"""Matplotlib figures for reports, returned as PNG bytes (the Agg backend: no display needed)."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.offsetbox import AnnotationBbox, OffsetImage  # noqa: E402

from vaelab.analysis.embedding import embed, spread_points  # noqa: E402
from vaelab.analysis.traversal import load_test_inputs  # noqa: E402
from vaelab.data.catalog import describe  # noqa: E402
from vaelab.images import display_array  # noqa: E402
from vaelab.models.base import posterior_moments  # noqa: E402
from vaelab.models.registry import require_encoder  # noqa: E402
from vaelab.rundir import load_model, read_config  # noqa: E402

DPI = 110
THUMBNAILS = 16
# The KL heat map is drawn no wider than the report's column (so the page shows it at its own size) with labels of
# KL_LABEL_POINTS: 9 pt at 110 dpi is 13.75 px on the page, legible; rows of KL_ROW_INCHES (22 px) keep them apart.
KL_FIGURE_INCHES = 8.5
KL_LABEL_POINTS = 9
KL_ROW_INCHES = 0.2
KL_LABELLED_ROWS = 64  # a wider latent labels every 2nd, 3rd … dimension instead of shrinking the type


def figure_png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def training_curves(history: Sequence[dict[str, Any]]) -> bytes:
    """Loss, reconstruction and KL per epoch (train and validation)."""
    epochs = [row["epoch"] for row in history]
    figure, axes = plt.subplots(1, 3, figsize=(11, 3.4), dpi=DPI)
    panels = (("loss", "loss (recon + β·KL)"), ("recon", "reconstruction"), ("kl", "KL"))
    for ax, (key, title) in zip(axes, panels, strict=True):
        ax.plot(epochs, [row[f"train_{key}"] for row in history], label="train")
        ax.plot(epochs, [row[f"val_{key}"] for row in history], label="validation")
        ax.set(title=f"{title}, nats/image", xlabel="epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    figure.tight_layout()
    return figure_png(figure)


def kl_heatmap_figure(history: Sequence[dict[str, Any]]) -> Figure:
    """The validation KL of every dimension over the epochs, dimensions sorted by their last KL; a figure of its own
    (not a panel beside the curves) so that its dimension labels stay legible: KL_LABEL_POINTS type, at most
    KL_LABELLED_ROWS labelled rows (every dimension up to that many), each row KL_ROW_INCHES high."""
    epochs = [row["epoch"] for row in history]
    kl_dims = np.array([row["val_kl_per_dim"] for row in history]).T  # [D, epochs]
    order = np.argsort(-kl_dims[:, -1])
    every = math.ceil(len(order) / KL_LABELLED_ROWS)  # label every `every`-th row of a very wide latent
    rows = range(0, len(order), every)
    # KL_ROW_INCHES per labelled row, plus room for the title and the epoch axis
    figure, ax = plt.subplots(figsize=(KL_FIGURE_INCHES, max(len(rows) * KL_ROW_INCHES + 1.2, 2.5)), dpi=DPI)
    image = ax.imshow(kl_dims[order], aspect="auto", cmap="viridis", interpolation="nearest",
                      extent=(epochs[0] - 0.5, epochs[-1] + 0.5, len(order) - 0.5, -0.5))
    ax.set_yticks(rows, [f"z{order[r]}" for r in rows], fontsize=KL_LABEL_POINTS)
    ax.tick_params(axis="x", labelsize=KL_LABEL_POINTS)
    ax.set_xlabel("epoch", fontsize=KL_LABEL_POINTS + 1)
    ax.set_title("validation KL per dimension (nats), largest last-epoch KL at the top", fontsize=KL_LABEL_POINTS + 2)
    colorbar = figure.colorbar(image, ax=ax)
    colorbar.ax.tick_params(labelsize=KL_LABEL_POINTS)
    figure.tight_layout()
    return figure


def kl_heatmap(history: Sequence[dict[str, Any]]) -> bytes:
    """`kl_heatmap_figure` as PNG bytes."""
    return figure_png(kl_heatmap_figure(history))


def scalar_curves(history: Sequence[dict[str, Any]]) -> bytes:
    """Every number logged per epoch by a family without a likelihood (a GAN's losses and beliefs, a ddpm's
    ε-error), train and validation in one panel per name."""
    epochs = [row["epoch"] for row in history]
    names = sorted({key.split("_", 1)[1] for key, value in history[-1].items()
                    if key.startswith(("train_", "val_")) and isinstance(value, float) and key != "train_seconds"})
    figure, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        for split in ("train", "val"):
            if f"{split}_{name}" in history[-1]:
                ax.plot(epochs, [row.get(f"{split}_{name}", np.nan) for row in history],
                        label="validation" if split == "val" else split)
        ax.set(title=name.replace("_", " "), xlabel="epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    figure.tight_layout()
    return figure_png(figure)


def confusion_matrix_png(confusion: Sequence[Sequence[int]], class_names: Sequence[str]) -> bytes:
    """The confusion matrix (rows: true class, columns: predicted) as a heat map of each row's shares, with the
    counts written in the cells."""
    counts = np.asarray(confusion)
    shares = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    figure, ax = plt.subplots(figsize=(7, 6))
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (row, column), count in np.ndenumerate(counts):
        colour = "white" if shares[row, column] > 0.5 else "black"
        ax.text(column, row, str(count), ha="center", va="center", fontsize=7, color=colour)
    ticks = range(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(ticks, class_names, fontsize=8)
    ax.set(xlabel="predicted class", ylabel="true class", title="confusion matrix (test split)")
    figure.colorbar(image, ax=ax, label="share of the true class")
    return figure_png(figure)


def latent_map(
    coords: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str] | None,
    title: str,
    thumbnails: np.ndarray | None = None,
    thumbnail_at: np.ndarray | None = None,
) -> bytes:
    """Scatter of 2-d codes coloured by class (one colour for a dataset without classes, whose labels are all 0),
    with decoded thumbnails (`[K, H, W]` grey or `[K, H, W, 3]` colour, in [0, 1]) placed at `thumbnail_at`."""
    figure, ax = plt.subplots(figsize=(8, 7))
    cmap = plt.get_cmap("tab10")
    for label, name in enumerate(class_names or ("test images",)):
        mask = labels == label
        ax.scatter(coords[mask, 0], coords[mask, 1], s=3, color=cmap(label), label=name, alpha=0.6)
    if thumbnails is not None and thumbnail_at is not None:
        for thumbnail, (x, y) in zip(thumbnails, thumbnail_at, strict=True):
            box = OffsetImage(thumbnail, cmap="gray", zoom=1.0, interpolation="nearest")
            ax.add_artist(AnnotationBbox(box, (x, y), frameon=True, pad=0.1))
    ax.legend(markerscale=4, fontsize=8, loc="best")
    ax.set(title=title)
    return figure_png(figure)


def latent_map_png(
    run_dir: str | Path, method: str = "pca", limit: int | None = None, thumbnails: int = THUMBNAILS
) -> bytes:
    """The run's test-set posterior means embedded in 2-d, coloured by class, with decoded thumbnails placed at
    points that cover the map. A conditional run's codes are given the images' labels (its map shows how little
    class z keeps), and each thumbnail is decoded as its image's class."""
    config = read_config(run_dir)
    model = load_model(run_dir)
    require_encoder(model, "vaelab embed (it maps the codes of test images)")
    test, inputs = load_test_inputs(config.data)
    count = min(limit or len(test), len(test))
    labels = test.labels[:count]
    means, _ = posterior_moments(model, inputs[:count], labels)
    coords = embed(means.numpy(), method)
    spots = spread_points(coords, thumbnails)
    with torch.no_grad():
        images = display_array(model.decode(means[spots].to(model.device), labels[spots]).cpu())
    title = f"{method.upper()} of posterior means ({count:,} test images)"
    return latent_map(coords, labels.numpy(), describe(config.data.dataset).class_names, title, images,
                      coords[spots])
