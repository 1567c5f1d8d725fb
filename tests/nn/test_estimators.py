"""Gradient estimators for sign units, checked against exact gradients.

The exact gradient of the expected loss of a tiny sign network is computed by
enumerating every joint state of its units (as in Shekhovtsov et al. 2020,
``gradeval/test_grad1.py``), with unit probabilities from ``torch.distributions``
or closed forms — independent of :mod:`stochrelax.nn.noise`.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from stochrelax.nn.estimators import (STRAIGHT_THROUGH_DERIVATIVES, MovingAverageBaseline, score_function,
                                      score_function_surrogate)
from stochrelax.nn.layers import StochasticActivation, noise_disabled
from stochrelax.nn.noise import NOISES, make_noise
from stochrelax.nn.prediction import collect_log_prob
from stochrelax.nn.rng import seeded


def reference_cdf(noise: str, std: float):
    """P(ξ ≤ x) for zero-mean noise of the given std, from torch.distributions / closed forms."""
    if noise == "gaussian":
        zero = torch.zeros((), dtype=torch.float64)
        return torch.distributions.Normal(zero, zero + std).cdf
    if noise == "logistic":
        scale = std * math.sqrt(3.0) / math.pi
        return lambda x: 1.0 / (1.0 + torch.exp(-x / scale))
    half_width = std * math.sqrt(3.0)
    return lambda x: ((x + half_width) / (2 * half_width)).clamp(0.0, 1.0)


# --- straight-through: exactly the gradient of the expected output of one layer ---------


@pytest.mark.parametrize("noise", ["gaussian", "logistic", "uniform"])
def test_ste_equals_gradient_of_expected_output_for_one_layer(noise: str) -> None:
    std = 0.7
    with seeded(0):
        linear = nn.Linear(3, 5).double()
        inputs = torch.randn(4, 3, dtype=torch.float64)
        weights = torch.randn(4, 5, dtype=torch.float64)  # d loss / d y
        unit = StochasticActivation("sign", noise, "additive", std=std, estimator="ste")
        (weights * unit(linear(inputs))).sum().backward()
    ste_gradient = [p.grad.clone() for p in linear.parameters()]

    linear.zero_grad()
    cdf = reference_cdf(noise, std)
    pre_activation = linear(inputs)
    # Enumerate y ∈ {−1, +1}: E[y] = (+1)·P(y = +1) + (−1)·P(y = −1).
    expected_output = cdf(pre_activation) - (1.0 - cdf(pre_activation))
    (weights * expected_output).sum().backward()
    for ste, exact in zip(ste_gradient, (p.grad for p in linear.parameters())):
        torch.testing.assert_close(ste, exact, rtol=1e-10, atol=1e-12)


def test_ste_with_logistic_noise_is_the_tanh_proxy() -> None:
    std = 0.5
    scale = std * math.sqrt(3.0) / math.pi
    pre_activation = torch.linspace(-2, 2, 41, dtype=torch.float64, requires_grad=True)
    StochasticActivation("sign", "logistic", std=std, estimator="ste")(pre_activation).sum().backward()
    # 2F(a) − 1 = tanh(a / 2s) for logistic noise of scale s.
    expected = (1.0 - torch.tanh(pre_activation.detach() / (2 * scale)) ** 2) / (2 * scale)
    torch.testing.assert_close(pre_activation.grad, expected)


def test_ste_with_uniform_noise_is_the_hard_tanh_proxy() -> None:
    std = 1.0 / math.sqrt(3.0)  # half-width 1
    pre_activation = torch.tensor([-1.5, -0.99, -0.2, 0.0, 0.5, 0.99, 1.5], dtype=torch.float64, requires_grad=True)
    StochasticActivation("sign", "uniform", std=std, estimator="ste")(pre_activation).sum().backward()
    torch.testing.assert_close(pre_activation.grad, torch.tensor([0, 1, 1, 1, 1, 1, 0], dtype=torch.float64))


def test_classic_ste_passes_gradient_where_the_pre_activation_is_within_one() -> None:
    pre_activation = torch.tensor([-3.0, -1.0, -0.3, 0.0, 0.7, 1.0, 2.0], requires_grad=True)
    output = StochasticActivation("sign", estimator="classic_ste")(pre_activation)
    (output * torch.arange(7.0)).sum().backward()
    assert output.tolist() == [-1, -1, -1, 1, 1, 1, 1]
    assert pre_activation.grad.tolist() == [0, 1, 2, 3, 4, 5, 0]


# --- without a noise draw: sign(a) and the derivative of the smooth function the estimator stands for ---


def logistic_density_times_two(pre_activation: torch.Tensor, std: float = 0.5) -> torch.Tensor:
    """2p(a) of zero-mean logistic noise: the derivative of 2F(a) − 1 = tanh(a / 2s)."""
    scale = std * math.sqrt(3.0) / math.pi
    return (1.0 - torch.tanh(pre_activation / (2 * scale)) ** 2) / (2 * scale)


def hard_tanh_derivative(pre_activation: torch.Tensor) -> torch.Tensor:
    return (pre_activation.abs() <= 1.0).double()


@pytest.mark.parametrize("estimator,noise,derivative", [("ste", "logistic", logistic_density_times_two),
                                                        ("score", "logistic", logistic_density_times_two),
                                                        ("classic_ste", "logistic", hard_tanh_derivative),
                                                        ("classic_ste", None, hard_tanh_derivative)])
def test_a_sign_unit_without_a_draw_back_propagates_its_estimators_straight_through_derivative(
        estimator: str, noise: str | None, derivative) -> None:
    pre_activation = torch.tensor([-1.5, -0.6, 0.0, 0.3, 2.0], dtype=torch.float64, requires_grad=True)
    unit = StochasticActivation("sign", noise, std=None if noise is None else 0.5, estimator=estimator)
    with noise_disabled(unit):
        output = unit(pre_activation)
    output.sum().backward()
    assert output.tolist() == [-1, -1, 1, 1, 1] and unit.last_log_prob is None
    torch.testing.assert_close(pre_activation.grad, derivative(pre_activation.detach()))


def test_the_straight_through_derivative_refuses_a_unit_without_noise() -> None:
    with pytest.raises(ValueError, match="needs a noise distribution"):
        STRAIGHT_THROUGH_DERIVATIVES["ste"](None)


# --- score function: unbiased for a two-layer network of sign units ---------------------


class TinySignNet(nn.Module):
    """x → Linear(2, 3) → sign → Linear(3, 2) → sign → Linear(2, 3) class scores."""

    def __init__(self, noise: str, std: float, estimator: str) -> None:
        super().__init__()
        self.first, self.second, self.head = nn.Linear(2, 3), nn.Linear(3, 2), nn.Linear(2, 3)
        self.units = nn.ModuleList(StochasticActivation("sign", noise, std=std, estimator=estimator) for _ in range(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.units[1](self.second(self.units[0](self.first(x)))))


def states(width: int) -> torch.Tensor:
    """All 2^width vectors in {−1, +1}^width, (2^width, width)."""
    return torch.tensor(list(itertools.product([-1.0, 1.0], repeat=width)), dtype=torch.float64)


def exact_expected_loss(net: TinySignNet, x: torch.Tensor, label: int, cdf) -> torch.Tensor:
    """E[L] = Σ_{y1, y2} p(y1 | x) p(y2 | y1) L(y2), differentiable in the parameters."""
    def probability(y: torch.Tensor, pre_activation: torch.Tensor) -> torch.Tensor:
        return torch.where(y > 0, cdf(pre_activation), 1.0 - cdf(pre_activation)).prod(dim=-1)

    first_states, second_states = states(3), states(2)  # (8, 3), (4, 2)
    p_first = probability(first_states, net.first(x))  # (8,)
    p_second = probability(second_states.unsqueeze(0), net.second(first_states).unsqueeze(1))  # (8, 4)
    losses = F.cross_entropy(net.head(second_states), torch.full((4,), label), reduction="none")  # (4,)
    return (p_first.unsqueeze(1) * p_second * losses.unsqueeze(0)).sum()


def estimate_gradients(net: TinySignNet, x: torch.Tensor, label: int, baseline: float, batches: int,
                       batch_size: int) -> torch.Tensor:
    """``batches`` independent estimates of ∇E[L], each the mean over ``batch_size`` draws, (batches, P)."""
    estimates = []
    inputs, labels = x.expand(batch_size, -1), torch.full((batch_size,), label)
    for _ in range(batches):
        net.zero_grad()
        loss = F.cross_entropy(net(inputs), labels, reduction="none")  # (N,)
        score_function_surrogate(loss, collect_log_prob(net), baseline).backward()
        estimates.append(torch.cat([p.grad.flatten() for p in net.parameters()]))
    return torch.stack(estimates)


def exact_gradient(net: TinySignNet, x: torch.Tensor, label: int, cdf) -> torch.Tensor:
    net.zero_grad()
    exact_expected_loss(net, x, label, cdf).backward()
    return torch.cat([p.grad.flatten() for p in net.parameters()])


def z_scores(net: TinySignNet, noise: str, std: float, baseline: float) -> torch.Tensor:
    x = torch.tensor([0.8, -0.4], dtype=torch.float64)
    exact = exact_gradient(net, x, 2, reference_cdf(noise, std))
    estimates = estimate_gradients(net, x, 2, baseline, batches=32, batch_size=2000)
    standard_error = estimates.std(dim=0) / math.sqrt(estimates.shape[0])
    return (estimates.mean(dim=0) - exact) / standard_error.clamp(min=1e-12)


@pytest.mark.parametrize("noise,baseline", [("logistic", 0.0), ("logistic", 1.1), ("gaussian", 0.7)])
def test_score_function_is_unbiased_against_exact_enumeration(noise: str, baseline: float) -> None:
    std = 1.0
    with seeded(1):
        net = TinySignNet(noise, std, "score").double()
        scores = z_scores(net, noise, std, baseline)
    # 23 parameters; each mean of 32 independent estimates within 4 standard errors.
    assert scores.abs().max() < 4.0, scores


def test_enumeration_test_detects_the_bias_of_ste_in_two_layers() -> None:
    """The same check rejects straight-through, which is biased beyond one layer: the test has power."""
    std = 1.0
    with seeded(1):
        net = TinySignNet("logistic", std, "ste").double()
        scores = z_scores(net, "logistic", std, 0.0)
    assert scores.abs().max() > 10.0, scores


def test_baseline_lowers_the_variance_of_the_score_function() -> None:
    std, x = 1.0, torch.tensor([0.8, -0.4], dtype=torch.float64)
    with seeded(2):
        net = TinySignNet("logistic", std, "score").double()
        mean_loss = exact_expected_loss(net, x, 2, reference_cdf("logistic", std)).item()
        without = estimate_gradients(net, x, 2, 0.0, batches=20, batch_size=500).var(dim=0).sum()
        with_baseline = estimate_gradients(net, x, 2, mean_loss, batches=20, batch_size=500).var(dim=0).sum()
    assert with_baseline < 0.5 * without


def test_surrogate_without_score_units_is_the_mean_loss() -> None:
    loss = torch.tensor([0.5, 1.5, 2.0])
    assert score_function_surrogate(loss, None, baseline=3.0).item() == pytest.approx(4.0 / 3.0)


def test_score_units_pass_no_pathwise_gradient() -> None:
    pre_activation = torch.randn(6, 4, requires_grad=True)
    unit = StochasticActivation("sign", "logistic", std=0.5, estimator="score")
    output = unit(pre_activation)
    assert not output.requires_grad
    assert unit.last_log_prob.shape == (6,)
    assert (unit.last_log_prob <= 0).all()


def test_moving_average_baseline_starts_at_the_first_loss_then_averages() -> None:
    baseline = MovingAverageBaseline(decay=0.9)
    baseline.update(2.0)
    assert baseline.value == 2.0
    baseline.update(1.0)
    assert baseline.value == pytest.approx(0.9 * 2.0 + 0.1 * 1.0)
    with pytest.raises(ValueError, match="decay"):
        MovingAverageBaseline(decay=1.0)


@pytest.mark.parametrize("name", list(NOISES))
def test_score_log_prob_equals_log_cdf_or_log_sf_of_each_outcome(name: str) -> None:
    noise = make_noise(name, 0.3, 0.7)  # mean ≠ 0: the reflection about the mean must be right
    generator = torch.Generator().manual_seed(0)
    pre_activation = torch.randn(4, 50, generator=generator, dtype=torch.float64) * 2
    sample = torch.where(torch.rand(4, 50, generator=generator, dtype=torch.float64) < 0.5, -1.0, 1.0)
    _, log_prob = score_function(pre_activation, sample, noise)
    reference = torch.where(sample > 0, noise.log_cdf(pre_activation), noise.log_sf(pre_activation)).sum(dim=1)
    torch.testing.assert_close(log_prob, reference, rtol=1e-10, atol=1e-10)


def test_score_skips_the_log_prob_when_no_gradient_is_taken() -> None:
    pre_activation = torch.randn(3, 5)
    with torch.no_grad():
        sample, log_prob = score_function(pre_activation, pre_activation.sign(), make_noise("gaussian", 0.0, 1.0))
    assert log_prob is None and torch.equal(sample, pre_activation.sign())
