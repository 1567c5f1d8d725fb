"""Confidence intervals for accuracies measured over a few seeds on a finite test set.

A study measures a training procedure (a configuration) by its accuracy on the same N test
images for each of S seeds. The mean over seeds has two sources of error:

- **training** — the seeds differ (initialisation, data order, noise draws); estimated by the
  sample variance of the per-seed numbers, s²/S, with S − 1 degrees of freedom;
- **test images** — the N images are one sample of the distribution, shared by every seed and
  configuration; estimated by a bootstrap over images (Efron & Tibshirani 1993) whose resamples
  are the *same* for every configuration and seed measured on those images, so that a
  difference between two configurations is paired image by image.

The two variances add; the interval is ``estimate ± t · se`` with Student's t at S − 1 degrees of
freedom, those of the seed term. The image term is estimated far more precisely, but giving it
more degrees of freedom (Welch–Satterthwaite) narrows the interval exactly when the few seeds
happen to agree, and it then covers less than it claims (88% instead of 95% with three seeds in
``tests/test_claims.py``); S − 1 is conservative instead. The image term also counts a little of
the per-image noise that the seed term already holds, which errs the same way. With one seed the
training term is unknown and the interval is unbounded: one training run says nothing about how
much another would differ.

Every quantity is carried as a vector ``(1 + R,)``: index 0 the number as measured, then its
value on each of R image resamples (:class:`ImageResamples`). Measures combine these vectors
elementwise (means over cells, differences, ratios), so the bootstrap follows every measure
without knowing it. :func:`interval` turns the per-seed vectors into an :class:`Interval`.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

__all__ = ["LEVEL", "RESAMPLES", "ImageResamples", "Interval", "interval", "pick_interval"]

LEVEL = 0.95  # confidence of every interval
RESAMPLES = 2000  # bootstrap resamples of the test images


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

        The resamples are binomial draws, independent of everything else (no pairing), seeded by
        ``key`` so that the same number always gets the same draws.
        """
        generator = np.random.default_rng([self.seed, count, zlib.crc32(repr(key).encode())])
        replicates = generator.binomial(count, accuracy, size=self.resamples) / count
        return np.concatenate([[accuracy], replicates])


@dataclass(frozen=True)
class Interval:
    """A two-sided confidence interval for a mean over seeds, and where its width comes from."""

    estimate: float
    low: float
    high: float
    seeds: int
    seed_se: float  # standard error from the spread between seeds (nan with one seed)
    image_se: float  # standard error from the finite test set
    df: float  # degrees of freedom of Student's t: seeds − 1 (inf: no spread at all; nan: one seed)
    level: float  # confidence, after any correction for picking among candidates

    @property
    def bounded(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)


def interval(per_seed: np.ndarray, level: float = LEVEL) -> Interval:
    """The confidence interval of the mean over seeds.

    Args:
        per_seed: (S, 1 + R): per seed, the number as measured then on each image resample.
        level: the confidence.
    """
    per_seed = np.asarray(per_seed, dtype=np.float64)
    seeds = per_seed.shape[0]
    measured = per_seed[:, 0]  # (S,)
    estimate = float(measured.mean())
    image_se = float(per_seed[:, 1:].mean(axis=0).std(ddof=1)) if per_seed.shape[1] > 2 else 0.0
    if seeds < 2 or not np.isfinite(per_seed).all():
        return Interval(estimate, -math.inf, math.inf, seeds, math.nan, image_se, math.nan, level)
    seed_variance = float(measured.var(ddof=1)) / seeds
    variance = seed_variance + image_se ** 2
    if variance == 0.0:
        return Interval(estimate, estimate, estimate, seeds, 0.0, 0.0, math.inf, level)
    df = math.inf if seed_variance == 0.0 else seeds - 1
    half_width = float(stats.t.ppf(0.5 + level / 2, df)) * math.sqrt(variance)
    return Interval(estimate, estimate - half_width, estimate + half_width, seeds, math.sqrt(seed_variance),
                    image_se, df, level)


def pick_interval(candidates: dict[str, np.ndarray], largest: bool, level: float = LEVEL) -> tuple[str, Interval]:
    """The candidate with the largest (or smallest) mean, and an interval for the largest (smallest) true mean.

    Each of the k candidates gets a Bonferroni interval at level 1 − (1 − level)/k, so that all k
    cover together with probability ≥ ``level``; then max_i θ_i lies in [max_i low_i, max_i high_i]
    (min likewise). Picking the best of k on the same data would otherwise overstate it.

    Args:
        candidates: name → (S, 1 + R) per-seed vectors, as for :func:`interval`.
        largest: pick the largest mean; else the smallest.
    """
    corrected = 1 - (1 - level) / len(candidates)
    intervals = {name: interval(per_seed, corrected) for name, per_seed in candidates.items()}
    choose = max if largest else min
    chosen = choose(intervals, key=lambda name: intervals[name].estimate)
    bounds = choose(i.low for i in intervals.values()), choose(i.high for i in intervals.values())
    return chosen, Interval(intervals[chosen].estimate, *bounds, intervals[chosen].seeds, intervals[chosen].seed_se,
                            intervals[chosen].image_se, intervals[chosen].df, corrected)
