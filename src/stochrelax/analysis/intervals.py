"""Confidence intervals for accuracies measured over a few seeds on a finite test set.

A study measures a training procedure (a configuration) by its accuracy on the same N test
images for each of S seeds. A seed's number is y_s = θ + τ_s + u + ε_s: the training effect τ_s,
the error u of the N images that every seed shares, and the seed × image interaction ε_s. The
mean over seeds has variance Var(τ + ε)/S + Var(u), estimated in two parts:

- **seeds** — the sample variance of the per-seed numbers, s²/S, with S − 1 degrees of freedom;
  it already holds the interaction ε. Or, where the configurations a claim compares share one
  residual variance, pooled over them (:func:`pooled_seed_variance`), with more degrees of freedom;
- **test images** — Var(u) alone: the *covariance* between seeds of a bootstrap over images
  (Efron & Tibshirani 1993) whose resamples are the same for every seed and configuration
  (:func:`shared_image_variance`). The bootstrap variance of the seed mean would count the
  interaction a second time (Var(u) + Var(ε)/S); the covariance leaves it out.

The interval is ``estimate ± √(t² · V_seed + z² · V_image)``: Student's t on the seed part,
whose variance is estimated from few seeds, and the normal quantile on the image part, which is
estimated from thousands of images (a t on both would widen the interval by up to 2× with three
seeds and no gain in coverage: ``tests/test_intervals.py`` simulates it). No interval is
narrower than the score interval of the binomial counts it rests on (:class:`BinomialFloor`):
three seeds at 0% are not proof of a true 0%. A contrast between configurations is paired image by
image, and so more precise than an unpaired binomial interval of its two arms; its floor (MOVER on
the arms' score bounds) applies only where neither seeds nor images vary at all.

Every quantity is carried as a vector ``(1 + R,)``: index 0 the number as measured, then its
value on each of R image resamples (:class:`ImageResamples`). Measures combine these vectors
elementwise (means over cells, differences), so the bootstrap follows every measure without
knowing it. Each bound has its own one-sided level, so that a pick among candidates corrects
only the bound that picking can push (:func:`pick_interval`).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

__all__ = ["LEVEL", "RESAMPLES", "POOL_TEST_ALPHA", "ImageResamples", "SeedVariance", "Arm", "BinomialFloor",
           "Interval", "shared_image_variance", "per_measure_seed_variance", "pooled_seed_variance",
           "wilson_bounds", "interval", "pick_interval"]

LEVEL = 0.95  # confidence of every interval
RESAMPLES = 2000  # bootstrap resamples of the test images
POOL_TEST_ALPHA = 0.05  # Levene's test rejecting one residual variance for the configurations compared


@dataclass
class ImageResamples:
    """Bootstrap resamples of the first N test images, shared by everything measured on them.

    Resample r draws N of the N images with replacement; the accuracy of a per-image result
    vector on it is ``counts[r] @ correct / N``. All vectors of one N are taken to be the same
    images (a study attacks the first N test images of every run), which is what pairs them.

    Args:
        resamples: R.
        seed: of the resampling, so that results are reproducible.
    """

    resamples: int = RESAMPLES
    seed: int = 0
    _counts: dict[int, np.ndarray] = field(default_factory=dict, repr=False)  # N -> (R, N) image counts

    def _counts_of(self, count: int) -> np.ndarray:
        if count not in self._counts:
            generator = np.random.default_rng([self.seed, count])
            self._counts[count] = generator.multinomial(count, np.full(count, 1.0 / count),
                                                        size=self.resamples).astype(np.float32)  # (R, N)
        return self._counts[count]

    def accuracy(self, correct: np.ndarray) -> np.ndarray:
        """``(1 + R,)``: the accuracy of per-image results ``correct`` (N,), then on each resample."""
        correct = np.asarray(correct, dtype=np.float32)
        replicates = self._counts_of(len(correct)) @ correct / len(correct)  # (R,)
        return np.concatenate([[correct.mean(dtype=np.float64)], replicates.astype(np.float64)])

    def binomial(self, accuracy: float, count: int, key: tuple) -> np.ndarray:
        """``(1 + R,)`` for an accuracy on ``count`` images whose per-image results were not kept.

        The resamples are binomial draws, unpaired with other configurations, seeded by ``key`` so that
        the same number always gets the same draws; the seeds of one configuration share a key (their
        images are the same), so that their draws move together as shared image error does.
        """
        generator = np.random.default_rng([self.seed, count, zlib.crc32(repr(key).encode())])
        replicates = generator.binomial(count, accuracy, size=self.resamples) / count
        return np.concatenate([[accuracy], replicates])


@dataclass(frozen=True)
class SeedVariance:
    """The variance of one seed's number about the procedure's mean, and how it was estimated."""

    variance: float  # σ²: the seed mean of S seeds has variance σ²/S
    df: float  # degrees of freedom of the estimate
    pooled_over: int = 1  # configurations whose residuals it pools (1: this measure's seeds alone)
    pool_p_value: float = math.nan  # Levene's test of one residual variance across them (nan: not tested)

    def df_at(self, seeds: int) -> float:
        """The degrees of freedom the same design would have with ``seeds`` seeds."""
        return max(self.pooled_over - 1, 1) * (seeds - 1)

    @property
    def source(self) -> str:
        if self.pooled_over > 1:
            return (f"seed variance pooled over {self.pooled_over} configurations ({self.df:g} df; Levene "
                    f"p = {self.pool_p_value:.2f})")
        return f"seed variance of this measure alone ({self.df:g} df)"


@dataclass(frozen=True)
class Arm:
    """One side of a measure for the binomial floor: a mean accuracy and the images × seeds it counts."""

    accuracy: float
    trials: int


@dataclass(frozen=True)
class BinomialFloor:
    """The score interval of a measure's binomial counts: one arm (an accuracy), or two arms
    combined by MOVER (Donner & Zou 2012, Newcombe 1998), as a difference or, with ``log``, a
    log ratio. An interval is never narrower than its floor."""

    first: Arm
    second: Arm | None = None  # subtracted from the first
    log: bool = False  # the measure is log(first / second)

    def bounds(self, low_level: float, high_level: float) -> tuple[float, float]:
        """The floor's low bound at one-sided confidence ``low_level`` and high bound at ``high_level``."""
        scale = _log if self.log else (lambda value: value)
        first = [scale(bound) for bound in _arm_bounds(self.first, low_level, high_level)]
        if self.second is None:
            return first[0], first[1]
        second = [scale(bound) for bound in _arm_bounds(self.second, high_level, low_level)]
        first_estimate, second_estimate = scale(self.first.accuracy), scale(self.second.accuracy)
        estimate = first_estimate - second_estimate
        with np.errstate(invalid="ignore"):
            low = estimate - math.hypot(first_estimate - first[0], second[1] - second_estimate)
            high = estimate + math.hypot(first[1] - first_estimate, second_estimate - second[0])
        return (low if math.isfinite(low) else -math.inf), (high if math.isfinite(high) else math.inf)


def _log(value: float) -> float:
    return math.log(value) if value > 0 else -math.inf


def wilson_bounds(accuracy: float, trials: int, low_level: float, high_level: float) -> tuple[float, float]:
    """Wilson's score bounds (Wilson 1927) for a binomial proportion observed as ``accuracy`` of ``trials``,
    each bound at its one-sided confidence."""
    def bound(level: float, sign: float) -> float:
        z = float(stats.norm.ppf(level))
        centre = (accuracy + z * z / (2 * trials)) / (1 + z * z / trials)
        spread = z / (1 + z * z / trials) * math.sqrt(accuracy * (1 - accuracy) / trials + z * z / (4 * trials ** 2))
        return min(max(centre + sign * spread, 0.0), 1.0)
    return bound(low_level, -1.0), bound(high_level, 1.0)


def _arm_bounds(arm: Arm, low_level: float, high_level: float) -> tuple[float, float]:
    return wilson_bounds(min(max(arm.accuracy, 0.0), 1.0), max(arm.trials, 1), low_level, high_level)


@dataclass(frozen=True)
class Interval:
    """A confidence interval for a mean over seeds, and where its width comes from."""

    estimate: float
    low: float
    high: float
    seeds: int
    seed_se: float  # standard error from the spread between seeds (nan when unknown)
    image_se: float  # standard error from the finite test set, shared by every seed
    df: float  # degrees of freedom of Student's t on the seed part (nan: unknown)
    level: float  # joint confidence of the two bounds
    low_level: float = 0.975  # one-sided confidence of the low bound
    high_level: float = 0.975  # one-sided confidence of the high bound
    seed_variance: SeedVariance | None = None  # None with one seed and nothing pooled
    floor: BinomialFloor | None = None
    log: bool = False  # the bounds were computed on the log scale and exponentiated (a ratio)

    @property
    def bounded(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)

    def with_seeds(self, seeds: int, image_factor: float = 1.0) -> "Interval":
        """The interval the same estimate would get from ``seeds`` seeds and ``image_factor`` × the images,
        by this one's variance components: what :mod:`stochrelax.analysis.power` asks of a larger study."""
        if self.seed_variance is None:
            return self
        image_variance = self.image_se ** 2 / image_factor
        centre = (math.log(self.estimate) if self.estimate > 0 else -math.inf) if self.log else self.estimate
        low, high = _bounds(centre, self.seed_variance.variance / seeds, self.seed_variance.df_at(seeds),
                            image_variance, self.low_level, self.high_level)
        if self.log:
            low, high = math.exp(low), math.exp(high)
        return Interval(self.estimate, low, high, seeds, math.sqrt(self.seed_variance.variance / seeds),
                        math.sqrt(image_variance), self.seed_variance.df_at(seeds), self.level, self.low_level,
                        self.high_level, self.seed_variance, None, self.log)


def shared_image_variance(per_seed: np.ndarray) -> float:
    """Var(u): the test-image variance that every seed shares, as the mean covariance between two
    seeds' bootstrap replicates. With mean-of-replicates variance V̄ and per-seed variances V_s,
    S² V̄ = Σ V_s + Σ_{s≠s'} C_ss', so C = (S V̄ − mean V_s)/(S − 1); with one seed, its own variance.

    Args:
        per_seed: (S, 1 + R).
    """
    replicates = np.asarray(per_seed, dtype=np.float64)[:, 1:]  # (S, R)
    seeds, count = replicates.shape
    if count < 2:
        return 0.0
    if seeds == 1:
        return float(replicates[0].var(ddof=1))
    of_mean = float(replicates.mean(axis=0).var(ddof=1))
    each = float(replicates.var(axis=1, ddof=1).mean())
    return max((seeds * of_mean - each) / (seeds - 1), 0.0)


def per_measure_seed_variance(measured: np.ndarray) -> SeedVariance | None:
    """The sample variance of a measure's per-seed numbers (S,), S − 1 df; None with one seed."""
    measured = np.asarray(measured, dtype=np.float64)
    if len(measured) < 2:
        return None
    return SeedVariance(float(measured.var(ddof=1)), len(measured) - 1)


def pooled_seed_variance(table: np.ndarray, alpha: float = POOL_TEST_ALPHA) -> SeedVariance | None:
    """One residual variance for the configurations a claim compares, or None where it does not hold.

    The per-seed numbers y_cs (C configurations × S seeds, the same seeds) follow the additive model
    y_cs = μ_c + b_s + e_cs: a seed shares its initialisation and data order across configurations
    (b_s), and the residuals e_cs have one variance σ² (a two-way analysis of variance without
    replication; Montgomery, *Design and Analysis of Experiments*, §4.1). For a contrast Σ w_c μ_c
    (Σ w_c = 0) b_s cancels, and the seed mean of the contrast has variance σ² Σw²/S with
    (C − 1)(S − 1) degrees of freedom instead of S − 1. For C = 2 it is exactly the paired
    difference's variance. The pool is refused (None) when Brown–Forsythe's version of Levene's test
    (Levene 1960; Brown & Forsythe 1974) rejects one residual variance across the configurations at
    ``alpha`` or cannot test it, and where there is nothing to pool (fewer than three configurations
    or two seeds).

    Args:
        table: (C, S).
    """
    table = np.asarray(table, dtype=np.float64)
    configurations, seeds = table.shape
    if configurations < 3 or seeds < 2 or not np.isfinite(table).all():
        return None
    residuals = table - table.mean(axis=1, keepdims=True) - table.mean(axis=0, keepdims=True) + table.mean()
    df = (configurations - 1) * (seeds - 1)
    if np.ptp(residuals) == 0:
        p_value = 1.0
    else:  # nan where every configuration's residuals lie equally far from their median: untestable, not pooled
        with np.errstate(divide="ignore", invalid="ignore"):
            p_value = float(stats.levene(*residuals, center="median").pvalue)
    if not p_value >= alpha:
        return None
    return SeedVariance(float((residuals ** 2).sum() / df), df, configurations, p_value)


def _bounds(estimate: float, seed_variance_of_mean: float, df: float, image_variance: float,
            low_level: float, high_level: float) -> tuple[float, float]:
    def half_width(level: float) -> float:
        t, z = float(stats.t.ppf(level, df)), float(stats.norm.ppf(level))
        return math.sqrt(t * t * seed_variance_of_mean + z * z * image_variance)
    return estimate - half_width(low_level), estimate + half_width(high_level)


def interval(per_seed: np.ndarray, level: float = LEVEL, *, seed_variance: SeedVariance | None = None,
             floor: BinomialFloor | None = None, low_level: float | None = None, high_level: float | None = None,
             log: bool = False) -> Interval:
    """The confidence interval of the mean over seeds.

    Args:
        per_seed: (S, 1 + R): per seed, the number as measured then on each image resample (on the log
            scale with ``log``).
        level: the joint confidence; each bound gets (1 + level)/2 unless given.
        seed_variance: a pooled seed variance (:func:`pooled_seed_variance`) scaled to this measure;
            default: this measure's own spread between seeds.
        floor: the binomial floor the interval never falls inside.
        low_level, high_level: one-sided confidences of the two bounds.
        log: the measure is a log ratio: the bounds are exponentiated.
    """
    per_seed = np.asarray(per_seed, dtype=np.float64)
    seeds = per_seed.shape[0]
    low_level = (1 + level) / 2 if low_level is None else low_level
    high_level = (1 + level) / 2 if high_level is None else high_level
    centre = float(per_seed[:, 0].mean())
    estimate = math.exp(centre) if log else centre
    image_variance = shared_image_variance(per_seed) if np.isfinite(per_seed).all() else math.nan
    spread = seed_variance or per_measure_seed_variance(per_seed[:, 0])
    if spread is None or not np.isfinite(per_seed).all():
        return Interval(estimate, -math.inf if not log else 0.0, math.inf, seeds, math.nan,
                        math.sqrt(image_variance) if math.isfinite(image_variance) else math.nan, math.nan, level,
                        low_level, high_level, None, floor, log)
    low, high = _bounds(centre, spread.variance / seeds, spread.df, image_variance, low_level, high_level)
    if floor is not None and (floor.second is None or spread.variance + image_variance == 0.0):
        floor_low, floor_high = floor.bounds(low_level, high_level)
        low, high = min(low, floor_low), max(high, floor_high)
    if log:
        low, high = math.exp(low), math.exp(high)
    return Interval(estimate, low, high, seeds, math.sqrt(spread.variance / seeds), math.sqrt(image_variance),
                    spread.df, level, low_level, high_level, spread, floor, log)


def pick_interval(candidates: dict[str, dict], largest: bool, level: float = LEVEL) -> tuple[str, Interval]:
    """The candidate with the largest (or smallest) mean, and an interval for the largest (smallest) true mean.

    For the largest of k true means θ_max: its upper bound max_i high_i needs no correction, since
    it fails only if the interval of the true best (a fixed candidate) misses high; its lower bound
    max_i low_i can be pushed up by any candidate whose interval misses low, so each low bound is
    taken at the Bonferroni level 1 − (1 − level)/(2k). The two misses add to at most 1 − level.
    The smallest is the mirror image. Picking the best of k on the same data would otherwise
    overstate it; correcting both bounds would spend power on the one picking cannot push.

    Args:
        candidates: name → keyword arguments of :func:`interval` (``per_seed`` and any others).
        largest: pick the largest mean; else the smallest.
    """
    count = len(candidates)
    plain, corrected = (1 + level) / 2, 1 - (1 - level) / (2 * count)
    low_level, high_level = (corrected, plain) if largest else (plain, corrected)
    intervals = {name: interval(level=level, low_level=low_level, high_level=high_level, **arguments)
                 for name, arguments in candidates.items()}
    choose = max if largest else min
    chosen = choose(intervals, key=lambda name: intervals[name].estimate)
    bounds = choose(i.low for i in intervals.values()), choose(i.high for i in intervals.values())
    picked = intervals[chosen]
    return chosen, Interval(picked.estimate, *bounds, picked.seeds, picked.seed_se, picked.image_se, picked.df, level,
                            low_level, high_level, picked.seed_variance, picked.floor, picked.log)
