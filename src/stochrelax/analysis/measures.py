"""How a claim's number is measured on a study, with its uncertainty: units, measures and their arguments.

A measure (:data:`MEASURES`) reads the aggregated results (:mod:`stochrelax.analysis.results`) as
per-seed vectors over test-image resamples (:class:`Lookup`): a configuration's accuracy, candidates
against a reference (a difference, or a ratio of seed means on the log scale), matched pairs. Each
returns a :class:`Measurement` whose interval (:mod:`stochrelax.analysis.intervals`) counts the spread
between seeds — pooled over the configurations it compares where one residual variance fits them —
and the finite test set, paired image by image; a pick among candidates corrects the bound picking
can push. :mod:`stochrelax.analysis.claims` says which measure each claim of the thesis takes.
"""

from __future__ import annotations

import itertools
import math
import string
from dataclasses import dataclass, replace
from functools import partial
from typing import Annotated, Any, Callable, Literal, Sequence

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from stochrelax.analysis.intervals import (Arm, BinomialFloor, ImageResamples, Interval, SeedVariance, interval,
                                           pick_interval, pooled_seed_variance)
from stochrelax.analysis.results import VARIANT_NAMES, VARIANTS, Cell, ResultRow
from stochrelax.rundir.layout import unpack_correct

__all__ = ["WORST_CASE_VARIANT", "MeasureUnit", "UNITS", "Measurement", "Lookup", "read_cells", "NameGrid",
           "OneConfiguration", "AgainstReference", "MatchedPairs", "PICKS", "Measure", "MEASURES"]


WORST_CASE_VARIANT = VARIANTS[2]  # reads every L∞ attack cell as the worst case at its eps


# --- units ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MeasureUnit:
    """How a measure's numbers read: accuracy in %, a difference in points, a ratio as ×."""

    name: str
    scale: float
    decimals: int
    prefix: str = ""
    suffix: str = ""
    signed: bool = False
    bounds: tuple[float, float] = (-math.inf, math.inf)  # where the true value can lie; intervals are cut to it
    null: float | None = None  # the value of no effect (0 points, ×1); None for an absolute number
    multiplicative: bool = False  # effects are factors (a ratio): the mirror of ×1.1 is ×1/1.1

    def _shown(self, value: float) -> float:
        """``value`` in this unit, rounded as shown; + 0.0 turns a rounded −0.0 into 0.0."""
        return round(value * self.scale, self.decimals) + 0.0

    def text(self, value: float) -> str:
        return f"{self.prefix}{self._shown(value):{'+' if self.signed else ''}.{self.decimals}f}{self.suffix}"

    def threshold_text(self, value: float) -> str:
        """A criterion's threshold, shortest form: ``88%``, ``×1.5``, ``0 points``, ``1 point``."""
        suffix = self.suffix.removesuffix("s") if abs(value * self.scale) == 1 else self.suffix
        return f"{self.prefix}{value * self.scale:g}{suffix}"

    def interval_text(self, estimate: float, low: float, high: float) -> str:
        """``72.1% [68.0, 76.2]``; ``[−∞, ∞]`` for an unbounded interval."""
        def bound(value: float) -> str:
            if not math.isfinite(value):
                return "∞" if value > 0 else "−∞"
            return f"{self._shown(value):.{self.decimals}f}"
        return f"{self.text(estimate)} [{bound(low)}, {bound(high)}]"


UNITS = {unit.name: unit for unit in (
    MeasureUnit("accuracy", 100, 1, suffix="%", bounds=(0.0, 1.0)),
    MeasureUnit("points", 100, 1, suffix=" points", signed=True, bounds=(-1.0, 1.0), null=0.0),
    MeasureUnit("ratio", 1, 2, prefix="×", bounds=(0.0, math.inf), null=1.0, multiplicative=True))}


# --- measures ------------------------------------------------------------------------------------

Vectors = dict[int, np.ndarray]  # seed -> (1 + R,): as measured, then per image resample


@dataclass(frozen=True)
class Measurement:
    """A measure's value with its interval, per seed as measured, and how it was measured."""

    interval: Interval | None  # None when not measured
    values: dict[int, float]  # per seed, as measured (the picked candidate's, for a pick)
    detail: str = ""  # which candidate a pick picked, and the correction for it
    missing: tuple[str, ...] = ()  # runs or cells the measure needs and the study lacks
    unpaired: tuple[str, ...] = ()  # runs without per-image results: their test-set noise is binomial, unpaired

    @property
    def measured(self) -> bool:
        return self.interval is not None

    def within(self, bounds: tuple[float, float]) -> "Measurement":
        """The measurement with its interval cut to ``bounds``, where the true value lies (an accuracy in
        [0, 1]): the cut interval covers whenever the whole one does."""
        if self.interval is None:
            return self
        low, high = max(self.interval.low, bounds[0]), min(self.interval.high, bounds[1])
        return replace(self, interval=replace(self.interval, low=low, high=high))


def _not_measured(missing: Sequence[str]) -> Measurement:
    return Measurement(None, {}, missing=tuple(missing))


class Lookup:
    """The aggregated rows by (configuration, cell, variant), as per-seed vectors over image resamples."""

    def __init__(self, rows: Sequence[ResultRow], resamples: ImageResamples) -> None:
        self.rows = {(row.configuration, row.cell, row.variant): row for row in rows}
        self.configurations = frozenset(row.configuration for row in rows)
        self.resamples = resamples
        self._cache: dict[tuple, Vectors] = {}
        self._unpaired: dict[str, set[int]] = {}  # configuration -> seeds read without per-image results

    def _vectors(self, row: ResultRow) -> Vectors:
        key = (row.configuration, row.cell, row.variant)
        if key not in self._cache:
            vectors = {}
            for seed, accuracy in row.values.items():
                examples, correct = row.per_image.get(seed, (0, None))
                if correct is not None:
                    vectors[seed] = self.resamples.accuracy(unpack_correct(correct, examples))
                else:
                    self._unpaired.setdefault(row.configuration, set()).add(seed)
                    key_of_draws = (row.configuration, str(row.cell), row.variant)  # the same images every seed
                    vectors[seed] = self.resamples.binomial(accuracy, max(examples, 1), key_of_draws)
            self._cache[key] = vectors
        return self._cache[key]

    def unpaired(self, configurations: Sequence[str]) -> tuple[str, ...]:
        """Runs among ``configurations`` read without per-image results."""
        return tuple(f"{name} seed {seed}" for name in sorted(set(configurations))
                     for seed in sorted(self._unpaired.get(name, ())))

    def images(self, configuration: str, cells: Sequence[Cell], variant: str) -> int:
        """The fewest test images any of ``cells`` was measured on (at least 1)."""
        return max(min(self.rows[(configuration, cell, variant)].examples for cell in read_cells(cells, variant)), 1)

    def seed_vectors(self, configuration: str, cells: Sequence[Cell], variant: str) -> tuple[Vectors, list[str]]:
        """Per seed, the mean over ``cells`` as a vector (each read once, :func:`read_cells`); or what is missing."""
        cells = read_cells(cells, variant)
        if configuration not in self.configurations:
            return {}, [f"{configuration} (no finished run)"]
        missing = [f"{configuration}: {cell} ({VARIANT_NAMES[variant]})" for cell in cells
                   if (configuration, cell, variant) not in self.rows]
        if missing:
            return {}, missing
        per_cell = [self._vectors(self.rows[(configuration, cell, variant)]) for cell in cells]
        seeds = sorted(set.intersection(*(set(vectors) for vectors in per_cell)))
        if not seeds:
            return {}, [f"{configuration}: no seed has every one of {', '.join(map(str, cells))}"]
        return {seed: np.mean([vectors[seed] for vectors in per_cell], axis=0) for seed in seeds}, []


def read_cells(cells: Sequence[Cell], variant: str) -> tuple[Cell, ...]:
    """The cells a variant reads, each number once: the worst case reads every L∞ attack's cell at one eps
    as the same worst case, so that FGSM and iterative FGSM at eps 0.07 count it once, not twice."""
    if variant != WORST_CASE_VARIANT:
        return tuple(cells)
    readings = {(cell.budget_name, cell.budget) if cell.budget_name == "eps" else cell: cell for cell in cells}
    return tuple(dict.fromkeys(readings.values()))


def _on_seeds(vectors: Vectors, seeds: Sequence[int]) -> np.ndarray:
    return np.stack([vectors[seed] for seed in seeds])  # (S, 1 + R)


def _log_linearized(per_seed: np.ndarray, trials: int) -> np.ndarray:
    """(S, 1 + R) accuracies → their linearization about the log of their seed mean ȳ (the delta method):
    log ȳ + (y − ȳ)/ȳ, whose seed mean is log ȳ exactly, so that a ratio of means is a difference of
    logs. A mean of 0 is taken as half an image of the ``trials`` counted, so that the log is finite."""
    mean = float(per_seed[:, 0].mean())
    scale = max(mean, 0.5 / max(trials, 1))
    return math.log(scale) + (per_seed - mean) / scale


@dataclass(frozen=True)
class _Comparison:
    """Configurations on the seeds they share, with what a contrast between them needs."""

    per_seed: dict[str, np.ndarray]  # configuration -> (S, 1 + R), on the measure's scale
    measured: dict[str, np.ndarray]  # configuration -> (S,) accuracies as measured
    accuracies: dict[str, float]  # configuration -> seed-mean accuracy (for the binomial floor)
    trials: int  # images × seeds behind each configuration's mean
    seeds: tuple[int, ...]

    def pooled(self, weights_squared: float) -> SeedVariance | None:
        """The pooled seed variance of a contrast whose weights' squares sum to ``weights_squared``."""
        table = np.stack([values[:, 0] for values in self.per_seed.values()])  # (C, S)
        pooled = pooled_seed_variance(table)
        return None if pooled is None else replace(pooled, variance=pooled.variance * weights_squared)


def _comparison(lookup: "Lookup", names: Sequence[str], cells: Sequence[Cell], variant: str, log: bool
                ) -> tuple[_Comparison | None, list[str]]:
    vectors, missing = {}, []
    for name in dict.fromkeys(names):
        vectors[name], lacking = lookup.seed_vectors(name, cells, variant)
        missing += lacking
    if missing:
        return None, missing
    seeds = tuple(sorted(set.intersection(*(set(found) for found in vectors.values()))))
    if not seeds:
        return None, [f"no seed in common among {', '.join(vectors)}"]
    trials = min(lookup.images(name, cells, variant) for name in vectors) * len(seeds)
    per_seed = {name: _on_seeds(found, seeds) for name, found in vectors.items()}
    measured = {name: values[:, 0] for name, values in per_seed.items()}
    accuracies = {name: float(values.mean()) for name, values in measured.items()}
    if log:
        per_seed = {name: _log_linearized(values, trials) for name, values in per_seed.items()}
    return _Comparison(per_seed, measured, accuracies, trials, seeds), []


# Arguments of the measures, validated when claims.yaml is read.

def _cells_from_texts(texts: Any) -> Any:
    return tuple(Cell.parse(text) for text in texts) if isinstance(texts, list) else texts


def _name_grids_from_texts(entries: Any) -> Any:
    if not isinstance(entries, list):
        return entries
    return [{"template": entry} if isinstance(entry, str) else entry for entry in entries]


Cells = Annotated[tuple[Cell, ...], BeforeValidator(_cells_from_texts), Field(min_length=1)]
AxisValues = dict[str, Annotated[list[str | int | float], Field(min_length=1)]]


def _placeholders(template: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(template) if field}


def _combinations(over: AxisValues) -> list[dict[str, str]]:
    return [dict(zip(over, map(str, values))) for values in itertools.product(*over.values())]


def _check_placeholders(templates: Sequence[str], over: AxisValues) -> None:
    for template in templates:
        if _placeholders(template) != set(over):
            raise ValueError(f"{template!r} has placeholders {sorted(_placeholders(template))} but 'over' gives "
                             f"{sorted(over)}; they must be the same")


class _Arguments(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NameGrid(_Arguments):
    """Configuration names: ``template`` filled with every combination of the values in ``over``,
    e.g. ``relu_noise-logistic-{mode}-{std}`` over modes and stds. A plain name has no placeholders."""

    template: str
    over: AxisValues = {}

    @model_validator(mode="after")
    def _same_placeholders(self) -> "NameGrid":
        _check_placeholders([self.template], self.over)
        return self

    def names(self) -> list[str]:
        return [self.template.format(**values) for values in _combinations(self.over)]

    def configurations(self) -> list[str]:
        return self.names()


Names = Annotated[list[NameGrid], BeforeValidator(_name_grids_from_texts), Field(min_length=1)]


class OneConfiguration(_Arguments):
    """A configuration's accuracy, averaged over ``cells``."""

    configuration: str
    cells: Cells

    def configurations(self) -> list[str]:
        return [self.configuration]


PICKS = ("smallest", "largest")  # which candidate a claim is about


class AgainstReference(_Arguments):
    """Each candidate configuration against a reference, per seed, averaged over ``cells``; the
    claim is about the candidate whose mean is ``pick`` (e.g. the best stochastic model)."""

    candidates: Names
    reference: str
    cells: Cells
    pick: Literal[PICKS]

    def candidate_names(self) -> list[str]:
        return [name for grid in self.candidates for name in grid.names()]

    def configurations(self) -> list[str]:
        return [*self.candidate_names(), self.reference]


class MatchedPairs(_Arguments):
    """``better`` minus ``worse`` for every combination of ``over`` (both templates take the same
    placeholders), per seed, averaged over ``cells`` and then over the pairs."""

    better: str
    worse: str
    over: AxisValues = {}
    cells: Cells

    @model_validator(mode="after")
    def _same_placeholders(self) -> "MatchedPairs":
        _check_placeholders([self.better, self.worse], self.over)
        return self

    def pairs(self) -> list[tuple[str, str]]:
        """(better, worse) names, one pair per combination of ``over``."""
        return [(self.better.format(**values), self.worse.format(**values)) for values in _combinations(self.over)]

    def configurations(self) -> list[str]:
        return [name for pair in self.pairs() for name in pair]


def _mean_accuracy(lookup: Lookup, variant: str, arguments: OneConfiguration, level: float) -> Measurement:
    found, missing = _comparison(lookup, arguments.configurations(), arguments.cells, variant, log=False)
    if missing:
        return _not_measured(missing)
    per_seed = found.per_seed[arguments.configuration]
    floor = BinomialFloor(Arm(found.accuracies[arguments.configuration], found.trials))
    return Measurement(interval(per_seed, level, floor=floor), dict(zip(found.seeds, map(float, per_seed[:, 0]))),
                       unpaired=lookup.unpaired([arguments.configuration]))


def _against_reference(lookup: Lookup, variant: str, arguments: AgainstReference, level: float, ratio: bool
                       ) -> Measurement:
    """Each candidate minus the reference (a difference), or log candidate minus log reference (the log of
    a ratio of seed means, by the delta method); a pick among several candidates."""
    names = arguments.candidate_names()
    found, missing = _comparison(lookup, arguments.configurations(), arguments.cells, variant, log=ratio)
    if missing:
        return _not_measured(missing)
    reference = arguments.reference
    pooled = found.pooled(weights_squared=2.0) if len(names) > 1 else None
    candidates = {name: {"per_seed": found.per_seed[name] - found.per_seed[reference], "seed_variance": pooled,
                         "log": ratio,
                         "floor": BinomialFloor(Arm(found.accuracies[name], found.trials),
                                                Arm(found.accuracies[reference], found.trials), log=ratio)}
                  for name in names}
    unpaired = lookup.unpaired(arguments.configurations())
    if len(names) == 1:
        chosen, result, detail = names[0], interval(level=level, **candidates[names[0]]), ""
    else:
        chosen, result = pick_interval(candidates, largest=arguments.pick == "largest", level=level)
        side = "low" if arguments.pick == "largest" else "high"
        detail = (f"{chosen} ({arguments.pick} of {len(names)}; Bonferroni over the {len(names)} candidates "
                  f"on the {side} bound, the one picking can push)")
    value, against = found.measured[chosen], found.measured[reference]
    with np.errstate(divide="ignore", invalid="ignore"):
        values = value / against if ratio else value - against
    return Measurement(result, dict(zip(found.seeds, map(float, values))), _with_source(detail, result),
                       unpaired=unpaired)


def _matched_difference(lookup: Lookup, variant: str, arguments: MatchedPairs, level: float) -> Measurement:
    pairs = arguments.pairs()
    found, missing = _comparison(lookup, arguments.configurations(), arguments.cells, variant, log=False)
    if missing:
        return _not_measured(missing)
    per_seed = np.mean([found.per_seed[better] - found.per_seed[worse] for better, worse in pairs], axis=0)
    better_accuracy = float(np.mean([found.accuracies[better] for better, _ in pairs]))
    worse_accuracy = float(np.mean([found.accuracies[worse] for _, worse in pairs]))
    result = interval(per_seed, level, seed_variance=found.pooled(weights_squared=2.0 / len(pairs)),
                      floor=BinomialFloor(Arm(better_accuracy, found.trials), Arm(worse_accuracy, found.trials)))
    detail = f"mean over {len(pairs)} pairs" if len(pairs) > 1 else ""
    return Measurement(result, dict(zip(found.seeds, map(float, per_seed[:, 0]))), _with_source(detail, result),
                       unpaired=lookup.unpaired(arguments.configurations()))


def _with_source(detail: str, result: Interval) -> str:
    """A measure's detail, and where its seed variance came from when it was pooled."""
    if result.seed_variance is None or result.seed_variance.pooled_over == 1:
        return detail
    return "; ".join(filter(None, [detail, result.seed_variance.source]))

@dataclass(frozen=True)
class Measure:
    """A measure a claim names: its arguments' schema, how it is computed, its unit, and whether
    it is an absolute accuracy (judged only after training that converges)."""

    arguments: type[BaseModel]
    evaluate: Callable[[Lookup, str, Any, float], Measurement]  # (lookup, variant, arguments, level)
    unit: MeasureUnit
    absolute: bool = False


MEASURES: dict[str, Measure] = {
    "mean_accuracy": Measure(OneConfiguration, _mean_accuracy, UNITS["accuracy"], absolute=True),
    # candidate minus reference, and candidate over reference (a ratio of seed means, on the log scale)
    "difference_to_reference": Measure(AgainstReference, partial(_against_reference, ratio=False), UNITS["points"]),
    "ratio_to_reference": Measure(AgainstReference, partial(_against_reference, ratio=True), UNITS["ratio"]),
    "matched_difference": Measure(MatchedPairs, _matched_difference, UNITS["points"]),
}
