"""Shared fixtures: the real Fashion-MNIST and small trained networks, made once per session.

Tests that need the real files fail (never skip) when they are missing, with the
command that installs them: a skipped integrity test would hide a broken setup.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from stochrelax.data import fashion_mnist as data, idx_files as data_files
from stochrelax.models.allconv import build_model
from stochrelax.nn.rng import seeded
from stochrelax.rundir.config import parse_config
from stochrelax.training.loop import fit

# Read at import time, before any test's monkeypatching of the environment.
REAL_DATA_DIR = Path(os.environ.get(data_files.ENV_VAR) or data_files.SYSTEM_DIR)


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    missing = [name for name, _ in data_files.SPLIT_FILES.values() if not (REAL_DATA_DIR / name).is_file()]
    if missing:
        pytest.fail(f"Fashion-MNIST files {missing} not in {REAL_DATA_DIR}: run scripts/setup.sh "
                    f"(installs the Debian package dataset-fashion-mnist) or set {data_files.ENV_VAR}")
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


# --- small trained thesis networks to attack ------------------------------------------------

@dataclass
class Victim:
    model: torch.nn.Module  # in eval mode
    images: torch.Tensor  # (200, 1, 28, 28) float test images in [0, 1]
    labels: torch.Tensor  # (200,)

    def clean_accuracy(self) -> float:
        """Accuracy of one forward pass on the clean images."""
        with torch.no_grad():
            return (self.model(self.images).argmax(1) == self.labels).float().mean().item()


def _trained(fashion_mnist: data.FashionMNIST, activation: dict) -> Victim:
    config = parse_config({"model": {"activation": activation}, "train": {"epochs": 1}})
    subset = fashion_mnist.limit(train_limit=4000, test_limit=200)
    with seeded(0):
        model = build_model(config.model)
        fit(model, subset, config.train)
    return Victim(model.eval(), subset.test_images.float() / 255, subset.test_labels)


@pytest.fixture(scope="session")
def relu_victim(fashion_mnist: data.FashionMNIST) -> Victim:
    """Deterministic thesis ReLU network, ~80% test accuracy."""
    return _trained(fashion_mnist, {"kind": "relu"})


@pytest.fixture(scope="session")
def stochastic_victim(fashion_mnist: data.FashionMNIST) -> Victim:
    """Thesis ReLU network with additive logistic noise of std 0.5 (strong, so EOT matters)."""
    return _trained(fashion_mnist, {"kind": "relu", "noise": "logistic", "std": 0.5})


@pytest.fixture(scope="session")
def sign_ste_victim(fashion_mnist: data.FashionMNIST) -> Victim:
    """Sign network with logistic noise of std 0.05 and the straight-through estimator: its own proxy
    2p(a) is a spike, so attacks through it are blind (~53% clean accuracy)."""
    return _trained(fashion_mnist, {"kind": "sign", "noise": "logistic", "std": 0.05, "estimator": "ste"})


@pytest.fixture(scope="session")
def sign_score_victim(fashion_mnist: data.FashionMNIST) -> Victim:
    """Sign network trained with the score function: no pathwise gradient, attacks need BPDA."""
    return _trained(fashion_mnist, {"kind": "sign", "noise": "logistic", "std": 0.5, "estimator": "score"})


# --- small finished run directories with attack tables, for the figures --------------------------

PLOT_RUN_CONFIGS: dict[str, tuple[str, dict]] = {  # name -> (config file, overrides of its train section)
    "relu": ("relu_deterministic.yaml", {}),
    "logistic": ("relu_logistic_additive.yaml", {}),  # relu with additive logistic noise, std 0.05
    "logistic_seed1": ("relu_logistic_additive.yaml", {"seed": 1}),
    "adversarial": ("relu_adversarial_fgsm.yaml", {"adversarial": {"regenerate_every": 1}}),
}


@pytest.fixture(scope="session")
def small_run_dirs(fashion_mnist: data.FashionMNIST, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Four runs trained 2 epochs on 2000 images (300 test images), each with an attack table
    (FGSM at eps 0, 0.05, 0.1 and missing features at p 0, 0.2 on 100 test images)."""
    from stochrelax.evaluation.robustness import attack_run
    from stochrelax.evaluation.table import AttackSettings
    from stochrelax.rundir import layout as runs
    from stochrelax.rundir.config import load_config
    from stochrelax.training.loop import train_run

    configs = Path(__file__).resolve().parents[1] / "configs"
    root = tmp_path_factory.mktemp("plot_runs")
    run_dirs = {}
    for name, (config_file, train_overrides) in PLOT_RUN_CONFIGS.items():
        overrides = {"train": {"epochs": 2, **train_overrides}, "data": {"train_limit": 2000, "test_limit": 300}}
        run_dirs[name] = root / name
        train_run(load_config(configs / config_file, overrides), fashion_mnist, run_dirs[name])
        attack_run(runs.load_run(run_dirs[name]), fashion_mnist.limit(test_limit=100), AttackSettings(
            attacks=("fgsm", "missing"), eps=(0.0, 0.05, 0.1), p=(0.0, 0.2), eot_samples=4, prediction_samples=4,
            check_convergence=False))
    return run_dirs
