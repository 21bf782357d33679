"""What every benchmark prints first: date, machine, threads and commit, for the rows of docs/results.md."""

from __future__ import annotations

import os
import platform
import subprocess
import time

import torch


def git_commit() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()


def run_header(subject: str) -> str:
    return (f"# {time.strftime('%Y-%m-%d %H:%M')} UTC  {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cores, {torch.get_num_threads()} threads, no GPU, commit {git_commit()}, {subject}")
