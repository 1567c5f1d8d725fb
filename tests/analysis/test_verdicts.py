"""Verdicts on claims, by where their interval lies; the verdict file and table; the results command.

Verdicts are checked on synthetic run directories (:mod:`tests.synthetic_runs`) whose numbers
are chosen by hand.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest

from stochrelax.analysis.verdicts import (FAILS, HOLDS, INCONCLUSIVE, NOT_JUDGED, NOT_MEASURED, TOO_SMALL, StudyScope,
                                          read_verdicts, verdict_records, verdict_table, write_verdicts)
from stochrelax.cli import main
from stochrelax.rundir import layout as runs
from stochrelax.rundir.config import parse_config
from stochrelax.study.grid import PRESETS
from stochrelax.study.sweep import SWEEP_FILE
from tests.synthetic_runs import (BASELINE, BASELINE_NAME, GAIN, GAUSSIAN, GAUSSIAN_NAME, LOGISTIC, LOGISTIC_NAME,
                                  against_baseline, claim, gain_study, judged, write_run)


@pytest.mark.parametrize("differences, verdict", [
    ([0.10, 0.11, 0.09], HOLDS),  # the whole interval above 0
    ([-0.10, -0.11, -0.09], FAILS),  # the whole interval below 0
    ([0.03, -0.02, 0.01], INCONCLUSIVE),  # straddles 0
    ([0.10], INCONCLUSIVE),  # one seed: the spread between trainings is unknown
])
def test_the_verdict_follows_where_the_interval_lies(tmp_path, differences, verdict):
    result = judged(gain_study(tmp_path, differences), [GAIN])["gain"]
    assert result.verdict == verdict
    assert result.single.interval.estimate == pytest.approx(np.mean(differences), abs=1e-3)
    if len(differences) == 1:
        assert result.reason.startswith("one seed")


@pytest.mark.parametrize("differences, verdict", [
    ([0.020, 0.025, 0.030], HOLDS),  # beyond no effect
    ([0.003, 0.004, 0.005], TOO_SMALL),  # beyond no effect, and short of the 1-point margin
    ([0.001, -0.001, 0.000], FAILS),  # excludes every effect of 1 point or more
    ([0.004, 0.010, 0.016], INCONCLUSIVE),  # reaches both beyond the margin and below no effect
])
def test_a_claim_of_an_effect_fails_short_of_its_margin_and_is_too_small_between(tmp_path, differences, verdict):
    result = judged(gain_study(tmp_path, differences, seeds_images=10_000), [GAIN])["gain"]
    found = result.eot.interval
    assert result.verdict == verdict, (found.low, found.high)
    if verdict == TOO_SMALL:
        assert 0 < found.low < found.high < 0.01 and "the margin 1 point or more" in result.reason


def test_intervals_are_cut_to_where_the_true_value_can_lie(tmp_path):
    for seed, clean in enumerate([0.90, 0.99]):  # two seeds far apart: Student's t with 1 degree of freedom
        write_run(tmp_path, BASELINE_NAME, BASELINE, seed, clean, {})
    level = claim("level", "mean_accuracy", {"configuration": BASELINE_NAME, "cells": ["clean"]}, {"at_least": 0.5})
    found = judged(tmp_path, [level])["level"].single.interval
    assert (found.low, found.high) == (pytest.approx(0.945 - 12.706 * 0.045, abs=0.02), 1.0)  # not 1.52


def test_one_seed_never_gives_holds_or_fails_however_large_the_difference(tmp_path):
    results = judged(gain_study(tmp_path, [0.5]), [GAIN, {**GAIN, "id": "loss", "criterion": {"below": 0.0}}])
    assert {result.verdict for result in results.values()} == {INCONCLUSIVE}


def test_a_criterion_with_two_bounds_fails_when_the_interval_leaves_either(tmp_path):
    for seed, clean in enumerate([0.95, 0.96, 0.955]):
        write_run(tmp_path, BASELINE_NAME, BASELINE, seed, clean, {})
    level = claim("level", "mean_accuracy", {"configuration": BASELINE_NAME, "cells": ["clean"]},
                  {"at_least": 0.88, "at_most": 0.92})
    assert judged(tmp_path, [level])["level"].verdict == FAILS


def test_claims_on_missing_runs_or_cells_are_not_measured_and_name_what_is_missing(tmp_path):
    gain_study(tmp_path, [0.1, 0.1])
    results = judged(tmp_path, [
        claim("missing_cell", "mean_accuracy", {"configuration": LOGISTIC_NAME, "cells": ["fgsm eps=0.03"]},
              {"at_least": 0.5}),
        claim("missing_run", "ratio_to_reference",
              against_baseline(["clean"], candidates=["relu_noise-uniform-additive-0.05"]), {"at_least": 1.5})])
    assert results["missing_cell"].verdict == results["missing_run"].verdict == NOT_MEASURED
    assert results["missing_cell"].single.missing == (f"{LOGISTIC_NAME}: fgsm eps=0.03 (single-draw)",)
    assert results["missing_run"].eot.missing == ("relu_noise-uniform-additive-0.05 (no finished run)",)


def test_absolute_accuracy_is_not_judged_when_the_preset_does_not_converge(tmp_path):
    gain_study(tmp_path, [0.1, 0.1, 0.1])
    level = claim("level", "mean_accuracy", {"configuration": BASELINE_NAME, "cells": ["clean"]}, {"at_least": 0.7})
    quick = StudyScope("quick", converged=False)
    results = judged(tmp_path, [level, GAIN], quick)
    assert results["level"].verdict == NOT_JUDGED and "the quick preset does not train" in results["level"].reason
    assert results["gain"].verdict == HOLDS  # a difference is judged
    assert judged(tmp_path, [level])["level"].verdict == HOLDS


def test_the_worst_case_reads_each_eps_once(tmp_path):
    # FGSM and iterative FGSM at eps 0.1 both read as the worst case at 0.1: it is averaged with the
    # missing-features cell once, not twice (0.5·(0.2 + 0.6), not (0.2 + 0.2 + 0.6)/3)
    cells = ["fgsm eps=0.1", "ifgsm-ll eps=0.1", "missing p=0.3"]
    for seed in (0, 1, 2):
        numbers = {("fgsm", 0.1, 1): 0.3, ("ifgsm-ll", 0.1, 1): 0.3, ("missing", 0.3, 1): 0.6,
                   ("worst-case", 0.1, 1): 0.2}
        write_run(tmp_path, BASELINE_NAME, BASELINE, seed, 0.9, numbers)
    level = claim("level", "mean_accuracy", {"configuration": BASELINE_NAME, "cells": cells}, {"at_least": 0.1})
    result = judged(tmp_path, [level])["level"]
    assert result.worst_case.interval.estimate == pytest.approx(0.4, abs=1e-3)
    assert result.eot.interval.estimate == pytest.approx(0.4, abs=1e-3)  # (0.3 + 0.3 + 0.6)/3


def test_a_ratio_is_of_the_seed_means(tmp_path):
    for seed, (reference, candidate) in enumerate([(0.1, 0.3), (0.3, 0.3)]):
        write_run(tmp_path, BASELINE_NAME, BASELINE, seed, reference, {})
        write_run(tmp_path, LOGISTIC_NAME, LOGISTIC, seed, candidate, {})
    ratio = claim("ratio", "ratio_to_reference", against_baseline(["clean"]), {"at_least": 1.5})
    found = judged(tmp_path, [ratio])["ratio"].eot.interval
    assert found.estimate == pytest.approx(1.5, abs=1e-3)  # 0.3/0.2, not the mean of the ratios, 2
    assert found.low < 1.5 < found.high and found.low > 0


def test_a_pick_pools_the_seed_variance_of_the_configurations_it_compares_and_says_so(tmp_path):
    stds = (0.025, 0.05, 0.1)
    names = [f"relu_noise-logistic-additive-{std}" for std in stds]
    configs = [parse_config({"model": {"activation": {"kind": "relu", "noise": "logistic", "std": std}}})
               for std in stds]
    spread = np.random.default_rng(5).normal(0, 0.01, (4, 3))
    for seed in range(3):
        write_run(tmp_path, BASELINE_NAME, BASELINE, seed, 0.80 + spread[0, seed], {})
        for row, (name, config) in enumerate(zip(names, configs), start=1):
            write_run(tmp_path, name, config, seed, 0.84 + spread[row, seed], {})
    best = claim("best", "difference_to_reference", against_baseline(["clean"], "largest", names), {"above": 0.0})
    result = judged(tmp_path, [best])["best"]
    pooled = result.eot.interval.seed_variance
    assert (pooled.pooled_over, pooled.df) == (4, 6)
    assert "seed variance pooled over 4 configurations (6 df" in result.eot.detail


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
    assert result.single.detail.startswith(f"{GAUSSIAN_NAME} (smallest of 2; Bonferroni over the 2 candidates on "
                                           "the high bound, the one picking can push)")
    assert result.single.values == {0: pytest.approx(0.03), 1: pytest.approx(0.04), 2: pytest.approx(0.05)}
    found = result.single.interval
    assert (found.level, found.low_level, found.high_level) == (0.95, pytest.approx(0.975), pytest.approx(0.9875))


def test_the_claim_is_judged_on_its_attack_and_the_worst_case_gets_its_own_verdict(tmp_path):
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
    assert (result.verdict, result.reason, result.worst_case_verdict) == (HOLDS, "", FAILS)


# --- the verdict file and table --------------------------------------------------------------------

def test_verdicts_round_trip_through_their_csv_and_the_table_shows_intervals(tmp_path):
    gain_study(tmp_path / "study", [0.10, 0.11, 0.09])
    ratio = {**{key: value for key, value in GAIN.items() if key != "margin"}, "id": "gap",
             "measure": "ratio_to_reference", "criterion": {"at_least": 1.5}}
    results = list(judged(tmp_path / "study", [GAIN, ratio]).values())
    scope = StudyScope("smoke", converged=False, pipeline_check=True)
    csv_path, md_path = write_verdicts(results, tmp_path, scope)
    records = read_verdicts(csv_path)
    assert records == verdict_records(results, scope)
    table = verdict_table(records)
    assert table.header == ["claim", "thesis", "criterion", "ours: single-draw", "ours: EOT", "ours: worst case",
                            "seeds", "worst-case verdict", "verdict"]
    gain = table.rows[0]
    low, high = 100 * results[0].single.interval.low, 100 * results[0].single.interval.high
    assert gain[:4] == ["gain: gain in words (5.3)", "1", "> 0 points (margin 1 point)",
                        f"+10.0 points [{low:.1f}, {high:.1f}]"]
    assert gain[5:] == ["—", "3", NOT_MEASURED, HOLDS]
    assert table.rows[1][2] == "≥ ×1.5" and table.rows[1][3].startswith("×1.12 [")
    assert md_path.read_text().splitlines()[0].startswith("Pipeline check: the smoke preset")


def test_a_verdicts_file_of_another_layout_is_a_one_line_error(tmp_path):
    (tmp_path / "verdicts.csv").write_text("id,verdict\nx,reproduced\n")
    with pytest.raises(runs.RunDirError, match="not a verdicts table of this version"):
        read_verdicts(tmp_path / "verdicts.csv")


def test_the_results_command_judges_by_the_preset_the_sweep_recorded(tmp_path, capsys):
    study = gain_study(tmp_path / "study", [0.10, 0.11, 0.09])
    (study / SWEEP_FILE).write_text(json.dumps({"preset": "quick", "preset_settings": asdict(PRESETS["quick"]),
                                                "seeds": 3, "backend": "local", "jobs": {}}))
    assert main(["results", str(study)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("The quick preset trains briefly")
    verdicts = {record.id: record.verdict for record in read_verdicts(study / "verdicts.csv")}
    assert verdicts["baseline_clean_accuracy"] == NOT_JUDGED
    assert sorted(path.name for path in study.iterdir() if path.is_file()) == [
        "power.csv", "results.csv", "results.md", SWEEP_FILE, "verdicts.csv", "verdicts.md"]
