"""Randomized smoothing: prediction and certified L2 radius of a smoothed classifier.

Cohen, Rosenfeld & Kolter, "Certified Adversarial Robustness via Randomized Smoothing", ICML 2019
(https://arxiv.org/abs/1902.02918). A base classifier f that sees its input under Gaussian noise
defines the smoothed classifier

    g(x) = argmax_c P(f(x + δ) = c),   δ ~ N(0, σ²I)                      (Cohen et al., eq. 1)

and if the top class c_A has probability at least p_A ≥ 1/2 under the noise, g predicts c_A on
the whole L2 ball of radius σ·Φ⁻¹(p_A) around x (Theorem 1 with p_B = 1 − p_A). Neither
probability is known: :func:`predict` and :func:`certify` are the paper's PREDICT and CERTIFY
(section 3.2), which estimate them by Monte Carlo with a guarantee that holds with probability
at least 1 − α, and abstain (:data:`ABSTAIN`) when the samples cannot tell.

The noise is the model's own: f is any classifier with one
:class:`~stochrelax.nn.layers.GaussianInputNoise` layer that adds δ to its [0, 1] pixels, and σ is
that layer's. Other noise inside f (stochastic units) is allowed — Theorem 1 holds for a random
f too, whose class probabilities are then averaged over that noise as well — but it is not what
the certificate is about: without input noise there is nothing to certify.

Every function takes tensors and a seed and leaves the caller's state as it was: the model's
train/eval modes (:func:`~stochrelax.nn.prediction.evaluating`) and the global random generators
(:func:`~stochrelax.nn.rng.seeded`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
from scipy.stats import beta, binomtest, norm

from stochrelax.nn.prediction import evaluating, input_noise_std, sample_logits
from stochrelax.nn.rng import seeded

__all__ = ["ABSTAIN", "Certificate", "smoothing_sigma", "lower_confidence_bound", "certified_radius",
           "class_counts", "predict", "certify"]

ABSTAIN = -1
"""The class :func:`predict` and :func:`certify` return when they abstain."""


@dataclass(frozen=True)
class Certificate:
    """What :func:`certify` found for one input.

    ``prediction`` is the smoothed classifier's class, certified to stay the same on the L2 ball
    of ``radius`` (pixel units) around the input with probability at least 1 − α over the
    sampling; :data:`ABSTAIN` with radius 0 when the lower bound on p_A is below 1/2.
    """

    prediction: int
    radius: float
    p_lower: float  # the one-sided (1 − α) lower confidence bound on p_A


def smoothing_sigma(model: nn.Module, sigma: float | None = None) -> float:
    """σ of the Gaussian input noise that ``model`` smooths with, checked against ``sigma`` when given.

    Raises:
        ValueError: if ``model`` adds no Gaussian input noise (Cohen et al.'s theorem certifies the
            smoothing of the input only; noise inside the network gives no such certificate), or its
            σ differs from ``sigma``.
    """
    model_sigma = input_noise_std(model)
    if model_sigma is None:
        raise ValueError("the model adds no Gaussian input noise (model.input_noise); randomized smoothing "
                         "certifies a classifier smoothed by noise on its input, and a certificate for noise "
                         "inside the network is not what Cohen et al.'s theorem gives")
    if sigma is not None and not math.isclose(sigma, model_sigma, rel_tol=1e-9):
        raise ValueError(f"sigma {sigma:g} differs from the model's input noise std {model_sigma:g}; the "
                         "smoothing noise is the model's own, so give its sigma or none")
    return model_sigma


def _check_probability(name: str, value: float) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {value}")


def _check_count(name: str, value: int) -> None:
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")


def lower_confidence_bound(successes: int, trials: int, alpha: float) -> float:
    """One-sided Clopper–Pearson lower bound: P(p ≥ bound) ≥ 1 − ``alpha`` for k successes in n trials.

    The exact binomial bound Cohen et al. use for p_A in CERTIFY (section 3.2,
    ``LowerConfBound``): the ``alpha`` quantile of Beta(k, n − k + 1), and 0 for k = 0.
    """
    _check_probability("alpha", alpha)
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must be in [0, trials={trials}], got {successes}")
    return 0.0 if successes == 0 else float(beta.ppf(alpha, successes, trials - successes + 1))


def certified_radius(sigma: float, p_lower: float) -> float:
    """σ·Φ⁻¹(p_A), the L2 radius of Theorem 1 of Cohen et al. with p_B = 1 − p_A (inf for p_A = 1)."""
    return float(sigma * norm.ppf(p_lower))


@torch.inference_mode()
def class_counts(model: nn.Module, image: torch.Tensor, draws: int, batch: int) -> torch.Tensor:
    """How often ``model`` predicts each class over ``draws`` noise draws on one image.

    Runs in the current mode and from the current state of the generators: the public functions
    below put ``model`` in eval mode and seed the generators around it.

    Args:
        model: the base classifier f, with its input noise.
        image: (C, H, W) pixels in [0, 1].
        draws: noise draws.
        batch: draws per forward pass.

    Returns:
        (classes,) int64 counts on the CPU that sum to ``draws``.
    """
    logits = sample_logits(model, image.unsqueeze(0), draws, rows_per_pass=batch)  # (draws, 1, classes)
    return torch.bincount(logits.argmax(dim=-1).flatten(), minlength=logits.shape[-1]).cpu()


def predict(model: nn.Module, image: torch.Tensor, n: int, alpha: float, batch: int, seed: int,
            sigma: float | None = None) -> int:
    """PREDICT of Cohen et al. (section 3.2): g(x), or :data:`ABSTAIN`.

    Counts the classes of ``n`` noise draws and returns the top one unless a two-sided binomial
    test cannot tell its count from the runner-up's at level ``alpha``; then it abstains. The
    returned class differs from g(x) with probability at most ``alpha`` (their Proposition 1).

    Args:
        model: the base classifier f with its Gaussian input noise (eval mode within; restored).
        image: (C, H, W) pixels in [0, 1], on the model's device.
        n: noise draws.
        alpha: the bound on the probability of returning a wrong class.
        batch: draws per forward pass.
        seed: seed of the noise draws (the caller's generators are restored after).
        sigma: if given, must be the model's input noise std.

    Raises:
        ValueError: for a model without Gaussian input noise, another ``sigma``, or bad counts or alpha.
    """
    smoothing_sigma(model, sigma)
    _check_count("n", n)
    _check_count("batch", batch)
    _check_probability("alpha", alpha)
    with seeded(seed, image.device), evaluating(model):
        counts = class_counts(model, image, n, batch)
    top_two = counts.topk(2)
    top, runner_up = (int(count) for count in top_two.values)
    if binomtest(top, top + runner_up, 0.5).pvalue > alpha:
        return ABSTAIN
    return int(top_two.indices[0])


def certify(model: nn.Module, image: torch.Tensor, n0: int, n: int, alpha: float, batch: int, seed: int,
            sigma: float | None = None) -> Certificate:
    """CERTIFY of Cohen et al. (section 3.2): g(x) and an L2 radius on which g is constant.

    ``n0`` draws choose the top class c_A; ``n`` fresh draws bound p_A = P(f(x + δ) = c_A) from below
    at confidence 1 − ``alpha`` (:func:`lower_confidence_bound`); the radius is σ·Φ⁻¹ of that bound
    (Theorem 1), and the certificate abstains when the bound is below 1/2. With probability at
    least 1 − ``alpha`` a returned class is g(x) and g is that class on the whole ball.

    Args:
        model: the base classifier f with its Gaussian input noise (eval mode within; restored).
        image: (C, H, W) pixels in [0, 1], on the model's device.
        n0: draws that select the class.
        n: draws that estimate its probability.
        alpha: the failure probability of the certificate.
        batch: draws per forward pass.
        seed: seed of the noise draws (the caller's generators are restored after).
        sigma: if given, must be the model's input noise std.

    Raises:
        ValueError: for a model without Gaussian input noise, another ``sigma``, or bad counts or alpha.
    """
    model_sigma = smoothing_sigma(model, sigma)
    for name, count in (("n0", n0), ("n", n), ("batch", batch)):
        _check_count(name, count)
    _check_probability("alpha", alpha)
    with seeded(seed, image.device), evaluating(model):
        guess = int(class_counts(model, image, n0, batch).argmax())
        successes = int(class_counts(model, image, n, batch)[guess])
    p_lower = lower_confidence_bound(successes, n, alpha)
    if p_lower < 0.5:
        return Certificate(ABSTAIN, 0.0, p_lower)
    return Certificate(guess, certified_radius(model_sigma, p_lower), p_lower)
