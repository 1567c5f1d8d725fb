"""Randomized smoothing (:mod:`stochrelax.evaluation.smoothing`) on a toy classifier whose p_A is known in closed form.

The toy: a linear classifier on four pixels behind Gaussian input noise, class 0 when w·(x + δ) + b > 0.
With δ ~ N(0, σ²I), w·δ ~ N(0, σ²‖w‖²), so p_A = P(class 0) = Φ((w·x + b) / (σ‖w‖)).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from scipy.stats import binom, binomtest, norm

from stochrelax.evaluation.smoothing import (ABSTAIN, certified_radius, certify, class_counts, lower_confidence_bound,
                                             predict, smoothing_sigma)
from stochrelax.models.allconv import ModelConfig, build_model
from stochrelax.nn.layers import GaussianInputNoise, noise_disabled

SIGMA = 0.5
WEIGHTS = torch.tensor([1.0, -2.0, 0.5, 2.0])
NORM = WEIGHTS.norm().item()


class LinearToy(nn.Module):
    """Scores (s, −s) with s = w·(x + δ) + b for a (1, 2, 2) image x."""

    def __init__(self, bias: float, sigma: float = SIGMA) -> None:
        super().__init__()
        self.noise = GaussianInputNoise(sigma)
        self.bias = bias

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        score = self.noise(images).flatten(1) @ WEIGHTS + self.bias
        return torch.stack([score, -score], dim=1)


def toy_for(p_a: float) -> tuple[LinearToy, torch.Tensor]:
    """A toy and an image (all zeros) on which class 0 has probability ``p_a``."""
    return LinearToy(bias=SIGMA * NORM * norm.ppf(p_a)), torch.zeros(1, 2, 2)


@pytest.mark.parametrize(("successes", "trials", "alpha"), [(0, 100, 0.001), (1, 100, 0.001), (37, 100, 0.05),
                                                            (950, 1000, 0.001), (99_990, 100_000, 0.001),
                                                            (100, 100, 0.01), (5000, 10_000, 0.3)])
def test_the_clopper_pearson_bound_agrees_with_scipys_exact_one_sided_interval(successes, trials, alpha) -> None:
    independent = binomtest(successes, trials, alternative="greater").proportion_ci(1 - alpha, method="exact").low
    assert lower_confidence_bound(successes, trials, alpha) == pytest.approx(independent, abs=1e-9)


def test_the_bound_of_all_successes_is_alpha_to_the_one_over_n() -> None:
    # P(n successes | p) = p^n = alpha at the bound
    assert lower_confidence_bound(2000, 2000, 0.001) == pytest.approx(0.001 ** (1 / 2000), abs=1e-12)


@pytest.mark.parametrize(("successes", "trials", "alpha", "fragment"), [(5, 4, 0.1, "successes"),
                                                                       (-1, 4, 0.1, "successes"),
                                                                       (1, 4, 0.0, "alpha"), (1, 4, 1.0, "alpha")])
def test_the_bound_refuses_bad_arguments(successes, trials, alpha, fragment) -> None:
    with pytest.raises(ValueError, match=fragment):
        lower_confidence_bound(successes, trials, alpha)


def test_class_counts_match_the_closed_form_probability() -> None:
    model, image = toy_for(0.8)
    torch.manual_seed(0)
    counts = class_counts(model, image, draws=20_000, batch=4096)
    assert counts.sum() == 20_000 and counts.shape == (2,)
    assert counts[0].item() / 20_000 == pytest.approx(0.8, abs=4 * math.sqrt(0.8 * 0.2 / 20_000))


def test_the_certified_radius_is_sigma_times_the_inverse_normal_of_the_lower_bound() -> None:
    p_a = 0.9
    model, image = toy_for(p_a)
    certificate = certify(model, image, n0=100, n=4000, alpha=0.001, batch=1000, seed=3)
    assert certificate.prediction == 0
    assert certificate.radius == pytest.approx(SIGMA * norm.ppf(certificate.p_lower), rel=1e-12)
    assert certificate.radius == certified_radius(SIGMA, certificate.p_lower)
    # the bound sits below p_A, within the sampling error of 4,000 draws plus the one-sided margin
    assert p_a - 6 * math.sqrt(p_a * (1 - p_a) / 4000) < certificate.p_lower <= p_a
    # the true radius of p_A bounds the certified one
    assert certificate.radius <= SIGMA * norm.ppf(p_a)


def test_when_every_draw_agrees_the_radius_is_in_closed_form() -> None:
    model, image = toy_for(1 - 1e-15)
    certificate = certify(model, image, n0=10, n=3000, alpha=0.01, batch=1000, seed=0)
    assert certificate.prediction == 0
    assert certificate.radius == pytest.approx(SIGMA * norm.ppf(0.01 ** (1 / 3000)), rel=1e-9)


def test_the_abstention_rate_and_the_coverage_match_the_bound() -> None:
    """Over 400 seeds at p_A = 0.54, n = 1000, α = 0.01: CERTIFY abstains exactly when the selected
    class's count k gives a lower bound below 1/2, so its abstention rate is P(k < k*) with k* the smallest
    count whose bound reaches 1/2, mixed over which class the n0 = 100 selection draws chose (ties go to
    class 0, torch.argmax's first maximum); and the bound exceeds p_A in at most about α of the certificates.
    Tolerance: 4 standard errors of a rate over 400 trials (≤ 0.1)."""
    p_a, n0, n, alpha, trials = 0.54, 100, 1000, 0.01, 400
    model, image = toy_for(p_a)
    threshold = next(k for k in range(n + 1) if lower_confidence_bound(k, n, alpha) >= 0.5)
    chose_a = binom.sf(n0 // 2 - 1, n0, p_a)  # P(count of class 0 ≥ n0/2)
    expected = chose_a * binom.cdf(threshold - 1, n, p_a) + (1 - chose_a) * binom.cdf(threshold - 1, n, 1 - p_a)
    certificates = [certify(model, image, n0, n, alpha, batch=1100, seed=seed) for seed in range(trials)]
    abstained = np.mean([certificate.prediction == ABSTAIN for certificate in certificates])
    assert abstained == pytest.approx(expected, abs=4 * math.sqrt(expected * (1 - expected) / trials))
    assert 0.2 < expected < 0.8  # the test is sensitive: neither always nor never abstaining
    overconfident = np.mean([certificate.p_lower > p_a for certificate in certificates
                             if certificate.prediction == 0])
    assert overconfident <= alpha + 4 * math.sqrt(alpha / trials)
    assert all(certificate.prediction in (0, ABSTAIN) for certificate in certificates)  # class 1 never certified


def test_predict_abstains_on_a_tie_and_answers_a_clear_margin() -> None:
    tie, image = toy_for(0.5)
    abstentions = [predict(tie, image, n=2000, alpha=0.01, batch=2000, seed=seed) for seed in range(50)]
    assert abstentions.count(ABSTAIN) >= 45  # a wrong answer has probability at most alpha per call
    clear, image = toy_for(0.7)
    assert predict(clear, image, n=2000, alpha=0.001, batch=500, seed=0) == 0
    other = LinearToy(bias=-SIGMA * NORM * norm.ppf(0.7))
    assert predict(other, image, n=2000, alpha=0.001, batch=500, seed=0) == 1


def test_the_same_seed_gives_the_same_certificate_and_the_callers_state_is_left_as_it_was() -> None:
    model, image = toy_for(0.8)
    model.train()
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = certify(model, image, 50, 2000, 0.001, 700, seed=7)
    assert certify(model, image, 50, 2000, 0.001, 700, seed=7) == first
    predict(model, image, 500, 0.001, 100, seed=7)
    assert torch.equal(torch.get_rng_state(), before)
    assert model.training and model.noise.training


def test_a_model_without_input_noise_is_refused() -> None:
    network = build_model(ModelConfig())  # the thesis' noise inside the network gives no certificate
    image = torch.zeros(1, 28, 28)
    for call in (lambda: certify(network, image, 10, 100, 0.001, 100, 0),
                 lambda: predict(network, image, 100, 0.001, 100, 0)):
        with pytest.raises(ValueError, match="no Gaussian input noise.*inside the network"):
            call()
    model, image = toy_for(0.8)
    with noise_disabled(model), pytest.raises(ValueError, match="no Gaussian input noise"):
        certify(model, image, 10, 100, 0.001, 100, 0)


def test_a_sigma_other_than_the_models_is_refused() -> None:
    model, image = toy_for(0.8)
    assert smoothing_sigma(model, SIGMA) == SIGMA == smoothing_sigma(model)
    with pytest.raises(ValueError, match="sigma 0.25 differs from the model's input noise std 0.5"):
        certify(model, image, 10, 100, 0.001, 100, 0, sigma=0.25)


@pytest.mark.parametrize(("arguments", "fragment"), [((0, 100, 0.001, 10), "n0"), ((10, 0, 0.001, 10), "n must"),
                                                     ((10, 100, 1.5, 10), "alpha"), ((10, 100, 0.001, 0), "batch")])
def test_certify_refuses_bad_counts_and_alpha(arguments, fragment) -> None:
    model, image = toy_for(0.8)
    with pytest.raises(ValueError, match=fragment):
        certify(model, image, *arguments, seed=0)
