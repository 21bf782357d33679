import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

TINY_FLAGS = ["--train-limit", "1024", "--val-limit", "256", "--channels", "16,32", "--hidden-dim", "64",
              "--latent-dim", "8", "--epochs", "1", "--no-progress"]


def vaelab(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vaelab.cli", *args], cwd=cwd, capture_output=True, text=True)


def test_train_eval_sample_reconstruct_end_to_end(tmp_path):
    assert vaelab("train", "--out", "run", *TINY_FLAGS, cwd=tmp_path).returncode == 0
    for name in ("config.json", "model.safetensors", "last.safetensors", "trainer_state.json", "metrics.jsonl"):
        assert (tmp_path / "run" / name).is_file(), name
    result = vaelab("eval", "run", "--iw-samples", "10", "--iw-images", "20", "--test-limit", "200", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "IWAE-10 NLL" in result.stdout
    assert json.loads((tmp_path / "run" / "eval.json").read_text())["iwae"]["k"] == 10
    assert vaelab("sample", "run", "-n", "9", "--out", "s.png", cwd=tmp_path).returncode == 0
    assert vaelab("reconstruct", "run", "-n", "5", "--out", "r.png", cwd=tmp_path).returncode == 0
    with Image.open(tmp_path / "s.png") as samples, Image.open(tmp_path / "r.png") as recon:
        assert samples.format == recon.format == "PNG"
        assert samples.size == (4 * (3 * 30 + 2),) * 2  # 3×3 grid of 28 px + 2 px padding, upscaled 4×
        assert recon.size == (4 * (8 * 30 + 2), 4 * (2 * 30 + 2))


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--out", "new", "--dataset", "cifar"], "unknown dataset 'cifar'"),
        (["train", "--out", "new", "--beta", "-1"], "beta must be a finite number ≥ 0"),
        (["eval", "missing-run"], "run directory missing-run does not exist"),
        (["sample", "missing-run"], "run directory missing-run does not exist"),
        (["train", "--out", "run", "--epochs", "1"], "run already exists and is not empty"),
        (["train", "--resume", "run", "--latent-dim", "4"], "cannot change latent_dim when resuming"),
        (["sample", "run", "--out", "samples.jpg"], "must end in .png"),
        (["train", "--out", "new", "--config", "nope.yaml"], "config file nope.yaml does not exist"),
    ],
)
def test_bad_input_is_a_one_line_error_and_changes_nothing(tmp_path, args, message):
    assert vaelab("train", "--out", "run", *TINY_FLAGS, cwd=tmp_path).returncode == 0
    before = _digest(tmp_path / "run")
    result = vaelab(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert _digest(tmp_path / "run") == before
    assert not (tmp_path / "new").exists()


def test_checkpoint_from_another_config_is_refused_by_the_cli(tmp_path):
    assert vaelab("train", "--out", "a", *TINY_FLAGS, cwd=tmp_path).returncode == 0
    flags = [f if f != "8" else "4" for f in TINY_FLAGS]  # latent dim 4
    assert vaelab("train", "--out", "b", *flags, cwd=tmp_path).returncode == 0
    (tmp_path / "b" / "model.safetensors").write_bytes((tmp_path / "a" / "model.safetensors").read_bytes())
    result = vaelab("sample", "b", "--out", "s.png", cwd=tmp_path)
    assert result.returncode == 2 and "does not match the model described by config.json" in result.stderr
    assert not (tmp_path / "s.png").exists()


def test_yaml_config_is_read_and_flags_override_it(tmp_path):
    (tmp_path / "c.yaml").write_text("model:\n  latent_dim: 6\n  channels: [16, 32]\ntrain:\n  beta: 2.0\n")
    flags = [f for f in TINY_FLAGS if f not in ("--latent-dim", "8", "--channels", "16,32")]
    result = vaelab("train", "--config", "c.yaml", "--out", "run", "--beta", "0.5", *flags, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["model"]["latent_dim"] == 6 and config["train"]["beta"] == 0.5
    (tmp_path / "bad.yaml").write_text("model:\n  latent_dims: 6\n")
    bad = vaelab("train", "--config", "bad.yaml", "--out", "run2", cwd=tmp_path)
    assert bad.returncode == 2 and "unknown option(s) ['latent_dims']" in bad.stderr
