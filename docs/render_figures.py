"""Render every figure of the README and the user guide into docs/figures/ (`make figures`).

The figures are drawn by vaelab's own commands and functions from the models shipped in the package and from the
small result files under docs/results/data/, never by hand. docs/figures/manifest.json records, for each figure,
the SHA-256 of every input it shows and of the PNG itself; a figure is rendered again when an input changed or the
PNG is missing (`--force` renders all), and tests/test_docs_site.py fails when a committed figure is older than
what it shows.

Run from the repository root: `.venv/bin/python docs/render_figures.py [--force] [NAME ...]`.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib import font_manager  # noqa: E402
from PIL import Image, ImageFont  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ROOT / "docs" / "figures"
RESULT_DATA = ROOT / "docs" / "results" / "data"
PRETRAINED = ROOT / "src" / "vaelab" / "pretrained"
MANIFEST = FIGURES / "manifest.json"
VAELAB = Path(sys.executable).parent / "vaelab"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]
SEED = 0
PLOT_DPI = 100


def model_inputs(name: str) -> list[Path]:
    """The files of a shipped model that a figure drawn from it depends on."""
    return [PRETRAINED / name / file for file in ("config.json", "model.safetensors", "factors.json", "eval.json")]


# --- figures drawn with vaelab's functions ----------------------------------------------------------------------


def save_quantised(picture: Image.Image, path: Path) -> None:
    """A small PNG: an adaptive 64-colour palette is lossless for grey images and plenty for the screenshots."""
    picture.convert("RGB").quantize(colors=64, dither=Image.Dither.NONE).save(path, optimize=True)


def save_array(picture: np.ndarray, path: Path, scale: int = 2) -> None:
    from vaelab.images import upscale

    save_quantised(upscale(picture, scale), path)


def samples(run: str, sampler: str) -> Callable[[Path], None]:
    def draw(path: Path) -> None:
        from vaelab.analysis.samplers import sample_images
        from vaelab.analysis.samples import sample_grid
        from vaelab.pretrained import pretrained_dir
        from vaelab.rundir import load_model

        # The shipped model's folder: its fitted mixture is read from there (`vaelab sample` resolves it the same way)
        folder = pretrained_dir(run)
        images = sample_images(load_model(folder), folder, 64, sampler, SEED, 10, lambda line: None)
        save_array(sample_grid(images), path)

    return draw


def class_rows(run: str) -> Callable[[Path], None]:
    def draw(path: Path) -> None:
        from vaelab.analysis.class_style import class_grid, class_grid_picture
        from vaelab.rundir import load_model

        save_array(class_grid_picture(class_grid(load_model(run), 10, SEED)), path)

    return draw


def reconstructions(run: str) -> Callable[[Path], None]:
    def draw(path: Path) -> None:
        from vaelab.analysis.samples import reconstruction_grid
        from vaelab.rundir import load_model, read_config

        data = read_config(run).data
        save_array(reconstruction_grid(load_model(run), data.dataset, data.input_mode, 16), path)

    return draw


def named_traversals(run: str, count: int = 4) -> Callable[[Path], None]:
    """The traversals of the dimensions `vaelab factors` named, strongest first, each row labelled by its attribute."""

    def draw(path: Path) -> None:
        from vaelab.analysis.factors import is_named
        from vaelab.analysis.traversal import GRID_PADDING, add_row_labels, traverse_run
        from vaelab.images import make_grid
        from vaelab.pretrained import pretrained_dir
        from vaelab.rundir import read_artefact

        rows = read_artefact(pretrained_dir(run), "factors.json")
        named = sorted((row for row in rows if is_named(row)), key=lambda row: -abs(row["top_rho"]))[:count]
        dims = ",".join(str(row["dim"]) for row in named)
        traversal = traverse_run(run, dims=dims, radius=3.0, steps=11, base="test:0")
        _, steps, _, height, _ = traversal.images.shape
        grid = make_grid(traversal.images.flatten(end_dim=1), columns=steps, padding=GRID_PADDING)
        labels = [f"z{row['dim']} {row['top_attribute'].replace('_', ' ')} (ρ={row['top_rho']:+.2f})" for row in named]
        font = ImageFont.truetype(font_manager.findfont("DejaVu Sans"), 11)  # matplotlib's own font: it has ρ
        save_array(add_row_labels(grid, labels, height + GRID_PADDING, font=font), path)

    return draw


def interpolation(run: str) -> Callable[[Path], None]:
    def draw(path: Path) -> None:
        from vaelab.analysis.interpolation import interpolate_run, interpolation_grid

        save_array(interpolation_grid(interpolate_run(run, "test:0", "test:1", steps=10)), path)

    return draw


def shapes_folder(path: Path) -> None:
    from vaelab.data.shapes import write_shapes_folder
    from vaelab.images import make_grid

    with tempfile.TemporaryDirectory() as folder:
        write_shapes_folder(Path(folder), count=24, size=64, seed=SEED)
        files = sorted(Path(folder).rglob("*.png"))[:24]
        pictures = np.stack([np.asarray(Image.open(file).convert("RGB"), dtype=np.float32) / 255 for file in files])
        save_array(make_grid(pictures.transpose(0, 3, 1, 2), columns=12), path, scale=1)


# --- plots of the committed result files -------------------------------------------------------------------------


def save_plot(figure: plt.Figure, path: Path) -> None:
    with tempfile.NamedTemporaryFile(suffix=".png") as raw:
        figure.savefig(raw.name, dpi=PLOT_DPI, bbox_inches="tight")
        plt.close(figure)
        save_quantised(Image.open(raw.name), path)


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def rate_distortion(path: Path) -> None:
    figure, axis = plt.subplots(figsize=(5.5, 4))
    for name, marker in (("mnist", "o"), ("fashion-mnist", "s")):
        source = RESULT_DATA / f"beta-sweep-{name}.csv"
        if not source.exists():
            continue
        rows = read_rows(source)
        rate = [float(row["rate_nats"]) for row in rows]
        distortion = [float(row["distortion_nats"]) for row in rows]
        axis.plot(rate, distortion, marker=marker, label=name)
        for row, x, y in zip(rows, rate, distortion, strict=True):
            axis.annotate(f"β={row['beta']}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    axis.set(xlabel="rate: KL, nats/image", ylabel="distortion: reconstruction, nats/image",
             title="β sweep: rate against distortion (test split)")
    axis.grid(alpha=0.3)
    axis.legend()
    save_plot(figure, path)


def objectives(path: Path) -> None:
    """Each objective in its colour, each weight in its marker: labels would overlap where two settings tie."""
    rows = read_rows(RESULT_DATA / "objectives-mnist.csv")
    colours, markers = {}, {}
    figure, axis = plt.subplots(figsize=(6, 4))
    for row in rows:
        objective, weight = row["setting"].split("=")
        colour = colours.setdefault(objective.rstrip(" γβ") or "β", f"C{len(colours)}")
        marker = markers.setdefault(weight, "os^"[len(markers) % 3])
        axis.scatter(float(row["ELBO"]), float(row["MIG"]), color=colour, marker=marker, s=60, label=row["setting"])
    axis.set(xlabel="test ELBO, nats/image", ylabel="MIG (measured attributes)",
             title="Objectives on MNIST, 5 epochs each: likelihood against disentanglement")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="lower left")
    save_plot(figure, path)


def training_curves(path: Path) -> None:
    figure, axis = plt.subplots(figsize=(6, 4))
    for name in ("mnist", "mnist-cvae", "fashion-mnist"):
        history = [json.loads(line) for line in (PRETRAINED / name / "metrics.jsonl").read_text().splitlines()]
        epochs = [row for row in history if "val_loss" in row and "epoch" in row]
        axis.plot([row["epoch"] for row in epochs], [-row["val_loss"] for row in epochs], label=f"pretrained:{name}")
    axis.set(xlabel="epoch", ylabel="validation ELBO, nats/image", title="The shipped models' training curves")
    axis.grid(alpha=0.3)
    axis.legend()
    save_plot(figure, path)


# --- screenshots in headless Chromium ----------------------------------------------------------------------------


def screenshot(url: str, path: Path, width: int = 1280, height: int = 820,
               actions: Callable[[object], None] = lambda page: None) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": width, "height": height})
        page.goto(url, wait_until="networkidle")
        actions(page)
        page.wait_for_load_state("networkidle")
        page.wait_for_timeout(500)  # the last decoded image is drawn just after the network settles
        with tempfile.NamedTemporaryFile(suffix=".png") as raw:
            page.screenshot(path=raw.name)
            browser.close()
            save_quantised(Image.open(raw.name), path)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def interpolate_two_test_images(page) -> None:
    """The explorer as a user leaves it: test images 0 and 1 as the ends of an interpolation, a third of the way."""
    for index, end in (("0", "#set-a"), ("1", "#set-b")):
        page.fill("#test-index", index)
        page.click("#encode-test")
        page.wait_for_load_state("networkidle")
        page.click(end)
        page.wait_for_load_state("networkidle")
    page.click("#toggle-compare")
    page.locator("#scrub").fill("11")


def explorer(path: Path) -> None:
    port = free_port()
    server = subprocess.Popen([str(VAELAB), "explore", "pretrained:mnist", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the explorer did not start") from None
                time.sleep(0.5)
        screenshot(f"http://127.0.0.1:{port}/", path, actions=interpolate_two_test_images)
    finally:
        server.terminate()
        server.wait(timeout=30)


def report(path: Path) -> None:
    with tempfile.TemporaryDirectory() as folder:
        page = Path(folder) / "report.html"
        subprocess.run([str(VAELAB), "report", "pretrained:mnist", "--out", str(page)], check=True,
                       stdout=subprocess.DEVNULL)
        screenshot(page.as_uri(), path, height=900)


# --- the figures and what each shows ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    name: str
    draw: Callable[[Path], None]
    inputs: tuple[Path, ...]

    @property
    def path(self) -> Path:
        return FIGURES / f"{self.name}.png"


FIGURE_LIST = (
    Figure("samples-mnist", samples("pretrained:mnist", "gmm"),
           (*model_inputs("mnist"), PRETRAINED / "mnist" / "sampler-gmm.safetensors")),
    Figure("samples-fashion-mnist", samples("pretrained:fashion-mnist", "prior"), tuple(model_inputs("fashion-mnist"))),
    Figure("samples-mnist-cvae", class_rows("pretrained:mnist-cvae"), tuple(model_inputs("mnist-cvae"))),
    Figure("reconstructions-mnist", reconstructions("pretrained:mnist"), tuple(model_inputs("mnist"))),
    Figure("traversal-mnist", named_traversals("pretrained:mnist"), tuple(model_inputs("mnist"))),
    Figure("interpolation-mnist", interpolation("pretrained:mnist"), tuple(model_inputs("mnist"))),
    Figure("shapes-folder", shapes_folder, (ROOT / "src" / "vaelab" / "data" / "shapes.py",)),
    Figure("training-curves", training_curves,
           tuple(PRETRAINED / name / "metrics.jsonl" for name in ("mnist", "mnist-cvae", "fashion-mnist"))),
    Figure("rate-distortion-mnist", rate_distortion,
           (RESULT_DATA / "beta-sweep-mnist.csv", RESULT_DATA / "beta-sweep-fashion-mnist.csv")),
    Figure("objectives-mnist", objectives, (RESULT_DATA / "objectives-mnist.csv",)),
    Figure("explorer", explorer, (*model_inputs("mnist"), PRETRAINED / "mnist" / "directions.json")),
    Figure("report", report, (*model_inputs("mnist"), PRETRAINED / "mnist" / "metrics.jsonl",
                              PRETRAINED / "mnist" / "directions.json")),
)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "absent"


def input_digests(figure: Figure) -> dict[str, str]:
    return {str(path.relative_to(ROOT)): digest(path) for path in figure.inputs}


def read_manifest() -> dict[str, dict]:
    return json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {}


def is_fresh(figure: Figure, manifest: dict[str, dict]) -> bool:
    entry = manifest.get(figure.name)
    return (entry is not None and figure.path.exists() and entry["inputs"] == input_digests(figure)
            and entry["png"] == digest(figure.path))


def render(names: list[str], force: bool) -> None:
    torch.manual_seed(SEED)
    FIGURES.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest()
    for figure in FIGURE_LIST:
        wanted = figure.name in names if names else force or not is_fresh(figure, manifest)
        if not wanted:
            continue
        started = time.monotonic()
        temporary = figure.path.with_suffix(".tmp.png")
        figure.draw(temporary)
        temporary.replace(figure.path)
        manifest[figure.name] = {"inputs": input_digests(figure), "png": digest(figure.path)}
        MANIFEST.write_text(json.dumps(dict(sorted(manifest.items())), indent=1) + "\n")
        print(f"{figure.path.relative_to(ROOT)}: {figure.path.stat().st_size // 1024} KiB, "
              f"{time.monotonic() - started:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="figures to render again (default: every stale or missing one)")
    parser.add_argument("--force", action="store_true", help="render even the figures whose inputs are unchanged")
    arguments = parser.parse_args()
    unknown = set(arguments.names) - {figure.name for figure in FIGURE_LIST}
    if unknown:
        raise SystemExit(f"error: no figure named {', '.join(sorted(unknown))}; the figures are "
                         f"{', '.join(figure.name for figure in FIGURE_LIST)}")
    render(arguments.names, arguments.force)


if __name__ == "__main__":
    main()
