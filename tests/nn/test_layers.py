"""StochasticActivation: what it computes, when it draws noise, and what it refuses."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from stochrelax.nn.layers import StochasticActivation, noise_disabled, stochastic_activation
from stochrelax.nn.noise import make_noise
from stochrelax.nn.rng import seeded


@pytest.mark.parametrize("mode,combine", [("additive", lambda a, xi: a - xi), ("multiplicative", lambda a, xi: a * xi)])
def test_relu_applies_the_noise_drawn_from_the_global_generator(mode: str, combine) -> None:
    unit = StochasticActivation("relu", "gaussian", mode, std=0.3)
    pre_activation = torch.randn(5, 7)
    with seeded(3):
        output = unit(pre_activation)
    with seeded(3):
        xi = unit.noise.sample(pre_activation.shape)
    torch.testing.assert_close(output, torch.relu(combine(pre_activation, xi)))


def test_default_noise_mean_is_zero_for_additive_and_one_for_multiplicative() -> None:
    assert StochasticActivation("relu", "logistic", "additive", std=0.1).noise.mean == 0.0
    assert StochasticActivation("relu", "logistic", "multiplicative", std=0.1).noise.mean == 1.0
    # The thesis used mean 0 for multiplicative noise too; it must stay expressible.
    assert StochasticActivation("relu", "logistic", "multiplicative", std=0.1, mean=0.0).noise.mean == 0.0


@pytest.mark.parametrize("training", [True, False])
def test_noise_is_fresh_at_every_forward_pass_in_training_and_evaluation(training: bool) -> None:
    unit = StochasticActivation("relu", "uniform", std=0.5).train(training)
    pre_activation = torch.randn(64)
    assert not torch.equal(unit(pre_activation), unit(pre_activation))


def test_switching_noise_off_gives_the_deterministic_counterpart() -> None:
    pre_activation = torch.randn(4, 6)
    model = nn.Sequential(StochasticActivation("relu", "gaussian", std=1.0),
                          StochasticActivation("sign", "logistic", std=1.0))
    with noise_disabled(model):
        torch.testing.assert_close(model[0](pre_activation), torch.relu(pre_activation))
        torch.testing.assert_close(model[1](pre_activation), torch.where(pre_activation >= 0, 1.0, -1.0))
        assert not model[0].is_stochastic
    assert model[0].noise_enabled and model[1].noise_enabled


def test_sign_outputs_plus_or_minus_one_with_the_probability_given_by_the_noise_cdf() -> None:
    noise_std, draws = 0.5, 20_000
    pre_activation = torch.linspace(-1.0, 1.0, 9, dtype=torch.float64)
    unit = StochasticActivation("sign", "gaussian", std=noise_std)
    with seeded(0):
        outputs = unit(pre_activation.expand(draws, -1))  # (draws, 9)
    assert set(outputs.unique().tolist()) == {-1.0, 1.0}
    p_plus = torch.distributions.Normal(torch.zeros((), dtype=torch.float64), noise_std).cdf(pre_activation)
    standard_error = (4 * p_plus * (1 - p_plus) / draws).sqrt()  # of a ±1 mean
    assert ((outputs.mean(dim=0) - (2 * p_plus - 1)).abs() <= 5 * standard_error + 1e-9).all()


def test_keeps_dtype_and_shape_and_works_as_a_function() -> None:
    pre_activation = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    output, log_prob = stochastic_activation(pre_activation, "sign", make_noise("logistic", 0.0, 0.2),
                                             estimator="score")
    assert output.dtype == torch.float64 and output.shape == pre_activation.shape
    assert log_prob.shape == (2,)


def test_drops_into_a_user_module_and_trains() -> None:
    with seeded(0):
        model = nn.Sequential(nn.Linear(4, 8), StochasticActivation("relu", "logistic", std=0.1), nn.Linear(8, 1))
        model(torch.randn(16, 4)).pow(2).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_extra_repr_shows_the_settings() -> None:
    unit = StochasticActivation("sign", "logistic", "additive", std=0.05, estimator="score")
    assert repr(unit) == "StochasticActivation(sign, noise=logistic(mean=0, std=0.05), mode=additive, estimator=score)"


@pytest.mark.parametrize("arguments,message", [
    (("sign", "gaussian", "multiplicative", 0.1), "degenerate"),
    (("relu", "gaussian", "additive", 0.1, None, "ste"), "relu units use the ordinary pathwise gradient"),
    (("sign", None, "additive", None, None, "ste"), "needs noise"),
    (("tanh",), "valid: relu, sign"),
    (("relu", "laplace", "additive", 0.1), "valid: gaussian, logistic, uniform"),
    (("relu", "gaussian", "sideways", 0.1), "valid: additive, multiplicative"),
    (("sign", "gaussian", "additive", 0.1, None, "reinforce"), "valid: ste, classic_ste, score"),
    (("relu", "gaussian", "additive", -0.1), "std must be > 0"),
    (("relu", None, "additive", 0.1), "without a noise distribution"),
])
def test_invalid_settings_are_refused_with_an_explanation(arguments: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StochasticActivation(*arguments)


def test_default_estimator_of_a_sign_unit() -> None:
    assert StochasticActivation("sign", "logistic", std=0.1).estimator == "ste"
    assert StochasticActivation("sign").estimator == "classic_ste"
    assert StochasticActivation("relu", "logistic", std=0.1).estimator is None


def test_logistic_sign_mean_output_is_tanh() -> None:
    """E[sign(a − ξ)] = tanh(a / 2s) for logistic ξ of scale s (anchors: estimator facts)."""
    noise_std, draws = 1.0, 40_000
    scale = noise_std * math.sqrt(3) / math.pi
    pre_activation = torch.tensor([-0.8, 0.0, 0.4], dtype=torch.float64)
    with seeded(4):
        mean_output = StochasticActivation("sign", "logistic", std=noise_std)(pre_activation.expand(draws, -1)).mean(0)
    torch.testing.assert_close(mean_output, torch.tanh(pre_activation / (2 * scale)), atol=0.02, rtol=0)


# --- Gaussian input noise (randomized smoothing's base classifier) ------------------------------

def test_input_noise_adds_gaussian_noise_drawn_from_the_global_generator_in_eval_mode_too() -> None:
    from stochrelax.nn.layers import GaussianInputNoise, gaussian_input_noise
    from stochrelax.nn.noise import Gaussian

    layer = GaussianInputNoise(0.3).eval()
    images = torch.rand(4, 1, 28, 28)
    with seeded(5):
        output = layer(images)
    with seeded(5):
        noise = Gaussian(0.0, 0.3).sample(images.shape)
    torch.testing.assert_close(output, images + noise)
    with seeded(5):
        torch.testing.assert_close(gaussian_input_noise(images, 0.3), output)
    assert layer.is_stochastic
    assert abs((output - images).std().item() - 0.3) < 0.01  # 3,136 draws


def test_noise_disabled_switches_the_input_noise_off_and_restores_it() -> None:
    from stochrelax.nn.layers import GaussianInputNoise

    model = nn.Sequential(GaussianInputNoise(0.5), StochasticActivation("relu", "gaussian", std=0.1))
    images = torch.rand(3, 1, 4, 4)
    with noise_disabled(model):
        assert not model[0].is_stochastic and "noise_enabled=False" in repr(model[0])
        assert torch.equal(model(images), torch.relu(images))
    assert model[0].is_stochastic and model[1].is_stochastic
    assert repr(model[0]) == "GaussianInputNoise(std=0.5)"


@pytest.mark.parametrize("std", [0.0, -0.1])
def test_input_noise_refuses_a_std_that_is_not_positive(std: float) -> None:
    from stochrelax.nn.layers import GaussianInputNoise

    with pytest.raises(ValueError, match="input noise std must be > 0"):
        GaussianInputNoise(std)
