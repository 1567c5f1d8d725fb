"""The thesis' claims as data, and how each is measured on a study with its uncertainty.

A claim (packaged ``claims.yaml``, :func:`load_claims`) names a *measure* (:data:`MEASURES`:
a configuration's accuracy, candidates against a reference, matched pairs) over cells of the
aggregated results (:mod:`stochrelax.results`), and a *criterion* on it (≥, ≤, >, < a
threshold). Each claim is measured three times (:func:`measure_claims`), with single-draw
attacks (the thesis' setting), with EOT attacks, and against the adaptive per-example worst case.

Every measurement carries a 95% confidence interval for the training procedure's true value
that counts both sources of noise — the spread between seeds and the finite test set, paired
image by image between configurations (:mod:`stochrelax.intervals`). A claim that picks one
of k candidates ("the best logistic network") gets Bonferroni-corrected intervals, so that
picking the best does not overstate it. :mod:`stochrelax.verdicts` judges each claim by them.
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
from stochrelax.intervals import ImageResamples, Interval, interval, pick_interval
from stochrelax.results import VARIANT_NAMES, VARIANTS, Cell, ResultRow
from stochrelax.runs import unpack_correct

__all__ = ["ClaimsError", "Unit", "UNITS", "Measurement", "Measure", "MEASURES", "COMPARISONS", "NameGrid",
           "OneConfiguration", "AgainstReference", "MatchedPairs", "Claim", "CLAIMS_FILE", "parse_claims",
           "load_claims", "measure_claims"]


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

    def text(self, value: float) -> str:
        return f"{self.prefix}{value * self.scale:{'+' if self.signed else ''}.{self.decimals}f}{self.suffix}"

    def threshold_text(self, value: float) -> str:
        """A criterion's threshold, shortest form: ``88%``, ``×1.5``, ``0 points``."""
        return f"{self.prefix}{value * self.scale:g}{self.suffix}"

    def interval_text(self, estimate: float, low: float, high: float) -> str:
        """``72.1% [68.0, 76.2]``; ``[−∞, ∞]`` for an unbounded interval."""
        def bound(value: float) -> str:
            if not math.isfinite(value):
                return "∞" if value > 0 else "−∞"
            return f"{value * self.scale:.{self.decimals}f}"
        return f"{self.text(estimate)} [{bound(low)}, {bound(high)}]"


UNITS = {unit.name: unit for unit in (Unit("accuracy", 100, 1, suffix="%", bounds=(0.0, 1.0)),
                                      Unit("points", 100, 1, suffix=" points", signed=True, bounds=(-1.0, 1.0)),
                                      Unit("ratio", 1, 2, prefix="×", bounds=(0.0, math.inf)))}


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
                    key_of_draws = (row.configuration, str(row.cell), row.variant, seed)
                    vectors[seed] = self.resamples.binomial(accuracy, max(examples, 1), key_of_draws)
            self._cache[key] = vectors
        return self._cache[key]

    def unpaired(self, configurations: Sequence[str]) -> tuple[str, ...]:
        """Runs among ``configurations`` read without per-image results."""
        return tuple(f"{name} seed {seed}" for name in sorted(set(configurations))
                     for seed in sorted(self._unpaired.get(name, ())))

    def seed_vectors(self, configuration: str, cells: Sequence[Cell], variant: str) -> tuple[Vectors, list[str]]:
        """Per seed, the mean over ``cells`` as a vector; or what is missing."""
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


def _stack(vectors: Vectors) -> np.ndarray:
    return np.stack([vectors[seed] for seed in sorted(vectors)])  # (S, 1 + R)


def _measured(vectors: Vectors, result: Interval, unpaired: tuple[str, ...], detail: str = "") -> Measurement:
    return Measurement(result, {seed: float(vector[0]) for seed, vector in sorted(vectors.items())}, detail,
                       unpaired=unpaired)


def _paired(first: Vectors, second: Vectors, combine: Callable[[np.ndarray, np.ndarray], np.ndarray],
            names: tuple[str, str]) -> tuple[Vectors, list[str]]:
    seeds = sorted(first.keys() & second.keys())
    if not seeds:
        return {}, [f"no seed in common between {names[0]} and {names[1]}"]
    return {seed: combine(first[seed], second[seed]) for seed in seeds}, []


def _ratio(value: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """value / reference; infinite where the reference is 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(reference > 0, value / np.where(reference > 0, reference, 1.0), math.inf)


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


Names = Annotated[list[NameGrid], BeforeValidator(_name_grids_from_texts), Field(min_length=1)]


class OneConfiguration(_Arguments):
    """A configuration's accuracy, averaged over ``cells``."""

    configuration: str
    cells: Cells


PICKS = ("smallest", "largest")  # which candidate a claim is about


class AgainstReference(_Arguments):
    """Each candidate configuration against a reference, per seed, averaged over ``cells``; the
    claim is about the candidate whose mean is ``pick`` (e.g. the best stochastic model)."""

    candidates: Names
    reference: str
    cells: Cells
    pick: Literal[PICKS]


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


def _mean_accuracy(lookup: _Lookup, variant: str, arguments: OneConfiguration) -> Measurement:
    vectors, missing = lookup.seed_vectors(arguments.configuration, arguments.cells, variant)
    if missing:
        return _not_measured(missing)
    return _measured(vectors, interval(_stack(vectors)), lookup.unpaired([arguments.configuration]))


def _against_reference(lookup: _Lookup, variant: str, arguments: AgainstReference,
                       combine: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Measurement:
    reference, missing = lookup.seed_vectors(arguments.reference, arguments.cells, variant)
    names = [name for grid in arguments.candidates for name in grid.names()]
    compared: dict[str, Vectors] = {}
    for name in names:
        values, lacking = lookup.seed_vectors(name, arguments.cells, variant)
        missing += lacking
        if not lacking and reference:
            compared[name], lacking = _paired(values, reference, combine, (name, arguments.reference))
            missing += lacking
    if missing:
        return _not_measured(missing)
    unpaired = lookup.unpaired([*names, arguments.reference])
    if len(names) == 1:
        return _measured(compared[names[0]], interval(_stack(compared[names[0]])), unpaired)
    chosen, result = pick_interval({name: _stack(vectors) for name, vectors in compared.items()},
                                   largest=arguments.pick == "largest")
    return _measured(compared[chosen], result, unpaired,
                     f"{chosen} ({arguments.pick} of {len(names)}; Bonferroni over the {len(names)} candidates)")


def _matched_difference(lookup: _Lookup, variant: str, arguments: MatchedPairs) -> Measurement:
    pairs = [(arguments.better.format(**values), arguments.worse.format(**values))
             for values in _combinations(arguments.over)]
    differences, missing = [], []
    for better, worse in pairs:
        better_values, lacking_better = lookup.seed_vectors(better, arguments.cells, variant)
        worse_values, lacking_worse = lookup.seed_vectors(worse, arguments.cells, variant)
        missing += lacking_better + lacking_worse
        if not lacking_better + lacking_worse:
            difference, lacking = _paired(better_values, worse_values, operator.sub, (better, worse))
            missing += lacking
            differences.append(difference)
    if missing:
        return _not_measured(missing)
    seeds = sorted(set.intersection(*(set(difference) for difference in differences)))
    if not seeds:
        return _not_measured([f"no seed in common among the pairs {pairs}"])
    vectors = {seed: np.mean([difference[seed] for difference in differences], axis=0) for seed in seeds}
    return _measured(vectors, interval(_stack(vectors)), lookup.unpaired([name for pair in pairs for name in pair]),
                     f"mean over {len(pairs)} pairs" if len(pairs) > 1 else "")


@dataclass(frozen=True)
class Measure:
    """A measure a claim names: its arguments' schema, how it is computed, its unit, and whether
    it is an absolute accuracy (judged only after training that converges)."""

    arguments: type[BaseModel]
    evaluate: Callable[[_Lookup, str, Any], Measurement]  # (lookup, variant, arguments)
    unit: Unit
    absolute: bool = False


MEASURES: dict[str, Measure] = {
    "mean_accuracy": Measure(OneConfiguration, _mean_accuracy, UNITS["accuracy"], absolute=True),
    # candidate minus reference, and candidate over reference (a baseline at 0% gives an infinite ratio)
    "difference_to_reference": Measure(AgainstReference, partial(_against_reference, combine=operator.sub),
                                       UNITS["points"]),
    "ratio_to_reference": Measure(AgainstReference, partial(_against_reference, combine=_ratio), UNITS["ratio"]),
    "matched_difference": Measure(MatchedPairs, _matched_difference, UNITS["points"]),
}

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

    @property
    def unit(self) -> Unit:
        return MEASURES[self.measure].unit

    @property
    def absolute(self) -> bool:
        return MEASURES[self.measure].absolute

    def criterion_text(self) -> str:
        return " and ".join(f"{COMPARISONS[name][1]} {self.unit.threshold_text(threshold)}"
                            for name, threshold in self.criterion.items())


class _ClaimEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    claim: str
    where: str
    thesis: str
    measure: str
    arguments: dict[str, Any]
    criterion: dict[Literal[tuple(COMPARISONS)], float] = Field(min_length=1)


CLAIMS_FILE = Path(__file__).with_name("claims.yaml")
CLAIMS_FILE_KEYS = ("claims", "definitions")  # definitions: YAML anchors (cell lists) the claims refer to


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
        claims[parsed.id] = Claim(parsed.id, parsed.claim, parsed.where, parsed.thesis, parsed.measure, arguments,
                                  dict(parsed.criterion))
    return list(claims.values())


def load_claims(path: str | Path = CLAIMS_FILE) -> list[Claim]:
    """Reads and validates a claims file; by default the thesis' claims shipped with the package.

    Raises:
        ConfigError: if the file is missing or not YAML; ClaimsError if a claim is malformed.
    """
    return parse_claims(read_yaml(path, kind="claims"), source=str(path))


def measure_claims(claims: Sequence[Claim], rows: Sequence[ResultRow], resamples: ImageResamples | None = None
                   ) -> list[tuple[Measurement, Measurement, Measurement]]:
    """Every claim's measure on the aggregated rows, once per attack variant (in the order of
    :data:`~stochrelax.results.VARIANTS`), each cut to where its unit's true value can lie.

    Args:
        claims: what to measure (:func:`load_claims`).
        rows: the study's aggregated rows (:func:`stochrelax.results.aggregate`).
        resamples: the test-image bootstrap (default: :data:`~stochrelax.intervals.RESAMPLES` resamples, seed 0).
    """
    lookup = _Lookup(rows, resamples or ImageResamples())
    return [tuple(MEASURES[claim.measure].evaluate(lookup, variant, claim.arguments).within(
        MEASURES[claim.measure].unit.bounds) for variant in VARIANTS) for claim in claims]
