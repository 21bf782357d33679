"""Ex-post samplers: where to draw z from when the prior N(0, I) is not where the codes live.

The aggregate posterior of a trained VAE leaves holes in the prior; decoding prior draws that fall there gives
poor samples. Two samplers fitted on the posterior means of the images the run trained on (its `train_limit`, at
most `vaelab.evaluation.evaluate.FIT_IMAGES`; never the test split) are drawn from instead, without retraining the VAE:
- `gmm`: a full-covariance Gaussian mixture (Ghosh et al. 2020, "From variational to deterministic autoencoders");
- `two-stage`: a second, small VAE on the codes (Dai & Wipf 2019, "Diagnosing and enhancing VAE models"), trained
  for a fixed number of steps whatever the number of codes, so its cost is bounded.
Each fit is stored as safetensors (`sampler-gmm.safetensors`, `sampler-two-stage.safetensors`) in the run directory,
or in the `cache_dir` given instead (`vaelab compare` keeps its own and never writes into the runs it compares): no
pickle, and reused while its settings match. Both need an encoder; a GAN draws from its prior only, a ddpm from
its prior by DDIM (`prior`) or by Ho et al.'s full ancestral chain (`ancestral`, T network passes per image).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from vaelab.analysis.traversal import decode_codes
from vaelab.config import DataConfig, format_duration
from vaelab.data.datasets import prepare_inputs
from vaelab.errors import VaelabError
from vaelab.evaluation.evaluate import EVAL_SEED, fit_images
from vaelab.fitting import FitPlan, fit, fit_estimator
from vaelab.hardware import one_thread
from vaelab.models.base import EncodingModel, GenerativeModel, posterior_moments
from vaelab.models.latent_vae import LatentVAE
from vaelab.models.registry import Capabilities, capabilities
from vaelab.rundir import load_model_weights, load_tensors, model_tensors, read_config, save_tensors

SAMPLERS = ("prior", "gmm", "two-stage", "ancestral")
FITTED = ("gmm", "two-stage")  # fitted on the codes of training images: they need an encoder
ANCESTRAL_BATCH_SIZE = 500


def samplers_for(can: Capabilities, explicit: bool = False) -> list[str]:
    """The samplers a family offers: those `all` means, or (`explicit`) every one it accepts when named. The fitted
    samplers model the codes of unlabelled images, so a conditional family offers the prior alone (its samples
    take the classes in turn)."""
    if can.encoder and not can.conditional:
        return ["prior", *FITTED]
    if can.sampling == "diffusion" and explicit:
        return ["prior", "ancestral"]
    return ["prior"]
GMM_FILE = "sampler-gmm.safetensors"
TWO_STAGE_FILE = "sampler-two-stage.safetensors"


# Optimizer steps of the second stage, however many codes: the epochs follow (500 of a run's 512 codes, 25 of
# FIT_IMAGES). Fixed epochs tied the cost to the data: 40 epochs of 55,000 codes were 8,600 steps, of 512 codes 80.
TWO_STAGE_STEPS = 1000


@dataclass(frozen=True)
class TwoStageConfig:
    """The second-stage VAE and its fit: `steps` Adam steps of `batch_size` codes, whatever their number."""

    hidden: int = 512
    depth: int = 2
    steps: int = TWO_STAGE_STEPS
    batch_size: int = 256
    lr: float = 1e-3
    seed: int = 0


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


def training_codes(model: EncodingModel, data: DataConfig, limit: int | None = None) -> torch.Tensor:
    """Posterior means `[N, D]` of the images the run trained on (its training split, less validation, its
    `train_limit` applied): their first `limit`, or first `FIT_IMAGES` when None (`fit_images`)."""
    train = fit_images(data, limit)
    means, _ = posterior_moments(model, prepare_inputs(train.images, data.input_mode, EVAL_SEED))
    return means


def fit_gmm(
    model: GenerativeModel, data: DataConfig, components: int = 10, limit: int | None = None, seed: int = 0,
    log: Callable[[str], None] = lambda message: None,
) -> GaussianMixture:
    """Fit a full-covariance mixture on the posterior means of the run's training images (never the test split;
    `training_codes`)."""
    from sklearn.mixture import GaussianMixture as SklearnMixture

    if components < 1:
        raise VaelabError(f"--components must be at least 1 (got {components})")
    means = training_codes(model, data, limit)
    if components > len(means):
        raise VaelabError(f"--components {components} is more than the {len(means)} training codes")
    log(f"fitting the gmm sampler: {components} components on the codes of {len(means):,} training images")
    fitted = SklearnMixture(components, covariance_type="full", random_state=seed, reg_covar=1e-4)
    fit_estimator(fitted, means.numpy(), what="the gmm sampler's mixture", log=log)
    return GaussianMixture(
        torch.as_tensor(fitted.weights_, dtype=torch.float64),
        torch.as_tensor(fitted.means_, dtype=torch.float32),
        torch.linalg.cholesky(torch.as_tensor(fitted.covariances_, dtype=torch.float64)).float(),
    )


def read_gmm(folder: str | Path) -> GaussianMixture | None:
    """The mixture stored in `folder` (a run directory, or a cache of `vaelab compare`), or None when none has been
    fitted (never fits one)."""
    path = Path(folder) / GMM_FILE
    if not path.is_file():
        return None
    tensors, _ = load_tensors(path)
    return GaussianMixture(tensors["weights"], tensors["means"], tensors["cholesky"])


def load_or_fit_gmm(
    run_dir: str | Path, model: GenerativeModel, components: int = 10, cache_dir: str | Path | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> GaussianMixture:
    """The mixture stored in `cache_dir` (None: the run directory) when it has `components` components, otherwise
    a new fit, stored there."""
    folder = Path(cache_dir if cache_dir is not None else run_dir)
    stored = read_gmm(folder)
    if stored is not None and stored.weights.shape[0] == components:
        return stored
    mixture = fit_gmm(model, read_config(run_dir).data, components, log=log)
    folder.mkdir(parents=True, exist_ok=True)
    save_tensors(folder / GMM_FILE, {"weights": mixture.weights, "means": mixture.means, "cholesky": mixture.cholesky})
    return mixture


@torch.enable_grad()  # also when called from a sampler under no_grad
def fit_two_stage(
    codes: torch.Tensor, config: TwoStageConfig = TwoStageConfig(), log: Callable[[str], None] = lambda m: None
) -> LatentVAE:
    """Train the second-stage VAE on first-stage codes `[N, D]`: `config.steps` Adam steps (as many epochs as
    those take), cosine decay, seeded order and noise; a progress line about every fifth of the steps, with the
    time left."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        stage = LatentVAE(codes.shape[1], config.hidden, config.depth)
    optimizer = torch.optim.Adam(stage.parameters(), lr=config.lr)
    noise = torch.Generator().manual_seed(config.seed + 1)

    def loss(index: torch.Tensor) -> list[torch.Tensor]:
        z = codes[index]
        terms = stage.loss_terms(z, torch.randn(z.shape, generator=noise))
        return [(terms["recon"] + terms["kl"]).mean()]

    per_epoch = FitPlan(1, config.batch_size, config.lr).steps_per_epoch(len(codes))
    epochs = math.ceil(config.steps / per_epoch)
    every = max(1, epochs // 5)
    started = time.perf_counter()
    log(f"second stage: {config.steps:,} steps over {len(codes):,} codes ({epochs:,} epoch{'s' * (epochs > 1)})")

    def report(epoch: int, losses: list[float]) -> None:
        if epoch % every == every - 1:
            done = min((epoch + 1) * per_epoch, config.steps)
            left = (time.perf_counter() - started) / done * (config.steps - done)
            log(f"second stage: step {done:,}/{config.steps:,}, loss {losses[0]:.2f} nats, "
                f"γ {stage.log_gamma.exp().item():.2e}, ≈ {format_duration(left)} left")

    plan = FitPlan(epochs, config.batch_size, config.lr, config.lr / 100, seed=config.seed, max_steps=config.steps)
    with one_thread():  # a small MLP: see one_thread
        fit([optimizer], loss, len(codes), plan, report, what="the second-stage VAE")
    log(f"second stage: fitted in {format_duration(time.perf_counter() - started)}")
    return stage.eval()


def load_or_fit_two_stage(
    run_dir: str | Path, model: GenerativeModel, config: TwoStageConfig | None = None,
    log: Callable[[str], None] = print, cache_dir: str | Path | None = None,
) -> LatentVAE:
    """The second stage stored in `cache_dir` (None: the run directory; when `config` is given: only if it was
    fitted with it), otherwise a new fit with `config` (default settings when None), stored there."""
    path = Path(cache_dir if cache_dir is not None else run_dir) / TWO_STAGE_FILE
    if path.is_file():
        tensors, metadata = load_tensors(path)
        try:
            stored = TwoStageConfig(**json.loads(metadata.get("config", "{}")))
        except TypeError:  # fitted by an older vaelab, with settings this one no longer has: fitted again
            stored = None
        if stored is not None and (config is None or stored == config):
            stage = LatentVAE(model.latent_dim, stored.hidden, stored.depth)
            load_model_weights(stage, tensors, path)
            return stage.eval()
    config = config or TwoStageConfig()
    data = read_config(run_dir).data
    log(f"fitting the two-stage sampler on the codes of the run's {data.dataset} training images (stored in {path})")
    stage = fit_two_stage(training_codes(model, data), config, log)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_tensors(path, model_tensors(stage), {"config": json.dumps(asdict(config), sort_keys=True)})
    return stage


def use_sampling_steps(model: GenerativeModel, steps: int | None) -> None:
    """`--steps`: the DDIM steps a ddpm samples and inverts with (None keeps its config's `sampling_steps`)."""
    if steps is None:
        return
    if capabilities(model).sampling != "diffusion":
        raise VaelabError(f"--steps sets a ddpm's DDIM steps; a {model.config.family} has none, leave it out")
    model.schedule.ddim_times(steps)  # in range
    model.sampling_steps = steps


def check_sampler(can: Capabilities, kind: str, sampler: str) -> None:
    """A one-line error unless a family with capabilities `can` (model kind `kind`) offers `sampler`."""
    offered = samplers_for(can, explicit=True)
    if sampler not in offered:
        if sampler in SAMPLERS:
            raise VaelabError(f"a {kind} cannot use --sampler {sampler}; it offers: {', '.join(offered)}")
        raise VaelabError(f"unknown --sampler '{sampler}'; choose one of: {', '.join(offered)}")


@torch.no_grad()
def sample_codes(
    model: GenerativeModel, run_dir: str | Path, n: int, sampler: str = "prior", seed: int = 0, components: int = 10,
    log: Callable[[str], None] = print, cache_dir: str | Path | None = None,
) -> torch.Tensor:
    """`n` latent codes `[n, D]` from the chosen sampler, reproducible by seed; a fitted sampler is read from (or
    fitted into) `cache_dir`, by default the run directory."""
    check_sampler(capabilities(model), model.config.family, sampler)
    if sampler == "ancestral":
        raise VaelabError("the ancestral sampler draws images step by step, not codes; use --sampler prior")
    generator = torch.Generator().manual_seed(seed)
    if sampler == "prior":
        return model.sample_prior(n, generator).cpu()
    if sampler == "gmm":
        return load_or_fit_gmm(run_dir, model, components, cache_dir, log).sample(n, generator)
    return load_or_fit_two_stage(run_dir, model, log=log, cache_dir=cache_dir).sample(n, generator)


@torch.no_grad()
def sample_images(
    model: GenerativeModel, run_dir: str | Path, n: int, sampler: str = "prior", seed: int = 0, components: int = 10,
    log: Callable[[str], None] = print, cache_dir: str | Path | None = None,
) -> torch.Tensor:
    """`n` decoded samples `[n, C, H, W]` from the chosen sampler, reproducible by seed (`cache_dir`: as
    `sample_codes`)."""
    check_sampler(capabilities(model), model.config.family, sampler)
    if sampler == "ancestral":
        generator = torch.Generator().manual_seed(seed)
        return torch.cat([model.ancestral_sample(len(batch), generator).cpu()
                          for batch in torch.arange(n).split(ANCESTRAL_BATCH_SIZE)])
    codes = sample_codes(model, run_dir, n, sampler, seed, components, log, cache_dir)
    # The classes in turn, as ConditionalVAE.sample does.
    labels = torch.arange(n) % model.classes if capabilities(model).conditional else None
    return decode_codes(model, codes, labels)
