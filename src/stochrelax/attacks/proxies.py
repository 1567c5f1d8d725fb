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
- ``own``: the unit's own estimator — 2F(a) − 1 of its training noise (straight-through
  and score-function units), hard-tanh for the classic straight-through estimator.

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
from typing import Callable

import torch
import torch.nn as nn

from stochrelax.estimators import classic_straight_through_derivative, straight_through_derivative
from stochrelax.layers import GradientProxy, StochasticActivation, gradient_proxies
from stochrelax.noise import Noise

__all__ = ["Proxy", "PROXY_KINDS", "ProxyGradients", "SmoothActivation", "smooth_surrogate", "has_sign_units"]


def _tanh_value(noise: Noise | None, pre_activation: torch.Tensor, temperature: float) -> torch.Tensor:
    return torch.tanh(pre_activation / temperature)


def _tanh_derivative(noise: Noise | None, pre_activation: torch.Tensor, temperature: float) -> torch.Tensor:
    return (1.0 - torch.tanh(pre_activation / temperature).square()) / temperature


def _own_value(noise: Noise | None, pre_activation: torch.Tensor, temperature: None) -> torch.Tensor:
    if noise is None:  # classic straight-through: the identity on [-1, 1]
        return pre_activation.clamp(-1.0, 1.0)
    return 2.0 * noise.cdf(pre_activation) - 1.0


def _own_derivative(noise: Noise | None, pre_activation: torch.Tensor, temperature: None) -> torch.Tensor:
    if noise is None:
        return classic_straight_through_derivative(pre_activation)
    return straight_through_derivative(noise)(pre_activation)


@dataclass(frozen=True)
class _ProxyKind:
    # (the unit's noise or None, pre-activation, temperature) -> s(a), and -> s'(a)
    value: Callable[[Noise | None, torch.Tensor, float | None], torch.Tensor]
    derivative: Callable[[Noise | None, torch.Tensor, float | None], torch.Tensor]
    takes_temperature: bool


PROXY_KINDS: dict[str, _ProxyKind] = {
    "tanh": _ProxyKind(_tanh_value, _tanh_derivative, True),
    "own": _ProxyKind(_own_value, _own_derivative, False),
}


@dataclass(frozen=True)
class Proxy:
    """A smooth stand-in s(a) for sign units, written ``tanh:τ`` or ``own`` (see the module docstring).

    Example:
        >>> Proxy.parse("tanh:0.5").value(None, torch.tensor([0.25]))
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

    def value(self, noise: Noise | None, pre_activation: torch.Tensor) -> torch.Tensor:
        """s(a) for a sign unit with training noise ``noise`` (``None``: a deterministic unit)."""
        return PROXY_KINDS[self.kind].value(noise, pre_activation, self.temperature)

    def derivative(self, unit: StochasticActivation) -> GradientProxy:
        """a ↦ s'(a) for a sign unit, as :func:`stochrelax.layers.gradient_proxies` takes it."""
        kind, noise = PROXY_KINDS[self.kind], unit.noise
        return lambda pre_activation: kind.derivative(noise, pre_activation, self.temperature)

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
    """A deterministic smooth stand-in for a :class:`~stochrelax.layers.StochasticActivation`.

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
        self.activation, self.mode, self.proxy = unit.activation, unit.mode, proxy
        self.noise = unit.noise if unit.is_stochastic or unit.activation == "sign" else None

    def forward(self, pre_activation: torch.Tensor) -> torch.Tensor:
        if self.activation == "sign":
            return self.proxy.value(self.noise, pre_activation)
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
    """A deterministic copy of ``model`` with every stochastic unit replaced by its :class:`SmoothActivation`.

    The copy shares no tensors with ``model`` and keeps its train/eval mode.
    """
    surrogate = copy.deepcopy(model)
    for parent in list(surrogate.modules()):
        for name, child in parent.named_children():
            if isinstance(child, StochasticActivation):
                setattr(parent, name, SmoothActivation(child, proxy))
    return surrogate
