"""Seeding without side effects: ``seeded`` forks the global RNG states and restores them.

Noise inside stochastic layers is drawn from torch's global generator (so that any
network works unchanged); workflows seed it inside :func:`seeded` so that a run is
reproducible from its seed without changing the caller's random state.
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
import torch

__all__ = ["seeded", "host_generator_states", "set_host_generator_states", "generator_states", "replaying"]


@contextmanager
def seeded(seed: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """Runs the block with torch's, Python's and NumPy's global generators seeded to ``seed``;
    their previous states are restored after.

    stochrelax draws only from torch's; Python's and NumPy's are seeded too so that a layer of
    the user's that draws from them is as reproducible as the rest of a run.

    Args:
        seed: the seed for the CPU generators and, on a CUDA device, that device's generator.
        device: the device whose generator the block uses besides the CPU's.
    """
    device = torch.device(device)
    cuda_devices = [device] if device.type == "cuda" else []
    host = host_generator_states()
    with torch.random.fork_rng(devices=cuda_devices, device_type="cuda"):
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % 2**32)
        try:
            yield
        finally:
            set_host_generator_states(host)


def host_generator_states() -> dict[str, Any]:
    """The states of Python's and NumPy's global generators, as JSON-ready values."""
    version, words, gauss = random.getstate()
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    return {"python": [version, list(words), gauss],
            "numpy": [kind, keys.tolist(), int(position), int(has_gauss), float(cached_gaussian)]}


def set_host_generator_states(states: dict[str, Any]) -> None:
    """Restores the states of :func:`host_generator_states`."""
    version, words, gauss = states["python"]
    random.setstate((version, tuple(words), gauss))
    kind, keys, position, has_gauss, cached_gaussian = states["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached_gaussian))


def generator_states(device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """The states of torch's global CPU generator and, for a CUDA ``device``, of that device's."""
    device = torch.device(device)
    states = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


@contextmanager
def replaying(states: dict[str, torch.Tensor], device: torch.device | str = "cpu") -> Iterator[None]:
    """Runs the block from the generator ``states`` of :func:`generator_states`, so that it draws
    the same random numbers as the code that ran from them; the current states are restored after."""
    device = torch.device(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else [], device_type="cuda"):
        torch.set_rng_state(states["cpu"])
        if "cuda" in states:
            torch.cuda.set_rng_state(states["cuda"], device)
        yield
