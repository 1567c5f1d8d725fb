"""Shared fixtures: the real Fashion-MNIST, loaded once per session.

Tests that need the real files fail (never skip) when they are missing, with the
command that installs them: a skipped integrity test would hide a broken setup.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from stochrelax import data

# Read at import time, before any test's monkeypatching of the environment.
REAL_DATA_DIR = Path(os.environ.get(data.ENV_VAR) or data.SYSTEM_DIR)


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    missing = [name for name, _ in data.SPLIT_FILES.values() if not (REAL_DATA_DIR / name).is_file()]
    if missing:
        pytest.fail(f"Fashion-MNIST files {missing} not in {REAL_DATA_DIR}: run scripts/setup.sh "
                    f"(installs the Debian package dataset-fashion-mnist) or set {data.ENV_VAR}")
    return REAL_DATA_DIR


@pytest.fixture(scope="session")
def fashion_mnist(real_data_dir: Path) -> data.FashionMNIST:
    return data.load_fashion_mnist(real_data_dir)


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """One intra-op thread for the whole suite: the tests' batches are small, and on a
    2-core machine shared with another job torch's default pool oversubscribes the cores
    and makes training 10-20x slower. The previous setting is restored afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
