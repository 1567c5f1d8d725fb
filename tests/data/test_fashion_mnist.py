"""Tests for stochrelax.data.fashion_mnist: the real dataset in memory, limits, data info, batching, pixel statistics."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stochrelax.data import fashion_mnist as data, idx_files as data_files

FILE_NAMES = [name for name, _ in data_files.SPLIT_FILES.values()]


# --- the real data ------------------------------------------------------------


def test_real_data_has_expected_shapes_types_and_classes(fashion_mnist: data.FashionMNIST,
                                                         real_data_dir: Path) -> None:
    assert fashion_mnist.source == real_data_dir
    assert fashion_mnist.train_images.shape == (60000, 1, 28, 28)
    assert fashion_mnist.test_images.shape == (10000, 1, 28, 28)
    assert fashion_mnist.train_images.dtype == torch.uint8
    assert fashion_mnist.test_images.dtype == torch.uint8
    assert fashion_mnist.train_labels.shape == (60000,)
    assert fashion_mnist.test_labels.shape == (10000,)
    assert fashion_mnist.train_labels.dtype == torch.int64
    assert fashion_mnist.test_labels.dtype == torch.int64
    assert len(data.CLASS_NAMES) == 10
    for labels in (fashion_mnist.train_labels, fashion_mnist.test_labels):
        assert labels.min().item() == 0
        assert labels.max().item() == 9
    assert fashion_mnist.train_labels.bincount().tolist() == [6000] * 10
    assert fashion_mnist.test_labels.bincount().tolist() == [1000] * 10


def test_real_training_pixel_stats(fashion_mnist: data.FashionMNIST) -> None:
    mean, std = data.pixel_stats(fashion_mnist.train_images)
    assert mean == pytest.approx(0.2860, abs=1e-3)
    assert std == pytest.approx(0.3530, abs=1e-3)


def test_limit_keeps_the_first_examples(fashion_mnist: data.FashionMNIST) -> None:
    limited = fashion_mnist.limit(train_limit=100, test_limit=7)
    assert torch.equal(limited.train_images, fashion_mnist.train_images[:100])
    assert torch.equal(limited.train_labels, fashion_mnist.train_labels[:100])
    assert torch.equal(limited.test_images, fashion_mnist.test_images[:7])
    assert torch.equal(limited.test_labels, fashion_mnist.test_labels[:7])
    assert limited.source == fashion_mnist.source
    only_train = fashion_mnist.limit(train_limit=5)
    assert only_train.train_labels.shape == (5,)
    assert only_train.test_labels.shape == (10000,)


@pytest.mark.parametrize("limits", [{"train_limit": 0}, {"test_limit": -3}])
def test_limit_rejects_counts_below_one(fashion_mnist: data.FashionMNIST, limits: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(limits))):
        fashion_mnist.limit(**limits)


def test_data_info_summarises_the_verified_files(real_data_dir: Path) -> None:
    info = data.data_info(real_data_dir)
    assert info["source"] == str(real_data_dir)
    assert [entry["name"] for entry in info["files"]] == FILE_NAMES
    assert all(entry["ok"] for entry in info["files"])
    assert [entry["sha256"] for entry in info["files"]] == [
        sha256 for _, sha256 in data_files.SPLIT_FILES.values()
    ]
    assert info["files"][0]["bytes_compressed"] == (real_data_dir / FILE_NAMES[0]).stat().st_size
    assert (info["train"], info["test"]) == (60000, 10000)
    assert info["pixel_mean"] == pytest.approx(0.2860, abs=1e-3)
    assert info["pixel_std"] == pytest.approx(0.3530, abs=1e-3)


# --- batching and statistics ----------------------------------------------------


def tagged_examples(count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose every pixel equals the example's index, labelled with that index."""
    index = torch.arange(count)
    images = index.to(torch.uint8).reshape(count, 1, 1, 1).expand(count, 1, 28, 28).contiguous()
    return images, index


def test_batches_cover_every_example_once_with_a_partial_last_batch() -> None:
    images, labels = tagged_examples(23)
    generator = torch.Generator().manual_seed(0)
    epoch = list(data.batches(images, labels, 5, shuffle=True, generator=generator))
    assert [batch_labels.shape[0] for _, batch_labels in epoch] == [5, 5, 5, 5, 3]
    seen = torch.cat([batch_labels for _, batch_labels in epoch])
    assert sorted(seen.tolist()) == list(range(23))
    assert not torch.equal(seen, labels)
    for batch_images, batch_labels in epoch:
        assert batch_images.dtype == torch.float32
        assert batch_images.shape[1:] == (1, 28, 28)
        assert batch_labels.dtype == torch.int64
        assert 0.0 <= batch_images.min().item() and batch_images.max().item() <= 1.0
        expected = (batch_labels.float() / 255).reshape(-1, 1, 1, 1).expand_as(batch_images)
        assert torch.equal(batch_images, expected)


def test_batches_shuffle_is_reproducible_from_the_seed() -> None:
    images, labels = tagged_examples(50)

    def order(seed: int) -> list[int]:
        generator = torch.Generator().manual_seed(seed)
        epoch = data.batches(images, labels, 8, shuffle=True, generator=generator)
        return torch.cat([batch_labels for _, batch_labels in epoch]).tolist()

    assert order(1) == order(1)
    assert order(1) != order(2)


def test_batches_without_shuffle_keep_the_stored_order() -> None:
    images, labels = tagged_examples(10)
    epoch = list(data.batches(images, labels, 4, shuffle=False))
    assert torch.equal(torch.cat([batch_labels for _, batch_labels in epoch]), labels)
    assert epoch[0][0].max().item() == pytest.approx(3 / 255)


def test_batches_reject_a_batch_size_below_one() -> None:
    images, labels = tagged_examples(3)
    with pytest.raises(ValueError, match="batch_size"):
        next(data.batches(images, labels, 0, shuffle=False))


def test_pixel_stats_matches_a_direct_float64_computation() -> None:
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (3000, 1, 28, 28), dtype=torch.uint8, generator=generator)
    pixels = images.to(torch.float64) / 255
    mean, std = data.pixel_stats(images)
    assert mean == pytest.approx(pixels.mean().item(), abs=1e-12)
    assert std == pytest.approx(pixels.std(correction=0).item(), abs=1e-12)
