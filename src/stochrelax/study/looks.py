"""A study in looks: judge after the first seeds, add seeds only where a claim is still open, judge again.

Looking at a study twice and deciding on whichever look decides spends the error rate twice. The
plan (:class:`LookPlan`) fixes before the first look how much each look may spend — by default
α = 0.01 at the first look (3 seeds) and 0.04 at the second (up to 6) — and each look judges its
claims with intervals at confidence 1 − α_k. A wrong verdict (holds or fails, or too small to
matter, where the truth says otherwise) needs an interval that misses the truth at some look, so
by the union bound it happens with probability at most α_1 + α_2 = 0.05 over both looks, however
the two looks' estimates are correlated (Bonferroni's error spending; Pocock's or O'Brien–Fleming's
bounds spend the same α less conservatively, at the price of a joint distribution this design does
not have in closed form).

A claim decided at the first look keeps that verdict; only the configurations that an open claim
reads get more seeds (:func:`configurations_to_extend`), so the second look costs what the open
claims need, not a whole study. :func:`judge_looks` is the rule, on aggregated rows per look;
``looks.json`` in the study directory records the plan, so that ``stochrelax results`` judges a
study again exactly as it was judged.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Sequence

from stochrelax.analysis.claims import Claim
from stochrelax.analysis.intervals import ImageResamples
from stochrelax.analysis.results import ResultRow, RunResults
from stochrelax.analysis.verdicts import INCONCLUSIVE, ClaimResult, StudyScope, evaluate_claims
from stochrelax.base.files import write_text_atomically
from stochrelax.rundir.config import ConfigError
from stochrelax.rundir.layout import RunDirError, read_json

__all__ = ["LookPlan", "LOOKS_FILE", "open_claims", "configurations_to_extend", "runs_of_look", "judge_looks",
           "write_look_plan", "read_look_plan"]

LOOKS_FILE = "looks.json"
_ORDINALS = ("first", "second", "third", "fourth")


@dataclass(frozen=True)
class LookPlan:
    """How many seeds each look has and how much error it may spend."""

    seeds: tuple[int, ...] = (3, 6)  # seeds 0 … n−1 of the configurations a look judges, per look
    alphas: tuple[float, ...] = (0.01, 0.04)  # error each look may spend; they sum to the study's 0.05

    def __post_init__(self) -> None:
        if len(self.seeds) != len(self.alphas) or not 1 <= len(self.seeds) <= len(_ORDINALS):
            raise ConfigError(f"a look plan needs one alpha per look and 1 to {len(_ORDINALS)} looks; got seeds "
                              f"{list(self.seeds)} and alphas {list(self.alphas)}")
        if any(later <= earlier for earlier, later in zip(self.seeds, self.seeds[1:])) or self.seeds[0] < 2:
            raise ConfigError(f"each look needs more seeds than the one before, at least 2 at the first; got "
                              f"{list(self.seeds)} (e.g. --seeds 3 --max-seeds 6)")
        if any(not 0 < alpha < 1 for alpha in self.alphas) or sum(self.alphas) >= 1:
            raise ConfigError(f"each look's alpha must lie in (0, 1) and their sum below 1; got {list(self.alphas)}")

    @classmethod
    def two_looks(cls, first_seeds: int, max_seeds: int, alphas: tuple[float, float] = (0.01, 0.04)) -> "LookPlan":
        """The plan of ``--seeds first_seeds --until-decided --max-seeds max_seeds``."""
        return cls((first_seeds, max_seeds), alphas)

    def level(self, look: int) -> float:
        """The confidence of every interval at look ``look`` (0-based)."""
        return 1 - self.alphas[look]

    def describe(self, look: int) -> str:
        """e.g. "the first look (3 seeds; 99% intervals, α = 0.01 of the 0.05 spent over 2 looks)"."""
        return (f"the {_ORDINALS[look]} look ({self.seeds[look]} seeds; {self.level(look):.0%} intervals, "
                f"α = {self.alphas[look]:g} of the {sum(self.alphas):g} spent over {len(self.seeds)} looks)")


def open_claims(results: Sequence[ClaimResult]) -> list[ClaimResult]:
    """The claims a further look could decide: those judged inconclusive (not the unmeasured or unjudged)."""
    return [result for result in results if result.verdict == INCONCLUSIVE]


def configurations_to_extend(results: Sequence[ClaimResult]) -> list[str]:
    """Every configuration that an open claim reads, sorted: the next look gives these more seeds."""
    return sorted({name for result in open_claims(results) for name in result.claim.configurations})


def runs_of_look(runs: Sequence[RunResults], plan: LookPlan, look: int) -> list[RunResults]:
    """The runs a look may read: seeds 0 … seeds[look]−1 (later seeds did not exist when it was taken)."""
    return [run for run in runs if run.config.train.seed < plan.seeds[look]]


def judge_looks(claims: Sequence[Claim], rows_per_look: Sequence[Sequence[ResultRow]], plan: LookPlan,
                scope: StudyScope = StudyScope(), resamples: ImageResamples | None = None) -> list[ClaimResult]:
    """Every claim judged at the first look that decides it, each look at its own level.

    Args:
        claims: what to judge.
        rows_per_look: the aggregated rows each look has taken so far (:func:`runs_of_look`); fewer
            than the plan's looks while a study is under way, and a claim still open at the last look
            taken keeps that look's result.
        plan: the seeds and the error of each look.
        scope: what the study's preset can judge.
        resamples: the test-image bootstrap.

    Returns:
        One result per claim, in the order of ``claims``; its reason says which look decided it.
    """
    if not 1 <= len(rows_per_look) <= len(plan.seeds):
        raise ValueError(f"{len(rows_per_look)} looks taken; the plan has {len(plan.seeds)}")
    final: dict[str, ClaimResult] = {}
    pending = list(claims)
    for look, rows in enumerate(rows_per_look):
        last = look == len(rows_per_look) - 1
        for result in evaluate_claims(pending, rows, scope, resamples, plan.level(look)):
            if result.verdict != INCONCLUSIVE or last:
                final[result.claim.id] = replace(result, reason=_with_look(result, plan, look))
        pending = [claim for claim in pending if claim.id not in final]
    return [final[claim.id] for claim in claims]


def _with_look(result: ClaimResult, plan: LookPlan, look: int) -> str:
    taken = f"judged at {plan.describe(look)}"
    return "; ".join(filter(None, [result.reason, taken]))


def write_look_plan(study_dir: str | Path, plan: LookPlan) -> Path:
    """Records the plan in ``study_dir/looks.json`` before the first look.

    Raises:
        ConfigError: if the study already records another plan: changing the plan after a look
            would choose the error spending by the results.
    """
    recorded = read_look_plan(study_dir)
    if recorded is not None and recorded != plan:
        raise ConfigError(f"{study_dir} was planned with looks at {list(recorded.seeds)} seeds and alphas "
                          f"{list(recorded.alphas)}; continue it with that plan (--seeds {recorded.seeds[0]} "
                          f"--max-seeds {recorded.seeds[-1]}) or choose another --out")
    path = Path(study_dir) / LOOKS_FILE
    write_text_atomically(path, json.dumps({k: list(v) for k, v in asdict(plan).items()}, indent=2) + "\n")
    return path


def read_look_plan(study_dir: str | Path) -> LookPlan | None:
    """The plan ``looks.json`` records; None for a study of one look.

    Raises:
        RunDirError: if the file is damaged.
    """
    path = Path(study_dir) / LOOKS_FILE
    if not path.is_file():
        return None
    record = read_json(path, "move it away to judge the study as one look")
    try:
        return LookPlan(tuple(int(n) for n in record["seeds"]), tuple(float(a) for a in record["alphas"]))
    except (KeyError, TypeError, ValueError, ConfigError) as error:
        raise RunDirError(f"{path} is damaged ({type(error).__name__}: {error}); move it away to judge the study "
                          "as one look") from None
