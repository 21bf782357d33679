"""One writer per run directory.

The lock is an advisory `flock` on `RUN/train.lock`. The kernel drops it when the holding process exits in any
way — SIGKILL included — so a dead trainer never blocks the next one, and no stale-PID guessing is needed. The
file itself stays behind (an unlocked lock file is harmless) and records who held it last, for the message.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from vaelab.errors import VaelabError

LOCK = "train.lock"


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run directory's writer lock for the duration of the block, or refuse at once."""
    path = Path(run_dir) / LOCK
    with open(path, "a+") as handle:  # closing the descriptor releases the lock
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise VaelabError(
                f"{run_dir} is being trained by {holder}; wait for it to finish or stop it, then resume with "
                f"--resume {run_dir}"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} on {socket.gethostname()} (since {time.strftime('%Y-%m-%d %H:%M:%S')})")
        handle.flush()
        yield
