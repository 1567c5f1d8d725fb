"""Attack proxies: BPDA through a chosen smooth proxy, and the smooth surrogate, each against an independent computation."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from stochrelax.attacks.proxies import Proxy, ProxyGradients, SmoothActivation, has_sign_units, smooth_surrogate
from stochrelax.nn.layers import StochasticActivation
from stochrelax.nn.prediction import is_stochastic
from stochrelax.nn.rng import seeded


def linear_sign_model(estimator: str = "ste", noise: str | None = "logistic", std: float | None = 0.05) -> nn.Module:
    """x (B, 4) → sign units on W x → a fixed read-out: small enough to differentiate by hand."""
    torch.manual_seed(0)
    first = nn.Linear(4, 3)
    unit = StochasticActivation("sign", noise, "additive", std, estimator=estimator)
    readout = nn.Linear(3, 2)
    return nn.Sequential(first, unit, readout)


@pytest.mark.parametrize("text, kind, temperature", [("tanh:0.5", "tanh", 0.5), ("own", "own", None),
                                                      (" tanh:2 ", "tanh", 2.0)])
def test_parse_reads_kind_and_temperature(text: str, kind: str, temperature: float | None) -> None:
    proxy = Proxy.parse(text)
    assert (proxy.kind, proxy.temperature) == (kind, temperature)
    assert Proxy.parse(str(proxy)) == proxy


@pytest.mark.parametrize("text, message", [("tanh", "needs a temperature"), ("tanh:0", "needs a temperature"),
                                           ("tanh:x", "bad proxy"), ("own:1", "takes no temperature"),
                                           ("sigmoid:1", "valid: tanh, own")])
def test_parse_refuses_bad_proxies_in_one_line(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as error:
        Proxy.parse(text)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("text", ["tanh:0.3", "tanh:2", "own"])
@pytest.mark.parametrize("noise", ["logistic", "gaussian", "uniform", None])
def test_derivative_is_the_derivative_of_the_value(text: str, noise: str | None) -> None:
    unit = StochasticActivation("sign", noise, "additive", 0.4 if noise else None,
                                estimator=None if noise else "classic_ste")
    proxy = Proxy.parse(text)
    points = torch.linspace(-1.5, 1.5, 301, dtype=torch.float64).requires_grad_(True)
    (autograd,) = torch.autograd.grad(proxy.value(unit, points).sum(), points)
    interior = (points.detach().abs() - 1.0).abs() > 1e-6  # hard-tanh's kinks are not differentiable
    torch.testing.assert_close(proxy.derivative(unit)(points.detach())[interior], autograd[interior])


@pytest.mark.parametrize("noise", ["logistic", None])
def test_own_proxy_of_a_classic_straight_through_unit_is_hard_tanh_with_or_without_noise(noise: str | None) -> None:
    unit = StochasticActivation("sign", noise, "additive", 0.4 if noise else None, estimator="classic_ste")
    points = torch.tensor([-2.0, -0.5, 0.0, 0.3, 1.7])
    assert torch.equal(Proxy().value(unit, points), torch.tensor([-1.0, -0.5, 0.0, 0.3, 1.0]))
    assert torch.equal(Proxy().derivative(unit)(points), torch.tensor([0.0, 1.0, 1.0, 1.0, 0.0]))


def test_own_proxy_is_the_mean_of_the_stochastic_unit() -> None:
    """E[sign(a − ξ)] = 2F(a) − 1, checked by Monte Carlo over 200,000 draws (5 standard errors)."""
    unit = StochasticActivation("sign", "gaussian", "additive", 0.3)
    points = torch.linspace(-0.6, 0.6, 7)
    with seeded(0):
        draws = unit(points.expand(200_000, -1))  # (draws, 7)
    standard_error = draws.std(dim=0) / 200_000 ** 0.5
    assert ((draws.mean(dim=0) - Proxy().value(unit, points)).abs() <= 5 * standard_error + 1e-6).all()


@pytest.mark.parametrize("estimator", ["ste", "score", "classic_ste"])
def test_proxy_gradients_keep_the_forward_and_use_the_proxy_backward(estimator: str) -> None:
    noisy = estimator != "classic_ste"
    model = linear_sign_model(estimator, "logistic" if noisy else None, 0.05 if noisy else None).eval()
    proxied = ProxyGradients(model, Proxy.parse("tanh:0.5"))
    images = torch.randn(5, 4, requires_grad=True)
    with seeded(3):
        output = proxied(images)
    with seeded(3):
        assert torch.equal(output, model(images))  # the same noise draws give the same forward pass
    (gradient,) = torch.autograd.grad(output[:, 0].sum(), images)
    first, readout = model[0], model[2]
    pre_activation = first(images).detach()  # (5, 3)
    expected = ((1 - torch.tanh(pre_activation / 0.5) ** 2) / 0.5 * readout.weight[0]) @ first.weight  # (5, 4)
    torch.testing.assert_close(gradient, expected)
    assert model[1].gradient_proxy is None and model[1].estimator == estimator  # the model is unchanged


def test_smooth_surrogate_is_deterministic_and_leaves_the_model_alone() -> None:
    model = linear_sign_model().eval()
    surrogate = smooth_surrogate(model, Proxy.parse("tanh:0.5"))
    images = torch.randn(6, 4)
    assert not is_stochastic(surrogate) and is_stochastic(model) and has_sign_units(model)
    assert torch.equal(surrogate(images), surrogate(images))
    expected = model[2](torch.tanh(model[0](images) / 0.5))
    torch.testing.assert_close(surrogate(images), expected)
    assert isinstance(model[1], StochasticActivation) and not surrogate.training


@pytest.mark.parametrize("noise", ["gaussian", "logistic", "uniform"])
@pytest.mark.parametrize("mode", ["additive", "multiplicative"])
def test_smooth_relu_is_the_mean_of_the_noisy_unit(noise: str, mode: str) -> None:
    """Monte Carlo over 200,000 draws agrees with the closed form within 5 standard errors."""
    unit = StochasticActivation("relu", noise, mode, 0.5)
    points = torch.linspace(-2.0, 2.0, 9, dtype=torch.float64)
    with seeded(1):
        draws = unit(points.expand(200_000, -1))  # (draws, 9)
    standard_error = draws.std(dim=0) / 200_000 ** 0.5
    smooth = SmoothActivation(unit, Proxy())(points)
    assert ((draws.mean(dim=0) - smooth).abs() <= 5 * standard_error + 1e-9).all(), (draws.mean(dim=0), smooth)


def test_deterministic_relu_stays_relu() -> None:
    points = torch.linspace(-1, 1, 5)
    assert torch.equal(SmoothActivation(StochasticActivation("relu"), Proxy())(points), torch.relu(points))


def test_the_smooth_surrogate_of_a_model_with_input_noise_is_deterministic() -> None:
    from stochrelax.models.allconv import build_model
    from stochrelax.rundir.config import parse_config

    model = build_model(parse_config({"model": {"input_noise": {"std": 0.25}}}).model).eval()
    surrogate = smooth_surrogate(model, Proxy.parse("own"))
    assert not is_stochastic(surrogate) and is_stochastic(model)
    images = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(surrogate(images), surrogate(images))
