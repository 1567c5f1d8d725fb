"""Smooth stand-ins for stochastic units, chosen for attacking rather than for training.

A sign unit y = sign(a − ξ) has zero gradient almost everywhere. Training differentiates
it through its estimator's proxy — for the straight-through estimator 2p(a), the density
of the training noise. For noise of std 0.05 that is a spike of width ~0.03, while most
pre-activations sit ~0.8 away from 0: almost every unit passes no gradient, and the EOT
average of a few draws is mostly noise (two independent EOT-8 gradients of one input have
median cosine ~0.03). Attacking a model through the estimator it was trained with is not
an adaptive attack (Tramèr, Carlini, Brendel, Madry 2020, "On adaptive attacks to
adversarial example defenses", https://arxiv.org/abs/2002.08347).

A :class:`Proxy` is a smooth function s(a) standing in for a sign unit, whose temperature
does not depend on the training noise:

- ``tanh:τ``: s(a) = tanh(a / τ) — the mean 2F(a) − 1 of logistic noise of scale τ/2.
- ``own``: the smooth function the unit's own estimator stands for — 2F(a) − 1 of its training
  noise (straight-through and score-function units), hard-tanh for the classic straight-through
  estimator, with or without noise.

They are used two ways (Athalye, Carlini, Wagner 2018, https://arxiv.org/abs/1802.00420):

- BPDA (:class:`ProxyGradients`): the real stochastic forward pass, the proxy's derivative
  in the backward pass; EOT averages over the real noise.
- a smooth surrogate (:func:`smooth_surrogate`): a deterministic copy of the network in
  which every stochastic unit is its smooth stand-in — sign units s(a), noisy ReLU units
  their expectation E[relu(a − ξ)] (additive) or E[relu(a·ξ)] (multiplicative). Examples
  crafted on it are scored on the real model (a transfer from a model with exact gradients).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch
import torch.nn as nn

from stochrelax.nn.estimators import STRAIGHT_THROUGH_DERIVATIVES
from stochrelax.nn.layers import GaussianInputNoise, GradientProxy, StochasticActivation, gradient_proxies
from stochrelax.nn.noise import Noise

__all__ = ["Proxy", "SignUnit", "PROXY_KINDS", "ProxyGradients", "SmoothActivation", "smooth_surrogate", "has_sign_units"]


class SignUnit(NamedTuple):
    """What a proxy needs to know of a sign unit: its training noise and its estimator."""

    noise: Noise | None
    estimator: str | None  # None: the default, classic straight-through without noise


class _Smooth(NamedTuple):
    """A proxy bound to one unit: a ↦ s(a), and a ↦ s'(a)."""

    value: Callable[[torch.Tensor], torch.Tensor]
    derivative: GradientProxy


def _tanh(proxy: "Proxy", unit: SignUnit) -> _Smooth:
    """tanh(a/τ), whatever the unit."""
    temperature = proxy.temperature
    return _Smooth(lambda a: torch.tanh(a / temperature),
                   lambda a: (1.0 - torch.tanh(a / temperature).square()) / temperature)


def _own(proxy: "Proxy", unit: SignUnit) -> _Smooth:
    """The smooth function the unit's estimator stands for: 2F(a) − 1 of its noise for the
    straight-through and score-function estimators, hard-tanh for the classic straight-through."""
    estimator = unit.estimator or "classic_ste"
    derivative = STRAIGHT_THROUGH_DERIVATIVES[estimator](unit.noise)
    if estimator == "classic_ste":
        return _Smooth(lambda a: a.clamp(-1.0, 1.0), derivative)
    noise = unit.noise
    return _Smooth(lambda a: 2.0 * noise.cdf(a) - 1.0, derivative)


class _ProxyKind(NamedTuple):
    bind: Callable[["Proxy", SignUnit], _Smooth]
    takes_temperature: bool


PROXY_KINDS: dict[str, _ProxyKind] = {"tanh": _ProxyKind(_tanh, True), "own": _ProxyKind(_own, False)}


@dataclass(frozen=True)
class Proxy:
    """A smooth stand-in s(a) for sign units, written ``tanh:τ`` or ``own`` (see the module docstring).

    Example:
        >>> Proxy.parse("tanh:0.5").value(SignUnit(None, None), torch.tensor([0.25]))
        tensor([0.4621])
    """

    kind: str = "own"
    temperature: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in PROXY_KINDS:
            raise ValueError(f"unknown proxy {self.kind!r}; valid: {', '.join(PROXY_KINDS)}")
        takes = PROXY_KINDS[self.kind].takes_temperature
        if takes and not (self.temperature is not None and self.temperature > 0):
            raise ValueError(f"proxy {self.kind!r} needs a temperature > 0, e.g. '{self.kind}:0.5'")
        if not takes and self.temperature is not None:
            raise ValueError(f"proxy {self.kind!r} takes no temperature")

    @classmethod
    def parse(cls, text: str) -> "Proxy":
        """``"tanh:0.5"`` → Proxy("tanh", 0.5); ``"own"`` → Proxy("own").

        Raises:
            ValueError: for an unknown kind, a missing or bad temperature (one line).
        """
        kind, _, temperature = text.strip().partition(":")
        try:
            return cls(kind, float(temperature) if temperature else None)
        except ValueError as error:
            raise ValueError(f"bad proxy {text!r}: {error}") from None

    def value(self, unit: SignUnit | StochasticActivation, pre_activation: torch.Tensor) -> torch.Tensor:
        """s(a) for a sign unit (anything with its ``noise`` and ``estimator``)."""
        return PROXY_KINDS[self.kind].bind(self, SignUnit(unit.noise, unit.estimator)).value(pre_activation)

    def derivative(self, unit: SignUnit | StochasticActivation) -> GradientProxy:
        """a ↦ s'(a) for a sign unit, as :func:`stochrelax.nn.layers.gradient_proxies` takes it."""
        return PROXY_KINDS[self.kind].bind(self, SignUnit(unit.noise, unit.estimator)).derivative

    def __str__(self) -> str:
        return self.kind if self.temperature is None else f"{self.kind}:{self.temperature:g}"


def has_sign_units(model: nn.Module) -> bool:
    """Whether ``model`` has sign units, the only ones a proxy changes."""
    return any(isinstance(m, StochasticActivation) and m.activation == "sign" for m in model.modules())


class ProxyGradients(nn.Module):
    """``model`` with its real forward pass, differentiated through ``proxy`` at every sign unit (BPDA).

    Wrap a model with it and hand it to any attack: ``PGD(ProxyGradients(model, Proxy.parse("tanh:1")))``.
    Predictions are the model's own; only the gradients change. The wrapped model's units
    are restored after every forward pass, so the model itself is never changed.
    """

    def __init__(self, model: nn.Module, proxy: Proxy) -> None:
        super().__init__()
        self.model, self.proxy = model, proxy

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with gradient_proxies(self.model, self.proxy.derivative):
            return self.model(images)

    def extra_repr(self) -> str:
        return f"proxy={self.proxy}"


class SmoothActivation(nn.Module):
    """A deterministic smooth stand-in for a :class:`~stochrelax.nn.layers.StochasticActivation`.

    Sign units become s(a) of the proxy; ReLU units with additive noise become
    E[relu(a − ξ)], with multiplicative noise E[relu(a·ξ)] = relu(a)·E[ξ⁺] + relu(−a)·E[ξ⁻]
    (for noise symmetric about its mean μ, E[ξ⁺] = E[relu(2μ − ξ)] and E[ξ⁻] = E[relu(0 − ξ)]);
    deterministic ReLU units stay relu(a).

    Args:
        unit: the unit to stand in for (its settings are copied, the unit is not kept).
        proxy: the sign units' stand-in.
    """

    def __init__(self, unit: StochasticActivation, proxy: Proxy) -> None:
        super().__init__()
        self.activation, self.mode, self.proxy, self.estimator = unit.activation, unit.mode, proxy, unit.estimator
        self.noise = unit.noise if unit.is_stochastic or unit.activation == "sign" else None

    def forward(self, pre_activation: torch.Tensor) -> torch.Tensor:
        if self.activation == "sign":
            return self.proxy.value(SignUnit(self.noise, self.estimator), pre_activation)
        if self.noise is None:
            return torch.relu(pre_activation)
        if self.mode == "additive":
            return self.noise.expected_relu(pre_activation)
        reference = pre_activation.new_zeros(())
        positive_part = self.noise.expected_relu(reference + 2.0 * self.noise.mean)  # E[ξ⁺]
        negative_part = self.noise.expected_relu(reference)  # E[ξ⁻]
        return torch.relu(pre_activation) * positive_part + torch.relu(-pre_activation) * negative_part

    def extra_repr(self) -> str:
        units = f"{self.activation}, mean of {self.mode} {self.noise}" if self.noise is not None else self.activation
        return f"{units}, proxy={self.proxy}" if self.activation == "sign" else units


def smooth_surrogate(model: nn.Module, proxy: Proxy) -> nn.Module:
    """A deterministic copy of ``model`` with every stochastic unit replaced by its :class:`SmoothActivation`
    and its Gaussian input noise, whose mean is zero, switched off.

    The copy shares no tensors with ``model`` and keeps its train/eval mode.
    """
    surrogate = copy.deepcopy(model)
    for parent in list(surrogate.modules()):
        for name, child in parent.named_children():
            if isinstance(child, StochasticActivation):
                setattr(parent, name, SmoothActivation(child, proxy))
            elif isinstance(child, GaussianInputNoise):
                child.noise_enabled = False
    return surrogate
