"""Fashion-MNIST: finding, verifying, loading and batching the four IDX files.

Design:

* Images stay in ``[0, 1]`` pixel space all the way into the model. Mean/std
  normalisation is the model's first layer, not a data transform, so that an
  adversarial budget such as ``eps = 0.1`` is measured in pixel units and the
  attack's clipping to ``[0, 1]`` is the clipping of a real image.
* The whole dataset lives in memory as ``uint8`` tensors (about 55 MB) and is
  converted to ``float32`` one batch at a time by :func:`batches`; there is no
  ``Dataset``/``DataLoader`` and no per-sample Python work.
* Integrity is checked on the *decompressed* bytes (gzip bytes differ between
  mirrors), once per file, while loading: a corrupt file never turns into
  silently wrong numbers.
* The directory is looked up in a fixed order (explicit argument,
  ``$STOCHRELAX_DATA``, the Debian package's directory, the download cache).
  A directory the user named is never silently replaced by another one.
* Every :class:`DataError` message is one line that names the file and says
  what to do about it.
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
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from stochrelax.files import write_atomically

CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

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
_STATS_CHUNK_IMAGES = 1024


class DataError(Exception):
    """The dataset cannot be found, fetched or trusted; the message says why."""


@dataclass(frozen=True, eq=False)
class FashionMNIST:
    """The whole dataset in memory, exactly as stored (``uint8`` pixels).

    Attributes:
        train_images: Training images, shape ``(60000, 1, 28, 28)``, ``uint8``.
        train_labels: Training class indices into :data:`CLASS_NAMES`, ``int64``.
        test_images: Test images, shape ``(10000, 1, 28, 28)``, ``uint8``.
        test_labels: Test class indices, ``int64``.
        source: Directory the four files were read from.
    """

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    source: Path

    def limit(
        self, train_limit: int | None = None, test_limit: int | None = None
    ) -> FashionMNIST:
        """Keeps the first examples of each split, e.g. for quick runs and tests.

        Args:
            train_limit: How many training examples to keep; ``None`` keeps all.
            test_limit: How many test examples to keep; ``None`` keeps all.

        Returns:
            A new dataset whose tensors are views into this one's.

        Raises:
            ValueError: If a limit is smaller than 1.
        """
        train = _leading(train_limit, "train_limit")
        test = _leading(test_limit, "test_limit")
        return replace(
            self,
            train_images=self.train_images[train],
            train_labels=self.train_labels[train],
            test_images=self.test_images[test],
            test_labels=self.test_labels[test],
        )


@dataclass(frozen=True)
class _Location:
    """A data directory together with how it was chosen (a key of ``_WHERE_SET``)."""

    path: Path
    origin: str


def _leading(limit: int | None, name: str) -> slice:
    """Turns an optional example count into the slice that keeps that many."""
    if limit is None:
        return slice(None)
    if limit < 1:
        raise ValueError(f"{name} must be at least 1 (or None for all), got {limit}")
    return slice(limit)


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
        here; :func:`load_fashion_mnist` verifies the contents.

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


def load_fashion_mnist(
    data_dir: str | Path | None = None,
    *,
    cache_dir: Path | None = None,
    download_url: str = DOWNLOAD_URL,
) -> FashionMNIST:
    """Finds, verifies and loads the whole dataset.

    Args:
        data_dir: Directory chosen by the caller; see :func:`resolve_data_dir`
            for what happens when it is ``None``.
        cache_dir: Download cache; :func:`default_cache_dir` when ``None``.
        download_url: Base URL the cache is filled from.

    Returns:
        The dataset with ``(N, 1, 28, 28)`` ``uint8`` images and ``int64`` labels.

    Raises:
        DataError: If a file is missing, not gzip, truncated, fails its checksum
            or is inconsistent with its partner; the message says how to fix it.
    """
    location = _locate(data_dir, cache_dir, download_url)
    splits = {key: _read_split(location, key) for key in SPLIT_FILES}
    _check_counts(splits["train_images"], splits["train_labels"], "train", location.path)
    _check_counts(splits["test_images"], splits["test_labels"], "test", location.path)
    return FashionMNIST(
        train_images=splits["train_images"].unsqueeze(1),
        train_labels=splits["train_labels"].long(),
        test_images=splits["test_images"].unsqueeze(1),
        test_labels=splits["test_labels"].long(),
        source=location.path,
    )


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


def pixel_stats(images: torch.Tensor) -> tuple[float, float]:
    """Mean and (population) standard deviation of pixels in ``[0, 1]`` units.

    These are the constants of the model's normalisation layer. Sums are taken
    in ``float64`` over chunks of images, so the full training set never exists
    as a float tensor.

    Args:
        images: ``uint8`` images, any shape whose first dimension indexes images.

    Returns:
        ``(mean, std)`` of ``images / 255``.

    Raises:
        ValueError: If there are no pixels.
    """
    if images.numel() == 0:
        raise ValueError("pixel_stats needs at least one pixel")
    total = 0.0
    total_of_squares = 0.0
    for chunk in images.split(_STATS_CHUNK_IMAGES):
        values = chunk.to(torch.float64)
        total += values.sum().item()
        total_of_squares += values.square().sum().item()
    count = images.numel()
    mean = total / count
    variance = max(total_of_squares / count - mean * mean, 0.0)
    return mean / 255.0, math.sqrt(variance) / 255.0


_TO_PIXELS = {
    torch.uint8: lambda images: images.to(torch.float32).div_(255.0),
    torch.float32: lambda images: images,
}
"""Stored dtype -> conversion of a batch to float32 pixels in [0, 1]."""


def batches(
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int,
    *,
    shuffle: bool,
    generator: torch.Generator | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yields one epoch of mini-batches, converting pixels to ``[0, 1]`` floats.

    Indexing and conversion are whole-batch tensor operations on the images'
    device; the last batch is smaller when ``batch_size`` does not divide the
    number of examples.

    Args:
        images: ``uint8`` images ``(N, 1, 28, 28)`` as stored, or ``float32`` pixels
            already in ``[0, 1]`` (e.g. adversarial images), on any device.
        labels: Class indices ``(N,)`` on the same device as ``images``.
        batch_size: Examples per batch.
        shuffle: Visit the examples in a random order (drawn from a CPU
            permutation, so the same seed gives the same order on any device).
        generator: CPU random generator for the order; ``None`` uses torch's
            global one.

    Yields:
        ``(float32 images in [0, 1], int64 labels)`` pairs.

    Raises:
        ValueError: If ``batch_size`` is smaller than 1 or the counts differ.
        TypeError: If ``images`` are neither ``uint8`` nor ``float32``.
    """
    if images.dtype not in _TO_PIXELS:
        raise TypeError(f"batches() takes uint8 images as stored or float32 pixels in [0, 1], got {images.dtype}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    count = images.shape[0]
    if labels.shape[0] != count:
        raise ValueError(f"{count} images but {labels.shape[0]} labels")
    order = torch.randperm(count, generator=generator) if shuffle else torch.arange(count)
    for index in order.to(images.device).split(batch_size):
        yield _TO_PIXELS[images.dtype](images[index]), labels[index].long()


def data_info(data_dir: str | Path | None = None) -> dict:
    """Summarises the dataset for ``stochrelax data info``.

    Loads (and therefore verifies) all four files, so every listed file is
    known to be good and its ``sha256`` (of the decompressed bytes) is the
    verified one.

    Args:
        data_dir: Directory chosen by the caller; ``None`` uses the look-up
            order of :func:`resolve_data_dir`.

    Returns:
        A JSON-ready dict: ``source``, ``files`` (``name``,
        ``bytes_compressed``, ``sha256``, ``ok``), ``train`` and ``test``
        example counts, and the training set's ``pixel_mean`` and ``pixel_std``.
    """
    dataset = load_fashion_mnist(data_dir)
    pixel_mean, pixel_std = pixel_stats(dataset.train_images)
    return {
        "source": str(dataset.source),
        "files": [
            {
                "name": name,
                "bytes_compressed": (dataset.source / name).stat().st_size,
                "sha256": sha256,
                "ok": True,
            }
            for name, sha256 in SPLIT_FILES.values()
        ],
        "train": int(dataset.train_labels.shape[0]),
        "test": int(dataset.test_labels.shape[0]),
        "pixel_mean": pixel_mean,
        "pixel_std": pixel_std,
    }
