"""Atomic file writes: a reader sees either the old complete file or the new complete file, never a torn one."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vaelab.errors import VaelabError


def require_suffix(path: str | Path, suffix: str) -> Path:
    """Refuse an output path with the wrong ending before any work is done (a `VaelabError` naming the fix)."""
    path = Path(path)
    if path.suffix.lower() != suffix:
        raise VaelabError(f"output {path} must end in {suffix}")
    return path


_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp_path)` for a temp file beside `path`, fsync it, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; keep the usual permissions
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_directory(path.parent)  # the rename itself must survive a power cut, not only the bytes
    except OSError as error:  # disk full, quota, permissions: the old file is untouched
        kept = "the previous version is intact" if path.exists() else "nothing was written"
        raise VaelabError(
            f"could not write {path} ({error.strerror or error}); {kept} — free space or fix permissions, then rerun"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)


def _fsync_directory(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Delete temp files that a killed `atomic_write` left behind in `folder` (call only as its one writer)."""
    stale = sorted(Path(folder).glob(".*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")
