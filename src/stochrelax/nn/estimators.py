"""Gradient estimators for sign units y = sign(a − ξ) with values ±1 (thesis 2.4).

For additive noise ξ with CDF F and density p, y is a ±1 Bernoulli variable with
P(y = +1) = F(a), so E[y] = 2F(a) − 1 and dE[y]/da = 2p(a). (Thesis eq. 2.8 writes
E[y] = F(a), which holds for {0, 1} outputs, not ±1.)

Every estimator takes the pre-activation ``a``, the binary sample ``y`` computed in
the forward pass and, where it uses it, the noise distribution, and returns
``(output, log_prob)``: the output carries the sample's *value* and the estimator's
*gradient*; ``log_prob`` is the per-example log-likelihood log p(y | a) that the
score-function estimator needs (``None`` for the others). :data:`ESTIMATORS` binds
each to a unit's noise, giving an :data:`Estimator` of ``(a, y)``.

- ``"ste"``: straight-through estimator of thesis eq. 2.8/2.9 done right: the forward
  value is the sample, the backward pass is the gradient of E[y], 2p(a). Logistic
  noise gives the tanh proxy, uniform noise hard-tanh, Gaussian the erf.
  For a single layer this is exactly d/dθ E[y]; through several layers it is biased.
  With a learnable (tensor) std s, E[y] = 2F₀((a − μ)/s) − 1 in terms of the unit-std
  CDF F₀, so the backward pass also gives d/ds E[y] = −2p₀((a − μ)/s)·(a − μ)/s².
- ``"classic_ste"``: the classic deterministic estimator for sign networks (Bengio et
  al. 2013, with the saturation of Hubara et al. 2016): gradient 1 where |a| ≤ 1, 0
  elsewhere. Equal to ``"ste"`` with uniform noise of half-width 1.
- ``"score"``: score function / REINFORCE (Williams 1992; thesis 2.4.2) for whole
  networks of sign units. The output carries no gradient; all gradient signal for
  the parameters before a sign unit comes from ``(L − b)·∇ log p(y | a)``, see
  :func:`score_function_surrogate`. Unbiased for any baseline b that does not depend
  on the current noise draw. log p(y | a) depends on a learnable std s through the
  log-CDF, so autograd gives the score of s too.

Without a noise draw (noise off, or a deterministic sign unit) there is no randomness
to score: a sign unit keeps the forward value sign(a) and back-propagates through the
derivative of the smooth function its estimator stands for
(:data:`STRAIGHT_THROUGH_DERIVATIVES`): 2p(a) for ``"ste"`` and ``"score"`` (BPDA,
Athalye et al. 2018), 1 where |a| ≤ 1 for ``"classic_ste"``.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import torch

from stochrelax.nn.noise import Noise

__all__ = [
    "Estimator",
    "ESTIMATORS",
    "GradientProxy",
    "STRAIGHT_THROUGH_DERIVATIVES",
    "binarize",
    "with_gradient_of",
    "straight_through_derivative",
    "classic_straight_through_derivative",
    "straight_through",
    "classic_straight_through",
    "score_function",
    "score_function_surrogate",
    "MovingAverageBaseline",
]

Estimator = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]]
"""A sign unit's estimator bound to its noise: (pre-activation a, sample y) -> (output, log p(y | a) (B,) or None)."""

GradientProxy = Callable[[torch.Tensor], torch.Tensor]
"""Derivative s'(a) of a smooth stand-in s for a sign unit, evaluated at the pre-activation."""


def binarize(x: torch.Tensor) -> torch.Tensor:
    """sign(x) with values ±1 (sign(±0) = +1, so that P(y = +1) = P(ξ ≤ a) = F(a)).

    ``copysign(1, x + 0)``: adding +0 turns −0 into +0, and copysign is several times
    faster on the CPU than ``where`` with scalar branches or a bool-to-float conversion.
    """
    return torch.copysign(torch.ones((), dtype=x.dtype, device=x.device), x + 0.0)


class _StraightThrough(torch.autograd.Function):
    """Returns the sample in the forward pass; multiplies the incoming gradient by a
    proxy's derivative at the pre-activation in the backward pass.

    One saved tensor and one backward kernel, instead of building the proxy in the
    forward pass and differentiating it through autograd.
    """

    @staticmethod
    def forward(ctx, pre_activation: torch.Tensor, sample: torch.Tensor, derivative: GradientProxy) -> torch.Tensor:
        ctx.derivative = derivative
        ctx.save_for_backward(pre_activation)
        return sample

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (pre_activation,) = ctx.saved_tensors
        return grad_output * ctx.derivative(pre_activation), None, None


def with_gradient_of(value: torch.Tensor, pre_activation: torch.Tensor, derivative: GradientProxy) -> torch.Tensor:
    """``value`` in the forward pass; ``derivative(pre_activation)`` times the gradient backward.

    The straight-through construction every estimator here and every attack proxy
    (:mod:`stochrelax.attacks.proxies`) is built from.
    """
    return _StraightThrough.apply(pre_activation, value, derivative)


def straight_through_derivative(noise: Noise | None) -> GradientProxy:
    """a ↦ d/da E[sign(a − ξ)] = 2p(a), the straight-through estimator's backward factor.

    Raises:
        ValueError: without a noise distribution, which has no density.
    """
    if noise is None:
        raise ValueError("the straight-through derivative 2p(a) = d/da E[sign(a - ξ)] needs a noise distribution; "
                         "use estimator 'classic_ste' for a deterministic sign unit")
    return lambda pre_activation: 2.0 * noise.pdf(pre_activation)


def classic_straight_through_derivative(pre_activation: torch.Tensor) -> torch.Tensor:
    """d/da hard-tanh(a): 1 where |a| ≤ 1, the classic straight-through estimator's backward factor."""
    return (pre_activation.abs() <= 1.0).to(pre_activation.dtype)


def straight_through(pre_activation: torch.Tensor, sample: torch.Tensor, noise: Noise | None
                     ) -> tuple[torch.Tensor, None]:
    """Sample value forward, gradient of E[y] = 2F(a) − 1 backward (thesis eq. 2.8).

    With a tensor std s (a learnable scale) the derivative 2p₀ of the unit-std member is applied at
    z = (a − μ)/s, built by autograd: E[y] = 2F₀(z) − 1, so the chain rule through z gives both
    d/da = 2p₀(z)/s = 2p(a) and d/ds = −2p₀(z)·(a − μ)/s². A number std keeps the one-kernel path.
    """
    if noise is not None and noise.std_is_tensor:
        standard = noise.standard()
        return with_gradient_of(sample, noise.standardise(pre_activation), straight_through_derivative(standard)), None
    return with_gradient_of(sample, pre_activation, straight_through_derivative(noise)), None


def classic_straight_through(pre_activation: torch.Tensor, sample: torch.Tensor) -> tuple[torch.Tensor, None]:
    """Sample value forward, gradient of hard-tanh(a) backward (1 where |a| ≤ 1)."""
    return with_gradient_of(sample, pre_activation, classic_straight_through_derivative), None


def score_function(pre_activation: torch.Tensor, sample: torch.Tensor, noise: Noise | None
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Sample value without gradient, plus per-example log p(y | a) = Σ_units log F(±a).

    P(y = −1) = 1 − F(a) = F(2μ − a) for noise symmetric about its mean μ (every noise in
    :data:`stochrelax.nn.noise.NOISES` is), so one log-CDF evaluation at the reflected
    point scores both outcomes.

    Returns:
        The detached sample and the log-likelihood of shape (B,), summed over all
        non-batch dimensions. The log-likelihood only feeds a gradient, so under
        ``torch.no_grad()`` (prediction) it is not computed and ``None`` is returned.
    """
    if noise is None:
        raise ValueError("estimator 'score' scores the noise draw and needs a noise distribution; "
                         "use 'classic_ste' for a deterministic sign unit")
    if not torch.is_grad_enabled():
        return sample, None
    # μ + y·(a − μ) is a for y = +1 and 2μ − a for y = −1: arithmetic, ~8× cheaper than torch.where here.
    reflected = (pre_activation - noise.mean).mul_(sample).add_(noise.mean)
    # In the default layout: the backward of the sum below meets a channels-last softplus 4× slower.
    log_prob = noise.log_cdf(reflected.contiguous())
    # Summed over the unit dimensions in place: flatten(1) would copy a channels-last tensor (10× slower).
    unit_dims = tuple(range(1, log_prob.dim()))
    return sample.detach(), log_prob.sum(dim=unit_dims) if unit_dims else log_prob  # (B,)


# Each estimator bound to a unit's noise distribution (``None`` for a deterministic unit).
ESTIMATORS: dict[str, Callable[[Noise | None], Estimator]] = {
    "ste": lambda noise: partial(straight_through, noise=noise),
    "classic_ste": lambda noise: classic_straight_through,
    "score": lambda noise: partial(score_function, noise=noise),
}

# The derivative s'(a) of the smooth s(a) each estimator stands for, bound to a unit's noise: what a
# sign unit back-propagates when it draws no noise, and the proxy score-function units are attacked through.
STRAIGHT_THROUGH_DERIVATIVES: dict[str, Callable[[Noise | None], GradientProxy]] = {
    "ste": straight_through_derivative,
    "classic_ste": lambda noise: classic_straight_through_derivative,
    "score": straight_through_derivative,
}


def score_function_surrogate(loss: torch.Tensor, log_prob: torch.Tensor | None, baseline: float = 0.0) -> torch.Tensor:
    """Surrogate objective whose gradient is the score-function estimate of ∇E[L].

    ``L + (L − b)·log p(y)``, averaged over the batch, with ``L − b`` held constant
    (Schulman et al. 2015, "Gradient estimation using stochastic computation graphs").
    Its value equals the mean loss only when b = L; use it for backward, report ``loss``.

    Args:
        loss: per-example loss (B,); its pathwise gradient reaches the parameters after
            the last sign unit.
        log_prob: per-example Σ log p(y | a) over every score-function unit (B,), or
            ``None`` when the network has none (then this is just the mean loss).
        baseline: variance-reducing constant b; must not depend on this noise draw.
    """
    if log_prob is None:
        return loss.mean()
    advantage = (loss - baseline).detach()
    return (loss + advantage * log_prob).mean()


class MovingAverageBaseline:
    """Baseline b for the score function: exponential moving average of past mean losses.

    Only losses of *previous* batches enter b, so b is independent of the current
    noise draw and the estimator stays unbiased; subtracting it removes the large
    common offset of L and cuts the variance.

    Args:
        decay: weight of the old average at each update.
    """

    def __init__(self, decay: float = 0.9) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"baseline decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.value = 0.0
        self._initialised = False

    def state_dict(self) -> dict[str, float | bool]:
        return {"value": self.value, "initialised": self._initialised}

    def load_state_dict(self, state: dict[str, float | bool]) -> None:
        self.value, self._initialised = float(state["value"]), bool(state["initialised"])

    def update(self, batch_mean_loss: float) -> None:
        """Folds the mean loss of the batch just used into the average."""
        if self._initialised:
            self.value = self.decay * self.value + (1.0 - self.decay) * batch_mean_loss
        else:
            self.value, self._initialised = batch_mean_loss, True

    def __repr__(self) -> str:
        return f"MovingAverageBaseline(decay={self.decay}, value={self.value:.4f})"
