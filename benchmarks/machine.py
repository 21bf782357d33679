"""What every benchmark prints first: date, machine, threads and commit, then the machine profile (device, threads,
precision and why, measured matmul rates), for the rows of docs/results/."""

from __future__ import annotations

import os
import platform
import subprocess
import time

import torch

from vaelab.hardware import machine_profile, resolve_device


def git_commit() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()


def run_header(subject: str, device: str = "auto") -> str:
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return (f"# {time.strftime('%Y-%m-%d %H:%M')} UTC  {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cores, {torch.get_num_threads()} threads, {gpu}, commit {git_commit()}, {subject}\n"
            f"# {machine_profile(resolve_device(device)).describe()}")
