"""The trained models shipped inside the package, and what lets them be used with no download.

    vaelab.load_model("pretrained:mnist")       # or `vaelab explore pretrained:mnist`, `vaelab report …`

Each model is a run directory (config.json, model.safetensors with fp16 weights, eval.json, factors.json,
metrics.jsonl and, for an unconditional VAE, its fitted GMM sampler) under this folder. Beside them are what the
explorer and the report need when nothing has been downloaded: each dataset's test split (the canonical IDX files,
gzipped, checked against the same SHA-256 digests as a download) and its reference classifier. `manifest.json`
lists every file with its SHA-256; a file that fails its check is never used. `python -m vaelab.pipelines.pretrained`
(or `make pretrained`) rebuilds all of it with the project's own code.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

from vaelab.errors import VaelabError

PREFIX = "pretrained:"
HOME = Path(__file__).parent
MANIFEST = "manifest.json"
CLASSIFIERS = "classifiers"
TEST_SPLITS = "data"


def is_pretrained(spec: str | Path) -> bool:
    return str(spec).startswith(PREFIX)


@cache
def manifest() -> dict[str, Any]:
    """The manifest: `models` (name → what it is, its metrics and the command that built it) and `files`
    (path relative to this folder → SHA-256)."""
    path = HOME / MANIFEST
    if not path.is_file():
        return {"models": {}, "files": {}}
    return json.loads(path.read_text())


def list_pretrained() -> dict[str, dict[str, Any]]:
    """The models shipped with vaelab: name → dataset, kind, a one-line summary, test bounds, the command that
    built them and the commit and date it ran at.

    Examples:
        ```python
        for name, entry in vaelab.list_pretrained().items():
            print(f"pretrained:{name}", entry["summary"])
        model = vaelab.load_model("pretrained:mnist")
        ```
    """
    return dict(manifest()["models"])


@cache
def verified(relative: str) -> Path:
    """The path of a shipped file after its SHA-256 check (once per process); a changed file is refused."""
    expected = manifest()["files"].get(relative)
    path = HOME / relative
    if expected is None or not path.is_file():
        raise VaelabError(f"{path} is not a file shipped with vaelab; reinstall vaelab")
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    if actual != expected:
        raise VaelabError(f"{path} fails its SHA-256 check ({actual[:12]}…, expected {expected[:12]}…); "
                          "reinstall vaelab")
    return path


def pretrained_dir(spec: str) -> Path:
    """`pretrained:NAME` → the folder of that shipped run, every file of it checked."""
    name = spec.removeprefix(PREFIX)
    if name not in manifest()["models"]:
        choices = ", ".join(f"{PREFIX}{n}" for n in sorted(manifest()["models"])) or "none are installed"
        raise VaelabError(f"unknown pretrained model {spec!r}; choose one of {choices} (`vaelab list-pretrained`)")
    for relative in manifest()["files"]:
        if relative.startswith(f"{name}/"):
            verified(relative)
    return HOME / name


def resolve_run(run_dir: str | Path) -> Path:
    """A run directory as given, or the folder of a `pretrained:NAME` model."""
    return pretrained_dir(str(run_dir)) if is_pretrained(run_dir) else Path(run_dir)


def is_shipped(path: str | Path) -> bool:
    """Whether a path lies inside the shipped models' folder (read-only: commands write elsewhere)."""
    return Path(path).resolve().is_relative_to(HOME.resolve())


def run_name(run_dir: str | Path) -> str:
    """A run as the user names it: `pretrained:NAME` for a shipped model's folder, else its path."""
    return f"pretrained:{Path(run_dir).name}" if is_shipped(run_dir) else str(run_dir)


def short_run_name(run_dir: str | Path) -> str:
    """A run as a page or a screenshot names it: `pretrained:NAME` for a shipped model's folder, else its directory's
    own name. The page may be seen from other machines (`vaelab explore --host`), and a screenshot travels: the path
    on the machine that made it is no business of either."""
    return run_name(run_dir) if is_shipped(run_dir) else Path(run_dir).resolve().name


def refuse_shipped(path: str | Path) -> None:
    """A one-line error, before any work, for a write into a shipped model's folder."""
    if is_shipped(path):
        raise VaelabError(f"{path} is part of a model shipped with vaelab, which is read-only; copy the model to a "
                          "folder of yours with `vaelab copy-pretrained NAME FOLDER` and work on the copy")


def shipped_test_file(dataset: str, file_name: str) -> Path | None:
    """The gzipped copy of one of a dataset's test files shipped with vaelab, checked, or None."""
    relative = f"{TEST_SPLITS}/{dataset}/{file_name}.gz"
    return verified(relative) if relative in manifest()["files"] else None


def shipped_classifier(dataset: str) -> tuple[Path, Path] | None:
    """The reference classifier's weights and summary shipped for a dataset, checked, or None."""
    weights, summary = f"{CLASSIFIERS}/{dataset}.safetensors", f"{CLASSIFIERS}/{dataset}.json"
    if weights not in manifest()["files"] or summary not in manifest()["files"]:
        return None
    return verified(weights), verified(summary)


def copy_pretrained(name: str, folder: str | Path) -> Path:
    """Copy a shipped model into `folder`, a run directory of your own that every command may write to
    (`vaelab eval`, `factors`, `fid`, a report beside the run).

    Args:
        name: a shipped model, `mnist` or `pretrained:mnist` (`vaelab list-pretrained` lists them).
        folder: where the copy goes; it must not exist yet.

    Returns:
        The path of the copy.

    Raises:
        VaelabError: the name is unknown, a shipped file fails its SHA-256 check, or `folder` exists.

    Examples:
        ```python
        run = vaelab.copy_pretrained("mnist", "runs/my-mnist")
        vaelab.evaluate_run(run, iw_samples=100, iw_images=500)
        ```
    """
    import shutil

    source = pretrained_dir(PREFIX + name.removeprefix(PREFIX))
    folder = Path(folder)
    if folder.exists():
        raise VaelabError(f"{folder} already exists; give a folder that does not exist yet")
    shutil.copytree(source, folder)
    for path in folder.rglob("*"):  # an installed package may be read-only; the copy is the user's
        path.chmod(path.stat().st_mode | 0o200)
    return folder
