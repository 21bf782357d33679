"""Training across processes with PyTorch's own engine: `torchrun` starts the processes, `torch.distributed` joins
them, DistributedDataParallel averages the gradients.

`torchrun --nproc-per-node N -m vaelab train …` (or `vaelab train --nproc N …`) runs N copies of the same command;
torchrun tells each its rank through the environment (RANK, WORLD_SIZE, LOCAL_RANK). With one process nothing here
does anything, so a single-process run is exactly what it always was. The trainer's rules, in one place:
- the configured batch size is global: each rank takes its equal share of every batch of the epoch's seeded order
  (`rank_share`), so the ranks see disjoint images and take the same number of steps;
- each optimizer step's gradients are averaged by DDP (`PhaseRunner` runs every phase of the family's objective
  inside DDP's forward, whatever the family);
- logged sums and validation numbers are combined across ranks (`gather`), so every rank holds the same numbers;
- rank 0 alone writes the run directory and holds its lock; the others learn its decisions (`from_main`) and fail
  with its error, and every rank's error is every rank's error (`agree`);
- a rank's random draws come from generators seeded by (seed, rank) and stored in the checkpoint (`rank_seed`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from vaelab.errors import VaelabError

RANK_SEED_STRIDE = 1_000_003  # rank r draws from seed + offset + r × stride: rank 0's draws are a single run's
FAILURE_KEY = "failure"


class RanksFailed(VaelabError):
    """An error every rank reports with the same line, naming the rank where it happened."""

    every_rank = True


_failures: Any = None  # the store where a failing rank leaves its message (a client of its own, see process_group)


def rank_message(rank: int, error: Exception | str) -> str:
    """The one line every rank reports for `error` on `rank`: a `VaelabError`'s message, another exception's type
    and message, its first line only."""
    detail = error if isinstance(error, str | VaelabError) else f"{type(error).__name__}: {error}"
    text = str(detail).strip()
    return f"rank {rank}: {text.splitlines()[0] if text else text}"


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (rank 0 of 1 when not started by torchrun)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls) -> World:
        return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                   int(os.environ.get("LOCAL_RANK", 0)))

    def device(self, device: torch.device) -> torch.device:
        """The rank's own GPU on a machine with several; the CPU as it is."""
        if device.type == "cuda" and self.size > 1:
            return torch.device("cuda", self.local_rank)
        return device

    def rank_share(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's equal, disjoint part of a global batch of indices."""
        share = batch.shape[0] // self.size
        return batch[self.rank * share : (self.rank + 1) * share]

    def rank_seed(self, seed: int) -> int:
        return seed + RANK_SEED_STRIDE * self.rank

    def gather(self, value: Any) -> list[Any]:
        """Every rank's `value` (a small picklable object), in rank order, on every rank."""
        if self.size == 1:
            return [value]
        values: list[Any] = [None] * self.size
        dist.all_gather_object(values, value)
        return values

    def agree(self, error: str | None) -> None:
        """Raise the same one-line error on every rank if any rank has one (the lowest rank's, naming it)."""
        errors = self.gather(error)
        failed = [(rank, message) for rank, message in enumerate(errors) if message is not None]
        if failed:
            rank, message = failed[0]
            raise RanksFailed(message if self.size == 1 else rank_message(rank, message))

    def failure(self, error: Exception) -> Exception:
        """What this rank raises for `error`: across processes, a one-line error naming the rank, which the other
        ranks (waiting in a collective that will never come) read from the store, print and exit with
        (`_watch_for_failures`). An error every rank raises at once (`every_rank`) is raised as it is; an error
        that is not a `VaelabError` (a bug) keeps its traceback here."""
        if self.size == 1 or getattr(error, "every_rank", False):
            return error
        if _failures is not None:
            first = _recorded_failure(_failures)
            if first is not None:  # another rank failed first: this error (a closed connection) follows from it
                return RanksFailed(first)
        message = rank_message(self.rank, error)
        if _failures is not None:
            _failures.set(FAILURE_KEY, message)
            time.sleep(0.5)  # the others print it before torchrun, seeing this rank exit, stops them
        return RanksFailed(message) if isinstance(error, VaelabError) else error

    def from_main(self, value: Any) -> Any:
        """Rank 0's `value` (a small picklable object) on every rank."""
        if self.size == 1:
            return value
        holder = [value]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]

    def any(self, flag: torch.Tensor) -> torch.Tensor:
        """Whether the flag (a float 0/1 tensor on the device) is set on any rank, without waiting on the host."""
        if self.size > 1:
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return flag


def check_batch_size(world: World, batch_size: int) -> None:
    if batch_size % world.size:
        raise VaelabError(
            f"batch_size {batch_size} does not split evenly over {world.size} processes (the batch size is global); "
            f"use a multiple of {world.size}"
        )


def launch_local(nproc: int, arguments: list[str]) -> int:
    """`vaelab ARGUMENTS` as `nproc` processes on this machine, started by torchrun; its exit status."""
    if nproc < 1:
        raise VaelabError(f"--nproc must be ≥ 1, not {nproc}")
    if World.from_environment().size > 1:
        raise VaelabError("--nproc starts torchrun itself; under torchrun, leave it out")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "vaelab", *arguments]
    return subprocess.run(command, check=False).returncode


def restarted() -> bool:
    """Whether torchrun restarted the group after a failure (`--max-restarts`): the run resumes on its own."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0


@contextmanager
def process_group(world: World, device: torch.device) -> Iterator[None]:
    """Join the other processes for the block (gloo on the CPU, NCCL on CUDA); nothing with one process."""
    if world.size == 1 or dist.is_initialized():
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    # torchrun's store outlives a restart (`--max-restarts`), and with it the addresses the dead group published:
    # each attempt keeps its keys apart, or the new ranks may dial the old ones (pytorch/pytorch#167288).
    store, rank, size = next(dist.rendezvous("env://"))
    prefix = f"vaelab/attempt-{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", store=dist.PrefixStore(prefix, store),
                            rank=rank, world_size=size)
    global _failures
    _failures = dist.PrefixStore(prefix, dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]),
                                                       is_master=False))
    done = threading.Event()
    watcher = threading.Thread(target=_watch_for_failures, args=(_failures, done), daemon=True)
    watcher.start()
    try:
        yield
        # Every rank done before any tears its connections down: a rank still in its last collective while another
        # destroys the group can be aborted by gloo ("terminate called without an active exception", seen under load).
        dist.barrier()
    finally:
        done.set()
        watcher.join()
        _failures = None
        dist.destroy_process_group()


def _recorded_failure(store: Any) -> str | None:
    """The line a rank failed with, when one has; None when none has or the store is gone."""
    try:
        return store.get(FAILURE_KEY).decode() if store.check([FAILURE_KEY]) else None
    except Exception:
        return None


def _watch_for_failures(store: Any, done: threading.Event, interval: float = 0.05) -> None:
    """Print the line another rank failed with and leave, rather than wait in a collective it will never join."""
    while not done.wait(interval):
        message = _recorded_failure(store)
        if message is None:
            continue
        print(f"error: {message}", file=sys.stderr, flush=True)
        os._exit(2)


class PhaseRunner(nn.Module):
    """DDP averages the gradients of the forward passes made through it. An objective's step is a generator of
    phases (`vaelab.models.training_step`), each computed on the model; running each `next()` as this module's forward
    makes every phase of every family a DDP forward, with no family-specific code."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, phases: Iterator[Any]) -> Any:
        return next(phases, None)


def phase_runner(world: World, model: nn.Module) -> nn.Module:
    """The callable that advances an objective's phases: DDP-wrapped across processes, a plain module alone.
    Each phase uses only some parameters (a GAN's discriminator step leaves the generator out), hence
    `find_unused_parameters`."""
    runner = PhaseRunner(model)
    if world.size == 1:
        return runner
    device = next(model.parameters()).device
    return nn.parallel.DistributedDataParallel(
        runner, device_ids=[device] if device.type == "cuda" else None, find_unused_parameters=True
    )
