"""Ex-post samplers: where to draw z from when the prior N(0, I) is not where the codes live.

The aggregate posterior of a trained VAE leaves holes in the prior; decoding prior draws that fall there gives
poor samples. Two samplers fitted on the training set's posterior means (never the test split) are drawn from
instead, without retraining the VAE:
- `gmm`: a full-covariance Gaussian mixture (Ghosh et al. 2020, "From variational to deterministic autoencoders");
- `two-stage`: a second, small VAE on the codes (Dai & Wipf 2019, "Diagnosing and enhancing VAE models").
Each fit is stored in the run directory as safetensors (`sampler-gmm.safetensors`, `sampler-two-stage.safetensors`):
no pickle, and reused while its settings match. Both need an encoder; a GAN draws from its prior only, a ddpm from
its prior by DDIM (`prior`) or by Ho et al.'s full ancestral chain (`ancestral`, T network passes per image).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from vaelab.analysis.traversal import decode_codes
from vaelab.config import DataConfig
from vaelab.data.datasets import load_split, prepare_inputs
from vaelab.errors import VaelabError
from vaelab.evaluation.evaluate import EVAL_SEED
from vaelab.fitting import FitPlan, fit
from vaelab.models.latent_vae import LatentVAE
from vaelab.models.registry import Capabilities, capabilities
from vaelab.models.vae import VAE, posterior_moments
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


@dataclass(frozen=True)
class TwoStageConfig:
    """The second-stage VAE and its fit: ~1 minute on 2 CPU cores for 55,000 MNIST codes."""

    hidden: int = 512
    depth: int = 2
    epochs: int = 40
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


def training_codes(model: VAE, data: DataConfig, limit: int | None = None) -> torch.Tensor:
    """Posterior means `[N, D]` of the images the run trained on (its training split, less validation, its
    `train_limit` applied), or of their first `limit`."""
    train = load_split(data.dataset, "train", data.val_size, data.split_seed).subset(data.train_limit)
    means, _ = posterior_moments(model, prepare_inputs(train.subset(limit).images, data.input_mode, EVAL_SEED))
    return means


def fit_gmm(
    model: VAE, data: DataConfig, components: int = 10, limit: int | None = None, seed: int = 0
) -> GaussianMixture:
    """Fit a full-covariance mixture on the posterior means of the run's training images (never the test split)."""
    from sklearn.mixture import GaussianMixture as SklearnMixture

    if components < 1:
        raise VaelabError(f"--components must be at least 1 (got {components})")
    means = training_codes(model, data, limit)
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
    mixture = fit_gmm(model, read_config(run_dir).data, components)
    save_tensors(path, {"weights": mixture.weights, "means": mixture.means, "cholesky": mixture.cholesky})
    return mixture


@torch.enable_grad()  # also when called from a sampler under no_grad
def fit_two_stage(
    codes: torch.Tensor, config: TwoStageConfig = TwoStageConfig(), log: Callable[[str], None] = lambda m: None
) -> LatentVAE:
    """Train the second-stage VAE on first-stage codes `[N, D]`: Adam, cosine decay, seeded order and noise."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        stage = LatentVAE(codes.shape[1], config.hidden, config.depth)
    optimizer = torch.optim.Adam(stage.parameters(), lr=config.lr)
    noise = torch.Generator().manual_seed(config.seed + 1)

    def loss(index: torch.Tensor) -> list[torch.Tensor]:
        z = codes[index]
        terms = stage.loss_terms(z, torch.randn(z.shape, generator=noise))
        return [(terms["recon"] + terms["kl"]).mean()]

    def report(epoch: int, losses: list[float]) -> None:
        if epoch % 10 == 9 or epoch == config.epochs - 1:
            log(f"second stage: epoch {epoch + 1}/{config.epochs}, loss {losses[0]:.2f} nats, "
                f"γ {stage.log_gamma.exp().item():.2e}")

    plan = FitPlan(config.epochs, config.batch_size, config.lr, config.lr / 100, seed=config.seed)
    fit([optimizer], loss, len(codes), plan, report, what="the second-stage VAE")
    return stage.eval()


def load_or_fit_two_stage(
    run_dir: str | Path, model: VAE, config: TwoStageConfig | None = None, log: Callable[[str], None] = print
) -> LatentVAE:
    """The run's stored second stage (when `config` is given: only if it was fitted with it), otherwise a new fit
    with `config` (default settings when None), stored."""
    path = Path(run_dir) / TWO_STAGE_FILE
    if path.is_file():
        tensors, metadata = load_tensors(path)
        stored = TwoStageConfig(**json.loads(metadata.get("config", "{}")))
        if config is None or stored == config:
            stage = LatentVAE(model.latent_dim, stored.hidden, stored.depth)
            load_model_weights(stage, tensors, path)
            return stage.eval()
    config = config or TwoStageConfig()
    data = read_config(run_dir).data
    log(f"fitting the two-stage sampler on the codes of the run's {data.dataset} training images (stored in {path})")
    stage = fit_two_stage(training_codes(model, data), config, log)
    save_tensors(path, model_tensors(stage), {"config": json.dumps(asdict(config), sort_keys=True)})
    return stage


def use_sampling_steps(model: VAE, steps: int | None) -> None:
    """`--steps`: the DDIM steps a ddpm samples and inverts with (None keeps its config's `sampling_steps`)."""
    if steps is None:
        return
    if capabilities(model).sampling != "diffusion":
        raise VaelabError(f"--steps sets a ddpm's DDIM steps; a {model.config.kind} has none, leave it out")
    model.ddim_times(steps)  # in range
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
    model: VAE, run_dir: str | Path, n: int, sampler: str = "prior", seed: int = 0, components: int = 10,
    log: Callable[[str], None] = print,
) -> torch.Tensor:
    """`n` latent codes `[n, D]` from the chosen sampler, reproducible by seed."""
    check_sampler(capabilities(model), model.config.kind, sampler)
    if sampler == "ancestral":
        raise VaelabError("the ancestral sampler draws images step by step, not codes; use --sampler prior")
    generator = torch.Generator().manual_seed(seed)
    if sampler == "prior":
        return model.sample_prior(n, generator).cpu()
    if sampler == "gmm":
        return load_or_fit_gmm(run_dir, model, components).sample(n, generator)
    return load_or_fit_two_stage(run_dir, model, log=log).sample(n, generator)


@torch.no_grad()
def sample_images(
    model: VAE, run_dir: str | Path, n: int, sampler: str = "prior", seed: int = 0, components: int = 10,
    log: Callable[[str], None] = print,
) -> torch.Tensor:
    """`n` decoded samples `[n, C, H, W]` from the chosen sampler, reproducible by seed."""
    check_sampler(capabilities(model), model.config.kind, sampler)
    if sampler == "ancestral":
        generator = torch.Generator().manual_seed(seed)
        return torch.cat([model.ancestral_sample(len(batch), generator).cpu()
                          for batch in torch.arange(n).split(ANCESTRAL_BATCH_SIZE)])
    codes = sample_codes(model, run_dir, n, sampler, seed, components, log)
    # The classes in turn, as ConditionalVAE.sample does.
    labels = torch.arange(n) % model.classes if capabilities(model).conditional else None
    return decode_codes(model, codes, labels)
