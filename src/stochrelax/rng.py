"""Seeding without side effects: ``seeded`` forks the global RNG state and restores it.

Noise inside stochastic layers is drawn from torch's global generator (so that any
network works unchanged); workflows seed it inside :func:`seeded` so that a run is
reproducible from its seed without changing the caller's random state.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

__all__ = ["seeded"]


@contextmanager
def seeded(seed: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Runs the block with torch's RNG seeded to ``seed``; the previous state is restored after.

    Args:
        seed: the seed for the CPU generator and, on a CUDA device, that device's generator.
        device: the device whose generator the block uses besides the CPU's.
    """
    device = torch.device(device)
    cuda_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices, device_type="cuda"):
        torch.manual_seed(seed)
        yield
