"""The power table: the seeds that would decide a claim, from the study's own variance components,
checked against the interval a study with that many seeds gets."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from stochrelax.analysis.power import MAX_SEEDS, POWER_CSV, power_markdown, power_rows, write_power
from stochrelax.analysis.verdicts import HOLDS, INCONCLUSIVE
from tests.synthetic_runs import GAIN, gain_study, judged


def test_an_inconclusive_claim_gets_the_seeds_whose_interval_would_decide_it(tmp_path):
    differences = [0.03, -0.005, 0.02]  # straddles 0 with three seeds
    result = judged(gain_study(tmp_path, differences, seeds_images=10_000), [GAIN])["gain"]
    assert result.verdict == INCONCLUSIVE
    [row] = power_rows([result])
    spread, image_variance = np.std(differences, ddof=1), result.eot.interval.image_se ** 2

    def low(seeds: int) -> float:  # Student's t on the seed part, z on the image part, S − 1 df
        return np.mean(differences) - math.sqrt(stats.t.ppf(0.975, seeds - 1) ** 2 * spread ** 2 / seeds
                                                + stats.norm.ppf(0.975) ** 2 * image_variance)
    expected = next(seeds for seeds in range(3, MAX_SEEDS + 1) if low(seeds) > 0)
    assert (row.seeds_needed, row.decides_as) == (expected, HOLDS)
    assert low(expected - 1) <= 0 < low(expected)


def test_a_decided_claim_needs_no_more_seeds_and_an_effect_of_zero_cannot_be_decided_for_holding(tmp_path):
    decided = judged(gain_study(tmp_path / "a", [0.10, 0.11, 0.09]), [GAIN])["gain"]
    [row] = power_rows([decided])
    assert (row.seeds_needed, row.decides_as, row.images_factor_needed) == (3, HOLDS, 1)
    # a true zero is decided the other way (fails: no effect of the 1-point margin), never as holding
    null = judged(gain_study(tmp_path / "b", [0.02, -0.02, 0.0], seeds_images=10_000), [GAIN])["gain"]
    [row] = power_rows([null])
    assert row.decides_as == "fails" and row.seeds_needed > 3


def test_the_power_table_is_written_and_shown(tmp_path):
    result = judged(gain_study(tmp_path, [0.03, -0.005, 0.02]), [GAIN])["gain"]
    rows = power_rows([result])
    path = write_power(rows, tmp_path)
    assert path.name == POWER_CSV and path.read_text().splitlines()[0].startswith("id,verdict,estimate,seeds")
    text = power_markdown(rows, [result])
    assert text.startswith("## What would decide each claim") and "| gain | inconclusive |" in text
