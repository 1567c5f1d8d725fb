"""Small trained thesis networks to attack, trained once per session on real data."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from stochrelax.config import parse_config
from stochrelax.data import FashionMNIST
from stochrelax.models import build_model
from stochrelax.rng import seeded
from stochrelax.train import fit


@dataclass
class Victim:
    model: torch.nn.Module  # in eval mode
    images: torch.Tensor  # (200, 1, 28, 28) float test images in [0, 1]
    labels: torch.Tensor  # (200,)


def _trained(fashion_mnist: FashionMNIST, activation: dict) -> Victim:
    config = parse_config({"model": {"activation": activation}, "train": {"epochs": 1}})
    data = fashion_mnist.limit(train_limit=4000, test_limit=200)
    with seeded(0):
        model = build_model(config.model)
        fit(model, data, config.train)
    return Victim(model.eval(), data.test_images.float() / 255, data.test_labels)


@pytest.fixture(scope="session")
def relu_victim(fashion_mnist: FashionMNIST) -> Victim:
    """Deterministic thesis ReLU network, ~80% test accuracy."""
    return _trained(fashion_mnist, {"kind": "relu"})


@pytest.fixture(scope="session")
def stochastic_victim(fashion_mnist: FashionMNIST) -> Victim:
    """Thesis ReLU network with additive logistic noise of std 0.5 (strong, so EOT matters)."""
    return _trained(fashion_mnist, {"kind": "relu", "noise": "logistic", "std": 0.5})


@pytest.fixture(scope="session")
def sign_score_victim(fashion_mnist: FashionMNIST) -> Victim:
    """Sign network trained with the score function: no pathwise gradient, attacks need BPDA."""
    return _trained(fashion_mnist, {"kind": "sign", "noise": "logistic", "std": 0.5, "estimator": "score"})
