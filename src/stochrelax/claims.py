"""The thesis' claims as data, and how each is measured on a study with its uncertainty.

A claim (packaged ``claims.yaml``, :func:`load_claims`) names a *measure* (:data:`MEASURES`:
a configuration's accuracy, candidates against a reference, matched pairs) over cells of the
aggregated results (:mod:`stochrelax.results`), and a *criterion* on it (≥, ≤, >, < a
threshold). Each claim is measured three times (:func:`measure_claims`), with single-draw
attacks (the thesis' setting), with EOT attacks, and against the adaptive per-example worst case.

Every measurement carries a 95% confidence interval for the training procedure's true value
that counts both sources of noise — the spread between seeds and the finite test set, paired
image by image between configurations (:mod:`stochrelax.intervals`). A measure that compares
configurations pools their seed variance where one residual variance fits them all, and a
claim that picks one of k candidates ("the best logistic network") corrects the bound that
picking can push. A claim of "an effect" has a margin, the smallest effect worth claiming, so
that it can fail. :mod:`stochrelax.verdicts` judges each claim by them.
"""

from __future__ import annotations

import itertools
import math
import operator
import string
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Sequence

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from stochrelax.config import ConfigError, check_keys, read_yaml, validation_message
from stochrelax.intervals import (LEVEL, Arm, BinomialFloor, ImageResamples, Interval, SeedVariance, interval,
                                  pick_interval, pooled_seed_variance)
from stochrelax.results import VARIANT_NAMES, VARIANTS, Cell, ResultRow
from stochrelax.runs import unpack_correct

__all__ = ["ClaimsError", "Unit", "UNITS", "Measurement", "Measure", "MEASURES", "COMPARISONS", "NameGrid",
           "OneConfiguration", "AgainstReference", "MatchedPairs", "Claim", "CLAIMS_FILE", "parse_claims",
           "load_claims", "measure_claims"]


WORST_CASE_VARIANT = VARIANTS[2]  # reads every L∞ attack cell as the worst case at its eps


class ClaimsError(ConfigError):
    """A claims file that cannot be used; the message is one line naming the claim."""


# --- units ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Unit:
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

    def text(self, value: float) -> str:
        return f"{self.prefix}{value * self.scale:{'+' if self.signed else ''}.{self.decimals}f}{self.suffix}"

    def threshold_text(self, value: float) -> str:
        """A criterion's threshold, shortest form: ``88%``, ``×1.5``, ``0 points``, ``1 point``."""
        suffix = self.suffix.removesuffix("s") if abs(value * self.scale) == 1 else self.suffix
        return f"{self.prefix}{value * self.scale:g}{suffix}"

    def interval_text(self, estimate: float, low: float, high: float) -> str:
        """``72.1% [68.0, 76.2]``; ``[−∞, ∞]`` for an unbounded interval."""
        def bound(value: float) -> str:
            if not math.isfinite(value):
                return "∞" if value > 0 else "−∞"
            return f"{value * self.scale:.{self.decimals}f}"
        return f"{self.text(estimate)} [{bound(low)}, {bound(high)}]"


UNITS = {unit.name: unit for unit in (Unit("accuracy", 100, 1, suffix="%", bounds=(0.0, 1.0)),
                                      Unit("points", 100, 1, suffix=" points", signed=True, bounds=(-1.0, 1.0),
                                           null=0.0),
                                      Unit("ratio", 1, 2, prefix="×", bounds=(0.0, math.inf), null=1.0,
                                           multiplicative=True))}


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


class _Lookup:
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


def _comparison(lookup: "_Lookup", names: Sequence[str], cells: Sequence[Cell], variant: str, log: bool
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


def _mean_accuracy(lookup: _Lookup, variant: str, arguments: OneConfiguration, level: float) -> Measurement:
    found, missing = _comparison(lookup, arguments.configurations(), arguments.cells, variant, log=False)
    if missing:
        return _not_measured(missing)
    per_seed = found.per_seed[arguments.configuration]
    floor = BinomialFloor(Arm(found.accuracies[arguments.configuration], found.trials))
    return Measurement(interval(per_seed, level, floor=floor), dict(zip(found.seeds, map(float, per_seed[:, 0]))),
                       unpaired=lookup.unpaired([arguments.configuration]))


def _against_reference(lookup: _Lookup, variant: str, arguments: AgainstReference, level: float, ratio: bool
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


def _matched_difference(lookup: _Lookup, variant: str, arguments: MatchedPairs, level: float) -> Measurement:
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
    evaluate: Callable[[_Lookup, str, Any, float], Measurement]  # (lookup, variant, arguments, level)
    unit: Unit
    absolute: bool = False


MEASURES: dict[str, Measure] = {
    "mean_accuracy": Measure(OneConfiguration, _mean_accuracy, UNITS["accuracy"], absolute=True),
    # candidate minus reference, and candidate over reference (a ratio of seed means, on the log scale)
    "difference_to_reference": Measure(AgainstReference, partial(_against_reference, ratio=False), UNITS["points"]),
    "ratio_to_reference": Measure(AgainstReference, partial(_against_reference, ratio=True), UNITS["ratio"]),
    "matched_difference": Measure(MatchedPairs, _matched_difference, UNITS["points"]),
}

_TOWARD_LARGER = ("at_least", "above")  # criteria claiming a larger value
COMPARISONS: dict[str, tuple[Callable[[float, float], bool], str]] = {
    "at_least": (operator.ge, "≥"), "at_most": (operator.le, "≤"), "above": (operator.gt, ">"),
    "below": (operator.lt, "<"),
}


# --- claims ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Claim:
    """A claim of the thesis and how to check it: a measure and a criterion on its true value."""

    id: str
    text: str  # the claim in words
    where: str  # where the thesis states it
    thesis: str  # the thesis' number
    measure: str  # a key of MEASURES
    arguments: BaseModel  # the measure's validated arguments
    criterion: dict[str, float]  # COMPARISONS key → threshold; all must hold
    margin: float | None = None  # the smallest effect worth claiming, where a threshold is the null
    margin_reason: str = ""

    @property
    def unit(self) -> Unit:
        return MEASURES[self.measure].unit

    @property
    def absolute(self) -> bool:
        return MEASURES[self.measure].absolute

    @property
    def configurations(self) -> tuple[str, ...]:
        """The configurations its measure reads, each once."""
        return tuple(dict.fromkeys(self.arguments.configurations()))

    def criterion_text(self) -> str:
        text = " and ".join(f"{COMPARISONS[name][1]} {self.unit.threshold_text(threshold)}"
                            for name, threshold in self.criterion.items())
        return text if self.margin is None else f"{text} (margin {self.unit.threshold_text(self.margin)})"

    def fail_boundary(self, name: str, threshold: float) -> float:
        """Where a criterion part fails: the interval must lie wholly short of it. A threshold at the null
        (no effect) fails short of the margin instead: an effect too small to matter is no effect claimed."""
        if self.margin is None or threshold != self.unit.null:
            return threshold
        if name in _TOWARD_LARGER:
            return self.margin
        return self.unit.null ** 2 / self.margin if self.unit.multiplicative else 2 * self.unit.null - self.margin


class _Margin(BaseModel):
    model_config = ConfigDict(extra="forbid")

    size: float  # in the measure's unit: 0.01 = 1 point, 1.1 = ×1.1
    reason: str = Field(min_length=1)


class _ClaimEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    claim: str
    where: str
    thesis: str
    measure: str
    arguments: dict[str, Any]
    criterion: dict[Literal[tuple(COMPARISONS)], float] = Field(min_length=1)
    margin: _Margin | None = None



CLAIMS_FILE = Path(__file__).with_name("claims.yaml")
CLAIMS_FILE_KEYS = ("claims", "definitions")  # definitions: YAML anchors (cell lists) the claims refer to


def _check_margin(entry: _ClaimEntry, unit: Unit, where: str) -> None:
    """A comparison whose threshold is the null (no effect) needs a margin beyond the null, else an
    effect near zero could never be decided."""
    at_null = unit.null is not None and unit.null in entry.criterion.values()
    if at_null and entry.margin is None:
        raise ClaimsError(f"{where}: a threshold at {unit.threshold_text(unit.null)} (no effect) needs a margin: "
                          f"'margin: {{size: ..., reason: ...}}', the smallest effect worth claiming")
    if entry.margin is not None and not at_null:
        raise ClaimsError(f"{where}: a margin applies only to a threshold at {unit.threshold_text(unit.null)} "
                          "(no effect)" if unit.null is not None else f"{where}: an absolute measure takes no margin")
    if entry.margin is not None and not entry.margin.size > unit.null:
        raise ClaimsError(f"{where}: margin size {entry.margin.size:g} must lie beyond "
                          f"{unit.null:g}, the value of no effect")


def parse_claims(raw: Any, source: str = "claims") -> list[Claim]:
    """Validates a claims mapping (parsed YAML, see ``claims.yaml``) into claims.

    Raises:
        ClaimsError: one line naming the file, the claim and what is wrong with it.
    """
    if not isinstance(raw, dict) or not isinstance(raw.get("claims"), list) or not raw["claims"]:
        raise ClaimsError(f"{source}: expected a mapping with a non-empty list 'claims'")
    check_keys(raw, CLAIMS_FILE_KEYS, source, ClaimsError)
    claims: dict[str, Claim] = {}
    for position, entry in enumerate(raw["claims"], start=1):
        label = entry.get("id") if isinstance(entry, dict) and entry.get("id") else f"#{position}"
        where = f"{source}: claim {label}"
        if not isinstance(entry, dict):
            raise ClaimsError(f"{where}: expected a mapping with keys {', '.join(_ClaimEntry.model_fields)}")
        try:
            parsed = _ClaimEntry.model_validate(entry)
        except ValidationError as error:
            raise ClaimsError(f"{where}: {validation_message(error, _ClaimEntry)}") from None
        if parsed.measure not in MEASURES:
            raise ClaimsError(f"{where}: unknown measure {parsed.measure!r}; valid: {', '.join(MEASURES)}")
        try:
            arguments = MEASURES[parsed.measure].arguments.model_validate(parsed.arguments)
        except ValidationError as error:
            raise ClaimsError(f"{where}: arguments of {parsed.measure}: "
                              f"{validation_message(error, MEASURES[parsed.measure].arguments)}") from None
        if parsed.id in claims:
            raise ClaimsError(f"{where}: the id occurs twice")
        _check_margin(parsed, MEASURES[parsed.measure].unit, where)
        claims[parsed.id] = Claim(parsed.id, parsed.claim, parsed.where, parsed.thesis, parsed.measure, arguments,
                                  dict(parsed.criterion), parsed.margin.size if parsed.margin else None,
                                  parsed.margin.reason if parsed.margin else "")
    return list(claims.values())


def load_claims(path: str | Path = CLAIMS_FILE) -> list[Claim]:
    """Reads and validates a claims file; by default the thesis' claims shipped with the package.

    Raises:
        ConfigError: if the file is missing or not YAML; ClaimsError if a claim is malformed.
    """
    return parse_claims(read_yaml(path, kind="claims"), source=str(path))


def measure_claims(claims: Sequence[Claim], rows: Sequence[ResultRow], resamples: ImageResamples | None = None,
                   level: float = LEVEL) -> list[tuple[Measurement, Measurement, Measurement]]:
    """Every claim's measure on the aggregated rows, once per attack variant (in the order of
    :data:`~stochrelax.results.VARIANTS`), each cut to where its unit's true value can lie.

    Args:
        claims: what to measure (:func:`load_claims`).
        rows: the study's aggregated rows (:func:`stochrelax.results.aggregate`).
        resamples: the test-image bootstrap (default: :data:`~stochrelax.intervals.RESAMPLES` resamples, seed 0).
        level: the joint confidence of every interval (a sequential study spends less at each look,
            :mod:`stochrelax.looks`).
    """
    lookup = _Lookup(rows, resamples or ImageResamples())
    return [tuple(MEASURES[claim.measure].evaluate(lookup, variant, claim.arguments, level).within(
        MEASURES[claim.measure].unit.bounds) for variant in VARIANTS) for claim in claims]
