"""Adversarial attacks on (stochastic) classifiers in [0, 1] pixel space.

One attack per class; each is called as ``attack(images, labels) -> adversarial
images``. EOT, projection, random start and the losses are functions in
:mod:`stochrelax.attacks.core` that the attacks compose. :data:`ATTACKS` maps the
command-line names to factories ``(model, **settings) -> attack``; each attack class
names its budget (``eps`` or ``p``) in ``budget_name``.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from stochrelax.attacks.core import Attack
from stochrelax.attacks.fgsm import FGSM, IterativeFGSM
from stochrelax.attacks.missing import MissingFeatures
from stochrelax.attacks.pgd import PGD

__all__ = ["Attack", "ATTACKS", "FGSM", "IterativeFGSM", "MissingFeatures", "PGD", "make_attack"]

AttackFactory = Callable[..., Attack]

ATTACKS: dict[str, AttackFactory] = {
    "fgsm": FGSM,
    "ifgsm-ll": IterativeFGSM,
    "pgd": PGD,
    "missing": lambda model, **settings: MissingFeatures(**settings),
}


def make_attack(name: str, model: torch.nn.Module, **settings: Any) -> Attack:
    """Builds the attack registered as ``name`` against ``model``.

    Raises:
        ValueError: for an unknown name (the message lists the valid ones).
    """
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; valid: {', '.join(ATTACKS)}")
    return ATTACKS[name](model, **settings)
