"""The thesis' claims as data, measured with their uncertainty.

The intervals of measured claims are checked on simulated studies whose truth is known, for
their coverage, and for pairing image by image; the packaged claims on synthetic studies shaped
like the thesis (:mod:`tests.synthetic_runs`); malformed claims for one-line errors.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from stochrelax.analysis.claims import CLAIMS_FILE, ClaimsError, load_claims, parse_claims
from stochrelax.analysis.intervals import ImageResamples
from stochrelax.analysis.results import ResultRow, aggregate, read_study
from stochrelax.analysis.verdicts import FAILS, HOLDS, INCONCLUSIVE, NOT_MEASURED, evaluate_claims, verdict_records
from stochrelax.rundir import layout as runs
from stochrelax.rundir.config import ConfigError
from tests.synthetic_runs import (BASELINE, BASELINE_NAME, GAIN, IMAGES, LOGISTIC, LOGISTIC_NAME, against_baseline,
                                  claim, judged, thesis_like_study, write_run)

# --- coverage on simulated studies --------------------------------------------------------------------

def _simulated_rows(generator: np.random.Generator, shift: float, seeds: int = 3, images: int = 400,
                    seed_spread: float = 0.3) -> list[ResultRow]:
    """Baseline and logistic runs on the same images: image i is right with probability
    expit(a_i + δ_s) (baseline) or expit(a_i + shift + δ'_s) (logistic), difficulties a_i ~ N(1.5, 1.5²)
    drawn per study, training effects δ_s ~ N(0, seed_spread²) per seed and configuration."""
    difficulty = generator.normal(1.5, 1.5, images)
    rows = []
    for name, offset in ((BASELINE_NAME, 0.0), (LOGISTIC_NAME, shift)):
        values, per_image = {}, {}
        for seed in range(seeds):
            probability = 1 / (1 + np.exp(-(difficulty + offset + generator.normal(0, seed_spread))))
            correct = generator.random(images) < probability
            values[seed], per_image[seed] = float(correct.mean()), (images, runs.pack_correct(torch.from_numpy(correct)))
        rows += [ResultRow(name, "clean", None, None, variant, 1, values, images, per_image=per_image)
                 for variant in ("single", "eot")]
    return rows


def _truth(shift: float, seed_spread: float = 0.3, draws: int = 2_000_000) -> tuple[float, float]:
    """The true baseline accuracy and logistic − baseline difference of :func:`_simulated_rows`."""
    generator = np.random.default_rng(12345)
    difficulty = generator.normal(1.5, 1.5, draws)
    baseline = (1 / (1 + np.exp(-(difficulty + generator.normal(0, seed_spread, draws))))).mean()
    logistic = (1 / (1 + np.exp(-(difficulty + shift + generator.normal(0, seed_spread, draws))))).mean()
    return float(baseline), float(logistic - baseline)


@pytest.mark.parametrize("claim_id", ["accuracy", "difference"])
def test_95_percent_intervals_cover_the_truth_in_90_to_99_percent_of_200_simulated_studies(claim_id):
    shift = -0.3
    truth = dict(zip(("accuracy", "difference"), _truth(shift)))[claim_id]
    claims = parse_claims({"claims": [
        claim("accuracy", "mean_accuracy", {"configuration": BASELINE_NAME, "cells": ["clean"]}, {"at_least": 0.5}),
        claim("difference", "difference_to_reference", against_baseline(["clean"]), {"above": 0.0})]})
    generator = np.random.default_rng(2026)
    covered = 0
    for _ in range(200):
        results = evaluate_claims(claims, _simulated_rows(generator, shift), resamples=ImageResamples(resamples=500))
        found = next(result for result in results if result.claim.id == claim_id).single.interval
        covered += found.low <= truth <= found.high
    assert 0.90 * 200 <= covered <= 0.99 * 200


def _family_rows(generator: np.random.Generator, shifts: dict[str, float], seeds: int = 3, images: int = 400,
                 shared: float = 0.2, own: float = 0.2) -> list[ResultRow]:
    """Configurations on the same images, image i right with probability expit(a_i + shift + b_s + e_cs):
    a seed's effect b_s ~ N(0, shared²) is common to every configuration (one initialisation and data
    order), e_cs ~ N(0, own²) is its own."""
    difficulty = generator.normal(1.5, 1.5, images)
    seed_effects = generator.normal(0, shared, seeds)
    rows = []
    for name, shift in shifts.items():
        values, per_image = {}, {}
        for seed in range(seeds):
            logit = difficulty + shift + seed_effects[seed] + generator.normal(0, own)
            correct = generator.random(images) < 1 / (1 + np.exp(-logit))
            values[seed], per_image[seed] = float(correct.mean()), (images, runs.pack_correct(torch.from_numpy(correct)))
        rows += [ResultRow(name, "clean", None, None, variant, 1, values, images, per_image=per_image)
                 for variant in ("single", "eot")]
    return rows


@pytest.mark.parametrize("lead", [0.0, 0.6])
def test_a_pooled_pick_among_five_covers_the_best_difference_in_95_to_99_percent_of_300_studies(lead):
    # The pooled seed variance (16 df instead of 2) and the one-sided correction, on a family whose
    # candidates are equal (lead 0) or one of which leads; the truth integrates over seeds and images.
    names = [f"candidate{k}" for k in range(5)]
    shifts = {BASELINE_NAME: 0.0, **{name: -0.3 + (lead if k == 0 else 0.0) for k, name in enumerate(names)}}
    truth = _truth(shifts["candidate0"], seed_spread=math.sqrt(0.08))[1]
    best = claim("best", "difference_to_reference", against_baseline(["clean"], "largest", names), {"above": 0.0})
    claims = parse_claims({"claims": [best]})
    generator = np.random.default_rng(2027)
    covered = pooled = 0
    studies = 300
    for _ in range(studies):
        [result] = evaluate_claims(claims, _family_rows(generator, shifts), resamples=ImageResamples(resamples=300))
        found = result.eot.interval
        covered += found.low <= truth <= found.high
        pooled += found.seed_variance.pooled_over == 6
    assert 0.95 * studies <= covered <= 0.995 * studies  # without the pick's correction: 93% (lead 0)
    assert pooled >= 0.85 * studies  # Levene refuses the pool in about 1 study of 20, as it should


# --- pairing and its fallback -------------------------------------------------------------------------

def test_a_difference_is_paired_image_by_image_and_unpaired_only_without_per_image_results(tmp_path):
    for seed in (0, 1):
        write_run(tmp_path / "paired", BASELINE_NAME, BASELINE, seed, 0.80, {})
        write_run(tmp_path / "paired", LOGISTIC_NAME, LOGISTIC, seed, 0.82, {})
        write_run(tmp_path / "older", BASELINE_NAME, BASELINE, seed, 0.80, {}, images=None)
        write_run(tmp_path / "older", LOGISTIC_NAME, LOGISTIC, seed, 0.82, {}, images=None)
    paired = judged(tmp_path / "paired", [GAIN])["gain"]
    # the runs differ on 20 of 1000 images: the paired standard error is that of a 2% difference
    assert paired.single.interval.image_se == pytest.approx(math.sqrt(0.02 * 0.98 / IMAGES), rel=0.1)
    assert paired.verdict == HOLDS and not paired.single.unpaired
    # older runs (no per-image results; here their binomial stand-in has 1 image): unpaired, wider, and said so
    older = judged(tmp_path / "older", [GAIN])["gain"]
    assert older.single.interval.image_se > 10 * paired.single.interval.image_se
    assert older.verdict == INCONCLUSIVE
    assert any("no per-image results for 4 run(s)" in note for note in verdict_records([older])[0].notes)


# --- the packaged claims on a study shaped like the thesis --------------------------------------------

def test_packaged_claims_include_the_thesis_headline_claims():
    ids = [claim.id for claim in load_claims()]
    assert CLAIMS_FILE.is_file()
    for expected in ("baseline_clean_accuracy", "logistic_robustness_gain", "logistic_clean_accuracy_cost",
                     "logistic_beats_gaussian_under_attack", "adversarial_training_best_on_its_attack",
                     "adversarial_training_costs_clean_accuracy"):
        assert expected in ids


def test_a_study_shaped_like_the_thesis_holds_every_packaged_claim(tmp_path):
    results = evaluate_claims(load_claims(), aggregate(read_study(thesis_like_study(tmp_path))))
    assert {result.claim.id: result.verdict for result in results} == {result.claim.id: HOLDS for result in results}
    gain = next(result for result in results if result.claim.id == "logistic_robustness_gain")
    per_seed = [(0.51 + 0.002 * seed) / (0.30 + 0.002 * seed) for seed in range(5)]
    assert gain.single.interval.estimate == pytest.approx(np.mean(per_seed), abs=2e-3)
    assert gain.single.detail.startswith("relu_noise-logistic") and "(largest of 6;" in gain.single.detail


def test_eot_that_erases_the_stochastic_gain_fails_the_robustness_gain(tmp_path):
    study = thesis_like_study(tmp_path, eot_erases_the_gain=True)
    results = {result.claim.id: result for result in evaluate_claims(load_claims(), aggregate(read_study(study)))}
    gain = results["logistic_robustness_gain"]
    assert gain.verdict == FAILS
    assert gain.reason == "holds against the thesis' single-draw attacks"
    assert results["stochastic_beat_baseline_under_attack"].verdict == HOLDS  # thanks to missing features


def test_a_partial_study_leaves_the_claims_that_need_missing_runs_not_measured(tmp_path):
    study = thesis_like_study(tmp_path, leave_out="sign_noise", seeds=2)
    results = evaluate_claims(load_claims(), aggregate(read_study(study)))
    [sign] = [result for result in results if result.verdict == NOT_MEASURED]
    assert sign.claim.id == "logistic_beats_gaussian_on_clean_sign"
    assert sign.single.missing == ("sign_noise-logistic-ste (no finished run)", "sign_noise-gaussian-ste (no finished run)")


# --- malformed claims --------------------------------------------------------------------------------

BASE_CLAIM = claim("broken", "mean_accuracy", {"configuration": BASELINE_NAME, "cells": ["clean"]}, {"at_least": 0.5})


@pytest.mark.parametrize("change, message", [
    ({"criterion": None}, "claim broken: criterion: Field required"),
    ({"measure": "ratio"}, "claim broken: unknown measure 'ratio'; valid: mean_accuracy, difference_to_reference, "
                           "ratio_to_reference, matched_difference"),
    ({"criterion": {"greater": 0.5}}, "claim broken: criterion.greater.[key]: Input should be 'at_least', 'at_most', "
                                      "'above' or 'below'"),
    ({"arguments": {"configuration": BASELINE_NAME, "cells": ["fgsm p=0.3"]}},
     "claim broken: arguments of mean_accuracy: cells: 'fgsm p=0.3': fgsm takes a budget eps=…"),
    ({"arguments": {"configuration": BASELINE_NAME, "cells": ["fgms eps=0.1"]}}, "unknown attack 'fgms'; valid: clean, "),
    ({"arguments": {"configuration": BASELINE_NAME, "cells": ["clean"], "seeds": 3}},
     "claim broken: arguments of mean_accuracy: seeds: unknown key; allowed keys: configuration, cells"),
    ({"measure": "matched_difference", "arguments": {"better": "a-{std}", "worse": "b-{std}", "over": {"mode": ["x"]},
                                                     "cells": ["clean"]}},
     "claim broken: arguments of matched_difference: 'a-{std}' has placeholders ['std'] but 'over' gives ['mode']"),
    ({"id": "Broken id"}, "claim Broken id: id: String should match pattern"),
])
def test_a_malformed_claim_is_a_one_line_error_naming_it(change, message):
    entry = {key: value for key, value in {**BASE_CLAIM, **change}.items() if value is not None}
    with pytest.raises(ClaimsError) as raised:
        parse_claims({"claims": [entry]}, source="claims.yaml")
    assert message in str(raised.value) and str(raised.value).startswith("claims.yaml: ")
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("raw, message", [
    ({"claims": [BASE_CLAIM, BASE_CLAIM]}, "claims.yaml: claim broken: the id occurs twice"),
    ({"claims": []}, "claims.yaml: expected a mapping with a non-empty list 'claims'"),
    ({"claims": ["baseline is 90%"]}, "claims.yaml: claim #1: expected a mapping with keys id, claim, where, thesis, "
                                      "measure, arguments, criterion"),
    ({"claims": [BASE_CLAIM], "extra": 1}, "claims.yaml: unknown key(s) extra; allowed keys: claims, definitions"),
])
def test_a_malformed_claims_file_is_a_one_line_error(raw, message):
    with pytest.raises(ClaimsError, match=re.escape(message)):
        parse_claims(raw, source="claims.yaml")


def test_a_claim_of_an_effect_needs_a_margin_and_only_it_takes_one():
    bare = claim("bare", "difference_to_reference", against_baseline(["clean"]), {"above": 0.0})
    del bare["margin"]
    with pytest.raises(ClaimsError, match=r"claim bare: a threshold at 0 points \(no effect\) needs a margin"):
        parse_claims({"claims": [bare]})
    sized = {**claim("sized", "ratio_to_reference", against_baseline(["clean"]), {"at_least": 1.5}),
             "margin": {"size": 1.1, "reason": "r"}}
    with pytest.raises(ClaimsError, match=r"claim sized: a margin applies only to a threshold at ×1"):
        parse_claims({"claims": [sized]})
    wrong_side = claim("wrong", "difference_to_reference", against_baseline(["clean"]), {"below": 0.0}, margin=-0.01)
    with pytest.raises(ClaimsError, match="margin size -0.01 must lie beyond 0"):
        parse_claims({"claims": [wrong_side]})
    [below] = parse_claims({"claims": [claim("b", "difference_to_reference", against_baseline(["clean"]),
                                             {"below": 0.0})]})
    assert below.fail_boundary("below", 0.0) == pytest.approx(-0.01)


def test_a_missing_claims_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="claims file not found"):
        load_claims(tmp_path / "claims.yaml")
