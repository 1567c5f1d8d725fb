"""Looks at a study: the plan, which configurations a second look extends, the rule's error over
both looks on simulated studies, and the record that lets ``stochrelax results`` judge again."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from stochrelax.analysis.claims import parse_claims
from stochrelax.analysis.intervals import ImageResamples
from stochrelax.analysis.results import ResultRow, aggregate, read_study
from stochrelax.analysis.verdicts import FAILS, HOLDS, INCONCLUSIVE, TOO_SMALL, evaluate_claims, read_verdicts
from stochrelax.rundir.config import ConfigError
from stochrelax.rundir.layout import RunDirError
from stochrelax.study import reproduce as study
from stochrelax.study.grid import PlannedRun
from stochrelax.study.looks import LookPlan, configurations_to_extend, judge_looks, read_look_plan, write_look_plan
from tests.analysis.test_claims import _family_rows, _truth
from tests.synthetic_runs import (BASELINE, BASELINE_NAME, GAUSSIAN, GAUSSIAN_NAME, LOGISTIC, LOGISTIC_NAME,
                                  against_baseline, claim, write_run)

GAINS = [claim("logistic_gain", "difference_to_reference", against_baseline(["clean"]), {"above": 0.0}),
         claim("gaussian_gain", "difference_to_reference", against_baseline(["clean"], candidates=[GAUSSIAN_NAME]),
               {"above": 0.0})]


# --- the plan -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("seeds", "alphas", "fragment"), [
    ((3, 6), (0.05,), "one alpha per look"),
    ((3, 3), (0.01, 0.04), "more seeds than the one before"),
    ((1, 6), (0.01, 0.04), "at least 2 at the first"),
    ((3, 6), (0.6, 0.5), "their sum below 1"),
])
def test_a_malformed_plan_is_a_one_line_error(seeds, alphas, fragment):
    with pytest.raises(ConfigError, match=fragment) as raised:
        LookPlan(seeds, alphas)
    assert "\n" not in str(raised.value)


def test_each_look_judges_at_its_own_level():
    plan = LookPlan.two_looks(3, 6)
    assert (plan.level(0), plan.level(1)) == (pytest.approx(0.99), pytest.approx(0.96))
    assert plan.describe(1) == "the second look (6 seeds; 96% intervals, α = 0.04 of the 0.05 spent over 2 looks)"


def test_the_plan_is_recorded_once_and_read_back(tmp_path):
    plan = LookPlan.two_looks(3, 6)
    write_look_plan(tmp_path, plan)
    assert read_look_plan(tmp_path) == plan
    write_look_plan(tmp_path, plan)  # the same plan again: a resumed study
    with pytest.raises(ConfigError, match="--seeds 3 --max-seeds 6"):
        write_look_plan(tmp_path, LookPlan.two_looks(3, 8))
    (tmp_path / "looks.json").write_text('{"seeds": [3]}')
    with pytest.raises(RunDirError, match="damaged"):
        read_look_plan(tmp_path)
    assert read_look_plan(tmp_path / "elsewhere") is None


# --- which claims a second look serves ---------------------------------------------------------------------

def _gain_study(root, seeds: int, logistic: float = 0.1) -> None:
    """Logistic ahead of the baseline by ``logistic`` at every seed (decided at once); Gaussian level with it
    on average but 2 points either side per seed (open at 3 seeds)."""
    for seed in range(seeds):
        write_run(root, BASELINE_NAME, BASELINE, seed, 0.80, {})
        write_run(root, LOGISTIC_NAME, LOGISTIC, seed, 0.80 + logistic, {})
        write_run(root, GAUSSIAN_NAME, GAUSSIAN, seed, 0.80 + (0.02 if seed % 2 else -0.02), {})


def test_a_second_look_extends_only_the_configurations_of_open_claims(tmp_path):
    _gain_study(tmp_path, 3)
    judged = evaluate_claims(parse_claims({"claims": GAINS}), aggregate(read_study(tmp_path)), level=0.99)
    assert [result.verdict for result in judged] == [HOLDS, INCONCLUSIVE]
    assert configurations_to_extend(judged) == sorted([BASELINE_NAME, GAUSSIAN_NAME])


def test_sweep_in_looks_runs_the_second_look_only_where_a_claim_is_open(tmp_path, monkeypatch):
    sweeps = []

    def fake_sweep(runs, out_dir, *, seeds, **options):
        sweeps.append((sorted(run.name for run in runs), seeds))
        for planned in runs:
            for seed in range(seeds):
                if not (out_dir / f"{planned.name}-seed{seed}").exists():
                    _one_run(out_dir, planned.name, seed)
        return []

    monkeypatch.setattr(study, "run_sweep", fake_sweep)
    grid = [PlannedRun(name, config) for name, config in
            ((BASELINE_NAME, BASELINE), (LOGISTIC_NAME, LOGISTIC), (GAUSSIAN_NAME, GAUSSIAN))]
    lines: list[str] = []
    study.sweep_in_looks(grid, tmp_path, LookPlan.two_looks(3, 6), lines.append, parse_claims({"claims": GAINS}))
    assert sweeps == [(sorted([BASELINE_NAME, LOGISTIC_NAME, GAUSSIAN_NAME]), 3),
                      (sorted([BASELINE_NAME, GAUSSIAN_NAME]), 6)]
    assert lines == ["the second look (6 seeds; 96% intervals, α = 0.04 of the 0.05 spent over 2 looks): 1 claims "
                     "still open (gaussian_gain) -> 6 more jobs: seeds 3-5 of the 2 configurations they read"]
    assert read_look_plan(tmp_path) == LookPlan.two_looks(3, 6)


def _one_run(root, name: str, seed: int) -> None:
    config = {BASELINE_NAME: BASELINE, LOGISTIC_NAME: LOGISTIC, GAUSSIAN_NAME: GAUSSIAN}[name]
    clean = {BASELINE_NAME: 0.80, LOGISTIC_NAME: 0.90, GAUSSIAN_NAME: 0.80 + (0.02 if seed % 2 else -0.02)}[name]
    write_run(root, name, config, seed, clean, {})


def test_analyse_study_judges_each_claim_at_the_look_that_decided_it(tmp_path):
    # At 3 seeds the logistic gain is decided; seeds 3-5 would erase it, but they belong to the second look,
    # which judges only the claim still open.
    _gain_study(tmp_path, 3)
    for seed in range(3, 6):
        write_run(tmp_path, BASELINE_NAME, BASELINE, seed, 0.80, {})
        write_run(tmp_path, LOGISTIC_NAME, LOGISTIC, seed, 0.60, {})
        write_run(tmp_path, GAUSSIAN_NAME, GAUSSIAN, seed, 0.80 + (0.02 if seed % 2 else -0.02), {})
    write_look_plan(tmp_path, LookPlan.two_looks(3, 6))
    files = study.analyse_study(tmp_path, claims=parse_claims({"claims": GAINS}))
    logistic, gaussian = read_verdicts(files.verdicts_csv)
    assert logistic.verdict == HOLDS and "judged at the first look (3 seeds; 99% intervals" in logistic.reason
    assert logistic.estimates["eot"][3] == 3
    assert "judged at the second look (6 seeds; 96% intervals" in gaussian.reason
    assert gaussian.estimates["eot"][3] == 6


# --- the rule's error over both looks ----------------------------------------------------------------------

def _simulated_study(generator: np.random.Generator, shift: float) -> list[list[ResultRow]]:
    """Rows of the first look (seeds 0-2) and the second (0-5) of one simulated study (:func:`_family_rows`)."""
    rows = _family_rows(generator, {BASELINE_NAME: 0.0, LOGISTIC_NAME: shift}, seeds=6, images=400)
    first = [replace(row, values={seed: value for seed, value in row.values.items() if seed < 3},
                     per_image={seed: found for seed, found in row.per_image.items() if seed < 3}) for row in rows]
    return [first, rows]


WRONG = {"null": (HOLDS, TOO_SMALL), "margin": (FAILS, TOO_SMALL)}  # what says otherwise than the truth


def _wrong_rate(plan: LookPlan, truth_at: str, studies: int) -> float:
    """How often the plan's two looks end in a verdict the truth contradicts, with the true difference at
    no effect (holds or too small are wrong) or at the margin (fails or too small are wrong)."""
    shift = 0.0 if truth_at == "null" else 0.15
    margin = _truth(shift, seed_spread=math.sqrt(0.08))[1] if truth_at == "margin" else 0.01
    claims = parse_claims({"claims": [claim("gain", "difference_to_reference", against_baseline(["clean"]),
                                            {"above": 0.0}, margin=margin)]})
    generator = np.random.default_rng(2028)
    wrong = 0
    for _ in range(studies):
        [result] = judge_looks(claims, _simulated_study(generator, shift), plan,
                               resamples=ImageResamples(resamples=200))
        wrong += result.verdict in WRONG[truth_at]
    return wrong / studies


STUDIES = 1500


@pytest.mark.slow
@pytest.mark.parametrize("truth_at", ["null", "margin"])
def test_the_two_looks_give_a_wrong_verdict_in_at_most_2_5_percent_of_studies(truth_at):
    # Each look's interval misses on the wrong side with probability α_k/2, so over both looks a wrong
    # verdict has probability at most (0.01 + 0.04)/2 = 2.5%; 1500 studies leave a Monte Carlo
    # standard error of 0.4 points, and the bound allows 1.5 of them.
    assert _wrong_rate(LookPlan.two_looks(3, 6), truth_at, STUDIES) <= 0.025 + 0.006


@pytest.mark.slow
def test_judging_both_looks_at_95_percent_would_spend_more_than_the_rule():
    # The check above can fail: 95% intervals at both looks err more often than 2.5% + 0.6 points.
    assert _wrong_rate(LookPlan((3, 6), (0.05, 0.05)), "null", STUDIES) > 0.025 + 0.006
