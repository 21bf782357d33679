"""A new user's folder, end to end: write a folder of shapes (or take one), train on it with the defaults and a time
budget as the README says, then measure what the user would look at.

    python benchmarks/small_folder.py --budget 5m                       # 300 shapes, 64×64, 3 classes
    python benchmarks/small_folder.py --emoji 1000 --budget 5m --report   # 1,000 emoji PNGs in 9 class folders
    python benchmarks/small_folder.py --budget 5m -- --kl-warmup-steps 0   # after --: extra `vaelab train` options
    python benchmarks/small_folder.py --steps 1500 -- --lr 1e-3           # a length in steps: the recipe, not the time

Printed, with the machine and the commit:
- the training line: images, batches, steps bought by the budget, seconds;
- samples that differ: the mean pairwise pixel distance (RMS over pixels) of 100 prior samples, as a share of that
  of the real test images (target ≥ 0.5);
- reconstructions that keep the class: the dataset's reference classifier (trained on the train split) reads the
  test images and their reconstructions from the posterior mean; the two accuracies (target: within 10 points);
- active dimensions (posterior-mean variance over the test images > 0.01; target ≥ 2) and the KL per image;
- with --report: `vaelab report` run on the run, its seconds, and the sections it skipped.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine import run_header
from PIL import Image

from vaelab.data.catalog import describe
from vaelab.data.datasets import load_split, prepare_inputs
from vaelab.data.shapes import write_shapes_folder
from vaelab.evaluation.collapse import sample_spread
from vaelab.evaluation.latents import active_units
from vaelab.evaluation.reference_classifier import accuracy, classifier_summary, load_or_train_classifier
from vaelab.models.base import kl_per_dimension
from vaelab.rundir import load_model, read_config, read_metrics

SAMPLES = 100


def write_emoji_folder(folder: Path, count: int, seed: int = 0) -> Path:
    """`count` emoji of the training split, chosen by `seed`, as PNG files in one subfolder per category."""
    train = load_split("emoji", "train")
    names = describe("emoji").class_names
    chosen = np.sort(np.random.default_rng(seed).choice(len(train), count, replace=False))
    for index in chosen:
        path = folder / names[int(train.labels[index])] / f"{index:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(train.images[index].permute(1, 2, 0).numpy()).save(path)
    return folder


def vaelab(*args: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "vaelab.cli", *args], check=True)
    return time.perf_counter() - started


@torch.no_grad()
def measure(run_dir: Path) -> dict[str, float]:
    config = read_config(run_dir)
    model = load_model(run_dir)
    test = load_split(config.data.dataset, "test")
    x = prepare_inputs(test.images, config.data.input_mode)
    mu, logvar = model.encode(x)
    reconstructions = model.reconstruct(x)
    samples = model.sample(SAMPLES, generator=torch.Generator().manual_seed(0))
    numbers = {
        "test_images": len(test),
        "sample_distance_share": sample_spread(samples, x[:SAMPLES]),
        "active_dimensions": int(active_units(mu).sum()),
        "kl_per_image": float(kl_per_dimension(mu, logvar).sum(1).mean()),
    }
    if config.model.classes and config.model.classes >= 2:
        judge = load_or_train_classifier(config.data.dataset)
        numbers["judge_test_accuracy"] = classifier_summary(config.data.dataset)["test_accuracy"]
        numbers["judge_on_real"] = accuracy(judge, x, test.labels)
        numbers["judge_on_reconstructions"] = accuracy(judge, reconstructions, test.labels)
    return numbers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, help="A folder of images (default: 300 shapes written here).")
    parser.add_argument("--emoji", type=int, help="Instead: this many emoji written as PNG files, 9 class folders.")
    parser.add_argument("--budget", default="5m", help="The time budget of `vaelab train`.")
    parser.add_argument("--steps", type=int, help="Train this many steps instead of a time budget.")
    parser.add_argument("--out", type=Path, help="The run directory (default: a temporary one).")
    parser.add_argument("--report", action="store_true", help="Also run `vaelab report` and time it.")
    parser.add_argument("extra", nargs="*", help="More `vaelab train` options (after --).")
    args = parser.parse_args()
    length = ["--steps", str(args.steps)] if args.steps else ["--time-budget", args.budget]
    print(run_header(f"small_folder.py {' '.join(length)} {' '.join(args.extra)}"))
    with tempfile.TemporaryDirectory(prefix="vaelab-small-") as scratch:
        if args.emoji:
            folder = write_emoji_folder(Path(scratch) / "emoji", args.emoji)
        else:
            folder = args.folder or write_shapes_folder(Path(scratch) / "shapes")
        run_dir = args.out or Path(scratch) / "run"
        seconds = vaelab("train", "--dataset", f"folder:{folder}", "--out", str(run_dir), *length, "--no-progress",
                         *args.extra)
        numbers = {"train_seconds": round(seconds, 1), **measure(run_dir)}
        if args.report:
            numbers["report_seconds"] = round(vaelab("report", str(run_dir)), 1)
            report = json.loads((run_dir / "report.json").read_text()) if (run_dir / "report.json").exists() else {}
            numbers["skipped_sections"] = report.get("skipped", {})
        last = read_metrics(run_dir)[-1]
        numbers.update(steps=last["step"], epochs=last["epoch"])
        print(json.dumps(numbers, indent=2))


if __name__ == "__main__":
    main()
