"""M1+M2 (Kingma et al. 2014, section 3.1): the semi-supervised M2 trained on a finished unsupervised run's codes
(`vaelab m1m2 RUN`), and the labelled-only baseline every semi-supervised model must beat.

The M1 run is frozen. Every training image becomes its posterior q(z1|x) (mean and log-variance, of the image as
evaluation prepares it); each step draws fresh codes z1 ~ q(z1|x) for one batch of unlabelled images and one of
the N labelled ones (a balanced subset of the training split, by the run's split seed: the same images a
`--labels N` run keeps) and takes an Adam step on the semi-supervised objective of `vaelab.models.semi_supervised`:

    loss = mean over unlabelled U(z1) + mean over labelled [−ELBO(z1, y) + w · CE],   w = α / N, α = 0.1 · N_total

Test error is that of q(y|z1) on the test images' posterior means, after the last epoch: no epoch is chosen by
validation labels (a semi-supervised learner with 100 labels has no 5,000 labelled images to choose with). The
same q(y|z1) trained by cross-entropy on the labelled codes alone, for as many steps, is the baseline it must beat.
The result folder holds `m1m2.json` (settings, per-epoch validation error, test errors) and the weights.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from vaelab.config import RunConfig
from vaelab.data.catalog import describe
from vaelab.data.datasets import balanced_label_subset, load_split, prepare_inputs, to_float
from vaelab.errors import VaelabError
from vaelab.evaluation.evaluate import EVAL_SEED
from vaelab.fitting import FitPlan, fit
from vaelab.io import atomic_write_json
from vaelab.models.base import EncodingModel, posterior_moments
from vaelab.models.code_m2 import CodeM2, CodeM2Config
from vaelab.models.registry import build_model, capabilities, require_encoder
from vaelab.models.semi_supervised import PAPER_ALPHA_PER_IMAGE, labelled_loss, unlabelled_loss
from vaelab.rundir import load_model, model_tensors, read_config, save_tensors

M1M2_JSON = "m1m2.json"
WEIGHTS = "model.safetensors"


@dataclass(frozen=True)
class M1M2Config:
    labels: int = 100
    epochs: int = 100
    batch_size: int = 100
    lr: float = 3e-4
    latent_dim: int = 50
    hidden: int = 500
    seed: int = 0
    train_limit: int | None = None  # the first N training images only (tests)


@dataclass(frozen=True)
class Codes:
    mu: torch.Tensor  # [N, D] posterior means of M1
    std: torch.Tensor  # [N, D] posterior standard deviations
    labels: torch.Tensor  # [N]

    def draw(self, index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Fresh codes z1 ~ q(z1|x) for the images at `index`."""
        mu = self.mu[index]
        return mu + self.std[index] * torch.randn(mu.shape, generator=generator)


def m1_codes(model: EncodingModel, images: torch.Tensor, labels: torch.Tensor, input_mode: str) -> Codes:
    """The posterior of M1 for uint8 images `[N, C, H, W]`, on the CPU."""
    mu, logvar = posterior_moments(model, prepare_inputs(images, input_mode, EVAL_SEED))
    return Codes(mu, (0.5 * logvar).exp(), labels)


@torch.no_grad()
def error_rate(model: CodeM2, codes: Codes) -> float:
    """Test (or validation) error of q(y|z1) on the posterior means."""
    return (model.classify(codes.mu).argmax(1) != codes.labels).float().mean().item()


@dataclass(frozen=True)
class M1Codes:
    """The codes of the M1 run's three splits, and which training codes keep their label."""

    dataset: str
    latent_dim: int
    classes: int
    train: Codes
    val: Codes
    test: Codes
    labelled: torch.Tensor  # indices into train
    unlabelled: torch.Tensor


def encode_splits(m1_run: str | Path, config: M1M2Config) -> M1Codes:
    """M1's posterior for its run's train (less `train_limit`), validation and test images; `config.labels` of the
    training images keep their label (balanced over classes, by the run's split seed)."""
    data = read_config(Path(m1_run)).data
    m1 = load_model(m1_run)
    require_encoder(m1, "M1+M2 (M2 learns on the codes of its images)")
    if capabilities(m1).conditional:
        raise VaelabError(f"{m1_run} is a conditional run; M1+M2 stacks on an unsupervised run (--model vae)")
    train_split = load_split(data.dataset, "train", data.val_size, data.split_seed).subset(config.train_limit)
    val_split = load_split(data.dataset, "val", data.val_size, data.split_seed)
    test_split = load_split(data.dataset, "test")
    train, val, test = (m1_codes(m1, s.images, s.labels, data.input_mode) for s in (train_split, val_split, test_split))
    classes = describe(data.dataset).classes
    labelled = balanced_label_subset(train.labels, config.labels, data.split_seed, classes)
    keep = torch.zeros(len(train.labels), dtype=torch.bool)
    keep[labelled] = True
    return M1Codes(data.dataset, m1.latent_dim, classes, train, val, test, labelled, (~keep).nonzero().flatten())


def train_m1m2(
    m1_run: str | Path, out: str | Path, config: M1M2Config = M1M2Config(), log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Train M2 on the codes of the finished run `m1_run` with `config.labels` labels; results and weights go to
    `out`. Returns what `m1m2.json` holds."""
    started = time.perf_counter()
    codes = encode_splits(m1_run, config)
    train, val, test, labelled, unlabelled = codes.train, codes.val, codes.test, codes.labelled, codes.unlabelled
    weight = PAPER_ALPHA_PER_IMAGE * len(train.labels) / config.labels

    torch.manual_seed(config.seed)
    model_config = CodeM2Config(codes.latent_dim, config.latent_dim, config.hidden, codes.classes)
    model = CodeM2(model_config)
    baseline = CodeM2(model_config)  # same initial weights (same seed): only the objective differs
    baseline.load_state_dict(model.state_dict())
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    baseline_optimizer = torch.optim.Adam(baseline.parameters(), lr=config.lr)
    draws = torch.Generator().manual_seed(config.seed + 2)  # the labelled batch of each step and every code z1
    history: list[dict[str, Any]] = []

    def losses(index: torch.Tensor) -> list[torch.Tensor]:
        """M2's objective on a batch of unlabelled codes and one of labelled codes, and the baseline's
        cross-entropy on the same labelled codes."""
        chosen = labelled[torch.randint(len(labelled), (config.batch_size,), generator=draws)]
        z1_labelled, y = train.draw(chosen, draws), train.labels[chosen]
        z1 = train.draw(unlabelled[index], draws)
        unlabelled_term, _ = unlabelled_loss(model, z1, None, 1.0, 0.0)
        labelled_term, _ = labelled_loss(model, z1_labelled, y, None, 1.0, 0.0, weight)
        return [unlabelled_term.mean() + labelled_term.mean(), F.cross_entropy(baseline.classify(z1_labelled), y)]

    def validate(epoch: int, _: list[float]) -> None:
        history.append({"epoch": epoch + 1, "steps": (epoch + 1) * plan.steps_per_epoch(len(unlabelled)),
                        "val_error": error_rate(model, val),
                        "val_error_labelled_only": error_rate(baseline, val)})
        log(f"epoch {epoch + 1}: validation error {history[-1]['val_error']:.2%} "
            f"(labelled only {history[-1]['val_error_labelled_only']:.2%})")

    plan = FitPlan(config.epochs, config.batch_size, config.lr, seed=config.seed + 1, drop_last=True)
    steps = fit([optimizer, baseline_optimizer], losses, len(unlabelled), plan, validate, what="M1+M2")
    result = {
        "m1_run": str(m1_run),
        "dataset": codes.dataset,
        "settings": asdict(config),
        "alpha": PAPER_ALPHA_PER_IMAGE * len(train.labels),
        "weight_per_labelled_code": weight,
        "train_images": len(train.labels),
        "test_images": len(test.labels),
        "test_error": error_rate(model, test),
        "test_error_labelled_only": error_rate(baseline, test),
        "steps": steps,
        "seconds": time.perf_counter() - started,
        "history": history,
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_tensors(out / WEIGHTS, model_tensors(model), {"code_m2": str(asdict(model_config))})
    atomic_write_json(out / M1M2_JSON, result)
    return result


def train_labelled_only(
    config: RunConfig, images: torch.Tensor, labels: torch.Tensor, steps: int, device: str | torch.device = "cpu"
) -> nn.Module:
    """The same model's q(y|x), trained by cross-entropy on the labelled images alone (`images` uint8
    `[N, C, H, W]`, `labels` `[N]`, read as intensities like every q(y|x)) for `steps` Adam steps of
    `config.train.batch_size`, with the run's lr and seed. The VAE parts are never used."""
    torch.manual_seed(config.train.seed)
    model = build_model(config.model).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.lr)
    x_all, y_all = to_float(images).to(device), labels.to(device)
    batch_size = min(config.train.batch_size, len(y_all))
    plan = FitPlan(epochs=math.ceil(steps / (len(y_all) // batch_size)), batch_size=batch_size, lr=config.train.lr,
                   seed=config.train.seed + 1, drop_last=True, max_steps=steps)

    def loss(index: torch.Tensor) -> list[torch.Tensor]:
        index = index.to(device)
        return [F.cross_entropy(model.classify(x_all[index]), y_all[index])]

    fit([optimizer], loss, len(y_all), plan, what="the labelled-only baseline")
    return model.eval()
