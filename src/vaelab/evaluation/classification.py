"""Classification numbers: the test accuracy and confusion matrix of a run that predicts classes, and a linear
probe of any run's latent space (how much of the class a linear read-out of the posterior means recovers).

The probe fits scikit-learn's logistic regression (lbfgs, standardised features) on the posterior means of the
images the run trained on (at most `vaelab.evaluation.evaluate.FIT_IMAGES`), once with a balanced subset of 100
labels and once with all of them, and scores the test split.
A conditional model's encoder needs a label; its features are its posterior means averaged over every class, so
the true label is never fed in (the probe would otherwise read the answer back).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaelab.data.catalog import describe
from vaelab.data.datasets import balanced_label_subset, iterate_batches, to_float
from vaelab.errors import VaelabError
from vaelab.fitting import fit_estimator
from vaelab.models.base import ClassifyingModel, EncodingModel, posterior_moments
from vaelab.models.registry import capabilities, require_classifier

PROBE_LABELS = 100
PROBE_MAX_ITER = 1000  # lbfgs iterations: a probe of a 2-epoch run's mostly collapsed codes converged at 215
BATCH = 1000


@torch.no_grad()
def predict_probabilities(model: ClassifyingModel, x: torch.Tensor) -> torch.Tensor:
    """q(y|x) for inputs `[N, C, H, W]`: `[N, classes]` on the CPU, in batches. The classifier kinds read
    intensities in [0, 1], never a binarization (their training shows q(y|x) the images before binarizing)."""
    require_classifier(model, "class prediction")
    batches = iterate_batches(x.shape[0], BATCH)
    return torch.cat([model.classify(x[i].to(model.device)).softmax(1).cpu() for i in batches])


def classification_metrics(predicted: np.ndarray, labels: np.ndarray, classes: int) -> dict[str, Any]:
    """Accuracy, per-class accuracy and the confusion matrix (rows: true class, columns: predicted) of labels."""
    predicted, labels = np.asarray(predicted).reshape(-1), np.asarray(labels).reshape(-1)
    confusion = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    per_class = confusion.diagonal() / np.maximum(confusion.sum(1), 1)
    return {
        "accuracy": float((predicted == labels).mean()),
        "per_class_accuracy": per_class.tolist(),
        "confusion_matrix": confusion.tolist(),
        "images": int(labels.size),
    }


def probe_features(model: EncodingModel, x: torch.Tensor) -> torch.Tensor:
    """Posterior means `[N, latent_dim]` on the CPU; for a conditional model, averaged over every class."""
    if not capabilities(model).conditional:
        return posterior_moments(model, x)[0]
    n = x.shape[0]
    return torch.stack([posterior_moments(model, x, torch.full((n,), c))[0] for c in range(model.classes)]).mean(0)


def probe_accuracy(
    train_features: np.ndarray, train_labels: np.ndarray, test_features: np.ndarray, test_labels: np.ndarray,
    what: str = "linear probe", log: Callable[[str], None] = lambda message: None,
) -> tuple[float, bool]:
    """Test accuracy of a multinomial logistic regression fitted on standardised training features, and whether
    its fit converged (`what` names it in the one log line that says it did not)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=PROBE_MAX_ITER))  # lbfgs by default
    converged = fit_estimator(probe, np.asarray(train_features), np.asarray(train_labels), what=what, log=log)
    return float((probe.predict(np.asarray(test_features)) == np.asarray(test_labels)).mean()), converged


def linear_probe(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    classes: int,
    seed: int = 0,
    features: str = "posterior means",
    log: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    """Probe accuracies with about 100 balanced training labels (the largest multiple of the classes up to 100, by
    `seed`; None when a class has too few images) and with all of them; `features` says what the features are, for
    eval.json, and "converged" whether both fits did (one `log` line for one that did not)."""
    few = PROBE_LABELS // classes * classes
    train_f, train_y = train_features.numpy(), train_labels.numpy()
    test_f, test_y = test_features.numpy(), test_labels.numpy()
    try:
        subset = balanced_label_subset(train_labels, few, seed, classes)
        few_accuracy, few_converged = probe_accuracy(train_f[subset], train_y[subset], test_f, test_y,
                                                     f"linear probe on {few} labels", log)
    except VaelabError:
        few_accuracy, few_converged = None, True
    all_accuracy, all_converged = probe_accuracy(train_f, train_y, test_f, test_y,
                                                 f"linear probe on {train_y.size:,} labels", log)
    return {
        "linear_probe_accuracy_100": few_accuracy,
        "linear_probe_accuracy_all": all_accuracy,
        "linear_probe": {
            "train_images": int(train_y.size),
            "test_images": int(test_y.size),
            "few_labels": few,
            "features": features,
            "seed": seed,
            "converged": few_converged and all_converged,
        },
    }


def classify_image(run_dir: str | Path, image: str | Path) -> dict[str, Any]:
    """`vaelab classify RUN image.png`: the run's q(y|x) for one PNG, prepared as the dataset's images were and read
    as intensities, like the test images in evaluation. Returns the predicted class, its name and every class's
    probability."""
    from vaelab.images import read_picture
    from vaelab.io import require_input_file
    from vaelab.rundir import load_model, read_config

    config = read_config(run_dir)
    model = load_model(run_dir)
    require_classifier(model, "vaelab classify")
    description = describe(config.data.dataset)
    picture = read_picture(require_input_file(image, "image", "an image file (PNG)"), description)
    pixels = torch.from_numpy((np.clip(picture, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))
    probabilities = predict_probabilities(model, to_float(pixels[None, None]))[0]
    predicted = int(probabilities.argmax())
    names = description.class_names
    return {
        "predicted": predicted,
        "name": names[predicted],
        "probability": probabilities[predicted].item(),
        "probabilities": probabilities.tolist(),
        "names": names,
    }
