"""Training across processes: real torchrun, real gloo process groups on the loopback, real MNIST slices.

Every launch costs two Python processes that import torch and read the data (a few seconds each); the runs are
tiny so that the whole file stays well under a minute of training on 2 cores.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.faults import CHILD_ENV, KINDS, ROOT
from tests.test_faults import assert_same_as_reference
from vaelab.config import RunConfig
from vaelab.data.catalog import describe
from vaelab.data.sources import data_root, dataset_dir
from vaelab.models.registry import FAMILIES, Capabilities, Family, register_family
from vaelab.models.vae import ELBOStep
from vaelab.rundir import load_model, load_tensors, read_metrics, weights_only
from vaelab.training import train

# A global batch of 128 (64 per rank) on 1,024 real images: 8 steps an epoch, a checkpoint every 3 steps.
SETTINGS = {"train_limit": 1024, "val_limit": 256, "batch_size": 128, "channels": [16, 32], "hidden_dim": 64,
            "latent_dim": 8, "epochs": 3, "checkpoint_every": 3}


def flags(settings: dict) -> list[str]:
    """The command line of a settings dict (the model family is `--model`; booleans are switches)."""
    args = []
    for name, value in settings.items():
        flag = "--model" if name == "family" else f"--{name.replace('_', '-')}"
        if isinstance(value, bool):
            args.append(flag if value else flag.replace("--", "--no-", 1))
        else:
            args += [flag, ",".join(map(str, value)) if isinstance(value, list) else str(value)]
    return args


def torchrun_command(run_dir: Path, settings: dict, *launcher: str) -> list[str]:
    launcher = launcher or ("--standalone", "--nproc-per-node=2")
    return [sys.executable, "-m", "torch.distributed.run", *launcher, "-m", "vaelab", "train", "--out", str(run_dir),
            *flags(settings), "--no-progress"]


def torchrun(run_dir: Path, settings: dict, *launcher: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(torchrun_command(run_dir, settings, *launcher), capture_output=True, text=True, cwd=ROOT,
                          env=env or CHILD_ENV, timeout=300)


def stored_names(path: Path) -> set[str]:
    return set(load_tensors(path)[0])


@pytest.fixture(scope="module")
def two_rank_run(tmp_path_factory) -> Path:
    """The tiny VAE trained once, uninterrupted, by two processes."""
    run_dir = tmp_path_factory.mktemp("distributed") / "two-ranks"
    result = subprocess.run([sys.executable, "-m", "vaelab", "train", "--nproc", "2", "--out", str(run_dir),
                             *flags(SETTINGS), "--no-progress"],
                            capture_output=True, text=True, cwd=ROOT, env=CHILD_ENV, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("finished; best val_elbo") == 1  # rank 0 alone reports
    return run_dir


def test_two_processes_train_a_complete_run_directory(two_rank_run):
    """`vaelab train --nproc 2` (torchrun underneath) writes the run directory a single process would."""
    rows = read_metrics(two_rank_run)
    assert [row["epoch"] for row in rows] == [1, 2, 3] and rows[-1]["step"] == 3 * 8  # global batches: 8 a epoch
    assert rows[-1]["val_elbo"] > rows[0]["val_elbo"]
    state = json.loads((two_rank_run / "trainer_state.json").read_text())
    assert state["world_size"] == 2
    # Each rank's draws come from its own stored generators.
    assert {"rng.noise", "rng.noise.rank1", "rng.binarize", "rng.binarize.rank1"} <= stored_names(
        two_rank_run / "last.safetensors")
    model = load_model(two_rank_run)
    assert model.config.latent_dim == 8


def worker_pid(agent: int, rank: int) -> int | None:
    """The pid of torchrun's worker of `rank` (a child of the agent process with RANK=rank in its environment)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environment = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if parent == agent and f"RANK={rank}".encode() in environment:
            return int(entry.name)
    return None


@pytest.mark.slow  # three torchrun groups; the one-process resume after a kill is in test_faults.py
def test_a_killed_rank_restarts_the_group_from_the_last_checkpoint_and_ends_bit_identical(tmp_path, two_rank_run):
    run_dir = tmp_path / "killed"
    launched = subprocess.Popen(torchrun_command(run_dir, SETTINGS, "--standalone", "--nproc-per-node=2",
                                                 "--max-restarts=1"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=CHILD_ENV)
    killed_at = None
    deadline = time.monotonic() + 300
    while killed_at is None and launched.poll() is None and time.monotonic() < deadline:
        try:
            state = json.loads((run_dir / "trainer_state.json").read_text())
        except (OSError, ValueError):
            time.sleep(0.01)
            continue
        pid = worker_pid(launched.pid, 1)
        if state["step"] >= 3 and pid is not None:  # a mid-epoch checkpoint exists: kill rank 1 now
            os.kill(pid, signal.SIGKILL)
            killed_at = state["step"]
    stdout, stderr = launched.communicate(timeout=300)
    assert killed_at is not None and killed_at < 3 * 8, "the run ended before rank 1 could be killed"
    assert launched.returncode == 0, stderr[-3000:]
    assert "restarted by torchrun: resuming" in stdout + stderr
    assert_same_as_reference(run_dir, two_rank_run)


@pytest.mark.parametrize("kind", ["cvae", pytest.param("gan", marks=pytest.mark.slow),
                                  pytest.param("ddpm", marks=pytest.mark.slow)])
def test_every_family_trains_an_epoch_under_two_processes(tmp_path, kind):
    settings = {**SETTINGS, "train_limit": 512, "epochs": 1, **KINDS[kind]}
    result = torchrun(tmp_path / kind, settings)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [row["epoch"] for row in read_metrics(tmp_path / kind)] == [1]
    assert any(name.endswith(".rank1") for name in stored_names(tmp_path / kind / "last.safetensors"))


def test_a_batch_that_does_not_split_over_the_ranks_is_one_line_on_each(tmp_path):
    result = torchrun(tmp_path / "run", {**SETTINGS, "batch_size": 127})
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode != 0 and len(errors) == 2 and errors[0] == errors[1], result.stderr[-2000:]
    assert "batch_size 127 does not split evenly over 2 processes" in errors[0] and not (tmp_path / "run").exists()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_one_machines_corrupted_data_file_stops_every_rank_with_the_same_one_line_error(tmp_path):
    """Two 'machines' on the loopback, each with its own data folder; the second's training images are damaged."""
    mnist = dataset_dir(describe("mnist"), data_root())
    damaged = tmp_path / "machine-1" / mnist.name
    damaged.mkdir(parents=True)
    for path in mnist.iterdir():
        if "train-images" in path.name:
            data = bytearray(path.read_bytes())
            data[5000] ^= 0xFF
            (damaged / path.name).write_bytes(bytes(data))
        else:
            (damaged / path.name).symlink_to(path)
    port = free_port()
    nodes = []
    for node, root in enumerate((data_root(), tmp_path / "machine-1")):
        launcher = ("--nnodes=2", f"--node-rank={node}", "--nproc-per-node=1", "--master-addr=127.0.0.1",
                    f"--master-port={port}")
        nodes.append(subprocess.Popen(torchrun_command(tmp_path / f"run-{node}", SETTINGS, *launcher),
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                                      env={**CHILD_ENV, "VAELAB_DATA": str(root)}))
    outputs = [node.communicate(timeout=300) for node in nodes]
    assert all(node.returncode != 0 for node in nodes)
    errors = [[line for line in stderr.splitlines() if line.startswith("error: ")] for _, stderr in outputs]
    assert errors[0] == errors[1] and len(errors[0]) == 1, errors
    assert errors[0][0].startswith("error: rank 1:") and "SHA-256" in errors[0][0]


# --- the same gradients from 2 ranks × 64 images as from 1 process × 128 -------------------------------------------

class FixedNoiseStep(ELBOStep):
    """The VAE's objective with ε = 0 (z is the posterior mean): a step that draws nothing, so that its gradients
    depend only on the images, however they are split over processes."""

    def noise(self, x, context):
        return torch.zeros(x.shape[0], self.config.model.latent_dim, device=x.device)


def register_fixed_noise_family() -> None:
    if "vae-fixed-noise" not in FAMILIES:
        register_family("vae-fixed-noise", Family("vaelab.models.vae:VAE",
                                                  "tests.test_distributed:FixedNoiseStep", Capabilities()))


def fixed_noise_config(max_steps: int) -> RunConfig:
    # Intensities, not binarized draws; fp32, so that neither side rounds differently to bf16.
    return RunConfig().with_overrides({**SETTINGS, "family": "vae-fixed-noise", "input_mode": "intensities",
                                       "precision": "fp32", "max_steps": max_steps})


def _rank_main(rank: int, port: int, run_dir: str, max_steps: int) -> None:
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    register_fixed_noise_family()
    train(fixed_noise_config(max_steps), Path(run_dir), progress=False, log=lambda message: None)


def first_moments(run_dir: Path) -> dict[str, torch.Tensor]:
    tensors = load_tensors(run_dir / "last.safetensors")[0]
    return {name: tensor for name, tensor in tensors.items() if name.endswith(".exp_avg")}


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return weights_only(load_tensors(run_dir / "last.safetensors")[0])


def test_two_ranks_of_64_images_take_the_steps_of_one_process_of_128(tmp_path):
    import torch.multiprocessing as mp

    register_fixed_noise_family()
    for steps in (1, 4):
        single, double = tmp_path / f"single-{steps}", tmp_path / f"double-{steps}"
        train(fixed_noise_config(steps), single, progress=False, log=lambda message: None)
        mp.spawn(_rank_main, args=(free_port(), str(double), steps), nprocs=2)
        if steps == 1:
            # After one Adam step the first moment is (1 − β1)·g: the checkpoint holds the step's gradient.
            one, two = first_moments(single), first_moments(double)
            assert one.keys() == two.keys() and one
            for name in one:
                torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-7, msg=name)
        else:
            one, two = weights(single), weights(double)
            assert one.keys() == two.keys() and one
            assert max((one[name] - two[name]).abs().max().item() for name in one) <= 1e-5


def test_a_write_failing_on_rank_0_stops_every_rank_with_the_same_one_line_error(tmp_path):
    """Rank 0 alone writes: a file-size limit (as a full disk would) makes its first resumable checkpoint fail, while
    rank 1 waits in the next step; rank 1 stops at once with rank 0's line, and no half-written file is left."""
    import resource

    def limit_file_size() -> None:  # model.safetensors (≈0.9 MB) fits, last.safetensors (≈2.7 MB) does not
        resource.setrlimit(resource.RLIMIT_FSIZE, (1_500_000, 1_500_000))

    started = time.monotonic()
    result = subprocess.run(torchrun_command(tmp_path / "run", SETTINGS), capture_output=True, text=True, cwd=ROOT,
                            env=CHILD_ENV, timeout=300, preexec_fn=limit_file_size)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode != 0 and len(errors) == 2 and errors[0] == errors[1], result.stderr[-3000:]
    assert errors[0].startswith("error: rank 0: could not write") and "last.safetensors" in errors[0]
    assert time.monotonic() - started < 120
    assert not list((tmp_path / "run").glob(".*.tmp")) and not (tmp_path / "run" / "last.safetensors").exists()
