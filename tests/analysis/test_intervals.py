"""Confidence intervals over seeds and test images, against closed forms and simulations: Student's t
over seeds, the binomial standard error of one run, the image variance that seeds share (the
interaction counted once), Wilson's score bounds against scipy, the binomial floor, the pooled seed
variance against a least-squares fit, and one-sided Bonferroni for a pick, by its coverage."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from stochrelax.analysis.intervals import (Arm, BinomialFloor, ImageResamples, interval, pick_interval,
                                           pooled_seed_variance, shared_image_variance, wilson_bounds)
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


def _seeds_on_images(generator: np.random.Generator, seeds: int, images: int) -> tuple[np.ndarray, np.ndarray]:
    """Image i has true accuracy p_i ~ Beta(2, 1); each seed gets it right with probability p_i on its own."""
    probability = generator.beta(2.0, 1.0, images)
    correct = generator.random((seeds, images)) < probability  # (S, N)
    return probability, correct


def test_the_image_variance_seeds_share_counts_the_seed_by_image_interaction_once():
    # Var(u) = Var(p_i)/N is what the seeds share; the bootstrap of their mean adds E[p(1-p)]/(S N).
    generator = np.random.default_rng(7)
    seeds, images = 3, 2000
    probability, correct = _seeds_on_images(generator, seeds, images)
    resamples = ImageResamples(resamples=3000, seed=1)
    per_seed = np.stack([resamples.accuracy(row) for row in correct])  # (S, 1 + R)
    shared = probability.var() / images
    interaction = (probability * (1 - probability)).mean() / (seeds * images)
    assert shared_image_variance(per_seed) == pytest.approx(shared, rel=0.15)
    assert per_seed[:, 1:].mean(axis=0).var() == pytest.approx(shared + interaction, rel=0.15)
    assert interaction > 0.3 * shared  # large enough that counting it twice would fail the first check


def test_t_multiplies_only_the_seed_part_of_the_variance():
    per_seed = np.array([[0.80, 0.79, 0.81, 0.80], [0.84, 0.83, 0.85, 0.84], [0.86, 0.85, 0.87, 0.86]])
    found = interval(per_seed)
    seed_variance, image_variance = per_seed[:, 0].var(ddof=1) / 3, shared_image_variance(per_seed)
    half_width = math.sqrt(stats.t.ppf(0.975, 2) ** 2 * seed_variance + stats.norm.ppf(0.975) ** 2 * image_variance)
    assert found.high - found.estimate == pytest.approx(half_width)
    assert found.image_se == pytest.approx(math.sqrt(image_variance)) and image_variance > 0


@pytest.mark.parametrize("successes, trials", [(0, 600), (7, 600), (300, 600), (600, 600), (1, 12)])
def test_wilson_bounds_match_scipy(successes, trials):
    expected = stats.binomtest(successes, trials).proportion_ci(confidence_level=0.95, method="wilson")
    low, high = wilson_bounds(successes / trials, trials, 0.975, 0.975)
    assert (low, high) == (pytest.approx(expected.low, abs=1e-12), pytest.approx(expected.high, abs=1e-12))


def test_three_seeds_at_zero_percent_get_the_binomial_floor_not_a_point():
    per_seed = np.zeros((3, 101))  # every seed 0 of 200 right, on every resample
    found = interval(per_seed, floor=BinomialFloor(Arm(0.0, 600)))
    expected = stats.binomtest(0, 600).proportion_ci(confidence_level=0.95, method="wilson")
    assert found.low == pytest.approx(0.0, abs=1e-12) and found.high == pytest.approx(expected.high)
    assert 0.004 < found.high < 0.007


def test_a_floor_of_two_arms_is_newcombes_hybrid_score_interval():
    # Newcombe (1998), method 10, on his example 56/70 against 48/80 (Table II: 0.0524 to 0.3339)
    floor = BinomialFloor(Arm(56 / 70, 70), Arm(48 / 80, 80))
    low, high = floor.bounds(0.975, 0.975)
    assert (low, high) == (pytest.approx(0.0524, abs=5e-4), pytest.approx(0.3339, abs=5e-4))


def test_the_floor_does_not_bind_where_the_seeds_spread():
    per_seed = np.array([[0.80], [0.84], [0.86]])
    floored, plain = interval(per_seed, floor=BinomialFloor(Arm(0.833, 3000))), interval(per_seed)
    assert (floored.low, floored.high) == (plain.low, plain.high)


def _least_squares_residual_variance(table: np.ndarray) -> float:
    """σ² of y_cs = μ_c + b_s + e_cs by an explicit least-squares fit on a dummy design."""
    configurations, seeds = table.shape
    design = np.concatenate([np.kron(np.eye(configurations), np.ones((seeds, 1))),
                             np.kron(np.ones((configurations, 1)), np.eye(seeds))[:, 1:]], axis=1)
    coefficients, *_ = np.linalg.lstsq(design, table.reshape(-1), rcond=None)
    residuals = table.reshape(-1) - design @ coefficients
    return float(residuals @ residuals / (table.size - np.linalg.matrix_rank(design)))


def test_the_pooled_seed_variance_is_the_two_way_residual_variance():
    generator = np.random.default_rng(3)
    table = generator.normal(0.8, 0.01, (6, 1)) + generator.normal(0, 0.02, (1, 3)) + generator.normal(0, 0.01, (6, 3))
    pooled = pooled_seed_variance(table)
    assert pooled.variance == pytest.approx(_least_squares_residual_variance(table))
    assert (pooled.df, pooled.pooled_over) == (10, 6)
    assert pooled.df_at(6) == 25


def test_the_pool_is_refused_when_one_configuration_spreads_far_more():
    generator = np.random.default_rng(4)
    table = generator.normal(0.0, 0.01, (6, 12))
    table[0] *= 20
    assert pooled_seed_variance(table) is None
    assert pooled_seed_variance(generator.normal(0.0, 0.01, (2, 12))) is None  # nothing to pool


def test_a_pick_corrects_only_the_bound_that_picking_can_push():
    candidates = {"a": np.array([[0.50], [0.54], [0.52]]), "b": np.array([[0.56], [0.50], [0.53]])}
    chosen, found = pick_interval({name: {"per_seed": values} for name, values in candidates.items()}, largest=True)
    def bound(values, level, sign):
        return values.mean() + sign * stats.t.ppf(level, 2) * stats.sem(values[:, 0])
    assert chosen == "b" and found.estimate == pytest.approx(0.53)
    assert found.low == pytest.approx(max(bound(values, 1 - 0.05 / 4, -1) for values in candidates.values()))
    assert found.high == pytest.approx(max(bound(values, 0.975, 1) for values in candidates.values()))
    assert (found.low_level, found.high_level) == (pytest.approx(1 - 0.05 / 4), pytest.approx(0.975))


@pytest.mark.parametrize("largest", [True, False])
@pytest.mark.parametrize("lead", [0.0, 8.0])
def test_a_pick_among_six_candidates_covers_the_best_true_mean_95_to_98_percent_of_the_time(largest, lead):
    # Three seeds of unit spread per candidate. All six equal (lead 0): picking pushes the bound most;
    # uncorrected it would cover about 86%. One far ahead (lead 8): only the true best's own interval is
    # in play; correcting both bounds would cover about 99.2%, spending power on the bound picking cannot push.
    generator = np.random.default_rng(11)
    trials, covered = 2000, 0
    truth = np.array([lead if largest else -lead, 0, 0, 0, 0, 0.0])
    for _ in range(trials):
        values = truth[:, None, None] + generator.normal(0.0, 1.0, (6, 3, 1))
        _, found = pick_interval({str(k): {"per_seed": values[k]} for k in range(6)}, largest=largest)
        best = truth.max() if largest else truth.min()
        covered += found.low <= best <= found.high
    assert 0.95 * trials <= covered <= 0.985 * trials


def test_one_seed_gives_an_unbounded_interval():
    found = interval(np.array([[0.8, 0.79, 0.81]]))
    assert not found.bounded and (found.low, found.high) == (-math.inf, math.inf)


def test_a_log_interval_is_exponentiated_and_positive():
    per_seed = np.log(np.array([[1.6], [1.7], [1.8]]))
    found = interval(per_seed, log=True)
    centre, spread = per_seed.mean(), stats.t.ppf(0.975, 2) * stats.sem(per_seed[:, 0])
    assert (found.low, found.estimate, found.high) == (pytest.approx(math.exp(centre - spread)),
                                                      pytest.approx(math.exp(centre)),
                                                      pytest.approx(math.exp(centre + spread)))
