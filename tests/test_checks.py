"""Gradient-masking diagnostics: each warning fires on the situation it describes, and only then."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from stochrelax.checks import (GradientHealth, RobustnessRow, diagnose, gradient_health, randomized_fraction,
                               sampling_tolerance)
from stochrelax.layers import StochasticActivation

HEALTHY = GradientHealth(0.0, 0.0)


def row(attack: str, budget: float, accuracy: float, eot: int = 1, gradient_based: bool = True) -> RobustnessRow:
    return RobustnessRow(attack, budget, eot, accuracy, 1000, gradient_based)


def test_a_sound_evaluation_gets_no_warning() -> None:
    rows = [row("pgd", 0.0, 0.9), row("pgd", 0.05, 0.4), row("pgd", 0.1, 0.1), row("square", 0.1, 0.3, 1, False)]
    assert diagnose(rows, randomized=0.0, health=HEALTHY, convergence=(0.4, 0.39)) == []


def test_randomized_model_attacked_without_eot_is_flagged() -> None:
    warnings = diagnose([row("fgsm", 0.1, 0.5)], randomized=0.2, health=HEALTHY)
    assert len(warnings) == 1 and "randomized" in warnings[0] and "--eot" in warnings[0]
    assert diagnose([row("fgsm", 0.1, 0.5), row("fgsm", 0.1, 0.4, eot=16)], randomized=0.2, health=HEALTHY) == []


@pytest.mark.parametrize("health,words", [(GradientHealth(0.5, 0.0), "exactly zero"),
                                          (GradientHealth(0.0, 0.01), "NaN or infinite")])
def test_bad_gradients_are_flagged(health: GradientHealth, words: str) -> None:
    warnings = diagnose([row("pgd", 0.1, 0.5)], randomized=0.0, health=health)
    assert len(warnings) == 1 and words in warnings[0]


def test_square_beating_the_gradient_attacks_is_flagged() -> None:
    rows = [row("pgd", 0.1, 0.5), row("fgsm", 0.1, 0.6), row("square", 0.1, 0.2, 1, False)]
    warnings = diagnose(rows, randomized=0.0, health=HEALTHY)
    assert len(warnings) == 1 and "Square" in warnings[0] and "pgd" in warnings[0]


def test_accuracy_rising_with_eps_is_flagged_beyond_sampling_error() -> None:
    rising = [row("fgsm", 0.05, 0.30), row("fgsm", 0.1, 0.45)]
    assert "rises" in diagnose(rising, randomized=0.0, health=HEALTHY)[0]
    within_noise = [row("fgsm", 0.05, 0.30), row("fgsm", 0.1, 0.30 + sampling_tolerance(0.3, 1000) / 2)]
    assert diagnose(within_noise, randomized=0.0, health=HEALTHY) == []


def test_unconverged_attack_is_flagged() -> None:
    warnings = diagnose([row("pgd", 0.1, 0.5)], randomized=0.0, health=HEALTHY, convergence=(0.5, 0.3))
    assert len(warnings) == 1 and "not converged" in warnings[0]


def test_randomized_fraction_sees_noise_and_only_noise() -> None:
    images = torch.rand(64, 8)
    noisy = nn.Sequential(nn.Linear(8, 10), StochasticActivation("relu", "gaussian", std=3.0), nn.Linear(10, 5))
    assert randomized_fraction(noisy, images) > 0.2
    assert randomized_fraction(nn.Sequential(nn.Linear(8, 5)), images) == 0.0


def test_gradient_health_of_a_dead_and_of_a_live_network(relu_victim) -> None:
    images, labels = relu_victim.images[:20], relu_victim.labels[:20]
    assert gradient_health(relu_victim.model, images, labels) == HEALTHY
    dead = nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.ReLU(), nn.Linear(10, 10))
    nn.init.constant_(dead[1].bias, -100.0)  # every ReLU off: zero gradient everywhere
    assert gradient_health(dead, images, labels).zero_fraction == 1.0


def test_sampling_tolerance_shrinks_with_more_examples() -> None:
    assert sampling_tolerance(0.5, 10_000) < sampling_tolerance(0.5, 100)
    assert sampling_tolerance(0.5, 100) == pytest.approx(2 * 0.05 + 0.01)
