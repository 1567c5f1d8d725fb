"""Noise distributions: moments, densities and CDFs against independent computations."""

from __future__ import annotations

import math

import pytest
import torch

from stochrelax.nn.noise import NOISES, Gaussian, Logistic, Uniform, make_noise
from stochrelax.nn.rng import seeded

SAMPLES = 400_000


@pytest.mark.parametrize("name", list(NOISES))
@pytest.mark.parametrize("mean,std", [(0.0, 0.05), (1.0, 2.0)])
def test_samples_have_the_requested_mean_and_std(name: str, mean: float, std: float) -> None:
    with seeded(0):
        draws = make_noise(name, mean, std).sample((SAMPLES,), dtype=torch.float64)
    # Sample mean within 5 standard errors; sample std within 1% (its relative SE is < 0.3% here).
    assert abs(draws.mean().item() - mean) < 5 * std / math.sqrt(SAMPLES)
    assert draws.std().item() == pytest.approx(std, rel=0.01)


@pytest.mark.parametrize("name", list(NOISES))
def test_empirical_cdf_matches_cdf(name: str) -> None:
    noise = make_noise(name, 0.3, 0.8)
    with seeded(1):
        draws = noise.sample((SAMPLES,), dtype=torch.float64).sort().values
    empirical = torch.arange(1, SAMPLES + 1, dtype=torch.float64) / SAMPLES
    kolmogorov_smirnov = (empirical - noise.cdf(draws)).abs().max().item()
    assert kolmogorov_smirnov < 1.63 / math.sqrt(SAMPLES)  # the 1% critical value


def reference(name: str, mean: float, std: float):
    """(pdf, cdf) from torch.distributions or the textbook closed form."""
    if name == "gaussian":
        normal = torch.distributions.Normal(torch.tensor(mean, dtype=torch.float64), std)
        return (lambda x: normal.log_prob(x).exp()), normal.cdf
    if name == "logistic":
        scale = std * math.sqrt(3.0) / math.pi
        return (lambda x: torch.exp(-(x - mean) / scale) / (scale * (1 + torch.exp(-(x - mean) / scale)) ** 2),
                lambda x: 1.0 / (1.0 + torch.exp(-(x - mean) / scale)))
    low, high = mean - std * math.sqrt(3.0), mean + std * math.sqrt(3.0)
    uniform = torch.distributions.Uniform(torch.tensor(low, dtype=torch.float64), high, validate_args=False)
    inside = lambda x: (x >= low) & (x <= high)  # noqa: E731
    return (lambda x: torch.where(inside(x), 1.0 / (high - low), 0.0).double(),
            lambda x: uniform.cdf(x).clamp(0.0, 1.0))


@pytest.mark.parametrize("name", list(NOISES))
def test_pdf_and_cdf_match_reference_formulas(name: str) -> None:
    mean, std = -0.2, 0.6
    noise = make_noise(name, mean, std)
    grid = torch.linspace(-3, 3, 601, dtype=torch.float64)
    reference_pdf, reference_cdf = reference(name, mean, std)
    torch.testing.assert_close(noise.pdf(grid), reference_pdf(grid))
    torch.testing.assert_close(noise.cdf(grid), reference_cdf(grid))
    assert torch.trapezoid(noise.pdf(grid), grid).item() == pytest.approx(1.0, abs=5e-3)


@pytest.mark.parametrize("name", list(NOISES))
def test_log_cdf_and_log_sf_agree_with_cdf_and_stay_finite_in_the_tails(name: str) -> None:
    noise = make_noise(name, 0.0, 1.0)
    body = torch.linspace(-1.5, 1.5, 31, dtype=torch.float64)
    torch.testing.assert_close(noise.log_cdf(body), noise.cdf(body).log())
    torch.testing.assert_close(noise.log_sf(body), torch.log1p(-noise.cdf(body)))
    if name != "uniform":  # bounded support: log 0 = -inf outside is correct
        tails = torch.tensor([-40.0, 40.0], dtype=torch.float64)
        assert torch.isfinite(noise.log_cdf(tails)).all() and torch.isfinite(noise.log_sf(tails)).all()


def test_parameterisation_by_standard_deviation() -> None:
    assert Logistic(std=2.0).scale == pytest.approx(2.0 * math.sqrt(3.0) / math.pi)
    assert Uniform(std=2.0).half_width == pytest.approx(2.0 * math.sqrt(3.0))
    assert Gaussian(mean=1.0, std=2.0).pdf(torch.tensor(1.0)).item() == pytest.approx(1 / (2 * math.sqrt(2 * math.pi)))


def test_unknown_noise_lists_the_valid_names() -> None:
    with pytest.raises(ValueError, match="gaussian, logistic, uniform"):
        make_noise("laplace", 0.0, 1.0)


@pytest.mark.parametrize("std", [0.0, -1.0])
def test_non_positive_std_is_rejected(std: float) -> None:
    with pytest.raises(ValueError, match="std must be > 0"):
        make_noise("gaussian", 0.0, std)


def test_samples_follow_the_requested_device_dtype_and_generator() -> None:
    noise = Logistic(std=0.1)
    first = noise.sample((3, 4), dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    second = noise.sample((3, 4), dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    assert first.dtype == torch.float64 and first.shape == (3, 4)
    torch.testing.assert_close(first, second)


@pytest.mark.parametrize("name", list(NOISES))
def test_sample_like_keeps_the_layout_of_the_reference(name: str) -> None:
    noise = make_noise(name, mean=0.5, std=2.0)
    reference = torch.empty(4000, 3, 5, 5, dtype=torch.float64).to(memory_format=torch.channels_last)
    samples = noise.sample_like(reference)
    assert samples.shape == reference.shape and samples.dtype == torch.float64
    assert samples.is_contiguous(memory_format=torch.channels_last)
    # 300k draws: the mean is within 4 standard errors (2/sqrt(3e5) ≈ 0.0037) of 0.5.
    assert abs(samples.mean().item() - 0.5) < 4 * 2.0 / math.sqrt(samples.numel())


# --- E[relu(x − ξ)] = ∫_{−∞}^{x} F(t) dt ---------------------------------------------------------

# Points x = mean + z·std: both tails, the body and, for the uniform (half-width √3 ≈ 1.73 std),
# both sides of its support. (mean, std) pairs include a narrow and a wide distribution.
RELU_POINTS = (-8.0, -3.0, -1.0, 0.0, 0.5, 2.0, 6.0)
RELU_PARAMETERS = [(0.0, 1.0), (-0.7, 0.05), (2.0, 3.0)]


@pytest.mark.parametrize("name", list(NOISES))
@pytest.mark.parametrize("mean,std", RELU_PARAMETERS)
def test_expected_relu_matches_monte_carlo(name: str, mean: float, std: float) -> None:
    noise = make_noise(name, mean, std)
    draws_count = 1_000_000
    # Points where at least ~0.1% of draws fall below x (1000 non-zero outputs), or none (uniform, exactly 0).
    x = mean + std * torch.tensor([z for z in RELU_POINTS if z >= -3.0], dtype=torch.float64)
    with seeded(2):
        draws = noise.sample((draws_count,), dtype=torch.float64)
    outputs = torch.relu(x[:, None] - draws)  # (points, draws)
    standard_error = outputs.std(dim=1) / math.sqrt(draws_count)
    # Within 5 standard errors at every point (a false failure has probability < 1e-5 over the points).
    assert ((noise.expected_relu(x) - outputs.mean(dim=1)).abs() <= 5 * standard_error).all()


@pytest.mark.parametrize("name", list(NOISES))
@pytest.mark.parametrize("mean,std", RELU_PARAMETERS)
def test_expected_relu_is_the_integral_of_the_cdf(name: str, mean: float, std: float) -> None:
    noise = make_noise(name, mean, std)
    for z in RELU_POINTS:
        # From 40 std below the mean, where the integral left out is < 1e-30 std; step 1.2e-4 std.
        grid = mean + std * torch.linspace(-40.0, z, 400_001, dtype=torch.float64)
        # exp(log F), not F: torch's Gaussian ndtr loses the lower tail below z ≈ −7 even in float64.
        integral = torch.trapezoid(noise.log_cdf(grid).exp(), grid)
        # The trapezoid rule's relative error is < 1e-7 here, even 8 std into the Gaussian's tail.
        torch.testing.assert_close(noise.expected_relu(torch.tensor(mean + std * z, dtype=torch.float64)), integral,
                                   rtol=1e-6, atol=0.0)


@pytest.mark.parametrize("name", list(NOISES))
def test_expected_relu_has_the_cdf_as_derivative(name: str) -> None:
    mean, std = 0.4, 0.3
    ends_of_the_uniform = torch.tensor([mean - std * math.sqrt(3.0), mean + std * math.sqrt(3.0)], dtype=torch.float64)
    x = torch.cat([mean + std * torch.linspace(-30.0, 30.0, 1201, dtype=torch.float64), ends_of_the_uniform])
    x.requires_grad_(True)
    noise = make_noise(name, mean, std)
    (gradient,) = torch.autograd.grad(noise.expected_relu(x).sum(), x)
    # Relative to F itself, down to F ≈ 1e-198 in the Gaussian's tail; softplus's linear branch
    # above 20 scales leaves the logistic's 1 − F ≤ 2e-9 out.
    torch.testing.assert_close(gradient, noise.log_cdf(x.detach()).exp(), rtol=1e-8, atol=0.0)


@pytest.mark.parametrize("name", list(NOISES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_expected_relu_has_the_right_limits_far_in_the_tails(name: str, dtype: torch.dtype) -> None:
    mean, std = 0.5, 2.0
    distance = std * torch.tensor([40.0, 100.0, 1e3, 1e4], dtype=dtype)
    x = torch.cat([mean - distance, mean + distance]).requires_grad_(True)
    expected = make_noise(name, mean, std).expected_relu(x)
    (gradient,) = torch.autograd.grad(expected.sum(), x)
    zeros, ones = torch.zeros_like(distance), torch.ones_like(distance)
    assert (expected >= 0).all()
    torch.testing.assert_close(expected, torch.cat([zeros, distance]))  # → 0 below, → x − mean above
    torch.testing.assert_close(gradient, torch.cat([zeros, ones]))  # finite, and F = 0 and 1
