"""Reliability under faults: kills, torn and corrupted files, a second writer, non-finite batches, a full disk."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import tiny_config
from tests.faults import (
    CHILD_ENV,
    KINDS,
    ROOT,
    comparable_metrics,
    identical_weights,
    kill_and_resume,
    kill_points,
    launch,
)
from tests.test_cli import vaelab
from vaelab.errors import VaelabError
from vaelab.models import VAE
from vaelab.rundir import load_model, load_tensors
from vaelab.training import NonFiniteLossError, train
from vaelab.training.lock import run_lock
from vaelab.training.runs import start_or_resume

QUIET = {"progress": False, "log": lambda message: None}
RUN_FILES = ("model.safetensors", "last.safetensors", "previous.safetensors", "config.json", "metrics.jsonl")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The fault-test configuration trained once without interruption, in a process like the killed ones."""
    run_dir = tmp_path_factory.mktemp("faults") / "reference"
    assert launch(run_dir).returncode == 0
    return run_dir


def assert_same_as_reference(run_dir: Path, reference: Path) -> None:
    for name in ("model.safetensors", "last.safetensors"):
        assert identical_weights(run_dir / name, reference / name), name
    assert comparable_metrics(run_dir) == comparable_metrics(reference)  # no duplicated, lost or torn rows
    assert not list(run_dir.glob(".*.tmp"))


def check_kill(tmp_path: Path, reference: Path, phase: str, at: int) -> None:
    run_dir = tmp_path / f"{phase}-{at}"
    outcome = kill_and_resume(run_dir, phase, at)
    assert outcome.killed, f"the run ended before {phase} #{at}"
    assert outcome.torn_files == [], f"files torn by a kill at {phase} #{at}: {outcome.torn_files}"
    if phase == "step" and outcome.resumed_from_step is not None:
        assert (at - 1) - outcome.resumed_from_step <= 5  # lost at most one checkpoint interval (5 steps)
    assert_same_as_reference(run_dir, reference)


@pytest.mark.parametrize(("phase", "at"), [("step", 13), ("torn-write", 6), ("validation", 2)])
def test_sigkill_at_a_step_a_checkpoint_write_or_validation_resumes_bit_identically(tmp_path, reference, phase, at):
    check_kill(tmp_path, reference, phase, at)


# cvae (labels) and gan (two optimizer steps a step) are killed in make test; the others in make test-slow, their
# exact resume after a stop being tested in-process (test_classifier.py, test_diffusion.py).
SLOW_KILLS = ("vae-classifier", "m2", "ddpm")


@pytest.mark.parametrize("kind", [pytest.param(kind, marks=[pytest.mark.slow] if kind in SLOW_KILLS else [])
                                  for kind in KINDS if kind != "vae"])
def test_every_family_killed_mid_epoch_resumes_bit_identically(tmp_path, kind):
    """The trainer is the same for every family: a SIGKILL inside step 23, in the second epoch, costs nothing but
    time (the labelled draws and the changed images of the classifier's head come from checkpointed generators).
    The GAN's is killed between its two optimizer steps, after the discriminator's and before the generator's."""
    reference = tmp_path / "reference"
    assert launch(reference, kind=kind).returncode == 0
    optimizer_step = 2 * 22 + 2 if kind == "gan" else 23  # the 23rd step's (second) optimizer step
    outcome = kill_and_resume(tmp_path / "killed", "step", optimizer_step, kind)
    assert outcome.killed and outcome.torn_files == [] and outcome.resumed_from_step == 20
    assert_same_as_reference(tmp_path / "killed", reference)


@pytest.mark.slow
@pytest.mark.parametrize(("phase", "at"), kill_points(12, seed=0))
def test_twelve_seeded_kill_points_all_resume_bit_identically(tmp_path, reference, phase, at):
    check_kill(tmp_path, reference, phase, at)


def test_damaged_last_checkpoint_falls_back_to_the_previous_one_and_still_ends_identically(tmp_path, reference):
    run_dir = tmp_path / "run"
    assert launch(run_dir, "step", 20).returncode == -signal.SIGKILL  # checkpoints at steps 5, 10, 15, 16
    last = run_dir / "last.safetensors"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    resumed = launch(run_dir)
    assert resumed.returncode == 0, resumed.stderr
    assert "last.safetensors" in resumed.stdout
    assert "resuming from previous.safetensors (step 15) instead" in resumed.stdout
    assert_same_as_reference(run_dir, reference)


@pytest.fixture
def finished_run(trained_run, tmp_path) -> Path:
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run, run_dir)
    return run_dir


def test_a_second_trainer_is_refused_while_a_dead_one_holds_nothing(finished_run):
    with run_lock(finished_run):
        refused = vaelab("train", "--resume", str(finished_run), "--no-progress", cwd=ROOT)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert f"{finished_run} is being trained by process {os.getpid()}" in refused.stderr
    # A holder killed with SIGKILL releases the lock with its death.
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from vaelab.training.lock import run_lock\n"
         "with run_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(60)", str(finished_run)],
        stdout=subprocess.PIPE, text=True, env=CHILD_ENV,
    )
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(VaelabError, match="is being trained by process"), run_lock(finished_run):
        pass
    holder.kill()
    holder.wait()
    with run_lock(finished_run):
        pass


def damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncate":
        path.write_bytes(bytes(data[: len(data) // 2]))
    else:  # flip the bytes of the file's last 64 bytes (tensor data of a safetensors file)
        for index in range(len(data) - 64, len(data)):
            data[index] ^= 0xFF
        path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["truncate", "flip"])
def test_damaged_best_model_is_a_one_line_error_naming_the_file(finished_run, how):
    damage(finished_run / "model.safetensors", how)
    with pytest.raises(VaelabError, match=r"model\.safetensors (is not a readable|fails its SHA-256)"):
        load_model(finished_run)
    result = vaelab("sample", str(finished_run), "--out", str(finished_run / "s.png"), cwd=ROOT)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "model.safetensors" in result.stderr


@pytest.mark.parametrize("how", ["truncate", "flip"])
def test_damaged_last_checkpoint_resumes_from_previous_and_says_so(finished_run, how):
    damage(finished_run / "last.safetensors", how)
    messages: list[str] = []
    result = start_or_resume(None, finished_run, None, {}, progress=False, log=messages.append)
    assert result.finished and result.epochs_done == 4
    assert any("resuming from previous.safetensors" in m for m in messages)
    load_tensors(finished_run / "last.safetensors")  # rewritten whole


def test_both_resumable_checkpoints_damaged_is_a_clear_error(finished_run):
    damage(finished_run / "last.safetensors", "truncate")
    damage(finished_run / "previous.safetensors", "flip")
    with pytest.raises(VaelabError, match="previous.safetensors fails its SHA-256 check"):
        start_or_resume(None, finished_run, None, {}, **QUIET)


def test_damaged_trainer_state_copy_does_not_stop_a_resume_and_is_rewritten(finished_run):
    (finished_run / "trainer_state.json").write_bytes(b"\x00\xff{garbage")
    result = start_or_resume(None, finished_run, None, {"epochs": 5}, **QUIET)
    assert result.epochs_done == 5
    assert json.loads((finished_run / "trainer_state.json").read_text())["epoch"] == 5


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda text: text[: len(text) // 2], r"config\.json is unreadable or not valid JSON"),
        (lambda text: text.replace('"latent_dim": 8', '"latent_dim": 16'), r"does not match the model described"),
        (lambda text: text.replace('"latent_dim": 8', '"latent_dim": "eight"'), r"latent_dim must be a whole number"),
    ],
    ids=["truncated", "wrong-latent-dim", "wrong-type"],
)
def test_damaged_config_is_a_one_line_error(finished_run, edit, message):
    config = finished_run / "config.json"
    config.write_text(edit(config.read_text()))
    with pytest.raises(VaelabError, match=message):
        load_model(finished_run)
    result = vaelab("eval", str(finished_run), "--iw-samples", "0", cwd=ROOT)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def poison(steps: set[int], where: str):
    """Wrap the model's loss terms so that the given training steps give a NaN loss or a NaN gradient."""
    real, calls = VAE.loss_terms, [0]

    def loss_terms(model, x, noise=None, labels=None):
        terms = real(model, x, noise, labels)
        if model.training:
            calls[0] += 1
            if calls[0] - 1 in steps:
                if where == "loss":
                    terms["recon"] = terms["recon"] * float("nan")
                else:  # value unchanged, gradient NaN: d/dr sqrt(r − r) is infinite, times 0
                    zero = terms["recon"] - terms["recon"].detach()
                    terms["recon"] = terms["recon"] + 0 * torch.sqrt(zero)
        return terms

    return loss_terms


@pytest.mark.parametrize("where", ["loss", "gradient"])
def test_non_finite_batches_are_skipped_up_to_the_limit_and_reported(tmp_path, monkeypatch, where):
    monkeypatch.setattr(VAE, "loss_terms", poison({3, 20}, where))
    messages: list[str] = []
    result = train(tiny_config(skip_nonfinite=2), tmp_path / "run", progress=False, log=messages.append)
    assert result.finished and [row["skipped_batches"] for row in result.history] == [1, 1]
    assert sum("batch skipped" in m for m in messages) == 2
    assert all(torch.isfinite(t).all() for t in load_tensors(tmp_path / "run" / "model.safetensors")[0].values())


def test_non_finite_batches_beyond_the_limit_stop_and_keep_the_last_good_checkpoint(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    train(tiny_config(epochs=1), run_dir, **QUIET)
    before = {name: (run_dir / name).read_bytes() for name in ("model.safetensors", "last.safetensors")}
    monkeypatch.setattr(VAE, "loss_terms", poison({2, 5}, "gradient"))
    with pytest.raises(NonFiniteLossError, match=r"gradient norm became nan at step 21 .*--skip-nonfinite"):
        start_or_resume(None, run_dir, None, {"epochs": 2, "skip_nonfinite": 1}, **QUIET)
    assert {name: (run_dir / name).read_bytes() for name in before} == before


@pytest.fixture
def small_disk(tmp_path):
    """A 12 MiB tmpfs (needs root and mount rights; skipped with the reason otherwise)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


def test_full_disk_stops_with_a_clear_message_and_keeps_the_previous_checkpoint(small_disk):
    run_dir = small_disk / "run"
    train(tiny_config(epochs=1), run_dir, **QUIET)
    before = {name: (run_dir / name).read_bytes() for name in ("model.safetensors", "last.safetensors")}
    filler = small_disk / "filler"
    with open(filler, "wb") as handle:  # fill the disk to the last block
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass
    with pytest.raises(VaelabError, match=r"could not write .*No space left on device.*previous version is intact"):
        start_or_resume(None, run_dir, None, {"epochs": 2}, **QUIET)
    assert {name: (run_dir / name).read_bytes() for name in before} == before
    assert not list(run_dir.glob(".*.tmp"))
    filler.unlink()  # space again: the run goes on from its intact checkpoint
    assert start_or_resume(None, run_dir, None, {"epochs": 2}, **QUIET).epochs_done == 2


def test_loading_and_resuming_a_run_never_unpickles(finished_run, monkeypatch):
    import pickle

    def refuse(*args, **kwargs):
        raise AssertionError("something tried to unpickle")

    for module, name in ((torch, "load"), (pickle, "load"), (pickle, "loads"), (pickle, "Unpickler")):
        monkeypatch.setattr(module, name, refuse)
    load_model(finished_run)
    start_or_resume(None, finished_run, None, {"epochs": 5}, **QUIET)
    source = "\n".join(p.read_text() for p in (ROOT / "src" / "vaelab").rglob("*.py"))
    assert "torch.load(" not in source and "import pickle" not in source and "allow_pickle=True" not in source
