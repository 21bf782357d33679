"""A small folder of the user's own images trains into a run sized to it, and one rule brings a killed run back:
the same command again, whenever the kill came. Real PNG folders written in the test (`vaelab data shapes`)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.faults import comparable_metrics, identical_weights
from vaelab.config import RunConfig
from vaelab.data import sizing
from vaelab.data.shapes import write_shapes_folder
from vaelab.errors import VaelabError
from vaelab.rundir import read_metrics
from vaelab.training.runs import start_or_resume

QUIET = {"progress": False, "log": lambda message: None}
# 100 images of 16×16: 81 to train on, batches of 16 (the small-data default), 5 steps an epoch.
SMALL = {"channels": [8, 16], "hidden_dim": 32, "latent_dim": 4, "image_size": 16, "steps": 30}


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory) -> Path:
    return write_shapes_folder(tmp_path_factory.mktemp("shapes") / "shapes", count=100, size=16)


def test_a_small_folder_gets_small_batches_and_enough_steps_to_learn():
    assert sizing.default_batch_size(None) == sizing.default_batch_size(60_000) == 128
    assert sizing.default_batch_size(243) == 16 and sizing.default_batch_size(810) == 64
    assert sizing.default_epochs(None, 128) == sizing.default_epochs(55_000, 128) == 30
    epochs = sizing.default_epochs(243, 16)
    assert epochs * (243 // 16) >= sizing.MIN_STEPS


def test_the_defaults_follow_the_folder_and_what_is_given_is_kept(small_folder):
    config = RunConfig().with_overrides({"dataset": f"folder:{small_folder}", "image_size": 16})
    assert config.train.batch_size == 16  # 100 images: 90 train, 9 of them validation, 81 left
    assert config.train.epochs * (81 // 16) >= sizing.MIN_STEPS
    given = config.with_overrides({"batch_size": 32, "epochs": 3})
    assert (given.train.batch_size, given.train.epochs) == (32, 3)
    assert config.train.lr == pytest.approx(1e-3 * (16 / 128) ** 0.5)  # Adam's square-root rule
    mnist = RunConfig().train
    assert (mnist.batch_size, mnist.epochs, mnist.lr) == (128, 30, 1e-3)  # MNIST keeps its recipe


@pytest.mark.parametrize(("moment", "stop_at"), [("mid-epoch", 7), ("between epochs", 10), ("end of a round", 30)])
def test_the_same_command_continues_a_stopped_run_bit_identically(tmp_path, small_folder, moment, stop_at):
    command = {**SMALL, "dataset": f"folder:{small_folder}"}
    straight = start_or_resume(tmp_path / "straight", None, None, command, **QUIET)
    stopped = start_or_resume(tmp_path / "again", None, None, {**command, "max_steps": stop_at}, **QUIET)
    assert not stopped.finished or stop_at == SMALL["steps"]
    again = start_or_resume(tmp_path / "again", None, None, command, **QUIET)  # the same command
    assert again.finished and again.steps == straight.steps == SMALL["steps"]
    for name in ("model.safetensors", "last.safetensors"):
        assert identical_weights(tmp_path / "again" / name, tmp_path / "straight" / name), name
    assert comparable_metrics(tmp_path / "again") == comparable_metrics(tmp_path / "straight")
    assert len(read_metrics(tmp_path / "straight")) == 1  # 6 epochs of 5 steps: one round, one validation


def test_the_same_out_with_other_settings_is_refused_naming_them(tmp_path, small_folder):
    command = {**SMALL, "dataset": f"folder:{small_folder}", "max_steps": 5}
    start_or_resume(tmp_path / "run", None, None, command, **QUIET)
    before = {path.name: path.read_bytes() for path in (tmp_path / "run").iterdir()}
    with pytest.raises(VaelabError, match=r"other settings \(latent_dim 4 → 6; beta 1\.0 → 2\.0\)"):
        start_or_resume(tmp_path / "run", None, None, {**command, "beta": 2.0, "latent_dim": 6}, **QUIET)
    assert {path.name: path.read_bytes() for path in (tmp_path / "run").iterdir()} == before


def test_every_command_finishes_on_a_300_image_colour_folder_trained_for_seconds(tmp_path):
    def vaelab(*args: str) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "-m", "vaelab.cli", *args], cwd=tmp_path, capture_output=True,
                                text=True, env={**os.environ, "VAELAB_DATA": str(tmp_path / "data")})
        assert result.returncode == 0, f"vaelab {args[0]}: {result.stderr}"
        assert "Traceback" not in result.stderr
        return result

    vaelab("data", "shapes", "shapes")  # 300 images of 64×64 RGB in 3 class folders
    trained = vaelab("train", "--dataset", "folder:shapes", "--out", "run", "--time-budget", "15s", "--channels",
                     "8,16", "--hidden-dim", "64", "--latent-dim", "8", "--no-progress")
    assert re.search(r"data: 243 training, 27 validation and 30 test images .*; 3 classes \(circle, square, "
                     r"triangle\); 3×64×64; batches of 16, 15 steps an epoch", trained.stderr + trained.stdout)
    vaelab("sample", "run", "-n", "16", "--out", "samples.png")
    vaelab("traverse", "run", "--out", "traverse.png")
    vaelab("factors", "run", "--bases", "20")
    vaelab("eval", "run", "--iw-budget", "5s")
    vaelab("report", "run")
    for name in ("samples.png", "traverse.png", "run/factors.json", "run/eval.json", "run/report.html"):
        assert (tmp_path / name).stat().st_size > 0, name
