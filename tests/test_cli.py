import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

TINY_FLAGS = ["--train-limit", "1024", "--val-limit", "256", "--channels", "16,32", "--hidden-dim", "64",
              "--latent-dim", "8", "--epochs", "1", "--no-progress"]


def vaelab(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vaelab.cli", *args], cwd=cwd, capture_output=True, text=True)


def test_train_eval_sample_reconstruct_end_to_end(tmp_path, cli_run):
    shutil.copytree(cli_run, tmp_path / "run")  # trained by `vaelab train` (the fixture checks its exit code)
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


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory) -> Path:
    """A tiny run trained by the command line, once for the module; tests copy it."""
    folder = tmp_path_factory.mktemp("cli")
    assert vaelab("train", "--out", "run", *TINY_FLAGS, cwd=folder).returncode == 0
    return folder / "run"


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--out", "new", "--dataset", "cifar"], "unknown dataset 'cifar'"),
        (["train", "--out", "new", "--beta", "-1"], "beta must be a finite number ≥ 0"),
        (["eval", "missing-run"], "run directory missing-run does not exist"),
        (["sample", "missing-run"], "run directory missing-run does not exist"),
        (["train", "--out", "run", "--epochs", "1"], "run holds a run trained with other settings ("),
        (["train", "--resume", "run", "--latent-dim", "4"], "cannot change latent_dim when resuming"),
        (["sample", "run", "--out", "samples.jpg"], "must end in .png"),
        (["train", "--out", "new", "--config", "nope.yaml"], "config file nope.yaml does not exist"),
    ],
)
def test_bad_input_is_a_one_line_error_and_changes_nothing(tmp_path, cli_run, args, message):
    shutil.copytree(cli_run, tmp_path / "run")
    before = _digest(tmp_path / "run")
    result = vaelab(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert _digest(tmp_path / "run") == before
    assert not (tmp_path / "new").exists()


def test_checkpoint_from_another_config_is_refused_by_the_cli(tmp_path, cli_run):
    shutil.copytree(cli_run, tmp_path / "a")
    flags = [f if f != "8" else "4" for f in TINY_FLAGS]  # latent dim 4
    assert vaelab("train", "--out", "b", *flags, cwd=tmp_path).returncode == 0
    (tmp_path / "b" / "model.safetensors").write_bytes((tmp_path / "a" / "model.safetensors").read_bytes())
    result = vaelab("sample", "b", "--out", "s.png", cwd=tmp_path)
    assert result.returncode == 2 and "does not match the model described by config.json" in result.stderr
    assert not (tmp_path / "s.png").exists()


def test_yaml_config_is_read_and_flags_override_it(tmp_path):
    (tmp_path / "c.yaml").write_text("model:\n  latent_dim: 6\n  channels: [16, 32]\n  objective: {beta: 2.0}\n")
    flags = [f for f in TINY_FLAGS if f not in ("--latent-dim", "8", "--channels", "16,32")]
    result = vaelab("train", "--config", "c.yaml", "--out", "run", "--beta", "0.5", *flags, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["model"]["latent_dim"] == 6 and config["model"]["objective"]["beta"] == 0.5
    (tmp_path / "bad.yaml").write_text("model:\n  latent_dims: 6\n")
    bad = vaelab("train", "--config", "bad.yaml", "--out", "run2", cwd=tmp_path)
    assert bad.returncode == 2 and "unknown option(s) ['latent_dims']" in bad.stderr


def test_a_yaml_config_with_the_flat_keys_of_earlier_versions_trains_the_same_with_a_one_line_note(tmp_path):
    (tmp_path / "old.yaml").write_text("model:\n  kind: vae\n  tc_weight: 3\n  objective: tcvae\n"
                                       "  prior_components: 20\n  prior: vamp\n")
    (tmp_path / "new.yaml").write_text("model:\n  family: vae\n  objective: {name: tcvae, tc_weight: 3}\n"
                                       "  prior: {name: vamp, components: 20}\n")
    old = vaelab("train", "--config", "old.yaml", "--out", "old", "--max-steps", "2", *TINY_FLAGS, cwd=tmp_path)
    new = vaelab("train", "--config", "new.yaml", "--out", "new", "--max-steps", "2", *TINY_FLAGS, cwd=tmp_path)
    assert old.returncode == new.returncode == 0, old.stderr + new.stderr
    notes = [line for line in old.stderr.splitlines() if "warning" in line]
    assert len(notes) == 1 and "model.tc_weight → model.objective.tc_weight" in notes[0], old.stderr
    assert "model.kind → model.family" in notes[0] and "warning" not in new.stderr
    written = [json.loads((tmp_path / name / "config.json").read_text()) for name in ("old", "new")]
    assert written[0] == written[1] and written[0]["model"]["prior"] == {"name": "vamp", "components": 20}
    tensors = [load_file(tmp_path / name / "last.safetensors") for name in ("old", "new")]
    assert tensors[0].keys() == tensors[1].keys()
    assert all(torch.equal(tensors[0][key], tensors[1][key]) for key in tensors[0])


def test_every_train_option_comes_from_a_config_field_with_help_and_a_shown_default():
    from typer.main import get_command

    from vaelab.cli import app
    from vaelab.config import described_options

    train = get_command(app).commands["train"]
    options = {param.name: param for param in train.params}
    names = [described.name for described in described_options()]
    command_only = {"out", "resume", "config", "progress", "nproc"}
    assert len(set(names)) == len(names), "every option has a flat name of its own"
    assert set(names) <= set(options) and set(options) - set(names) == command_only
    for name in names:
        assert options[name].help and options[name].show_default not in (None, False, ""), name
    assert options["family"].opts == ["--model"] and options["beta"].opts == ["--beta"]
    assert options["prior_components"].opts == ["--prior-components"]


def test_help_and_version_answer_without_importing_torch(tmp_path):
    probe = ("import sys; from typer.testing import CliRunner; from vaelab.cli import app; runner = CliRunner(); "
             "outputs = [runner.invoke(app, args) for args in (['--help'], ['train', '--help'], ['eval', '--help'], "
             "['--version'])]; assert all(o.exit_code == 0 for o in outputs), [o.output for o in outputs]; "
             "print(outputs[-1].output.strip(), 'torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    from vaelab import __version__

    assert result.stdout.split() == ["vaelab", __version__, "False"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--epochs", "three"], "--epochs must be a whole number (got 'three')"),
        (["--beta", "-1"], "beta must be a finite number ≥ 0"),
        (["--model", "flow"], "model family 'flow' is unknown; choose one of: vae, cvae, vae-classifier, m2, gan"),
        (["--channels", "16,x"], "--channels must be a whole number (got 'x')"),
        (["--dataset", "cifar"], "unknown dataset 'cifar'; choose one of: mnist, fashion-mnist"),
    ],
)
def test_invalid_train_values_get_the_configs_one_line_errors(tmp_path, flags, message):
    result = vaelab("train", "--out", "new", *flags, cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert result.stderr.strip().count("\n") == 0 and not (tmp_path / "new").exists()


def test_the_non_finite_loss_message_names_flags_that_exist(tmp_path, monkeypatch):
    import re

    from tests.conftest import tiny_config
    from vaelab.models import vae
    from vaelab.training import NonFiniteLossError, train

    monkeypatch.setattr(vae, "kl_with_free_bits", lambda kl, kl_per_dim, free_bits: kl * float("nan"))
    with pytest.raises(NonFiniteLossError) as stopped:
        train(tiny_config(epochs=1, train_limit=256), tmp_path / "run", progress=False, log=lambda message: None)
    named = set(re.findall(r"--[a-z-]+", str(stopped.value)))
    shown = vaelab("train", "--help", cwd=tmp_path).stdout
    assert named >= {"--lr", "--grad-clip", "--precision", "--skip-nonfinite"}
    assert all(flag in shown for flag in named), named


def test_a_damaged_artefact_is_a_one_line_error_naming_the_command_that_rewrites_it(trained_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    (run / "eval.json").write_text('{"kl_per_dim": [0.1,')
    result = vaelab("traverse", str(run), "--out", "t.png", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0
    assert "eval.json is not valid JSON" in result.stderr and f"vaelab eval {run}" in result.stderr
    (run / "eval.json").unlink()
    (run / "factors.json").write_text("[{")
    result = subprocess.run([sys.executable, "-m", "vaelab.cli", "explore", str(run), "--port", "0"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)  # a server that started would never end
    assert result.returncode == 2 and f"vaelab factors {run}" in result.stderr
