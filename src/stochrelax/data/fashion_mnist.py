"""Fashion-MNIST in memory: the dataset, its batches and its pixel statistics.

Design:

* Images stay in ``[0, 1]`` pixel space all the way into the model. Mean/std
  normalisation is the model's first layer, not a data transform, so that an
  adversarial budget such as ``eps = 0.1`` is measured in pixel units and the
  attack's clipping to ``[0, 1]`` is the clipping of a real image.
* The whole dataset lives in memory as ``uint8`` tensors (about 55 MB) and is
  converted to ``float32`` one batch at a time by :func:`batches`; there is no
  ``Dataset``/``DataLoader`` and no per-sample Python work.

Finding, fetching and verifying the four files it is read from is
:mod:`stochrelax.data.idx_files`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from stochrelax.data.idx_files import DOWNLOAD_URL, SPLIT_FILES, read_dataset_files

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

_STATS_CHUNK_IMAGES = 1024


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


def _leading(limit: int | None, name: str) -> slice:
    """Turns an optional example count into the slice that keeps that many."""
    if limit is None:
        return slice(None)
    if limit < 1:
        raise ValueError(f"{name} must be at least 1 (or None for all), got {limit}")
    return slice(limit)


def load_fashion_mnist(
    data_dir: str | Path | None = None,
    *,
    cache_dir: Path | None = None,
    download_url: str = DOWNLOAD_URL,
) -> FashionMNIST:
    """Finds, verifies and loads the whole dataset.

    Args:
        data_dir: Directory chosen by the caller; see
            :func:`stochrelax.data.idx_files.resolve_data_dir` for what happens when
            it is ``None``.
        cache_dir: Download cache; :func:`stochrelax.data.idx_files.default_cache_dir`
            when ``None``.
        download_url: Base URL the cache is filled from.

    Returns:
        The dataset with ``(N, 1, 28, 28)`` ``uint8`` images and ``int64`` labels.

    Raises:
        DataError: If a file is missing, not gzip, truncated, fails its checksum
            or is inconsistent with its partner; the message says how to fix it.
    """
    source, splits = read_dataset_files(data_dir, cache_dir=cache_dir, download_url=download_url)
    return FashionMNIST(
        train_images=splits["train_images"].unsqueeze(1),
        train_labels=splits["train_labels"].long(),
        test_images=splits["test_images"].unsqueeze(1),
        test_labels=splits["test_labels"].long(),
        source=source,
    )


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
            order of :func:`stochrelax.data.idx_files.resolve_data_dir`.

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
