"""Shared fixtures: the real Fashion-MNIST, loaded once per session.

Tests that need the real files fail (never skip) when they are missing, with the
command that installs them: a skipped integrity test would hide a broken setup.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
