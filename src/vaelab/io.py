"""Atomic file writes: a reader sees either the old complete file or the new complete file, never a torn one. And
the checks of the paths a command reads or writes, made before any work is done."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vaelab.errors import VaelabError
from vaelab.pretrained import refuse_shipped


def require_suffix(path: str | Path, suffix: str) -> Path:
    """Refuse an output path with the wrong ending before any work is done (a `VaelabError` naming the fix)."""
    path = Path(path)
    if path.suffix.lower() != suffix:
        raise VaelabError(f"output {path} must end in {suffix}")
    return path


def require_input_file(path: str | Path, what: str, kind: str) -> Path:
    """An input file that exists: a missing path or a directory is a one-line error (`what` names the input,
    "image"; `kind` the file it should be, "a PNG image file")."""
    path = Path(path)
    if path.is_dir():
        raise VaelabError(f"{what} {path} is a directory, not {kind}")
    if not path.is_file():
        raise VaelabError(f"{what} {path} does not exist")
    return path


def require_output_file(path: str | Path, suffix: str | None = None) -> Path:
    """Refuse, before any work is done, an output file that could not be written: the wrong ending, a directory
    in its place, a file where one of its folders should be, or a place this process may not write."""
    path = require_suffix(path, suffix) if suffix is not None else Path(path)
    if path.is_dir():
        raise VaelabError(f"output {path} is a directory; give a file name{f' ending in {suffix}' if suffix else ''}")
    _require_creatable(path.parent, path)
    return path


def require_output_folder(path: str | Path) -> Path:
    """`require_output_file` for an output folder (created when missing): it must not be a file."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise VaelabError(f"output folder {path} is a file; give a folder that does not exist yet or holds outputs")
    _require_creatable(path, path)
    return path


def _require_creatable(folder: Path, output: Path) -> None:
    """`folder` exists as a directory this process can create files in, or can be made inside one."""
    existing = next((parent for parent in (folder, *folder.parents) if parent.exists()), Path.cwd())
    if not existing.is_dir():
        raise VaelabError(f"cannot write {output}: {existing} is a file, not a folder; choose another output path")
    try:  # permissions alone do not tell (root, read-only mounts, /proc): create an unnamed file and drop it
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:  # /proc answers "no such file"; only a reason that explains something is shown
        reason = "" if error.errno == errno.ENOENT else f" ({error.strerror or error})"
        raise VaelabError(
            f"cannot write {output}: {existing} does not accept new files{reason}; choose another output path"
        ) from None


_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp_path)` for a temp file beside `path`, fsync it, then rename it over `path`. The models
    shipped with vaelab are never written to (their files are checked against the manifest)."""
    path = Path(path)
    refuse_shipped(path)
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(tmp_name)
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
        if tmp is not None:
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
