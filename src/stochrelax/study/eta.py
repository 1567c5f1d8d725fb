"""How long a sweep has left, from what its jobs have measured so far.

A job's time is ``epochs × seconds per epoch + seconds of attacks``, and both terms differ by
an order of magnitude between configurations (a stochastic network's attacks average over
noise draws; PGD training runs an attack per batch). So the remaining time is estimated per
job, not from the count of finished jobs:

- **measured** — the job's own configuration was measured (another seed, or epochs of this
  run already trained): its epoch time from ``metrics.jsonl``, its attack time from ``attacks.json``;
- **same kind** — else the mean of measured configurations of the same kind (:func:`job_kind`:
  unit, noise on or off, estimator, adversarial training);
- **extrapolated** — else the nearest measured kind (same unit, else any), scaled by the work
  its differences add: the noise draws of a stochastic network's predictions and EOT gradients
  (the ratio measured on another unit once one has both kinds, else a prior,
  :func:`work_factors`) and the attack passes of adversarial training. As soon as a job of
  the kind is measured, the measurement replaces the extrapolation.

The remaining time of the sweep is the makespan of the remaining work on the workers
(:func:`makespan`): jobs in progress first, then pending ones in plan order, each to the first
worker free, as the process pool hands them out.
"""

from __future__ import annotations

import heapq
import math
import statistics
from typing import Iterable, Mapping, NamedTuple, Sequence

from stochrelax.rundir.config import RunConfig

__all__ = ["Kind", "job_kind", "Cost", "Measured", "work_factors", "noise_ratios_of", "estimate", "makespan",
           "TRAINING_NOISE_FACTOR"]

TRAINING_NOISE_FACTOR = 1.5
"""Prior cost of a training epoch with noise relative to one without (a draw per unit per step); measured
1.3–2.2× for ReLU and 2.3–4.4× for sign units in the quick study, and replaced by the measurement."""


class Kind(NamedTuple):
    """What sets the cost of a job besides the preset."""

    unit: str  # relu or sign
    stochastic: bool
    estimator: str | None
    adversarial: str | None  # adversarial training method


def job_kind(config: RunConfig) -> Kind:
    """The kind of a job's configuration."""
    activation = config.model.activation
    return Kind(activation.kind, config.model.stochastic, activation.estimator, config.train.adversarial.method)


class Cost(NamedTuple):
    """Seconds per training epoch and seconds of the attacks (None: not measured)."""

    epoch_seconds: float | None = None
    attack_seconds: float | None = None


class Measured(NamedTuple):
    """What one configuration measured: its kind, config and cost."""

    kind: Kind
    config: RunConfig
    cost: Cost


def work_factors(config: RunConfig, prediction_samples: int, eot_samples: int,
                 noise_ratios: tuple[float | None, float | None] = (None, None)) -> tuple[float, float]:
    """The relative work of a job's training epoch and of its attacks, against a deterministic
    network without adversarial training.

    Noise multiplies training by ``noise_ratios[0]`` and attacks by ``noise_ratios[1]`` where those
    were measured (:func:`estimate`), else by priors: :data:`TRAINING_NOISE_FACTOR` for training; for
    attacks, whose judgements average ``prediction_samples`` draws and whose EOT gradients
    ``eot_samples`` while single-draw rows cost what a deterministic network's do, the geometric
    mean √(P·K) of the two draw counts (the quick preset measured 5–6× against √32 ≈ 5.7).
    Adversarial training adds one attack pass per batch and adversarial step.
    """
    adversarial = config.train.adversarial
    adversarial_passes = {None: 0, "fgsm_mixture": 1, "pgd": adversarial.pgd_steps}[adversarial.method]
    training_noise, attack_noise = (prior if ratio is None else ratio for ratio, prior in zip(
        noise_ratios, (TRAINING_NOISE_FACTOR, math.sqrt(prediction_samples * eot_samples))))
    stochastic = config.model.stochastic
    return (training_noise if stochastic else 1.0) * (1 + adversarial_passes), attack_noise if stochastic else 1.0


def _mean(values: Iterable[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return statistics.fmean(known) if known else None


def noise_ratios_of(measured: Mapping[str, Measured]) -> tuple[float | None, float | None]:
    """Measured cost with noise over cost without, per term: the geometric mean over units that have
    both kinds measured (without adversarial training); None where no unit has both."""
    ratios: list[tuple[float | None, float | None]] = []
    for unit in {entry.kind.unit for entry in measured.values()}:
        def mean_cost(stochastic: bool, index: int) -> float | None:
            return _mean(entry.cost[index] for entry in measured.values() if entry.kind.unit == unit
                         and entry.kind.stochastic == stochastic and entry.kind.adversarial is None)

        ratios.append(tuple(None if None in (noisy, plain) else noisy / plain
                            for noisy, plain in ((mean_cost(True, index), mean_cost(False, index))
                                                 for index in (0, 1))))
    return tuple(None if not known else math.exp(statistics.fmean(map(math.log, known)))
                 for known in ([ratio[index] for ratio in ratios if ratio[index] is not None] for index in (0, 1)))


def estimate(config: RunConfig, measured: Mapping[str, Measured], name: str, prediction_samples: int,
             eot_samples: int, noise_ratios: tuple[float | None, float | None] | None = None) -> Cost:
    """The cost of configuration ``name`` from ``measured`` (configuration name → what it measured).

    Each of the two terms comes from the first of: the configuration itself, the mean of its
    kind, the mean of its unit's kinds scaled by their relative work, the mean of every kind
    scaled. The relative work of noise is the ratio measured on another unit when one has both
    kinds measured, else the prior of :func:`work_factors`. ``noise_ratios``: that ratio when the
    caller has it (:func:`noise_ratios_of`), so that many estimates from one ``measured`` share it.
    """
    kind = job_kind(config)
    own = measured.get(name)
    noise_ratios = noise_ratios_of(measured) if noise_ratios is None else noise_ratios

    def factors(entry_config: RunConfig) -> tuple[float, float]:
        return work_factors(entry_config, prediction_samples, eot_samples, noise_ratios)

    def term(index: int) -> float | None:
        if own is not None and own.cost[index] is not None:
            return own.cost[index]
        same = _mean(entry.cost[index] for entry in measured.values() if entry.kind == kind)
        if same is not None:
            return same
        for related in (lambda entry: entry.kind.unit == kind.unit, lambda entry: True):
            scaled = _mean(entry.cost[index] / factors(entry.config)[index]
                           for entry in measured.values() if related(entry) and entry.cost[index] is not None)
            if scaled is not None:
                return scaled * factors(config)[index]
        return None

    return Cost(term(0), term(1))


def makespan(in_progress: Sequence[float], pending: Sequence[float], workers: int) -> float:
    """Seconds until the last job ends: jobs ``in_progress`` (their remaining seconds) occupy
    workers first, then each ``pending`` job, in order, goes to the first worker free."""
    free_at = sorted(in_progress)[:workers] + [0.0] * max(0, workers - len(in_progress))
    heapq.heapify(free_at)
    for seconds in [*sorted(in_progress)[workers:], *pending]:
        heapq.heappush(free_at, heapq.heappop(free_at) + seconds)
    return max(free_at, default=0.0)
