"""Confidence intervals over seeds and test images, against closed forms: Student's t over seeds, the
binomial standard error of one run, Bonferroni for a pick among candidates."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from stochrelax.intervals import ImageResamples, interval, pick_interval
from tests.synthetic_runs import IMAGES, nested_correct



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
