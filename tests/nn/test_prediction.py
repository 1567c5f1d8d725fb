"""A network as a stochastic predictor: the score-function log-probabilities of every draw, however
the draws are split into forward passes."""

from __future__ import annotations

import torch
from torch import nn

from stochrelax.nn.layers import StochasticActivation, drawing_from
from stochrelax.nn.prediction import Randomized, is_stochastic, sample_logits_and_log_prob


def _score_network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), StochasticActivation("sign", "logistic", std=0.5, estimator="score"),
                         nn.Linear(8, 8), StochasticActivation("sign", "logistic", std=0.5, estimator="score"),
                         nn.Linear(8, 3))


def _fixed_noise(layer: nn.Module, pre_activation: torch.Tensor) -> torch.Tensor:
    """Noise that is a function of each row's own pre-activation: the same whichever pass the row is in."""
    return 0.5 * torch.sin(997.0 * pre_activation)


def _gradient(model: nn.Module, images: torch.Tensor, rows_per_pass: int | None) -> tuple[torch.Tensor, list]:
    model.zero_grad()
    with drawing_from(model, _fixed_noise):
        logits, log_prob = sample_logits_and_log_prob(model, images, 4, rows_per_pass)  # (K, B, 3), (K, B)
    ((log_prob * logits.detach().logsumexp(dim=-1)).sum() + logits.mean()).backward()  # score + pathwise
    return log_prob.detach(), [parameter.grad.clone() for parameter in model.parameters()]


def test_draws_split_into_passes_give_every_draws_log_prob_and_the_same_gradient():
    model, images = _score_network(), torch.randn(5, 6)
    whole, whole_gradient = _gradient(model, images, rows_per_pass=None)  # one pass of 4 × 5 rows
    split, split_gradient = _gradient(model, images, rows_per_pass=5)  # four passes of one draw each
    assert whole.shape == split.shape == (4, 5)
    torch.testing.assert_close(split, whole)
    for split_part, whole_part in zip(split_gradient, whole_gradient):
        torch.testing.assert_close(split_part, whole_part)


def test_a_model_without_score_units_has_no_log_prob():
    model = nn.Sequential(nn.Linear(6, 8), StochasticActivation("relu", "logistic", std=0.5), nn.Linear(8, 3))
    logits, log_prob = sample_logits_and_log_prob(model, torch.randn(5, 6), 3)
    assert logits.shape == (3, 5, 3) and log_prob is None


def test_randomized_declares_a_models_own_noise():
    plain = nn.Linear(6, 3)
    assert not is_stochastic(plain) and is_stochastic(Randomized(plain))
    logits, _ = sample_logits_and_log_prob(Randomized(plain), torch.randn(5, 6), 3)
    assert logits.shape == (3, 5, 3)  # K draws of a declared randomized model
