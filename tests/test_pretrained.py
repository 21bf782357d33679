"""The models shipped inside the package: checked files, loadable with no data, explorable and reportable with
nothing downloaded, and never written to."""

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
import warnings
from pathlib import Path

import pytest
import torch

import vaelab
import vaelab.pretrained as pretrained
from vaelab.errors import VaelabError
from vaelab.io import atomic_write_json
from vaelab.rundir import read_config

SHIPPED = ("fashion-mnist", "mnist", "mnist-cvae")
MODEL_BUDGET_BYTES = 20 * 1024 * 1024  # the "≤ 20 MB in all" for the models


def offline_environment(data_root: Path) -> dict[str, str]:
    """A process environment whose data folder is empty: whatever it reads must come from the package."""
    return {**os.environ, "VAELAB_DATA": str(data_root), "OMP_NUM_THREADS": "1"}


def test_the_shipped_models_are_listed_checked_and_within_the_size_budget():
    assert sorted(vaelab.list_pretrained()) == list(SHIPPED)
    sizes = 0
    for name in SHIPPED:
        folder = pretrained.pretrained_dir(f"pretrained:{name}")  # checks every file's SHA-256
        names = {path.name for path in folder.iterdir()}
        assert {"config.json", "model.safetensors", "eval.json", "factors.json"} <= names
        sizes += sum(path.stat().st_size for path in folder.iterdir())
    assert sizes <= MODEL_BUDGET_BYTES


def test_the_manifest_bounds_are_those_of_the_shipped_eval_json_and_fp16_moved_them_under_005_nats():
    for name, entry in vaelab.list_pretrained().items():
        evaluation = json.loads((pretrained.pretrained_dir(name) / "eval.json").read_text())
        assert entry["test_bounds_nats"] == {"elbo": evaluation["elbo"], "iwae": evaluation["iwae"]["bound"]}
        if entry["weights"] == "float16":
            assert max(entry["fp16_bound_change_nats"].values()) <= 0.05


def test_a_changed_shipped_file_is_refused(tmp_path, monkeypatch):
    copy = tmp_path / "pretrained"
    shutil.copytree(pretrained.HOME, copy, ignore=shutil.ignore_patterns("__pycache__", "data", "classifiers"))
    monkeypatch.setattr(pretrained, "HOME", copy)
    pretrained.manifest.cache_clear()
    pretrained.verified.cache_clear()
    try:
        weights = copy / "mnist" / "model.safetensors"
        data = bytearray(weights.read_bytes())
        data[-1] ^= 1
        weights.write_bytes(bytes(data))
        with pytest.raises(VaelabError, match="fails its SHA-256 check"):
            vaelab.load_model("pretrained:mnist")
        with pytest.raises(VaelabError, match="unknown pretrained model 'pretrained:cifar'"):
            vaelab.load_model("pretrained:cifar")
    finally:
        pretrained.manifest.cache_clear()
        pretrained.verified.cache_clear()


def test_a_shipped_model_loads_in_fp32_and_samples_without_any_data(tmp_path, monkeypatch):
    monkeypatch.setenv("VAELAB_DATA", str(tmp_path))
    model = vaelab.load_model("pretrained:mnist")
    assert all(p.dtype == torch.float32 for p in model.parameters())
    images = model.sample(8, generator=torch.Generator().manual_seed(0))
    assert images.shape == (8, 1, 28, 28) and images.min() >= 0 and images.max() <= 1
    assert not any(tmp_path.iterdir())  # nothing was fetched


@pytest.mark.parametrize("name", ["mnist", "mnist-cvae", "fashion-mnist"])
def test_a_shipped_config_of_0_1_loads_silently_with_its_options_where_they_moved(name):
    raw = json.loads((pretrained.pretrained_dir(f"pretrained:{name}") / "config.json").read_text())
    assert "kind" in raw["model"]  # written by vaelab 0.1: flat keys
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a run's record is read without a note: nobody can fix it
        config = read_config(pretrained.pretrained_dir(f"pretrained:{name}"))
    assert config.model.family == raw["model"]["kind"]
    assert config.model.objective.beta == raw["train"]["beta"]
    assert config.model.cvae.label_at_input == raw["model"]["label_at_input"]
    assert config.data.input_mode in ("binarized", "intensities")


def test_shipped_files_are_never_written_and_a_copy_is_an_ordinary_run(tmp_path):
    shipped_eval = pretrained.pretrained_dir("mnist") / "eval.json"
    with pytest.raises(VaelabError, match="read-only; copy the model"):
        atomic_write_json(shipped_eval, {})
    run = vaelab.copy_pretrained("mnist", tmp_path / "mine")
    assert json.loads((run / "eval.json").read_text()) == json.loads(shipped_eval.read_text())
    atomic_write_json(run / "eval.json", {"rewritten": True})  # the copy is the user's
    with pytest.raises(VaelabError, match="already exists"):
        vaelab.copy_pretrained("mnist", run)


def run_cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vaelab.cli", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=600)


def test_list_pretrained_and_a_refused_write_from_the_command_line(tmp_path):
    env = offline_environment(tmp_path / "data")
    listing = run_cli("list-pretrained", env=env, cwd=tmp_path)
    assert listing.returncode == 0
    for name in SHIPPED:
        assert f"pretrained:{name}" in listing.stdout
    before = {p: p.read_bytes() for p in pretrained.pretrained_dir("mnist").iterdir()}
    refused = run_cli("eval", "pretrained:mnist", "--iw-samples", "0", env=env, cwd=tmp_path)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "read-only" in refused.stderr and "copy-pretrained" in refused.stderr
    assert {p: p.read_bytes() for p in pretrained.pretrained_dir("mnist").iterdir()} == before


def test_the_explorer_of_a_shipped_model_starts_with_nothing_downloaded(tmp_path):
    data_root = tmp_path / "data"
    process = subprocess.Popen(
        [sys.executable, "-m", "vaelab.cli", "explore", "pretrained:mnist", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=offline_environment(data_root),
        cwd=tmp_path,
    )
    try:
        deadline, url = time.monotonic() + 300, None
        while url is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            assert line or process.poll() is None, "the explorer exited"
            if "http://" in line:
                url = line.split("http://", 1)[1].split()[0]
        with urllib.request.urlopen(f"http://{url}api/info", timeout=60) as response:
            info = json.loads(response.read())
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert info["dataset"] == "mnist" and info["test_count"] == 10_000
    assert any(dim["factor"] for dim in info["dims"])  # the shipped factors.json names dimensions
    # Only the test split was needed, and it came from the package.
    assert sorted(p.name for p in (data_root / "mnist").iterdir()) == ["t10k-images-idx3-ubyte",
                                                                      "t10k-labels-idx1-ubyte"]


def test_the_report_of_a_shipped_model_is_written_beside_the_user_with_nothing_downloaded(tmp_path):
    data_root = tmp_path / "data"
    result = run_cli("report", "pretrained:mnist-cvae", env=offline_environment(data_root), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "report-mnist-cvae.html").read_text()
    assert "<img" in page and "http://" not in page.split("<body", 1)[1].replace("http://www.w3.org", "")
    assert not (data_root / "mnist" / "train-images-idx3-ubyte").exists()
    assert (data_root / "classifiers" / "mnist.json").is_file()  # the shipped judge, not one trained here


def test_with_no_cached_classifier_the_shipped_one_is_installed_instead_of_training_one(tmp_path):
    from vaelab.evaluation.reference_classifier import classifier_paths, load_or_train_classifier

    messages: list[str] = []
    classifier = load_or_train_classifier("mnist", log=messages.append, root=tmp_path)
    assert len(messages) == 1 and "shipped with vaelab" in messages[0]
    weights, summary = classifier_paths("mnist", tmp_path)
    assert weights.read_bytes() == (pretrained.HOME / "classifiers" / "mnist.safetensors").read_bytes()
    assert json.loads(summary.read_text())["weights"] == "float16"
    assert all(p.dtype == torch.float32 for p in classifier.parameters())
