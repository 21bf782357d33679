"""`vaelab eval`: the test-split numbers of a run, written to RUN/eval.json."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch

from vaelab.config import format_duration, parse_duration
from vaelab.data.catalog import describe
from vaelab.data.datasets import iterate_batches, load_split, prepare_inputs, to_float
from vaelab.errors import VaelabError
from vaelab.evaluation.classification import classification_metrics, linear_probe, predict_probabilities, probe_features
from vaelab.evaluation.collapse import diagnose_run
from vaelab.evaluation.conditional_accuracy import conditional_accuracy
from vaelab.evaluation.latents import active_units
from vaelab.evaluation.likelihood import bits_per_dim, elbo_terms, importance_weights, iwae_bound
from vaelab.evaluation.reference_classifier import classifier_summary, load_or_train_classifier
from vaelab.hardware import compile_networks, flushes_denormals, machine_profile, resolve_device
from vaelab.io import atomic_write_json
from vaelab.models.base import GenerativeModel, LikelihoodModel
from vaelab.models.registry import build_model, capabilities, decodes_sequentially
from vaelab.rundir import EVAL, load_model, load_tensors, model_tensors, read_config, save_tensors, tensors_sha256

if TYPE_CHECKING:
    from vaelab.config import DataConfig, RunConfig
    from vaelab.data.datasets import ImageSet

EVAL_SEED = 0  # the fixed binarization of the test set and the noise of every bound
IWAE_PROGRESS = "iwae-progress.safetensors"  # a long IWAE pass's bounds so far, in the run directory
PROGRESS_SECONDS = 60.0  # how often it is saved
# A PixelCNN decodes a reconstruction pixel by pixel (784 passes): the reconstruction MSE reads this many test images.
SEQUENTIAL_MSE_IMAGES = 1000
# The most training images a fit inside an analysis reads (the linear probe, the gmm and two-stage samplers) when
# the run trained on more: a 10-class linear probe and a 10-component mixture settle on far fewer, and the fit stays
# seconds on 2 CPU cores instead of minutes on MNIST's 55,000. A run's own, smaller train_limit applies instead.
FIT_IMAGES = 10_000


def fit_images(data: DataConfig, limit: int | None = None) -> ImageSet:
    """The training images a fit inside an analysis of a run reads: the run's training split less validation, only
    the first `train_limit` it trained on, and of those the first `limit` (None: FIT_IMAGES). Never the test split,
    never an image the run did not train on."""
    train = load_split(data.dataset, "train", data.val_size, data.split_seed).subset(data.train_limit)
    return train.subset(FIT_IMAGES if limit is None else limit)


@flushes_denormals
@torch.no_grad()
def evaluate_run(
    run_dir: str | Path, iw_samples: int = 1000, iw_images: int | None = None, test_limit: int | None = None,
    device: str = "auto", log: Callable[[str], None] = lambda message: None, write: bool = True,
    class_samples: int = 1000, probe_images: int | None = None, compile: bool = False, iw_budget: str | None = None,
) -> dict[str, Any]:
    """ELBO, IWAE_k, KL per dimension, active units and MSE on the test split (fp32, fixed seeds): `vaelab eval`.

    A conditional run's bounds are on log p(x|y), with the test labels, and it adds its conditional accuracy
    under "conditional_accuracy"; a run that predicts classes adds "classification" (test accuracy, confusion
    matrix); a dataset with classes adds the linear probe accuracies (`linear_probe_accuracy_100`, `_all`). A
    family without a likelihood (gan, ddpm) gets its size instead, and a ddpm its estimated bound and the error of
    its DDIM reconstructions.

    Args:
        run_dir: The run directory (its `config.json` and `model.safetensors`).
        iw_samples: k of the importance-weighted bound IWAE_k; 0 skips it.
        iw_images: Compute IWAE_k on the first N test images only (it costs k decoder passes per image); the number
            used is recorded beside the bound. None: all of them. A ddpm's bound uses this many (None: 1,000).
        test_limit: Evaluate on the first N test images only (quick checks). None: the whole test split.
        device: "auto", "cpu" or "cuda".
        log: Called with each progress message.
        write: Also write the result to RUN/eval.json (atomically).
        class_samples: Samples per class of a conditional run's conditional accuracy.
        probe_images: Fit the linear probes on the first N of the images the run trained on. None: all of those
            (its `train_limit`), at most `FIT_IMAGES`.
        compile: Compile the model's networks with torch.compile: a slow start, then 15–35% less time per image of a
            PixelCNN decoder's bound on the CPU (`benchmarks/iwae_speed.py`); fused kernels may round differently
            in the last digits.
        iw_budget: Size the IWAE pass to this time on this machine (e.g. "1m"), instead of `iw_samples` and
            `iw_images`: the largest k of (1,000, 500, 200, 100, 50, 20) that bounds `IW_BUDGET_IMAGES` images
            in time, then as many images as fit. The protocol used is recorded beside the bound.

    An IWAE pass that takes long is resumable: its bounds so far are kept in RUN/iwae-progress.safetensors (with
    `write`), and the same command run again after a kill continues from them, with the same result.

    Returns:
        The numbers, as written to eval.json; for a family with a likelihood: "elbo", "recon", "kl" (nats per
            image), "bits_per_dim_elbo", "mse", "kl_per_dim", "active_units", "active_dims", "latent_dim", and
            "iwae" ({"k", "images", "bound", "nll", "bits_per_dim", …}) when `iw_samples` > 0.

    Raises:
        VaelabError: The run directory, its config or its weights are missing or damaged.

    Examples:
        ```python
        import vaelab

        numbers = vaelab.evaluate_run("runs/demo", iw_samples=200, iw_images=2000)
        print(f"ELBO {numbers['elbo']:.2f}, IWAE-200 NLL {numbers['iwae']['nll']:.2f} nats")
        print(numbers["active_units"], "of", numbers["latent_dim"], "dimensions active")
        ```
    """
    run = _load_run(Path(run_dir), device, compile, test_limit, log)
    if not capabilities(run.model).likelihood:
        return _write_result(run, evaluate_likelihood_free(run.model, run.config, run.test, iw_images, log), write)
    result = _likelihood_numbers(run, iw_samples, iw_images, iw_budget, class_samples, probe_images, write, log)
    return _write_result(run, result, write, IWAE_PROGRESS)


class _LoadedRun(NamedTuple):
    run_dir: Path
    config: RunConfig
    model: torch.nn.Module  # a LikelihoodModel past `evaluate_run`'s check
    device: torch.device
    test: ImageSet  # the test split, or its first `test_limit` images


def _load_run(
    run_dir: Path, device: str, compile: bool, test_limit: int | None, log: Callable[[str], None]
) -> _LoadedRun:
    """The run's config, its weights on the device and its test split, and the machine said: the numbers' speed
    (and, for a compiled or GPU model, their last digits) depend on it."""
    config = read_config(run_dir)
    torch_device = resolve_device(device)
    model = load_model(run_dir, torch_device)
    if compile:
        compile_networks(model)
    test = load_split(config.data.dataset, "test").subset(test_limit)
    log(machine_profile(torch_device, "fp32", "evaluation computes in fp32").describe())
    return _LoadedRun(run_dir, config, model, torch_device, test)


def _write_result(run: _LoadedRun, result: dict[str, Any], write: bool, *superseded: str) -> dict[str, Any]:
    """With `write`, RUN/eval.json (atomically), then the files whose contents it now holds are removed: a kill in
    between leaves both, never neither."""
    if write:
        atomic_write_json(run.run_dir / EVAL, result)
        for name in superseded:
            (run.run_dir / name).unlink(missing_ok=True)
    return result


def _likelihood_numbers(
    run: _LoadedRun, iw_samples: int, iw_images: int | None, iw_budget: str | None, class_samples: int,
    probe_images: int | None, write: bool, log: Callable[[str], None],
) -> dict[str, Any]:
    """The numbers of a family with a likelihood, section by section (`evaluate_run` says which apply), all on the
    same fixed binarization of the test split."""
    config, model, test = run.config, run.model, run.test
    x_all = prepare_inputs(test.images, config.data.input_mode, EVAL_SEED)
    intensities = to_float(test.images)
    can = capabilities(model)
    started = time.perf_counter()
    result = _elbo_numbers(run, x_all, intensities, log)
    result["collapse"] = diagnose_run(run.run_dir, model, config, result, intensities, EVAL_SEED).to_dict()
    if iw_samples > 0:
        result["iwae"] = _iwae_numbers(run, x_all, iw_samples, iw_images, iw_budget, write, log)
    if can.conditional:
        log(f"conditional accuracy: {class_samples:,} samples per class, judged by the reference classifier")
        judge = load_or_train_classifier(config.data.dataset, log=log).to(run.device)
        accuracy = conditional_accuracy(model, judge, class_samples, EVAL_SEED)
        accuracy["classifier_test_accuracy"] = classifier_summary(config.data.dataset)["test_accuracy"]
        result["conditional_accuracy"] = accuracy
    if can.classifier:
        log("classification accuracy and confusion matrix on the test split")
        predicted = predict_probabilities(model, intensities).argmax(1)
        result["classification"] = classification_metrics(predicted.numpy(), test.labels.numpy(), model.classes)
    classes = describe(config.data.dataset).classes
    if classes >= 2:
        result.update(_probe_numbers(run, x_all, classes, probe_images, can.conditional, log))
    result["seconds"] = time.perf_counter() - started
    return result


class _ElboPass(NamedTuple):
    recon: torch.Tensor  # −log p(x|z) of each test image, one z draw
    kl: torch.Tensor
    kl_dims: torch.Tensor  # the KL of each image per latent dimension
    means: torch.Tensor  # the posterior means
    squared_error: float  # of the reconstructions of the first `mse_images`
    mse_images: int


def _elbo_pass(
    run: _LoadedRun, x_all: torch.Tensor, intensities: torch.Tensor, log: Callable[[str], None]
) -> _ElboPass:
    """One pass over the test split that gives the ELBO's terms of every image and the error of the reconstructions
    of the first few (all but for a PixelCNN, which decodes a reconstruction pixel by pixel)."""
    model, test = run.model, run.test
    n = len(test)
    sequential = decodes_sequentially(run.config.model)
    mse_images = min(n, SEQUENTIAL_MSE_IMAGES) if sequential else n
    generator = torch.Generator().manual_seed(EVAL_SEED)
    recon, kl, kl_dims, means, squared_error = [], [], [], [], 0.0
    for index in iterate_batches(n, 1000):
        x = x_all[index].to(run.device)
        labels = test.labels[index]
        terms = elbo_terms(model, x, generator, labels)
        recon.append(terms["recon"].cpu())
        kl.append(terms["kl"].cpu())
        kl_dims.append(terms["kl_per_dim"].cpu())
        means.append(terms["mu"].cpu())
        decoded = index[index < mse_images]
        if len(decoded):
            if sequential:
                log(f"reconstruction MSE: decoding test images {int(decoded[0])}–{int(decoded[-1])} pixel by pixel")
            reconstruction = model.decode(terms["mu"][: len(decoded)], labels[: len(decoded)]).cpu()
            squared_error += (reconstruction - intensities[decoded]).pow(2).sum().item()
    return _ElboPass(torch.cat(recon), torch.cat(kl), torch.cat(kl_dims), torch.cat(means), squared_error, mse_images)


def _elbo_numbers(
    run: _LoadedRun, x_all: torch.Tensor, intensities: torch.Tensor, log: Callable[[str], None]
) -> dict[str, Any]:
    """The ELBO over the whole test split, its terms, the reconstruction MSE and the latent usage, with what the run
    is: the first numbers of eval.json."""
    config = run.config
    n, pixels = len(run.test), x_all[0].numel()
    terms = _elbo_pass(run, x_all, intensities, log)
    elbo = -(terms.recon + terms.kl)
    kl_per_dim = terms.kl_dims.mean(0)
    active = active_units(terms.means)
    result: dict[str, Any] = {
        "dataset": config.data.dataset,
        "split": "test",
        "input_mode": config.data.input_mode,
        "likelihood": config.model.likelihood,
        "images": n,
        "elbo": elbo.mean().item(),
        "recon": terms.recon.mean().item(),
        "kl": terms.kl.mean().item(),
        "bits_per_dim_elbo": bits_per_dim(-elbo.mean().item(), pixels),
        "mse": terms.squared_error / (terms.mse_images * pixels),
        "mse_images": terms.mse_images,
        "kl_per_dim": kl_per_dim.tolist(),
        "active_units": int(active.sum()),
        "active_dims": active.nonzero().flatten().tolist(),
        "latent_dim": run.model.latent_dim,
        "objective": config.objective_settings(),
    }
    if config.model.likelihood == "bernoulli" and config.data.input_mode == "intensities":
        result["note"] = "Bernoulli likelihood on intensities (not binarized): bounds are cross-entropies, not NLLs"
    return result


def _iwae_numbers(
    run: _LoadedRun, x_all: torch.Tensor, iw_samples: int, iw_images: int | None, iw_budget: str | None, write: bool,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """IWAE_k on the first iw_images test images: as asked, or as many as fit in iw_budget. The time it will take is
    said first: the full protocol takes hours on a CPU."""
    test, run_dir = run.test, run.run_dir
    n, pixels = len(test), x_all[0].numel()
    m = min(iw_images or n, n)
    seconds_per_draw = _seconds_per_draw(run.model, x_all, test.labels, run.device)
    full = f"the full protocol (k = 1,000, all {n:,} test images) ≈ {format_duration(seconds_per_draw * 1000 * n)}"
    if iw_budget is not None:
        iw_samples, m = iwae_protocol(parse_duration(iw_budget, "--iw-budget"), seconds_per_draw, n)
        log(f"IWAE sized to {iw_budget} on this machine: k = {iw_samples:,} on the first {m:,} test images "
            f"(≈ {format_duration(seconds_per_draw * iw_samples * m)}); {full}: `vaelab eval {run_dir}`")
    else:
        log(f"IWAE-{iw_samples} on {m:,} test images: ≈ {format_duration(seconds_per_draw * iw_samples * m)} "
            "on this machine")
    progress = run_dir / IWAE_PROGRESS if write else None
    iwae_t, same_t = importance_weighted_bounds(run.model, x_all[:m], test.labels[:m], iw_samples, run.device,
                                                log, progress)
    return {
        "k": iw_samples,
        "images": m,
        "bound": iwae_t.mean().item(),
        "nll": -iwae_t.mean().item(),
        "bits_per_dim": bits_per_dim(-iwae_t.mean().item(), pixels),
        # The k-sample ELBO on the same draws; IWAE_k ≥ it on every image (Jensen).
        "elbo_same_draws": same_t.mean().item(),
        "images_below_elbo": int((iwae_t < same_t - 1e-4).sum()),
        **({"sized_to": iw_budget} if iw_budget is not None else {}),
    }


def _probe_numbers(
    run: _LoadedRun, x_all: torch.Tensor, classes: int, probe_images: int | None, conditional: bool,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """The linear probe accuracies: how much of the class a linear readout finds in the posterior means, fitted on
    the run's own training images, never the test split."""
    config, model = run.config, run.model
    train = fit_images(config.data, probe_images)
    log(f"linear probe: logistic regression on the posterior means of {len(train):,} of the run's training images")
    train_x = prepare_inputs(train.images, config.data.input_mode, EVAL_SEED)
    features = "posterior means averaged over classes" if conditional else "posterior means"
    return linear_probe(probe_features(model, train_x), train.labels, probe_features(model, x_all), run.test.labels,
                        classes, config.data.split_seed, features, log)


def iwae_pass_images(model: GenerativeModel, device: torch.device) -> int:
    """Decoded images per pass of the IWAE bound. On the CPU a PixelCNN decoder's time per image rose from about
    2.5 ms at 20–50 images a pass to 4.7 ms at 250 and 15.5 ms at 8,000 (its C full-size maps per image leave the
    cache), so it decodes 50 of one image's k draws at a time; a GPU needs thousands per pass to be busy."""
    if model.config.decoder.name == "pixelcnn" and device.type == "cpu":
        return 50
    return 20_000 if model.config.decoder.name == "factorised" else 2_000


IW_LADDER = (1000, 500, 200, 100, 50, 20)  # the k a time-sized IWAE pass may take, best first
IW_BUDGET_IMAGES = 1000  # … on at least this many test images (all, when fewer): below that, its noise dominates


def iwae_protocol(seconds: float, seconds_per_draw: float, test_images: int) -> tuple[int, int]:
    """The k and the number of test images of an IWAE pass that fits in `seconds`: the largest k of `IW_LADDER`
    that bounds `IW_BUDGET_IMAGES` images in time (the smallest when none does), then as many images as fit,
    in hundreds (all of them at most; 100 at least)."""
    draws = seconds / seconds_per_draw
    least = min(IW_BUDGET_IMAGES, test_images)
    k = next((k for k in IW_LADDER if k * least <= draws), IW_LADDER[-1])
    images = int(draws / k) // 100 * 100
    return k, min(test_images, max(images, min(100, test_images)))


def _seconds_per_draw(
    model: LikelihoodModel, inputs: torch.Tensor, labels: torch.Tensor, device: torch.device
) -> float:
    """Measured seconds of one importance-weighted draw (an encoder share and a decoder pass), on 8 test images
    with 250 draws each after a warm-up pass; its own generator, so the bound itself draws the same numbers."""
    generator = torch.Generator().manual_seed(EVAL_SEED + 2)
    images = min(8, len(inputs))
    importance_weights(model, inputs[:2].to(device), 10, generator, labels=labels[:2])  # kernels chosen, caches warm
    started = time.perf_counter()
    weights = importance_weights(model, inputs[:images].to(device), 250, generator, labels=labels[:images])
    weights.cpu()
    return (time.perf_counter() - started) / (images * 250)


def importance_weighted_bounds(
    model: LikelihoodModel, inputs: torch.Tensor, labels: torch.Tensor, k: int, device: torch.device,
    log: Callable[[str], None] = lambda message: None, progress: Path | None = None,
    save_every: float = PROGRESS_SECONDS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """IWAE_k of each image, and the k-sample ELBO on the same draws: two `[N]` tensors (fixed seed).

    With `progress`, the bounds so far and the noise generator's state are written there (atomically) every
    `save_every` seconds, and a later call with the same weights, images count and k continues from them: a pass
    that is killed and run again gives the same bounds, bit for bit, as one that never stopped. A file for other
    settings, or a damaged one, is ignored and replaced."""
    generator = torch.Generator().manual_seed(EVAL_SEED + 1)
    pass_images = iwae_pass_images(model, device)
    chunk = min(k, 250, pass_images)
    batch = max(1, pass_images // chunk)
    n = len(inputs)
    settings = {"k": str(k), "images": str(n), "batch": str(batch), "chunk": str(chunk),
                "weights_sha256": tensors_sha256(model_tensors(model))}
    bounds, same_draws, done = [], [], 0
    if progress is not None and progress.is_file():
        try:
            saved, metadata = load_tensors(progress)
        except VaelabError:  # damaged: only the time it holds is lost
            saved, metadata = {}, {}
        if all(metadata.get(name) == value for name, value in settings.items()):
            bounds, same_draws = [saved["iwae"]], [saved["elbo_same_draws"]]
            done = len(saved["iwae"])
            generator.set_state(saved["generator"])
            log(f"IWAE-{k}: continuing at image {done:,} of {n:,} from {progress}")
        else:
            log(f"IWAE-{k}: {progress} is for other weights or settings, or damaged; starting over")
    saved_at = time.perf_counter()
    log_every = max(1, n // batch // 20) * batch
    for start in range(done, n, batch):
        stop = min(start + batch, n)
        log_w = importance_weights(model, inputs[start:stop].to(device), k, generator, chunk, labels[start:stop])
        log_w = log_w.cpu()
        bounds.append(iwae_bound(log_w))
        same_draws.append(log_w.mean(1))
        if start % log_every == 0:
            log(f"IWAE-{k}: {stop:,}/{n:,} images")
        if progress is not None and stop < n and time.perf_counter() - saved_at >= save_every:
            save_tensors(progress, {"iwae": torch.cat(bounds), "elbo_same_draws": torch.cat(same_draws),
                                    "generator": generator.get_state()}, settings)
            saved_at = time.perf_counter()
    return torch.cat(bounds), torch.cat(same_draws)


def trained_parameters(model: torch.nn.Module) -> int:
    """The parameters its optimizers train: a GAN's two networks, not a ddpm's EMA copy of its U-Net. Counted on a
    fresh build of its config, because `load_model` freezes every parameter; on the meta device, which allocates
    nothing and draws no random numbers."""
    with torch.device("meta"):
        fresh = build_model(model.config)
    return sum(p.numel() for p in fresh.parameters() if p.requires_grad)


BOUND_IMAGES = 1000  # test images of a ddpm's bound estimate
BOUND_TIMESTEPS = 4  # timesteps drawn per image


@torch.no_grad()
def evaluate_likelihood_free(
    model: torch.nn.Module, config: RunConfig, test: ImageSet, bound_images: int | None,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """What applies to a family without a likelihood: its size; for a ddpm the test ε-MSE of its EMA weights, its
    estimated variational bound (`vaelab.evaluation.diffusion_bound`) on the first `bound_images` test images and the
    error of its DDIM reconstructions (inversion, then generation). Sample quality is `vaelab generation`'s."""
    started = time.perf_counter()
    result: dict[str, Any] = {
        "dataset": config.data.dataset, "split": "test", "family": config.model.family, "images": len(test),
        "parameters": trained_parameters(model),
        "note": f"a {config.model.family} has no likelihood to bound; its samples are measured by `vaelab generation`",
    }
    if capabilities(model).sampling == "diffusion":
        from vaelab.evaluation.diffusion_bound import estimated_bound

        count = min(bound_images or BOUND_IMAGES, len(test))
        log(f"variational bound: {count:,} test images, {BOUND_TIMESTEPS} sampled timesteps each")
        result["bound"] = estimated_bound(model, to_float(test.images[:count]), BOUND_TIMESTEPS, EVAL_SEED)
        result["note"] = ("a ddpm's likelihood is a bound estimated with sampled timesteps; its samples are measured "
                          "by `vaelab generation`")
        log(f"DDIM reconstructions ({model.sampling_steps} steps each way) of the first {RECONSTRUCTED} test images")
        originals = to_float(test.images[:RECONSTRUCTED])
        reconstructed = model.decode(model.invert(originals))
        result["ddim_reconstruction_mse"] = (reconstructed.cpu() - originals).pow(2).mean().item()
        result["ddim_steps"] = model.sampling_steps
    result["seconds"] = time.perf_counter() - started
    return result


RECONSTRUCTED = 100


@torch.no_grad()
def per_class_reconstruction(model: LikelihoodModel, inputs: torch.Tensor, labels: torch.Tensor) -> list[float]:
    """Mean reconstruction term −log p(x|z) per class, nats (one z sample per image, fixed seed)."""
    generator = torch.Generator().manual_seed(EVAL_SEED)
    recon = elbo_terms(model, inputs.to(model.device), generator, labels)["recon"]
    recon = recon.cpu()
    return [recon[labels == c].mean().item() for c in range(int(labels.max()) + 1)]
