"""Stochastic activations: noise injected into pre-activations (thesis eqs. 2.2–2.4, 4.2).

``stochastic_activation`` is the pure function; :class:`StochasticActivation` is the
thin ``nn.Module`` to drop into any network. For a pre-activation ``a``:

- additive:        y = f(a − ξ)   (thesis eq. 2.3)
- multiplicative:  y = f(a · ξ)   (thesis eq. 2.4)

with f = ReLU or sign (±1) and ξ drawn fresh, independently per unit, at *every*
forward pass — in training and evaluation alike, because the network is a stochastic
predictor. ``noise_enabled = False`` gives the deterministic counterpart f(a).

Gaussian noise on the input pixels, x + δ with δ ~ N(0, σ²I) (randomized smoothing, Cohen et
al. 2019), is the same pair: :func:`gaussian_input_noise` and :class:`GaussianInputNoise`.

ReLU units use the ordinary pathwise gradient. Sign units need an estimator
(:mod:`stochrelax.nn.estimators`); without a noise draw they back-propagate through the
derivative of the smooth function their estimator stands for. Sign with multiplicative
noise is refused: sign(a·ξ) = sign(a)·sign(ξ) has a distribution that does not depend
on |a|, so no estimator gets a learning signal.

The std of ξ can be learnt (Parametric Noise Injection, He, Rakin, Fan, CVPR 2019,
https://arxiv.org/abs/1811.09310): a log-scale parameter, one per layer or one per channel,
trained by the same optimizer and loss as the weights and kept positive by the exponential.
ξ = μ + s·ε is then reparameterised (:mod:`stochrelax.nn.noise`), so ReLU units pass the pathwise
gradient to s; sign units' estimators give theirs (:mod:`stochrelax.nn.estimators`).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.nn as nn

from stochrelax.nn.estimators import ESTIMATORS, STRAIGHT_THROUGH_DERIVATIVES, GradientProxy, binarize, with_gradient_of
from stochrelax.nn.noise import NOISES, Gaussian, Noise, make_noise

__all__ = [
    "temporarily",
    "ACTIVATIONS",
    "GradientProxy",
    "MODES",
    "STD_GRANULARITIES",
    "DEFAULT_NOISE_MEAN",
    "check_activation_args",
    "stochastic_activation",
    "StochasticActivation",
    "gaussian_input_noise",
    "GaussianInputNoise",
    "NOISE_LAYERS",
    "noise_disabled",
    "gradient_proxies",
    "straight_through_gradients",
    "NoiseSource",
    "drawing_from",
    "learned_stds",
]

MODES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "additive": lambda pre_activation, noise: pre_activation - noise,
    "multiplicative": lambda pre_activation, noise: pre_activation * noise,
}

# Noise mean that leaves E[a ∘ ξ] = a; the thesis used 0 for both, which can still be set.
DEFAULT_NOISE_MEAN = {"additive": 0.0, "multiplicative": 1.0}


@dataclass(frozen=True)
class _Activation:
    function: Callable[[torch.Tensor], torch.Tensor]  # f, applied to the perturbed pre-activation
    pathwise: bool  # back-propagates through f; False: f's gradient is 0 almost everywhere, an estimator supplies one


def _sign_sample(perturbed: torch.Tensor) -> torch.Tensor:
    return binarize(perturbed.detach())


ACTIVATIONS: dict[str, _Activation] = {"relu": _Activation(torch.relu, pathwise=True),
                                       "sign": _Activation(_sign_sample, pathwise=False)}


def _channel_shape(channels: int | None) -> tuple[int, ...]:
    if channels is None:
        raise ValueError("a learnable std per channel needs the unit's number of channels")
    return (channels,)


STD_GRANULARITIES: dict[str, Callable[[int | None], tuple[int, ...]]] = {
    "layer": lambda channels: (),  # one std for the whole layer (PNI's "layer-wise")
    "channel": _channel_shape,  # one std per channel, dim 1 of the pre-activation (PNI's "channel-wise")
}
"""Shape of a learnable log-std for each granularity, given the unit's channel count."""


def _valid(name: str, value: object, options) -> None:
    if value not in options:
        raise ValueError(f"unknown {name} {value!r}; valid: {', '.join(map(str, options))}")


def check_activation_args(activation: str, noise: str | None, mode: str, std: float | None,
                          mean: float | None, estimator: str | None, learnable_std: str | None = None) -> str | None:
    """Validates a stochastic-activation specification; returns the estimator to use.

    The default estimator of a sign unit is ``"ste"`` with noise and ``"classic_ste"``
    without; ReLU units take none. A learnable std (its granularity, a key of
    :data:`STD_GRANULARITIES`) needs a noise distribution and ``std``, its initial value.

    Raises:
        ValueError: with a one-line message naming the offending argument.
    """
    _valid("activation", activation, ACTIVATIONS)
    _valid("mode", mode, MODES)
    if learnable_std is not None:
        _valid("learnable std granularity", learnable_std, STD_GRANULARITIES)
        if noise is None or std is None:
            raise ValueError("a learnable std needs a noise distribution and std, its initial value; "
                             f"set noise to one of {', '.join(NOISES)} and std > 0")
    if noise is None:
        if std is not None or mean is not None:
            raise ValueError("noise std/mean given without a noise distribution; "
                             f"set noise to one of {', '.join(NOISES)}")
    else:
        _valid("noise", noise, NOISES)
        if std is None or not std > 0:
            raise ValueError(f"noise std must be > 0, got {std}")
    if activation == "relu":
        if estimator is not None:
            raise ValueError(f"estimator {estimator!r} given for a relu unit; relu units use the ordinary "
                             "pathwise gradient, so leave estimator unset")
        return None
    if noise is not None and mode == "multiplicative":
        raise ValueError("sign with multiplicative noise is degenerate: sign(a*ξ) = sign(a)*sign(ξ) does not "
                         "depend on |a|, so no estimator has a learning signal; use mode 'additive'")
    if estimator is None:
        return "ste" if noise is not None else "classic_ste"
    _valid("estimator", estimator, ESTIMATORS)
    if noise is None and estimator != "classic_ste":
        raise ValueError(f"estimator {estimator!r} needs noise; a deterministic sign unit uses 'classic_ste'")
    return estimator


def stochastic_activation(pre_activation: torch.Tensor, activation: str, noise: Noise | None = None,
                          mode: str = "additive", estimator: str | None = None,
                          noisy: bool = True, gradient_proxy: GradientProxy | None = None,
                          sample: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Applies f(a − ξ) or f(a · ξ) with a fresh noise draw.

    Args:
        pre_activation: any shape, batch first.
        activation: ``"relu"`` or ``"sign"``.
        noise: the distribution of ξ, or ``None`` for a deterministic unit.
        mode: ``"additive"`` or ``"multiplicative"``.
        estimator: gradient estimator of a sign unit (see :mod:`stochrelax.nn.estimators`).
        noisy: draw noise; ``False`` gives the deterministic counterpart f(a), whose sign units
            back-propagate through their estimator's straight-through derivative
            (:data:`~stochrelax.nn.estimators.STRAIGHT_THROUGH_DERIVATIVES`).
        gradient_proxy: for a sign unit, back-propagate through this derivative instead of
            the estimator's (BPDA for attacks, :mod:`stochrelax.attacks.proxies`); the forward
            value is still the sample. Ignored by ReLU units, which have a true gradient.
        sample: a draw of ξ (shape of the input) to use instead of a fresh one, e.g. fixed evaluation
            draws replayed (:func:`drawing_from`); ignored when ``noisy`` is ``False``.

    Returns:
        The activation (same shape as the input) and, for score-function sign units,
        the per-example log p(y | a) of shape (B,); otherwise ``None``.
    """
    unit = ACTIVATIONS[activation]
    draw = noise is not None and noisy
    if draw and sample is None:
        sample = noise.sample_like(pre_activation.detach())
    perturbed = MODES[mode](pre_activation, sample) if draw else pre_activation
    output = unit.function(perturbed)
    if unit.pathwise:
        return output, None
    if gradient_proxy is None and draw:
        return ESTIMATORS[estimator](noise)(pre_activation, output)
    derivative = gradient_proxy or STRAIGHT_THROUGH_DERIVATIVES[estimator](noise)
    return with_gradient_of(output, pre_activation, derivative), None


class StochasticActivation(nn.Module):
    """ReLU or sign unit with noise injected into its pre-activation.

    Args:
        activation: ``"relu"`` or ``"sign"`` (outputs ±1).
        noise: ``"gaussian"``, ``"logistic"``, ``"uniform"``, or ``None`` for a deterministic unit.
        mode: ``"additive"`` (f(a − ξ)) or ``"multiplicative"`` (f(a · ξ)).
        std: standard deviation of ξ.
        mean: mean of ξ; default 0 for additive and 1 for multiplicative noise.
        estimator: for sign units, ``"ste"`` (default with noise), ``"classic_ste"``
            (default without) or ``"score"``; must be ``None`` for ReLU.
        learnable_std: ``None`` for a fixed std, or the granularity of a learnable one (a key
            of :data:`STD_GRANULARITIES`), initialised to ``std``.
        channels: the number of channels (dim 1 of the pre-activation); needed per channel.

    Attributes:
        noise_enabled: set ``False`` for the deterministic counterpart f(a).
        last_log_prob: per-example log p(y | a) of the last forward pass of a
            score-function unit, (B,); ``None`` otherwise.
        gradient_proxy: set by attacks (:func:`gradient_proxies`) so that a sign unit
            back-propagates through a smooth proxy of their choice; ``None`` (the default)
            uses the unit's estimator.
        noise_source: set by :func:`drawing_from` to supply ξ instead of a fresh draw; ``None``
            (the default) draws.
        log_std: the learnable log-std, shape () or (channels,); ``None`` for a fixed std.

    Example:
        >>> layer = StochasticActivation("sign", "logistic", "additive", std=0.05, estimator="ste")
        >>> layer(torch.randn(8, 16)).unique()
        tensor([-1.,  1.])
    """

    def __init__(self, activation: str, noise: str | None = None, mode: str = "additive",
                 std: float | None = None, mean: float | None = None, estimator: str | None = None,
                 learnable_std: str | None = None, channels: int | None = None) -> None:
        super().__init__()
        self.estimator = check_activation_args(activation, noise, mode, std, mean, estimator, learnable_std)
        self.activation = activation
        self.mode = mode
        self._noise = None if noise is None else make_noise(noise, DEFAULT_NOISE_MEAN[mode] if mean is None else mean, std)
        self.noise_name = noise
        self.learnable_std = learnable_std
        self.log_std = None if learnable_std is None else nn.Parameter(
            torch.full(STD_GRANULARITIES[learnable_std](channels), math.log(std)))
        self.noise_enabled = True
        self.last_log_prob: torch.Tensor | None = None
        self.gradient_proxy: GradientProxy | None = None
        self.noise_source: NoiseSource | None = None

    def noise_for(self, dims: int) -> Noise | None:
        """The distribution of ξ for pre-activations with ``dims`` dimensions (batch first).

        A learnable std is bound at its current value exp(log_std), differentiably; per channel it
        is viewed as (C, 1, …, 1) to broadcast along dim 1.
        """
        if self.log_std is None:
            return self._noise
        std = self.log_std.exp()
        return replace(self._noise, std=std.view(*std.shape, *(1,) * (dims - 2)) if std.dim() else std)

    @property
    def noise(self) -> Noise | None:
        """The distribution of ξ for (B, C, H, W) pre-activations, what attacks and surrogates use."""
        return self.noise_for(4)

    @property
    def is_stochastic(self) -> bool:
        """Whether this unit currently draws noise."""
        return self._noise is not None and self.noise_enabled

    def draw(self, pre_activation: torch.Tensor) -> torch.Tensor:
        """A fresh ξ shaped (and laid out) like ``pre_activation``."""
        return self.noise_for(pre_activation.dim()).sample_like(pre_activation)

    def forward(self, pre_activation: torch.Tensor) -> torch.Tensor:
        sample = None
        if self.noise_source is not None and self.is_stochastic:
            sample = self.noise_source(self, pre_activation.detach())
        output, self.last_log_prob = stochastic_activation(
            pre_activation, self.activation, self.noise_for(pre_activation.dim()), self.mode, self.estimator,
            self.noise_enabled, self.gradient_proxy, sample)
        return output

    def extra_repr(self) -> str:
        parts = [self.activation]
        if self._noise is not None:
            parts += [f"noise={self.noise_name}(mean={self._noise.mean:g}, std={self._std_repr()})", f"mode={self.mode}"]
        if self.estimator is not None:
            parts.append(f"estimator={self.estimator}")
        if self._noise is not None and not self.noise_enabled:
            parts.append("noise_enabled=False")
        return ", ".join(parts)

    def _std_repr(self) -> str:
        if self.log_std is None:
            return f"{self._noise.std:g}"
        std = self.log_std.detach().exp()
        return f"learnable per {self.learnable_std}: {std.item():.4g}" if std.dim() == 0 else (
            f"learnable per {self.learnable_std}: {std.min().item():.4g}..{std.max().item():.4g}")


def learned_stds(module: nn.Module) -> dict[str, torch.Tensor]:
    """The current std exp(log_std) of each unit of ``module`` with a learnable one, by qualified name, detached."""
    return {name: unit.log_std.detach().exp() for name, unit in module.named_modules()
            if isinstance(unit, StochasticActivation) and unit.log_std is not None}


def gaussian_input_noise(images: torch.Tensor, std: float, noisy: bool = True,
                         sample: torch.Tensor | None = None) -> torch.Tensor:
    """x + δ with δ ~ N(0, std²·I) drawn afresh per pixel: the base classifier's input under
    randomized smoothing (Cohen, Rosenfeld & Kolter 2019, eq. 1, https://arxiv.org/abs/1902.02918).

    The noise is added to the [0, 1] pixels as they are, without clipping, as in Cohen et al.;
    it is drawn from torch's global generator, like the units' noise.

    Args:
        images: pixels, any shape, batch first.
        std: σ, the standard deviation of δ in pixel units.
        noisy: draw noise; ``False`` returns ``images`` unchanged.
        sample: a draw of δ (shape of ``images``) to use instead of a fresh one (:func:`drawing_from`).
    """
    if not noisy:
        return images
    return images + (Gaussian(0.0, std).sample_like(images.detach()) if sample is None else sample)


class GaussianInputNoise(nn.Module):
    """Adds N(0, σ²) noise to every input pixel, in training and in evaluation alike.

    Cohen et al. (2019, section 3.3) train the base classifier under the noise that its smoothed
    classifier samples at prediction time, so the noise stays on in evaluation mode; only
    :func:`noise_disabled` switches it off.

    Args:
        std: σ in [0, 1] pixel units.

    Attributes:
        noise_enabled: set ``False`` to pass the pixels through unchanged.
        noise_source: set by :func:`drawing_from` to supply δ instead of a fresh draw.

    Example:
        >>> layer = GaussianInputNoise(0.25)
        >>> layer(torch.zeros(2, 1, 28, 28)).std().item() > 0
        True
    """

    def __init__(self, std: float) -> None:
        super().__init__()
        if not std > 0:
            raise ValueError(f"input noise std must be > 0, got {std}")
        self.std = float(std)
        self.noise_enabled = True
        self.noise_source: NoiseSource | None = None

    @property
    def is_stochastic(self) -> bool:
        """Whether this layer currently draws noise."""
        return self.noise_enabled

    def draw(self, images: torch.Tensor) -> torch.Tensor:
        """A fresh δ shaped like ``images``."""
        return Gaussian(0.0, self.std).sample_like(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        sample = None
        if self.noise_source is not None and self.noise_enabled:
            sample = self.noise_source(self, images.detach())
        return gaussian_input_noise(images, self.std, self.noise_enabled, sample)

    def extra_repr(self) -> str:
        return f"std={self.std:g}" + ("" if self.noise_enabled else ", noise_enabled=False")


NOISE_LAYERS = (StochasticActivation, GaussianInputNoise)
"""Every kind of layer that draws noise: each has ``noise_enabled``, ``is_stochastic``, ``noise_source``
and ``draw``."""


@contextmanager
def temporarily(modules: Sequence[nn.Module], name: str, values: Sequence[Any]) -> Iterator[None]:
    """Within the block attribute ``name`` of each of ``modules`` is its value in ``values``; each
    module's previous value is restored on exit, so that the caller's modules end as they began."""
    previous = [getattr(module, name) for module in modules]
    for module, value in zip(modules, values):
        setattr(module, name, value)
    try:
        yield
    finally:
        for module, value in zip(modules, previous):
            setattr(module, name, value)


@contextmanager
def noise_disabled(module: nn.Module) -> Iterator[nn.Module]:
    """Within the block every noise layer in ``module`` (:data:`NOISE_LAYERS`: the units and the
    input noise) is deterministic.

    The previous per-layer settings are restored on exit.
    """
    layers = [m for m in module.modules() if isinstance(m, NOISE_LAYERS)]
    with temporarily(layers, "noise_enabled", [False] * len(layers)):
        yield module


NoiseSource = Callable[[nn.Module, torch.Tensor], torch.Tensor]
"""(noise layer, its input) -> the layer's noise sample for this pass, shaped like its input."""


@contextmanager
def drawing_from(module: nn.Module, source: NoiseSource) -> Iterator[nn.Module]:
    """Within the block every noise layer of ``module`` (:data:`NOISE_LAYERS`) that draws takes its
    sample from ``source`` instead of drawing it.

    What fixed evaluation draws need: record each layer's draws once (``source`` calling the
    layer's ``draw``), then replay them for any subset of the images
    (:class:`stochrelax.evaluation.rows.FixedDrawJudge`). The previous settings are restored on exit.
    """
    layers = [m for m in module.modules() if isinstance(m, NOISE_LAYERS)]
    with temporarily(layers, "noise_source", [source] * len(layers)):
        yield module


@contextmanager
def gradient_proxies(module: nn.Module,
                     proxy_of: Callable[[StochasticActivation], GradientProxy | None]) -> Iterator[nn.Module]:
    """Within the block every sign unit ``u`` of ``module`` back-propagates through ``proxy_of(u)``.

    Sign units have zero gradient almost everywhere; a gradient attack differentiates
    through a smooth proxy instead while keeping the real forward pass (BPDA, Athalye et
    al. 2018, https://arxiv.org/abs/1802.00420). A unit for which ``proxy_of`` returns
    ``None`` keeps its current setting. The previous settings are restored on exit.
    """
    layers = [m for m in module.modules() if isinstance(m, StochasticActivation) and m.activation == "sign"]
    with temporarily(layers, "gradient_proxy", [proxy_of(layer) or layer.gradient_proxy for layer in layers]):
        yield module


def _score_unit_proxy(layer: StochasticActivation) -> GradientProxy | None:
    if layer.estimator != "score" or layer.gradient_proxy is not None:
        return None
    return STRAIGHT_THROUGH_DERIVATIVES[layer.estimator](layer.noise)


@contextmanager
def straight_through_gradients(module: nn.Module) -> Iterator[nn.Module]:
    """Within the block, score-function sign units back-propagate through the 2p(a) proxy.

    Score-function units pass no gradient at all; an attack that uses the units' own
    estimators differentiates them through 2p(a), the straight-through estimator's proxy
    (:data:`~stochrelax.nn.estimators.STRAIGHT_THROUGH_DERIVATIVES`), set as each unit's
    ``gradient_proxy``. Units with a straight-through estimator, or with a gradient proxy
    already set (:func:`gradient_proxies`), are unchanged; settings are restored on exit.
    """
    with gradient_proxies(module, _score_unit_proxy):
        yield module
