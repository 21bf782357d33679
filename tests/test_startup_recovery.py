"""A `vaelab train` start that fails or is killed never leaves a run directory that can be neither restarted nor
resumed: real CLI processes are killed with SIGKILL during their start-up, then one command finishes the run.

`python -m tests.test_startup_recovery MODULE NAME WHEN ARG...` runs `vaelab ARG...` with MODULE.NAME wrapped so
that the process kills itself with SIGKILL at its first call: `before` it runs, `after` it returns, or `inside` an
atomic write (the temp file written whole, not yet renamed into place).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.faults import CHILD_ENV, ROOT, damaged_run_files
from tests.test_cli import vaelab
from tests.test_faults import assert_same_as_reference
from vaelab.errors import VaelabError
from vaelab.training.lock import run_lock
from vaelab.training.runs import start_or_resume

# 1 epoch of 4 steps on 256 real images: a few seconds a process.
SETTINGS = {"train_limit": 256, "val_limit": 128, "batch_size": 64, "channels": [16, 32], "hidden_dim": 64,
            "latent_dim": 8, "epochs": 1}
FLAGS = [arg for name, value in SETTINGS.items() for arg in
         (f"--{name.replace('_', '-')}", ",".join(map(str, value)) if isinstance(value, list) else str(value))]
QUIET = {"progress": False, "log": lambda message: None}
# Where a start is killed, and what its run directory holds afterwards (besides unfinished temp files).
KILL_POINTS = {
    "config-half-written": (("vaelab.io", "atomic_write", "inside"), ["train.lock"]),
    "config-written": (("vaelab.training.checkpoint", "write_config", "after"), ["config.json", "train.lock"]),
    "first-step": (("vaelab.training.trainer", "take_step", "before"), ["config.json", "machine.json", "train.lock"]),
}


def train_args(*args: str) -> list[str]:
    return ["train", *args, *FLAGS, "--no-progress"]


def visible_files(run_dir: Path) -> list[str]:
    return sorted(path.name for path in run_dir.iterdir() if not path.name.startswith("."))


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The tiny run trained once without interruption by the CLI."""
    run_dir = tmp_path_factory.mktemp("startup") / "reference"
    result = vaelab(*train_args("--out", str(run_dir)), cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return run_dir


def assert_finished_like_reference(run_dir: Path, reference: Path) -> None:
    assert damaged_run_files(run_dir) == []
    assert json.loads((run_dir / "config.json").read_text()) == json.loads((reference / "config.json").read_text())
    assert_same_as_reference(run_dir, reference)  # bit-identical weights and metrics, no temp files left


def kill_during_start(run_dir: Path, point: str) -> None:
    (module, name, when), _ = KILL_POINTS[point]
    killed = subprocess.run(
        [sys.executable, "-m", "tests.test_startup_recovery", module, name, when, *train_args("--out", str(run_dir))],
        capture_output=True, text=True, cwd=ROOT, env=CHILD_ENV, timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]


@pytest.mark.parametrize(
    ("point", "recovery"),
    [("config-half-written", "same command"), ("config-written", "same command"), ("first-step", "--resume")],
)
def test_a_start_killed_before_its_first_checkpoint_is_finished_by_one_command(tmp_path, reference, point, recovery):
    run_dir = tmp_path / "run"
    kill_during_start(run_dir, point)
    assert visible_files(run_dir) == KILL_POINTS[point][1]  # nothing is written before the config is complete
    command = train_args("--out", str(run_dir)) if recovery == "same command" else ["train", "--resume", str(run_dir)]
    recovered = vaelab(*command, cwd=ROOT)
    assert recovered.returncode == 0, recovered.stderr
    assert "starting it afresh" in recovered.stdout or point == "config-half-written"
    assert_finished_like_reference(run_dir, reference)


def test_resume_of_a_start_killed_before_its_config_names_the_command_that_restarts_it(tmp_path):
    run_dir = tmp_path / "run"
    kill_during_start(run_dir, "config-half-written")
    before = sorted(path.name for path in run_dir.iterdir())
    with pytest.raises(VaelabError, match=rf"holds no config\.json and no checkpoint.*vaelab train --out {run_dir}"):
        start_or_resume(None, run_dir, None, {}, **QUIET)
    assert sorted(path.name for path in run_dir.iterdir()) == before


def test_a_start_killed_from_outside_after_its_config_appeared_is_finished_by_resume(tmp_path, reference):
    """As a user would: SIGKILL from another process at whatever point the start has reached."""
    run_dir = tmp_path / "run"
    child = subprocess.Popen([sys.executable, "-m", "vaelab.cli", *train_args("--out", str(run_dir))], cwd=ROOT,
                             env=CHILD_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not (run_dir / "config.json").exists() and child.poll() is None:
            time.sleep(0.01)
    finally:
        child.kill()
        child.wait()
    recovered = vaelab("train", "--resume", str(run_dir), "--no-progress", cwd=ROOT)
    assert recovered.returncode == 0, recovered.stderr
    assert_finished_like_reference(run_dir, reference)


def test_tensorboard_without_the_package_fails_in_one_line_before_anything_is_written(tmp_path):
    if importlib.util.find_spec("tensorboard") is not None:
        pytest.skip("tensorboard is installed here")
    result = vaelab(*train_args("--out", str(tmp_path / "runs" / "new"), "--tensorboard"), cwd=ROOT)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0
    assert "pip install 'vaelab[tensorboard]'" in result.stderr
    assert not (tmp_path / "runs").exists()


def test_a_live_trainer_still_refuses_both_a_restart_and_a_resume_of_its_directory(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text("{}")  # a trainer in its start-up: config written, no checkpoint yet
    with run_lock(run_dir):
        for out, resume in ((run_dir, None), (None, run_dir)):
            with pytest.raises(VaelabError, match=f"{run_dir} is being trained by process {os.getpid()}"):
                start_or_resume(out, resume, None, {} if resume else SETTINGS, **QUIET)
    assert (run_dir / "config.json").read_text() == "{}"


def test_out_refuses_a_folder_of_other_files_without_offering_a_resume(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(VaelabError, match=r"already exists and is not empty \(it holds no run to resume\)") as error:
        start_or_resume(tmp_path, None, None, SETTINGS, **QUIET)
    assert "--resume" not in str(error.value)
    assert visible_files(tmp_path) == ["notes.txt"]


def test_out_inside_a_file_is_refused_before_any_folder_is_made(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(VaelabError, match=r"file, not a folder; choose another --out"):
        start_or_resume(tmp_path / "file" / "runs" / "new", None, None, SETTINGS, **QUIET)
    assert visible_files(tmp_path) == ["file"]


def _die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _run_and_die_at(module_name: str, name: str, when: str, args: list[str]) -> None:
    module = importlib.import_module(module_name)
    real = getattr(module, name)

    def wrapper(*call_args, **kwargs):
        if when == "before":
            _die()
        if when == "inside":  # atomic_write(path, write): the temp file written whole, killed before the rename
            path, write = call_args
            return real(path, lambda tmp: (write(tmp), _die()))
        result = real(*call_args, **kwargs)
        _die()
        return result

    setattr(module, name, wrapper)
    from vaelab.cli import main

    sys.argv = ["vaelab", *args]
    main()


if __name__ == "__main__":
    _run_and_die_at(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:])
