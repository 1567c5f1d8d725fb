"""Noise distributions injected into pre-activations (thesis 2.3, 4.2).

Every distribution is parameterised by its mean and *standard deviation*, so that
the same ``noise_std`` means the same amount of noise whatever its shape — the
thesis compares Gaussian and logistic noise at equal std (Fig. 4.1):

- Gaussian:  N(mean, std²).
- Logistic:  scale = std·√3/π  (a logistic of scale s has variance s²π²/3).
- Uniform:   U(mean − w, mean + w) with half-width w = std·√3.

Each distribution offers ``sample``, ``pdf``, ``cdf`` and the log-CDF / log-survival
function that the score-function estimator needs (``log P(ξ ≤ x)``, ``log P(ξ > x)``),
computed stably in the tails.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["Noise", "Gaussian", "Logistic", "Uniform", "NOISES", "make_noise"]


@dataclass(frozen=True)
class Noise(ABC):
    """A location-scale noise distribution given by its mean and standard deviation."""

    mean: float = 0.0
    std: float = 1.0

    def __post_init__(self) -> None:
        if not self.std > 0:
            raise ValueError(f"noise std must be > 0, got {self.std}")

    @abstractmethod
    def sample(self, shape: torch.Size | tuple[int, ...], *, device: torch.device | str | None = None,
               dtype: torch.dtype = torch.float32, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draws independent samples of the given shape."""

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

    def _standardise(self, x: torch.Tensor, scale: float) -> torch.Tensor:
        return (x - self.mean) / scale


@dataclass(frozen=True)
class Gaussian(Noise):
    """Normal noise N(mean, std²)."""

    def sample(self, shape, *, device=None, dtype=torch.float32, generator=None):
        return torch.randn(shape, device=device, dtype=dtype, generator=generator) * self.std + self.mean

    def pdf(self, x):
        z = self._standardise(x, self.std)
        return torch.exp(-0.5 * z * z) / (self.std * math.sqrt(2.0 * math.pi))

    def cdf(self, x):
        return torch.special.ndtr(self._standardise(x, self.std))

    def log_cdf(self, x):
        return torch.special.log_ndtr(self._standardise(x, self.std))

    def log_sf(self, x):
        return torch.special.log_ndtr(-self._standardise(x, self.std))


@dataclass(frozen=True)
class Logistic(Noise):
    """Logistic noise with scale std·√3/π; its CDF is the sigmoid, so the STE proxy is tanh."""

    @property
    def scale(self) -> float:
        return self.std * math.sqrt(3.0) / math.pi

    def sample(self, shape, *, device=None, dtype=torch.float32, generator=None):
        uniform = torch.rand(shape, device=device, dtype=dtype, generator=generator)
        tiny = torch.finfo(dtype).tiny
        return torch.logit(uniform.clamp_(min=tiny)) * self.scale + self.mean

    def pdf(self, x):
        z = self._standardise(x, self.scale)
        return torch.sigmoid(z) * torch.sigmoid(-z) / self.scale

    def cdf(self, x):
        return torch.sigmoid(self._standardise(x, self.scale))

    def log_cdf(self, x):
        return F.logsigmoid(self._standardise(x, self.scale))

    def log_sf(self, x):
        return F.logsigmoid(-self._standardise(x, self.scale))


@dataclass(frozen=True)
class Uniform(Noise):
    """Uniform noise on [mean − w, mean + w] with half-width w = std·√3; its STE proxy is hard-tanh."""

    @property
    def half_width(self) -> float:
        return self.std * math.sqrt(3.0)

    def sample(self, shape, *, device=None, dtype=torch.float32, generator=None):
        uniform = torch.rand(shape, device=device, dtype=dtype, generator=generator)
        return (2.0 * uniform - 1.0) * self.half_width + self.mean

    def pdf(self, x):
        inside = (x - self.mean).abs() <= self.half_width
        return inside.to(x.dtype) / (2.0 * self.half_width)

    def cdf(self, x):
        return ((x - self.mean + self.half_width) / (2.0 * self.half_width)).clamp(0.0, 1.0)

    def log_cdf(self, x):
        return torch.log(self.cdf(x))

    def log_sf(self, x):
        return torch.log1p(-self.cdf(x))


NOISES: dict[str, type[Noise]] = {"gaussian": Gaussian, "logistic": Logistic, "uniform": Uniform}


def make_noise(name: str, mean: float = 0.0, std: float = 1.0) -> Noise:
    """Builds a noise distribution by name.

    Raises:
        ValueError: for an unknown name (the message lists the valid ones) or std ≤ 0.
    """
    if name not in NOISES:
        raise ValueError(f"unknown noise {name!r}; valid: {', '.join(NOISES)}")
    return NOISES[name](mean=float(mean), std=float(std))
