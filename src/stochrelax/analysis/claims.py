"""The thesis' claims as data, and each measured on a study with its uncertainty.

A claim (packaged ``claims.yaml``, :func:`load_claims`) names a *measure*
(:data:`stochrelax.analysis.measures.MEASURES`:
a configuration's accuracy, candidates against a reference, matched pairs) over cells of the
aggregated results (:mod:`stochrelax.analysis.results`), and a *criterion* on it (≥, ≤, >, < a
threshold). Each claim is measured three times (:func:`measure_claims`), with single-draw
attacks (the thesis' setting), with EOT attacks, and against the adaptive per-example worst case.

Every measurement carries a 95% confidence interval for the training procedure's true value
that counts both sources of noise — the spread between seeds and the finite test set, paired
image by image between configurations (:mod:`stochrelax.analysis.intervals`). A measure that compares
configurations pools their seed variance where one residual variance fits them all, and a
claim that picks one of k candidates ("the best logistic network") corrects the bound that
picking can push. A claim of "an effect" has a margin, the smallest effect worth claiming, so
that it can fail. :mod:`stochrelax.analysis.verdicts` judges each claim by them.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stochrelax.analysis.intervals import LEVEL, ImageResamples
from stochrelax.analysis.measures import MEASURES, Lookup, Measurement, MeasureUnit
from stochrelax.analysis.results import VARIANTS, ResultRow
from stochrelax.rundir.config import ConfigError, check_keys, read_yaml, validation_message

__all__ = ["ClaimsError", "COMPARISONS", "Claim", "CLAIMS_FILE", "parse_claims", "load_claims", "measure_claims"]


class ClaimsError(ConfigError):
    """A claims file that cannot be used; the message is one line naming the claim."""


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
    def unit(self) -> MeasureUnit:
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


def _check_margin(entry: _ClaimEntry, unit: MeasureUnit, where: str) -> None:
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
    :data:`~stochrelax.analysis.results.VARIANTS`), each cut to where its unit's true value can lie.

    Args:
        claims: what to measure (:func:`load_claims`).
        rows: the study's aggregated rows (:func:`stochrelax.analysis.results.aggregate`).
        resamples: the test-image bootstrap (default: :data:`~stochrelax.analysis.intervals.RESAMPLES`
            resamples, seed 0).
        level: the joint confidence of every interval (a sequential study spends less at each look,
            :mod:`stochrelax.study.looks`).
    """
    lookup = Lookup(rows, resamples or ImageResamples())
    return [tuple(MEASURES[claim.measure].evaluate(lookup, variant, claim.arguments, level).within(
        MEASURES[claim.measure].unit.bounds) for variant in VARIANTS) for claim in claims]
