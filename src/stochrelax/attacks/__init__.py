"""Adversarial attacks on (stochastic) classifiers in [0, 1] pixel space.

One attack per class; each is called as ``attack(images, labels) -> adversarial
images``. EOT, projection, random start and the losses are functions in
:mod:`stochrelax.attacks.core` that the attacks compose. :data:`ATTACKS` maps the
command-line names to an :class:`AttackInfo`: how to build the attack and what it takes.
:class:`Proxy`, :class:`ProxyGradients` and :func:`smooth_surrogate` (:mod:`stochrelax.attacks.proxies`)
differentiate sign units for them (BPDA, smooth surrogates).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from stochrelax.attacks.apgd import APGD
from stochrelax.attacks.core import Attack
from stochrelax.attacks.fgsm import FGSM, IterativeFGSM
from stochrelax.attacks.missing import MissingFeatures
from stochrelax.attacks.pgd import PGD
from stochrelax.attacks.proxies import Proxy, ProxyGradients, smooth_surrogate
from stochrelax.attacks.square import Square

__all__ = ["APGD", "Attack", "AttackInfo", "ATTACKS", "FGSM", "IterativeFGSM", "MissingFeatures", "PGD",
           "Square", "make_attack", "Proxy", "ProxyGradients", "smooth_surrogate"]


@dataclass(frozen=True)
class AttackInfo:
    """How to build a registered attack and what it takes."""

    factory: Callable[..., Attack]  # (model, **settings) -> attack
    budget_name: str  # keyword of its budget: "eps" (L∞, pixels) or "p" (missing-feature ratio)
    eot_argument: str | None  # keyword taking the number of noise draws; None: the model is not queried
    gradient_based: bool  # follows input gradients (so gradient masking can fool it)
    targeted: bool = False  # pulls towards a target class: a core.TargetedAttack (its accuracy is not a robust one)
    shares_budgets: bool = False  # serves several budgets from shared work: a core.MultiBudgetAttack (or targeted)


ATTACKS: dict[str, AttackInfo] = {
    "fgsm": AttackInfo(FGSM, "eps", "eot_samples", True, shares_budgets=True),
    "ifgsm-ll": AttackInfo(IterativeFGSM, "eps", "eot_samples", True, targeted=True, shares_budgets=True),
    "pgd": AttackInfo(PGD, "eps", "eot_samples", True),
    "apgd-ce": AttackInfo(lambda model, **settings: APGD(model, loss="ce", **settings), "eps", "eot_samples", True),
    "apgd-dlr": AttackInfo(lambda model, **settings: APGD(model, loss="dlr", **settings), "eps", "eot_samples", True),
    "square": AttackInfo(Square, "eps", "eot_samples", False),
    "missing": AttackInfo(lambda model, **settings: MissingFeatures(**settings), "p", None, False),
}


def make_attack(name: str, model: torch.nn.Module, **settings: Any) -> Attack:
    """Builds the attack registered as ``name`` against ``model``.

    Raises:
        ValueError: for an unknown name (the message lists the valid ones).
    """
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; valid: {', '.join(ATTACKS)}")
    return ATTACKS[name].factory(model, **settings)
