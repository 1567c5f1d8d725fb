"""The four Fashion-MNIST IDX files: where they are, fetching them, and reading them verified.

Design:

* Integrity is checked on the *decompressed* bytes (gzip bytes differ between
  mirrors), once per file, while reading: a corrupt file never turns into
  silently wrong numbers.
* The directory is looked up in a fixed order (explicit argument,
  ``$STOCHRELAX_DATA``, the Debian package's directory, the download cache).
  A directory the user named is never silently replaced by another one.
* Every :class:`DataError` message is one line that names the file and says
  what to do about it.

What the files hold, in memory, is :mod:`stochrelax.data.fashion_mnist`.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import math
import os
import struct
import sys
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

from stochrelax.base.files import write_atomically

SPLIT_FILES: dict[str, tuple[str, str]] = {
    "train_images": (
        "train-images-idx3-ubyte.gz",
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    ),
    "train_labels": (
        "train-labels-idx1-ubyte.gz",
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    ),
    "test_images": (
        "t10k-images-idx3-ubyte.gz",
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    ),
    "test_labels": (
        "t10k-labels-idx1-ubyte.gz",
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    ),
}
"""Split key -> (file name, SHA-256 of the file's decompressed bytes)."""

SYSTEM_DIR: Path = Path("/usr/share/datasets/fashion-mnist")
DOWNLOAD_URL: str = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
ENV_VAR = "STOCHRELAX_DATA"

_IDX_DIMENSIONS: dict[int, int] = {2049: 1, 2051: 3}
"""IDX magic number -> number of dimensions (2049: labels, 2051: images)."""

_WHERE_SET: dict[str, str] = {
    "argument": "passed as data_dir",
    "environment": f"set by the environment variable {ENV_VAR}",
    "system": "the system dataset directory",
    "cache": "the stochrelax download cache",
}
"""Origin of a data directory -> how error messages describe it."""

_MISSING_ADVICE: dict[str, str] = {
    "argument": "copy the four Fashion-MNIST .gz files there, or pass another directory",
    "environment": f"copy the four Fashion-MNIST .gz files there, or unset {ENV_VAR}",
}
"""Origin -> what to do when a directory the user named lacks a file."""

_REPAIR_ADVICE: dict[str, str] = {
    "argument": f"replace it with a fresh copy from {DOWNLOAD_URL}",
    "environment": f"replace it with a fresh copy from {DOWNLOAD_URL}",
    "system": (
        "reinstall the Debian package dataset-fashion-mnist, "
        f"or point {ENV_VAR} at a good copy"
    ),
    "cache": "delete it so that stochrelax downloads it again",
}
"""Origin -> what to do when a file there is corrupt."""

_MIRROR_ADVICE = "the mirror may be broken: try again later or use another download URL"
_DOWNLOAD_TIMEOUT_S = 60


class DataError(Exception):
    """The dataset cannot be found, fetched or trusted; the message says why."""


@dataclass(frozen=True)
class _Location:
    """A data directory together with how it was chosen (a key of ``_WHERE_SET``)."""

    path: Path
    origin: str


def default_cache_dir() -> Path:
    """Where downloads go: ``$XDG_CACHE_HOME/stochrelax/fashion-mnist``.

    Falls back to ``~/.cache`` when ``XDG_CACHE_HOME`` is unset or empty, as the
    XDG base-directory specification asks.
    """
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_home) / "stochrelax" / "fashion-mnist"


def _missing_files(directory: Path) -> list[str]:
    """Names of the dataset files that ``directory`` lacks, in SPLIT_FILES order."""
    return [name for name, _ in SPLIT_FILES.values() if not (directory / name).is_file()]


def _user_location(directory: str | Path, origin: str) -> _Location:
    """Accepts a directory the user named, or says which file it lacks."""
    path = Path(directory).expanduser()
    missing = _missing_files(path)
    if missing:
        raise DataError(
            f"{missing[0]} is missing from {path}, which was {_WHERE_SET[origin]}; "
            f"{_MISSING_ADVICE[origin]}"
        )
    return _Location(path, origin)


def _locate(
    data_dir: str | Path | None, cache_dir: Path | None, download_url: str
) -> _Location:
    """Implements the look-up order of :func:`resolve_data_dir`."""
    if data_dir is not None:
        return _user_location(data_dir, "argument")
    env_dir = os.environ.get(ENV_VAR)
    if env_dir:
        return _user_location(env_dir, "environment")
    if not _missing_files(SYSTEM_DIR):
        return _Location(SYSTEM_DIR, "system")
    cache = cache_dir if cache_dir is not None else default_cache_dir()
    download_fashion_mnist(cache, download_url)
    return _Location(cache, "cache")


def resolve_data_dir(
    data_dir: str | Path | None = None,
    *,
    cache_dir: Path | None = None,
    download_url: str = DOWNLOAD_URL,
) -> Path:
    """Finds the directory holding the four Fashion-MNIST files.

    Look-up order: ``data_dir``; the ``STOCHRELAX_DATA`` environment variable
    (ignored when empty); :data:`SYSTEM_DIR` if it holds all four files; the
    cache directory, downloading into it whatever it lacks. A directory named
    by the first two must be complete: there is no fall-back from it, so a
    typo cannot quietly train on different data.

    Args:
        data_dir: Directory chosen by the caller, e.g. from ``--data-dir``.
        cache_dir: Download cache; :func:`default_cache_dir` when ``None``.
        download_url: Base URL the cache is filled from.

    Returns:
        The directory to read the files from. Only file presence is checked
        here; :func:`read_dataset_files` verifies the contents.

    Raises:
        DataError: If a named directory lacks a file, or a download fails.
    """
    return _locate(data_dir, cache_dir, download_url).path


def read_idx(raw: bytes, name: str = "<bytes>") -> torch.Tensor:
    """Parses uncompressed IDX bytes holding unsigned bytes.

    Args:
        raw: The whole decompressed file.
        name: What to call the data in error messages, usually its path.

    Returns:
        ``uint8`` labels of shape ``(N,)`` for magic number 2049, or ``uint8``
        images of shape ``(N, rows, cols)`` for magic number 2051.

    Raises:
        DataError: If the magic number is unknown or the header does not match
            the amount of data that follows it.
    """
    advice = "this is not an uncompressed Fashion-MNIST IDX file; check where it came from"
    if len(raw) < 4:
        raise DataError(f"{name} is too short to hold an IDX header; {advice}")
    (magic,) = struct.unpack_from(">I", raw)
    ndim = _IDX_DIMENSIONS.get(magic)
    if ndim is None:
        known = ", ".join(str(number) for number in _IDX_DIMENSIONS)
        raise DataError(
            f"{name} has IDX magic number {magic}, expected one of {known}; {advice}"
        )
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise DataError(f"{name} ends inside its IDX header; {advice}")
    shape = struct.unpack_from(f">{ndim}I", raw, 4)
    payload = memoryview(raw)[header_size:]
    if len(payload) != math.prod(shape):
        raise DataError(
            f"{name} has an IDX header for shape {shape} ({math.prod(shape)} bytes) "
            f"but {len(payload)} bytes of data; {advice}"
        )
    return torch.frombuffer(bytearray(payload), dtype=torch.uint8).reshape(shape)


def _gunzip(compressed: bytes, label: str, advice: str) -> bytes:
    """Decompresses gzip bytes, turning any failure into a one-line DataError."""
    try:
        return gzip.decompress(compressed)
    except gzip.BadGzipFile as error:
        raise DataError(f"{label} is not a valid gzip file ({error}); {advice}") from error
    except (EOFError, zlib.error) as error:
        raise DataError(
            f"{label} is truncated or corrupt gzip data ({error}); {advice}"
        ) from error


def _verified_contents(compressed: bytes, expected_sha256: str, label: str, advice: str) -> bytes:
    """Decompresses a dataset file and checks the SHA-256 of what comes out."""
    raw = _gunzip(compressed, label, advice)
    actual_sha256 = hashlib.sha256(raw).hexdigest()
    if actual_sha256 != expected_sha256:
        raise DataError(
            f"{label} fails its checksum (SHA-256 of the decompressed bytes is "
            f"{actual_sha256}, expected {expected_sha256}); {advice}"
        )
    return raw


def _read_split(location: _Location, key: str) -> torch.Tensor:
    """Reads, verifies and parses one of the four files."""
    name, expected_sha256 = SPLIT_FILES[key]
    path = location.path / name
    advice = _REPAIR_ADVICE[location.origin]
    try:
        compressed = path.read_bytes()
    except OSError as error:
        raise DataError(f"cannot read {path} ({error.strerror}); {advice}") from error
    raw = _verified_contents(compressed, expected_sha256, str(path), advice)
    return read_idx(raw, str(path))


def _check_counts(images: torch.Tensor, labels: torch.Tensor, split: str, source: Path) -> None:
    """Makes sure a split has exactly one label per image."""
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"the {split} files in {source} hold {images.shape[0]} images but "
            f"{labels.shape[0]} labels; replace them with a matching set"
        )


def read_dataset_files(
    data_dir: str | Path | None = None,
    *,
    cache_dir: Path | None = None,
    download_url: str = DOWNLOAD_URL,
) -> tuple[Path, dict[str, torch.Tensor]]:
    """Finds the four files and reads each one, verified and parsed.

    Args:
        data_dir: Directory chosen by the caller; see :func:`resolve_data_dir`
            for what happens when it is ``None``.
        cache_dir: Download cache; :func:`default_cache_dir` when ``None``.
        download_url: Base URL the cache is filled from.

    Returns:
        The directory read from, and each key of :data:`SPLIT_FILES` mapped to
        its ``uint8`` contents as :func:`read_idx` parses them.

    Raises:
        DataError: If a file is missing, not gzip, truncated, fails its checksum
            or is inconsistent with its partner; the message says how to fix it.
    """
    location = _locate(data_dir, cache_dir, download_url)
    splits = {key: _read_split(location, key) for key in SPLIT_FILES}
    _check_counts(splits["train_images"], splits["train_labels"], "train", location.path)
    _check_counts(splits["test_images"], splits["test_labels"], "test", location.path)
    return location.path, splits


def _fetch(url: str, target_dir: Path) -> bytes:
    """Downloads one URL into memory."""
    try:
        with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response:
            return response.read()
    except (OSError, http.client.HTTPException) as error:
        raise DataError(
            f"could not download {url} ({error}); check the network connection, "
            f"or copy the four Fashion-MNIST .gz files into {target_dir} by hand"
        ) from error


def download_fashion_mnist(target_dir: Path, download_url: str = DOWNLOAD_URL) -> None:
    """Downloads every dataset file that ``target_dir`` lacks.

    Each file is fetched into memory and checked (gzip and SHA-256 of the
    decompressed bytes) before it is written, so a bad mirror or a broken
    connection never leaves a half-written or wrong file in ``target_dir``.
    Files already present are kept, which lets an interrupted download resume.

    Args:
        target_dir: Directory to fill; created if needed.
        download_url: Base URL; the file names are appended to it.

    Raises:
        DataError: If a file cannot be fetched or fails verification; the
            message names its URL.
    """
    missing = _missing_files(target_dir)
    if not missing:
        return
    target_dir.mkdir(parents=True, exist_ok=True)
    base_url = download_url.rstrip("/")
    print(
        f"stochrelax: downloading Fashion-MNIST from {download_url} into {target_dir}",
        file=sys.stderr,
    )
    expected = dict(SPLIT_FILES.values())
    for name in missing:
        url = f"{base_url}/{name}"
        compressed = _fetch(url, target_dir)
        _verified_contents(compressed, expected[name], url, _MIRROR_ADVICE)
        write_atomically(target_dir / name, lambda temporary: temporary.write_bytes(compressed))
