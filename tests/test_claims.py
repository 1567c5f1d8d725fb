"""The thesis' claims judged with their uncertainty: intervals, verdicts, the verdict file.

Intervals are checked against closed forms (Student's t over seeds, the binomial standard error
of one run) and, on simulated studies whose truth is known, for their coverage; verdicts on
synthetic run directories (:mod:`tests.synthetic_runs`) whose numbers are chosen by hand.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

from stochrelax import runs
from stochrelax.claims import (CLAIMS_FILE, FAILS, HOLDS, INCONCLUSIVE, NOT_JUDGED, NOT_MEASURED, ClaimsError,
                               StudyScope, analyse_study, evaluate_claims, load_claims, parse_claims, read_verdicts,
                               verdict_records, verdict_table, write_verdicts)
from stochrelax.cli import main
from stochrelax.config import ConfigError
from stochrelax.intervals import ImageResamples, interval, pick_interval
from stochrelax.results import ResultRow, aggregate, read_study
from stochrelax.sweep import PRESETS, SWEEP_FILE
from tests.synthetic_runs import (BASELINE, BASELINE_NAME, GAUSSIAN, GAUSSIAN_NAME, IMAGES, LOGISTIC, LOGISTIC_NAME,
                                  nested_correct, thesis_like_study, write_run)


def claim(claim_id: str, measure: str, arguments: dict, criterion: dict) -> dict:
    return {"id": claim_id, "claim": f"{claim_id} in words", "where": "5.3", "thesis": "1", "measure": measure,
            "arguments": arguments, "criterion": criterion}


def against_baseline(cells: list[str], pick: str = "largest", candidates: list | None = None) -> dict:
    return {"candidates": candidates or [LOGISTIC_NAME], "reference": BASELINE_NAME, "cells": cells, "pick": pick}


GAIN = claim("gain", "difference_to_reference", against_baseline(["clean"]), {"above": 0.0})


def judged(root: Path, claims: list[dict], scope: StudyScope = StudyScope()) -> dict:
    results = evaluate_claims(parse_claims({"claims": claims}), aggregate(read_study(root)), scope)
    return {result.claim.id: result for result in results}


# --- intervals against closed forms ------------------------------------------------------------------

def test_without_image_noise_the_interval_is_students_t_over_seeds():
    per_seed = np.array([[0.80], [0.84], [0.86]])  # (S, 1): no image resamples
    found = interval(per_seed)
    expected = stats.t.interval(0.95, 2, loc=per_seed.mean(), scale=stats.sem(per_seed[:, 0]))
    assert (found.low, found.high) == (pytest.approx(expected[0]), pytest.approx(expected[1]))
    assert (found.seeds, found.df, found.image_se) == (3, 2, 0.0)


def test_the_image_bootstrap_of_one_run_matches_the_binomial_standard_error():
    replicates = ImageResamples(resamples=4000).accuracy(nested_correct(0.8).numpy())
    assert replicates[0] == pytest.approx(0.8)
    assert replicates[1:].std() == pytest.approx(math.sqrt(0.8 * 0.2 / IMAGES), rel=0.05)


def test_picking_the_best_of_k_widens_each_interval_by_bonferroni():
    candidates = {"a": np.array([[0.50], [0.54], [0.52]]), "b": np.array([[0.56], [0.50], [0.53]])}
    chosen, found = pick_interval(candidates, largest=True)
    bounds = {name: stats.t.interval(1 - 0.05 / 2, 2, loc=values.mean(), scale=stats.sem(values[:, 0]))
              for name, values in candidates.items()}
    assert chosen == "b" and found.estimate == pytest.approx(0.53)
    assert found.low == pytest.approx(max(low for low, _ in bounds.values()))
    assert found.high == pytest.approx(max(high for _, high in bounds.values()))
    assert found.level == pytest.approx(0.975)


def test_one_seed_gives_an_unbounded_interval():
    found = interval(np.array([[0.8, 0.79, 0.81]]))
    assert not found.bounded and (found.low, found.high) == (-math.inf, math.inf)


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


# --- verdicts --------------------------------------------------------------------------------------

def _gain_study(root: Path, differences: list[float], seeds_images: int | None = IMAGES) -> Path:
    for seed, difference in enumerate(differences):
        write_run(root, BASELINE_NAME, BASELINE, seed, 0.80, {}, images=seeds_images)
        write_run(root, LOGISTIC_NAME, LOGISTIC, seed, 0.80 + difference, {}, images=seeds_images)
    return root


@pytest.mark.parametrize("differences, verdict", [
    ([0.10, 0.11, 0.09], HOLDS),  # the whole interval above 0
    ([-0.10, -0.11, -0.09], FAILS),  # the whole interval below 0
    ([0.03, -0.02, 0.01], INCONCLUSIVE),  # straddles 0
    ([0.10], INCONCLUSIVE),  # one seed: the spread between trainings is unknown
])
def test_the_verdict_follows_where_the_interval_lies(tmp_path, differences, verdict):
    result = judged(_gain_study(tmp_path, differences), [GAIN])["gain"]
    assert result.verdict == verdict
    assert result.single.interval.estimate == pytest.approx(np.mean(differences), abs=1e-3)
    if len(differences) == 1:
        assert result.reason.startswith("one seed")


def test_intervals_are_cut_to_where_the_true_value_can_lie(tmp_path):
    for seed, clean in enumerate([0.90, 0.99]):  # two seeds far apart: Student's t with 1 degree of freedom
        write_run(tmp_path, BASELINE_NAME, BASELINE, seed, clean, {})
    level = claim("level", "mean_accuracy", {"configuration": BASELINE_NAME, "cells": ["clean"]}, {"at_least": 0.5})
    found = judged(tmp_path, [level])["level"].single.interval
    assert (found.low, found.high) == (pytest.approx(0.945 - 12.706 * 0.045, abs=0.02), 1.0)  # not 1.52


def test_one_seed_never_gives_holds_or_fails_however_large_the_difference(tmp_path):
    results = judged(_gain_study(tmp_path, [0.5]), [GAIN, {**GAIN, "id": "loss", "criterion": {"below": 0.0}}])
    assert {result.verdict for result in results.values()} == {INCONCLUSIVE}


def test_a_criterion_with_two_bounds_fails_when_the_interval_leaves_either(tmp_path):
    for seed, clean in enumerate([0.95, 0.96, 0.955]):
        write_run(tmp_path, BASELINE_NAME, BASELINE, seed, clean, {})
    level = claim("level", "mean_accuracy", {"configuration": BASELINE_NAME, "cells": ["clean"]},
                  {"at_least": 0.88, "at_most": 0.92})
    assert judged(tmp_path, [level])["level"].verdict == FAILS


def test_claims_on_missing_runs_or_cells_are_not_measured_and_name_what_is_missing(tmp_path):
    _gain_study(tmp_path, [0.1, 0.1])
    results = judged(tmp_path, [
        claim("missing_cell", "mean_accuracy", {"configuration": LOGISTIC_NAME, "cells": ["fgsm eps=0.03"]},
              {"at_least": 0.5}),
        claim("missing_run", "ratio_to_reference",
              against_baseline(["clean"], candidates=["relu_noise-uniform-additive-0.05"]), {"at_least": 1.5})])
    assert results["missing_cell"].verdict == results["missing_run"].verdict == NOT_MEASURED
    assert results["missing_cell"].single.missing == (f"{LOGISTIC_NAME}: fgsm eps=0.03 (single-draw)",)
    assert results["missing_run"].eot.missing == ("relu_noise-uniform-additive-0.05 (no finished run)",)


def test_absolute_accuracy_is_not_judged_when_the_preset_does_not_converge(tmp_path):
    _gain_study(tmp_path, [0.1, 0.1, 0.1])
    level = claim("level", "mean_accuracy", {"configuration": BASELINE_NAME, "cells": ["clean"]}, {"at_least": 0.7})
    quick = StudyScope("quick", converged=False)
    results = judged(tmp_path, [level, GAIN], quick)
    assert results["level"].verdict == NOT_JUDGED and "the quick preset does not train" in results["level"].reason
    assert results["gain"].verdict == HOLDS  # a difference is judged
    assert judged(tmp_path, [level])["level"].verdict == HOLDS


def test_comparisons_pair_runs_by_seed(tmp_path):
    write_run(tmp_path, BASELINE_NAME, BASELINE, 0, 0.90, {})
    write_run(tmp_path, BASELINE_NAME, BASELINE, 1, 0.80, {})
    write_run(tmp_path, LOGISTIC_NAME, LOGISTIC, 1, 0.70, {})
    write_run(tmp_path, LOGISTIC_NAME, LOGISTIC, 2, 0.10, {})
    result = judged(tmp_path, [{**GAIN, "criterion": {"below": 0.0}}])["gain"]
    assert result.single.values == {1: pytest.approx(-0.1)}  # only seed 1 has both


def test_a_claim_picking_among_candidates_says_which_and_corrects_for_it(tmp_path):
    for seed in (0, 1, 2):
        write_run(tmp_path, BASELINE_NAME, BASELINE, seed, 0.80, {})
        write_run(tmp_path, LOGISTIC_NAME, LOGISTIC, seed, 0.86 + 0.01 * seed, {})
        write_run(tmp_path, GAUSSIAN_NAME, GAUSSIAN, seed, 0.83 + 0.01 * seed, {})
    weakest = claim("weakest", "difference_to_reference",
                    against_baseline(["clean"], "smallest", [{"template": "relu_noise-{noise}-additive-0.05",
                                                             "over": {"noise": ["logistic", "gaussian"]}}]),
                    {"above": 0.0})
    result = judged(tmp_path, [weakest])["weakest"]
    assert result.single.detail == f"{GAUSSIAN_NAME} (smallest of 2; Bonferroni over the 2 candidates)"
    assert result.single.values == {0: pytest.approx(0.03), 1: pytest.approx(0.04), 2: pytest.approx(0.05)}
    assert result.single.interval.level == pytest.approx(0.975)


def test_the_worst_case_decides_and_the_reason_says_what_the_thesis_attacks_would_have_said(tmp_path):
    """Logistic beats the baseline ×2 under the thesis' FGSM; the worst case takes both to the same level."""
    for seed in (0, 1, 2):
        step = 0.005 * seed
        write_run(tmp_path, BASELINE_NAME, BASELINE, seed, 0.90, {("fgsm", 0.1, 1): 0.2 + step,
                                                                  ("worst-case", 0.1, 1): 0.1 + step})
        write_run(tmp_path, LOGISTIC_NAME, LOGISTIC, seed, 0.88, {("fgsm", 0.1, 1): 0.4 + step,
                                                                  ("fgsm", 0.1, 8): 0.4 + step,
                                                                  ("worst-case", 0.1, 8): 0.1 + step})
    ratio = claim("ratio", "ratio_to_reference", against_baseline(["fgsm eps=0.1"]), {"at_least": 1.5})
    result = judged(tmp_path, [ratio])["ratio"]
    assert (result.single.interval.estimate, result.worst_case.interval.estimate) == (
        pytest.approx(np.mean([0.4 / 0.2, 0.405 / 0.205, 0.41 / 0.21]), abs=1e-3), pytest.approx(1.0, abs=1e-3))
    assert result.verdict == FAILS
    assert result.reason == "holds against the thesis' single-draw attacks, fails against the worst case"


# --- the verdict file and table --------------------------------------------------------------------

def test_verdicts_round_trip_through_their_csv_and_the_table_shows_intervals(tmp_path):
    _gain_study(tmp_path / "study", [0.10, 0.11, 0.09])
    results = list(judged(tmp_path / "study", [GAIN, {**GAIN, "id": "gap", "measure": "ratio_to_reference",
                                                     "criterion": {"at_least": 1.5}}]).values())
    scope = StudyScope("smoke", converged=False, pipeline_check=True)
    csv_path, md_path = write_verdicts(results, tmp_path, scope)
    records = read_verdicts(csv_path)
    assert records == verdict_records(results, scope)
    table = verdict_table(records)
    assert table.header == ["claim", "thesis", "criterion", "ours: single-draw", "ours: EOT", "ours: worst case",
                            "seeds", "verdict"]
    gain = table.rows[0]
    low, high = 100 * results[0].single.interval.low, 100 * results[0].single.interval.high
    assert gain[:4] == ["gain: gain in words (5.3)", "1", "> 0 points", f"+10.0 points [{low:.1f}, {high:.1f}]"]
    assert gain[5:] == ["—", "3", HOLDS]
    assert table.rows[1][2] == "≥ ×1.5" and table.rows[1][3].startswith("×1.12 [")
    assert md_path.read_text().splitlines()[0].startswith("Pipeline check: the smoke preset")


def test_a_verdicts_file_of_another_layout_is_a_one_line_error(tmp_path):
    (tmp_path / "verdicts.csv").write_text("id,verdict\nx,reproduced\n")
    with pytest.raises(runs.RunDirError, match="not a verdicts table of this version"):
        read_verdicts(tmp_path / "verdicts.csv")


def test_the_results_command_judges_by_the_preset_the_sweep_recorded(tmp_path, capsys):
    study = _gain_study(tmp_path / "study", [0.10, 0.11, 0.09])
    (study / SWEEP_FILE).write_text(json.dumps({"preset": "quick", "preset_settings": asdict(PRESETS["quick"]),
                                                "seeds": 3, "backend": "local", "jobs": {}}))
    assert main(["results", str(study)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("The quick preset trains briefly")
    verdicts = {record.id: record.verdict for record in read_verdicts(study / "verdicts.csv")}
    assert verdicts["baseline_clean_accuracy"] == NOT_JUDGED
    assert sorted(path.name for path in study.iterdir() if path.is_file()) == [
        "results.csv", "results.md", SWEEP_FILE, "verdicts.csv", "verdicts.md"]


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
    assert gain.reason == "holds against the thesis' single-draw attacks, fails against the EOT attacks"
    assert results["stochastic_beat_baseline_under_attack"].verdict == HOLDS  # thanks to missing features


def test_a_partial_study_leaves_the_claims_that_need_missing_runs_not_measured(tmp_path):
    study = thesis_like_study(tmp_path, leave_out="sign_noise", seeds=2)
    results = evaluate_claims(load_claims(), aggregate(read_study(study)))
    [sign] = [result for result in results if result.verdict == NOT_MEASURED]
    assert sign.claim.id == "logistic_beats_gaussian_on_clean_sign"
    assert sign.single.missing == ("sign_noise-logistic-ste (no finished run)", "sign_noise-gaussian-ste (no finished run)")


def test_analyse_study_writes_results_and_verdicts(tmp_path):
    files = analyse_study(_gain_study(tmp_path / "study", [0.1, 0.1]), tmp_path / "out")
    assert [path.name for path in files] == ["results.csv", "results.md", "verdicts.csv", "verdicts.md"]
    assert all(path.parent == tmp_path / "out" for path in files)
    assert [record.id for record in read_verdicts(files.verdicts_csv)] == [claim.id for claim in load_claims()]


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


def test_a_missing_claims_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="claims file not found"):
        load_claims(tmp_path / "claims.yaml")
