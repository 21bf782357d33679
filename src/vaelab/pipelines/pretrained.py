"""Build the models shipped in `vaelab/pretrained`: train each with the project's own code, store its weights in
fp16 where that keeps the test bounds within `FP16_TOLERANCE_NATS` of the fp32 weights, evaluate and analyse the
weights that ship, and write every file with its SHA-256 into the manifest.

    python -m vaelab.pipelines.pretrained [NAME ...] [--work runs/pretrained]     # `make pretrained`: all of them

Training goes to WORK/NAME (resumable: a finished run is kept); the shipped copy of a model is assembled in
WORK/NAME-ship, the whole shipped folder in WORK/package, which then replaces the package's. The dataset's
reference classifier (fp16, its test accuracy measured again on those weights) and its test split (the canonical
IDX files, gzipped) are shipped beside the models, so that `vaelab explore pretrained:NAME` and
`vaelab report pretrained:NAME` need no download.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vaelab.analysis.directions import analyse_directions
from vaelab.analysis.factors import analyse_factors
from vaelab.analysis.samplers import load_or_fit_gmm
from vaelab.config import load_yaml_config
from vaelab.data.catalog import describe
from vaelab.data.datasets import load_split, to_float
from vaelab.data.sources import fetch_files, sha256_hex
from vaelab.evaluation import evaluate_run
from vaelab.evaluation.reference_classifier import accuracy, classifier_paths, load_or_train_classifier
from vaelab.io import atomic_write_bytes, atomic_write_json
from vaelab.models.registry import capabilities
from vaelab.pretrained import CLASSIFIERS, HOME, MANIFEST, TEST_SPLITS
from vaelab.rundir import (
    BEST,
    CHECKSUM_KEY,
    CONFIG,
    EVAL,
    METRICS,
    load_model,
    load_tensors,
    read_config,
    read_metrics,
    save_tensors,
)
from vaelab.training import train

FP16_TOLERANCE_NATS = 0.05  # the bar: fp16 weights may move the test bounds by at most this much
EVAL_OPTIONS = {"iw_samples": 200, "iw_images": 2000}  # the `make demo` protocol
FACTOR_BASES = 100
Log = Callable[[str], None]


@dataclass(frozen=True)
class Recipe:
    """How one shipped model is trained: a config file, overrides, and one line for `vaelab list-pretrained`."""

    config: str
    summary: str
    overrides: dict[str, Any] = field(default_factory=dict)


RECIPES = {
    "mnist": Recipe("configs/mnist-demo.yaml", "the default VAE of `make demo` (binarized MNIST, 32-d latent)"),
    "mnist-cvae": Recipe("configs/mnist-demo.yaml", "conditional VAE: the label is the content, z the style",
                         {"family": "cvae", "label_at_input": True, "beta": 2.0}),
    # 22 epochs, as the Fashion-MNIST run of docs/results/likelihood.md (the config's 60 take about three times as long)
    "fashion-mnist": Recipe("configs/fashion-mnist.yaml", "the default Fashion-MNIST VAE (grey intensities)",
                            {"epochs": 22}),
}


def train_or_resume(recipe: Recipe, run_dir: Path) -> None:
    config = load_yaml_config(Path(recipe.config)).with_overrides(recipe.overrides)
    if not (run_dir / CONFIG).is_file():
        train(config, run_dir, progress=False)
    elif len(read_metrics(run_dir)) < read_config(run_dir).train.epochs:
        train(read_config(run_dir), run_dir, resume=True, progress=False)


def write_half_precision(run_dir: Path, ship_dir: Path) -> None:
    """ship_dir gets the run's config, curves and its best weights in fp16 (nothing else: analyses are redone)."""
    if ship_dir.exists():
        shutil.rmtree(ship_dir)
    ship_dir.mkdir(parents=True)
    for name in (CONFIG, METRICS):
        shutil.copy2(run_dir / name, ship_dir / name)
    tensors, metadata = load_tensors(run_dir / BEST)
    half = {name: t.half() if t.is_floating_point() else t for name, t in tensors.items()}
    save_tensors(ship_dir / BEST, half, {k: v for k, v in metadata.items() if k != CHECKSUM_KEY})


def bounds_of(evaluation: dict[str, Any]) -> dict[str, float]:
    """The test ELBO and IWAE bound of an eval.json (nats per image)."""
    return {"elbo": evaluation["elbo"], "iwae": evaluation["iwae"]["bound"]}


def bound_change(full: dict[str, Any], half: dict[str, Any]) -> dict[str, float]:
    """How far the fp16 weights move each test bound (nats)."""
    return {key: abs(bounds_of(half)[key] - value) for key, value in bounds_of(full).items()}


def build_model(name: str, work: Path, log: Log) -> dict[str, Any]:
    recipe = RECIPES[name]
    run_dir, ship_dir = work / name, work / f"{name}-ship"
    log(f"{name}: training (or resuming) {run_dir}")
    train_or_resume(recipe, run_dir)
    full = evaluate_run(run_dir, **EVAL_OPTIONS, log=log)
    write_half_precision(run_dir, ship_dir)
    half = evaluate_run(ship_dir, **EVAL_OPTIONS, log=log)
    change = bound_change(full, half)
    dtype = "float16"
    if max(change.values()) > FP16_TOLERANCE_NATS:  # fp16 costs too much: ship the fp32 weights
        dtype = "float32"
        shutil.copy2(run_dir / BEST, ship_dir / BEST)
        shutil.copy2(run_dir / EVAL, ship_dir / EVAL)
    log(f"{name}: fp16 moves the test bounds by {change}; shipping {dtype}")
    config = read_config(ship_dir)
    judge = load_or_train_classifier(config.data.dataset, log=log)
    analyse_factors(ship_dir, FACTOR_BASES, log=log, classifier=judge)
    analyse_directions(ship_dir, classifier=judge, log=log)  # the explorer's named sliders, `vaelab edit`
    model = load_model(ship_dir)
    if not capabilities(model).conditional:
        load_or_fit_gmm(ship_dir, model)  # the explorer's `gmm` sampler, fitted on the training codes
    evaluation = json.loads((ship_dir / EVAL).read_text())
    return {
        "dataset": config.data.dataset,
        "family": config.model.family,
        "summary": recipe.summary,
        "weights": dtype,
        "fp16_bound_change_nats": change,
        "test_bounds_nats": bounds_of(evaluation),
        "iwae": {key: evaluation["iwae"][key] for key in ("k", "images")},
        "epochs": len(read_metrics(ship_dir)),
        "command": f"python -m vaelab.pipelines.pretrained {name}",
    }


def ship_classifier(dataset: str, package: Path, log: Log) -> None:
    """The dataset's reference classifier in fp16, with its test accuracy measured on the fp16 weights."""
    classifier = load_or_train_classifier(dataset, log=log).half().float()
    _, summary = classifier_paths(dataset)
    info = json.loads(summary.read_text())
    test = load_split(dataset, "test")
    info.update({"weights": "float16", "test_accuracy": accuracy(classifier, to_float(test.images), test.labels)})
    target = package / CLASSIFIERS
    save_tensors(target / f"{dataset}.safetensors", {k: v.half() for k, v in classifier.state_dict().items()})
    atomic_write_json(target / f"{dataset}.json", info)
    log(f"{dataset}: reference classifier shipped (fp16, test accuracy {info['test_accuracy']:.2%})")


def ship_test_split(dataset: str, package: Path) -> None:
    """The canonical test files, verified, gzipped without a timestamp (the same bytes on every build)."""
    description = describe(dataset)
    folder = fetch_files(description, split="test", log=lambda message: None)
    for file_name in description.files_of("test"):
        data = gzip.compress((folder / file_name).read_bytes(), compresslevel=9, mtime=0)
        atomic_write_bytes(package / TEST_SPLITS / dataset / f"{file_name}.gz", data)


def shipped_files(folder: Path) -> list[Path]:
    """The data files of a package folder (not its code)."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc")
                  and "__pycache__" not in p.parts and not p.name.startswith("."))


def stage(package: Path, models: dict[str, Path]) -> None:
    """package/ ← what is shipped now, with the rebuilt models' folders replaced by their new contents."""
    if package.exists():
        shutil.rmtree(package)
    for path in shipped_files(HOME):
        relative = path.relative_to(HOME)
        if relative.parts[0] not in models:
            (package / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, package / relative)
    for name, ship_dir in models.items():
        shutil.copytree(ship_dir, package / name, ignore=shutil.ignore_patterns(".*", "*.tmp"))


def write_manifest(package: Path, models: dict[str, dict[str, Any]]) -> None:
    """Every staged file with its SHA-256, and what each model is; entries of models not rebuilt are kept."""
    previous = HOME / MANIFEST
    manifest = json.loads(previous.read_text()) if previous.is_file() else {"models": {}}
    manifest["models"] = dict(sorted({**manifest["models"], **models}.items()))
    manifest["files"] = {p.relative_to(package).as_posix(): sha256_hex(p.read_bytes())
                         for p in shipped_files(package) if p.name != MANIFEST}
    atomic_write_json(package / MANIFEST, manifest)


def publish(package: Path) -> None:
    """Replace the package's shipped files with the staged ones (the shipped folder refuses vaelab's own writers,
    so plain copies do it; the manifest goes last, so a broken-off publish fails its checks rather than passing)."""
    for path in shipped_files(HOME):
        path.unlink()
    files = shipped_files(package)
    for path in sorted(files, key=lambda p: p.name == MANIFEST):
        target = HOME / path.relative_to(package)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)


def commit() -> str:
    result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return result.stdout.strip() or "unknown"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=sorted(RECIPES), choices=sorted(RECIPES))
    parser.add_argument("--work", type=Path, default=Path("runs/pretrained"))
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(message, flush=True)

    torch.manual_seed(0)
    built = {}
    for name in args.names:
        entry = build_model(name, args.work, log)
        entry.update({"built": time.strftime("%Y-%m-%d"), "commit": commit()})
        built[name] = entry
    package = args.work / "package"
    stage(package, {name: args.work / f"{name}-ship" for name in built})
    for dataset in sorted({entry["dataset"] for entry in built.values()}):
        ship_classifier(dataset, package, log)
        ship_test_split(dataset, package)
    write_manifest(package, built)
    publish(package)
    total = sum(p.stat().st_size for p in shipped_files(HOME))
    log(f"published {len(shipped_files(HOME))} files into {HOME}: {total / 1e6:.1f} MB shipped in all")

if __name__ == "__main__":
    main()
