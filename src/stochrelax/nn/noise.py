"""Noise distributions injected into pre-activations (thesis 2.3, 4.2).

Every distribution is parameterised by its mean and *standard deviation*, so that
the same ``noise_std`` means the same amount of noise whatever its shape — the
thesis compares Gaussian and logistic noise at equal std (Fig. 4.1):

- Gaussian:  N(mean, std²).
- Logistic:  scale = std·√3/π  (a logistic of scale s has variance s²π²/3).
- Uniform:   U(mean − w, mean + w) with half-width w = std·√3.

Samples are transformed in place in the buffer they are drawn into: on the CPU the
random draw itself is most of the cost of a stochastic unit.

Each distribution offers ``sample``, ``pdf``, ``cdf`` and the log-CDF / log-survival
function that the score-function estimator needs (``log P(ξ ≤ x)``, ``log P(ξ > x)``),
computed stably in the tails, and ``expected_relu``, the mean E[relu(x − ξ)] of a stochastic
ReLU unit, from which a smooth deterministic surrogate of the unit is built.

The std may also be a positive tensor broadcastable to the pre-activations (e.g. (C, 1, 1) for
one std per channel of (B, C, H, W)): the learnable scale of Parametric Noise Injection (He,
Rakin, Fan, CVPR 2019, https://arxiv.org/abs/1811.09310, eq. 2). Samples are then
reparameterised, ξ = mean + std·ε with ε drawn from the family's unit-std member (``standard``),
so that autograd carries the pathwise gradient to the std; densities, CDFs and ``expected_relu``
are differentiable in it as they stand.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

__all__ = ["Noise", "Gaussian", "Logistic", "Uniform", "NOISES", "make_noise"]


@dataclass(frozen=True)
class Noise(ABC):
    """A location-scale noise distribution given by its mean and standard deviation (a number, or a
    positive tensor that broadcasts against the pre-activations)."""

    mean: float = 0.0
    std: float | torch.Tensor = 1.0

    def __post_init__(self) -> None:
        if not self.std_is_tensor and not self.std > 0:
            raise ValueError(f"noise std must be > 0, got {self.std}")

    @property
    def std_is_tensor(self) -> bool:
        """Whether the std is a tensor, possibly a differentiable one (a learnable scale)."""
        return torch.is_tensor(self.std)

    def standard(self) -> "Noise":
        """The family's member with mean 0 and std 1: ε, with ξ = mean + std·ε."""
        return replace(self, mean=0.0, std=1.0)

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        """(x − mean)/std, where the standard member's CDF gives this one's: F(x) = F₀((x − mean)/std)."""
        return (x - self.mean) / self.std

    def sample(self, shape: torch.Size | tuple[int, ...], *, device: torch.device | str | None = None,
               dtype: torch.dtype = torch.float32, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draws independent samples of the given shape."""
        return self.sample_like(torch.empty(shape, device=device, dtype=dtype), generator=generator)

    def sample_like(self, reference: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draws independent samples with the shape, dtype, device and memory layout of ``reference``.

        Keeping the layout (e.g. channels-last) lets ``a − ξ`` run as one contiguous loop. The
        samples are drawn into the buffer's storage as one flat run: the draws are i.i.d., so
        their order does not matter, and ``normal_`` on a channels-last view is ~10× slower.
        A tensor std is applied out of place, mean + std·ε, so that the samples carry its gradient.
        """
        if self.std_is_tensor:
            return self.standard().sample_like(reference, generator=generator).mul(self.std).add_(self.mean)
        samples = torch.empty_like(reference)  # dense, so its storage is exactly numel elements
        self._fill_(samples.as_strided((samples.numel(),), (1,)), generator)
        return samples

    @abstractmethod
    def _fill_(self, flat: torch.Tensor, generator: torch.Generator | None) -> None:
        """Overwrites the 1-D contiguous ``flat`` with independent samples."""

    @abstractmethod
    def pdf(self, x: torch.Tensor) -> torch.Tensor:
        """Probability density at ``x``."""

    @abstractmethod
    def cdf(self, x: torch.Tensor) -> torch.Tensor:
        """P(ξ ≤ x)."""

    @abstractmethod
    def log_cdf(self, x: torch.Tensor) -> torch.Tensor:
        """log P(ξ ≤ x), accurate in the lower tail."""

    @abstractmethod
    def log_sf(self, x: torch.Tensor) -> torch.Tensor:
        """log P(ξ > x), accurate in the upper tail."""

    @abstractmethod
    def expected_relu(self, x: torch.Tensor) -> torch.Tensor:
        """E[relu(x − ξ)] = E[(x − ξ)⁺] = ∫_{−∞}^{x} F(t) dt, elementwise.

        The mean output of the stochastic ReLU unit y = relu(a − ξ) at pre-activation a = x,
        so replacing each unit by it gives a smooth deterministic surrogate of the network.
        The integral form follows from E[Z⁺] = ∫_0^∞ P(Z > u) du with Z = x − ξ, substituting
        t = x − u; hence d/dx E[(x − ξ)⁺] = F(x), the CDF. Closed form in each subclass,
        differentiable, finite in both tails, → 0 as x → −∞ and ~ x − mean as x → +∞.
        """

    def _standardise(self, x: torch.Tensor, scale: float) -> torch.Tensor:
        return (x - self.mean) / scale


@dataclass(frozen=True)
class Gaussian(Noise):
    """Normal noise N(mean, std²)."""

    def _fill_(self, flat, generator):
        flat.normal_(generator=generator).mul_(self.std).add_(self.mean)

    def pdf(self, x):
        z = self._standardise(x, self.std)
        return torch.exp(-0.5 * z * z) / (self.std * math.sqrt(2.0 * math.pi))

    def cdf(self, x):
        return torch.special.ndtr(self._standardise(x, self.std))

    def log_cdf(self, x):
        return torch.special.log_ndtr(self._standardise(x, self.std))

    def log_sf(self, x):
        return torch.special.log_ndtr(-self._standardise(x, self.std))

    def expected_relu(self, x):
        """(x − μ)·Φ(z) + σ·φ(z) with z = (x − μ)/σ, the mean of a rectified Gaussian.

        Φ is exp(log_ndtr(z)), not ndtr(z): on the CPU torch's ndtr loses the lower tail (in
        float32 it moves in steps of 3e-8, 4% off at z = −5 and 0 below z ≈ −5.6; in float64 it
        is 0 below z ≈ −8.5), which would make the mean negative there and its gradient wrong.
        For z ≪ 0 the two terms cancel (their sum is ≈ σ·φ(z)/z²), so the relative error grows
        like z²·eps and, among float32 subnormals, the sum can round below 0: it is clamped at 0.
        Far below the mean both terms underflow to 0; far above it Φ = 1 and φ = 0 give exactly
        x − μ.
        """
        z = self._standardise(x, self.std)
        density = torch.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
        mean = (x - self.mean) * torch.special.log_ndtr(z).exp() + self.std * density
        return mean.clamp(min=0.0)


@dataclass(frozen=True)
class Logistic(Noise):
    """Logistic noise with scale std·√3/π; its CDF is the sigmoid, so the STE proxy is tanh."""

    @property
    def scale(self) -> float:
        return self.std * math.sqrt(3.0) / math.pi

    def _fill_(self, flat, generator):
        uniform = flat.uniform_(generator=generator)
        uniform.clamp_(min=torch.finfo(flat.dtype).tiny).logit_().mul_(self.scale).add_(self.mean)

    def pdf(self, x):
        z = self._standardise(x, self.scale)
        return torch.sigmoid(z) * torch.sigmoid(-z) / self.scale

    def cdf(self, x):
        return torch.sigmoid(self._standardise(x, self.scale))

    def log_cdf(self, x):  # log σ(z) = −softplus(−z): on the CPU 1.6× faster forward + backward than logsigmoid
        return F.softplus(-self._standardise(x, self.scale)).neg()

    def log_sf(self, x):
        return F.softplus(self._standardise(x, self.scale)).neg()

    def expected_relu(self, x):
        """s·softplus((x − μ)/s), the integral of the sigmoid CDF: softplus is log1p(exp) below its
        threshold and the identity above it, so neither tail overflows."""
        return self.scale * F.softplus(self._standardise(x, self.scale))


@dataclass(frozen=True)
class Uniform(Noise):
    """Uniform noise on [mean − w, mean + w] with half-width w = std·√3; its STE proxy is hard-tanh."""

    @property
    def half_width(self) -> float:
        return self.std * math.sqrt(3.0)

    def _fill_(self, flat, generator):
        flat.uniform_(generator=generator).mul_(2.0 * self.half_width).add_(self.mean - self.half_width)

    def pdf(self, x):
        inside = (x - self.mean).abs() <= self.half_width
        return inside.to(x.dtype) / (2.0 * self.half_width)

    def cdf(self, x):
        return ((x - self.mean + self.half_width) / (2.0 * self.half_width)).clamp(0.0, 1.0)

    def log_cdf(self, x):
        return torch.log(self.cdf(x))

    def log_sf(self, x):
        return torch.log1p(-self.cdf(x))

    def expected_relu(self, x):
        """0 for x ≤ μ − w; (x − μ + w)²/(4w) inside; x − μ for x ≥ μ + w.

        Written as clamp(x − μ + w, 0, 2w)²/(4w) + relu(x − μ − w): the first term saturates at w
        above the support, where the second takes over. relu (gradient 0 at 0) rather than a
        clamp (gradient 1 at its bound) keeps the derivative at x = μ + w equal to F = 1, not 2.
        """
        w = self.half_width
        inside = (x - self.mean + w).clamp(min=0.0).clamp(max=2.0 * w)  # max may be a tensor, min a number
        return inside * inside / (4.0 * w) + torch.relu(x - self.mean - w)


NOISES: dict[str, type[Noise]] = {"gaussian": Gaussian, "logistic": Logistic, "uniform": Uniform}


def make_noise(name: str, mean: float = 0.0, std: float = 1.0) -> Noise:
    """Builds a noise distribution by name.

    Raises:
        ValueError: for an unknown name (the message lists the valid ones) or std ≤ 0.
    """
    if name not in NOISES:
        raise ValueError(f"unknown noise {name!r}; valid: {', '.join(NOISES)}")
    return NOISES[name](mean=float(mean), std=float(std))
