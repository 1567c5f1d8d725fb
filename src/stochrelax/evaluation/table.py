"""What a robustness table (``attacks.json`` / ``attacks.csv`` of a run) is made of.

The evaluations it may hold and the budget each takes, the settings it is measured with
(:class:`AttackSettings`, one record from the command line and the presets to the
evaluation), its rows (:class:`AttackResult`, each recording how it was measured: images,
prediction draws, EOT draws, steps, proxy, seed) and how the rows of several invocations
merge. The tables over runs and seeds (:mod:`stochrelax.analysis.results`), the report and the
figures read tables through these names without running an attack.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Callable, NamedTuple, Sequence

import torch

from stochrelax.attacks import ATTACKS
from stochrelax.attacks.fgsm import kurakin_steps
from stochrelax.attacks.proxies import Proxy
from stochrelax.models.allconv import PRECISIONS
from stochrelax.rundir.layout import unpack_correct

__all__ = ["THESIS_ATTACKS", "WORST_CASE", "EVALUATIONS", "BUDGET_NAMES", "budget_key", "DEFAULT_BUDGETS",
           "DEFAULT_PROXIES", "AttackSettings", "Work", "ATTACK_WORK", "AttackResult", "merge_rows"]

THESIS_ATTACKS = ("fgsm", "ifgsm-ll", "missing")
WORST_CASE = "worst-case"
EVALUATIONS = (*ATTACKS, WORST_CASE)  # what ``AttackSettings.attacks`` may name
BUDGET_NAMES = {**{name: info.budget_name for name, info in ATTACKS.items()}, WORST_CASE: "eps"}  # evaluation -> budget


def budget_key(budget: float) -> float:
    """A budget as a key of tables: rounded, so that 0.1 and 0.1000000001 are one budget."""
    return round(float(budget), 9)


DEFAULT_BUDGETS: dict[str, tuple[float, ...]] = {
    "eps": (0.0, 0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3),  # L∞ in pixels (thesis Figs. 5.3, 5.4)
    "p": (0.0, 0.1, 0.2, 0.3, 0.4, 0.5),  # missing-feature ratio (thesis Fig. 5.5)
}
# Proxies the worst case tries on sign units, best first: tanh(a/τ) at the temperatures that broke most,
# then the trained estimator's own. Accuracy left by PGD at eps 0.1 on 200 images: logistic-noise STE sign
# network (73.5% clean, EOT 8): 15% at τ 0.25, 19% at 0.5, 41% at 1 (40 steps), 36% at 0.1 and 60%
# through its own 2p(a) (20 steps); classic-STE sign network (81%, 20 steps): 8.5%, 7%, 10.5%, 28%, 12.5%.
DEFAULT_PROXIES = ("tanh:0.25", "tanh:0.5", "own")


@dataclass(frozen=True)
class AttackSettings:
    """How a model is attacked: one record from the command line and the presets to the evaluation."""

    attacks: tuple[str, ...] = THESIS_ATTACKS  # per-attack rows and/or "worst-case" (:data:`EVALUATIONS`)
    eps: tuple[float, ...] = DEFAULT_BUDGETS["eps"]  # L∞ budgets, pixels
    p: tuple[float, ...] = DEFAULT_BUDGETS["p"]  # missing-feature ratios
    eot_samples: int = 16  # noise draws per gradient (or Square query) of the EOT variant
    prediction_samples: int = 16  # K draws of the averaged predictor judging every result
    batch_size: int = 500  # images attacked at once
    pgd_steps: int = 20  # iterations of the per-attack PGD rows
    apgd_steps: int = 100  # iterations of APGD, in its rows and in the worst case
    square_queries: int = 1000  # queries of Square, in its rows and in the worst case (AutoAttack: 5000)
    proxy: str = "own"  # proxy of sign units in the per-attack rows
    proxies: tuple[str, ...] = DEFAULT_PROXIES  # proxies the worst case tries on sign units
    worst_case_steps: int = 50  # iterations of the worst case's PGD members
    probe_examples: int = 200  # inputs of the randomness, gradient and convergence probes
    check_convergence: bool = True  # rerun PGD with 2x steps and EOT draws where it matters
    seed: int = 0  # noise draws, random starts, masks and the fixed evaluation draws
    precision: str = "float32"  # of the model's convolutions in attacks and judgements (models.PRECISIONS)
    fold_batch_norm: bool = True  # attack a copy with BatchNorm folded into the convolutions (same values, faster)

    def __post_init__(self) -> None:
        unknown = [name for name in self.attacks if name not in EVALUATIONS]
        if unknown:
            raise ValueError(f"unknown attack(s) {', '.join(unknown)}; valid: {', '.join(EVALUATIONS)}")
        for name in ("eot_samples", "prediction_samples", "batch_size", "pgd_steps", "apgd_steps",
                     "square_queries", "worst_case_steps", "probe_examples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for text in (self.proxy, *self.proxies):
            Proxy.parse(text)
        if not self.proxies:
            raise ValueError("proxies must name at least one proxy, e.g. own,tanh:0.5")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; valid: {', '.join(PRECISIONS)}")

    def budgets(self, budget_name: str) -> tuple[float, ...]:
        """The budgets of an attack taking ``budget_name`` (``"eps"`` or ``"p"``)."""
        return {"eps": self.eps, "p": self.p}[budget_name]

    def attack_options(self, name: str, budget: float) -> dict[str, Any]:
        """Keyword arguments of a registered attack besides its budget and EOT draws (:data:`ATTACK_WORK`)."""
        work = ATTACK_WORK[name]
        return {} if work.option is None else {work.option: work.steps(budget, self)}

    def steps(self, name: str, budget: float) -> int | None:
        """Iterations (queries for Square) an evaluation runs at ``budget``, as its row records them."""
        return ATTACK_WORK[name].steps(budget, self)


class Work(NamedTuple):
    """How much work an evaluation does, and which keyword of its attack sets it."""

    option: str | None  # the attack's keyword (None: the attack fixes its own work)
    steps: Callable[[float, AttackSettings], int | None]  # (budget, settings) -> iterations; None: not iterative


ATTACK_WORK: dict[str, Work] = {  # the one table of every evaluation's iterations
    "fgsm": Work(None, lambda budget, settings: 1),
    "ifgsm-ll": Work(None, lambda budget, settings: kurakin_steps(budget)),
    "pgd": Work("steps", lambda budget, settings: settings.pgd_steps),
    "apgd-ce": Work("steps", lambda budget, settings: settings.apgd_steps),
    "apgd-dlr": Work("steps", lambda budget, settings: settings.apgd_steps),
    "square": Work("queries", lambda budget, settings: settings.square_queries),
    "missing": Work(None, lambda budget, settings: None),
    WORST_CASE: Work(None, lambda budget, settings: settings.worst_case_steps),
}


@dataclass(frozen=True)
class AttackResult:
    """One row of the robustness table, with how it was measured."""

    attack: str  # a registered attack or "worst-case"
    budget_name: str  # "eps" (L∞, pixels) or "p" (missing-feature ratio)
    budget: float
    eot_samples: int  # noise draws per attack gradient (1: single draw)
    prediction_samples: int  # K softmax samples of the averaged predictor judging the result
    accuracy: float  # of the averaged predictor on the fixed evaluation draws
    accuracy_single_draw: float  # one noisy pass (the thesis' setting), mean over the K draws
    accuracy_single_draw_std: float  # spread of that accuracy across the K draws
    success_rate: float  # targeted: reached the target; untargeted: clean-correct inputs now wrong
    mean_linf: float
    mean_l2: float
    seconds: float  # generating the adversarial examples
    examples: int  # images attacked
    clean_accuracy: float = math.nan  # of the same images on the same draws
    proxy: str = "own"  # how sign units were differentiated ("-" where no gradient is taken)
    steps: int | None = None  # iterations (queries for Square); None where not iterative
    seed: int = 0
    warnings: tuple[str, ...] = ()  # checks that concern this row, kept with it
    members: tuple[dict[str, Any], ...] = ()  # worst case: images each ensemble member broke, in order
    precision: str = "float32"  # of the model's convolutions while attacked and judged
    # (N,) bool per image, right under attack (None in old tables); attacks.json stores it packed (rundir.layout)
    correct: torch.Tensor | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> "AttackResult":
        """A row as stored in ``attacks.json`` (fields an older table lacks take their defaults)."""
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in row.items() if key in known}
        values["warnings"] = tuple(values.get("warnings", ()))
        values["members"] = tuple(values.get("members", ()))
        packed = values.pop("correct", "")
        if packed:
            values["correct"] = torch.from_numpy(unpack_correct(packed, int(values["examples"])))
        return cls(**values)

    @property
    def key(self) -> tuple:
        """Everything that decides what a row measures: rows with equal keys replace each other."""
        return (self.attack, self.budget_name, self.budget, self.eot_samples, self.prediction_samples,
                self.examples, self.proxy, self.steps, self.seed, self.precision)

    def as_dict(self) -> dict[str, Any]:
        """The row as :func:`~stochrelax.rundir.layout.write_attack_table` writes it into ``attacks.json``
        (:meth:`from_dict` reads it back); ``correct`` stays a tensor until it is written."""
        row = {item.name: getattr(self, item.name) for item in fields(self)}
        row["warnings"], row["members"] = list(self.warnings), [dict(member) for member in self.members]
        return row


def merge_rows(old: Sequence[AttackResult], new: Sequence[AttackResult]) -> list[AttackResult]:
    """``old`` rows not measured again with the same settings, then ``new``; sorted by attack
    (registry order, the worst case last), budget, EOT samples and the remaining settings."""
    merged = {row.key: row for row in old}
    merged.update((row.key, row) for row in new)
    order = list(EVALUATIONS)
    return sorted(merged.values(), key=lambda row: (order.index(row.attack), row.budget, row.eot_samples,
                                                    row.proxy, row.steps or 0, row.prediction_samples,
                                                    row.examples, row.seed, row.precision))
