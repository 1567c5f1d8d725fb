"""The attack registry declares what each attack is, and each attack is what its entry declares."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from stochrelax.attacks import ATTACKS, make_attack
from stochrelax.attacks.core import Attack, MultiBudgetAttack, TargetedAttack, TargetedMultiBudgetAttack


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 3))


@pytest.mark.parametrize("name", list(ATTACKS))
def test_each_attack_implements_the_protocols_its_entry_declares(name):
    info = ATTACKS[name]
    attack = make_attack(name, _model(), **{info.budget_name: 0.1})
    assert isinstance(attack, Attack)
    assert isinstance(attack, TargetedAttack) is info.targeted
    shared = TargetedMultiBudgetAttack if info.targeted else MultiBudgetAttack
    assert isinstance(attack, shared) is info.shares_budgets


def test_an_unknown_attack_is_refused_with_the_valid_names():
    with pytest.raises(ValueError, match="unknown attack 'pgdd'; valid: fgsm, ifgsm-ll, pgd"):
        make_attack("pgdd", _model())
