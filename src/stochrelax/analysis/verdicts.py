"""A verdict on each claim of the thesis, from its interval, and the verdict files.

The verdict on a claim (:mod:`stochrelax.analysis.claims`) is

- **holds** — the whole interval satisfies the criterion: beyond no effect in the claimed
  direction, or beyond the size the thesis states;
- **fails** — the whole interval lies short of it: short of the claimed size, or, for a claim
  of "an effect", short of its margin (the smallest effect worth claiming);
- **too small to matter** — the interval lies between no effect and the margin: a real effect,
  smaller than any worth claiming;
- **inconclusive** — neither, or one seed leaves the spread between trainings unknown;
- **not measured** — the study lacks a run or a cell the claim needs;
- **not judged** — a claim about absolute accuracy after the thesis' protocol, in a study whose
  preset does not train to convergence.

A claim is judged on the attacks it names, with EOT where the model is stochastic, and says when
the thesis' single-draw attacks would have judged otherwise; the adaptive worst case gets a
verdict of its own beside it, never in its place.
:func:`write_verdicts` writes ``verdicts.csv`` and ``verdicts.md``; :func:`read_verdicts`
reads the CSV back for the report.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

from stochrelax.analysis.claims import COMPARISONS, Claim, measure_claims
from stochrelax.analysis.intervals import LEVEL, ImageResamples
from stochrelax.analysis.measures import UNITS, Measurement
from stochrelax.analysis.results import VARIANT_NAMES, VARIANTS, ResultRow, Table, csv_text, markdown_table, read_csv
from stochrelax.base.files import write_text_atomically

__all__ = ["HOLDS", "FAILS", "TOO_SMALL", "judge_bounds", "INCONCLUSIVE", "NOT_MEASURED", "NOT_JUDGED", "VERDICTS", "StudyScope", "judge",
           "ClaimResult", "evaluate_claims", "VerdictRecord", "verdict_records", "verdict_table", "verdict_summary",
           "scope_headline",
           "VERDICTS_CAPTION", "write_verdicts", "read_verdicts", "VERDICTS_CSV", "VERDICTS_MD"]


HOLDS, FAILS, INCONCLUSIVE, NOT_MEASURED, NOT_JUDGED = "holds", "fails", "inconclusive", "not measured", "not judged"
TOO_SMALL = "too small to matter"
VERDICTS = (HOLDS, FAILS, TOO_SMALL, INCONCLUSIVE, NOT_MEASURED, NOT_JUDGED)


@dataclass(frozen=True)
class StudyScope:
    """What a study can tell: the preset that made it (``stochrelax sweep``) and what that preset declares."""

    preset: str | None = None  # None: not made by a sweep, or its record is missing
    converged: bool = True  # trains long enough to judge claims about absolute accuracy
    pipeline_check: bool = False  # a check that the pipeline runs: its numbers are noise


def judge(claim: Claim, measurement: Measurement) -> str:
    """Holds, fails, too small to matter or inconclusive by where the interval lies against every
    part of the criterion: it holds where the whole interval meets every part, fails where it lies
    wholly short of a part's fail boundary (:meth:`~stochrelax.analysis.claims.Claim.fail_boundary`: the
    threshold, or the margin for a threshold of no effect), and both at once is an effect too small."""
    if not measurement.measured:
        return NOT_MEASURED
    if not measurement.interval.bounded:
        return INCONCLUSIVE
    return judge_bounds(claim, measurement.interval.low, measurement.interval.high)


def judge_bounds(claim: Claim, low: float, high: float) -> str:
    """:func:`judge` of an interval given by its bounds."""
    bounds = (low, high)
    satisfied = all(COMPARISONS[name][0](bound, threshold) for name, threshold in claim.criterion.items()
                    for bound in bounds)
    violated = any(not any(COMPARISONS[name][0](bound, claim.fail_boundary(name, threshold)) for bound in bounds)
                   for name, threshold in claim.criterion.items())
    if satisfied and violated:
        return TOO_SMALL
    return HOLDS if satisfied else FAILS if violated else INCONCLUSIVE


@dataclass(frozen=True)
class ClaimResult:
    """A claim measured with single-draw attacks, with EOT attacks and against the worst case, and the verdict."""

    claim: Claim
    single: Measurement
    eot: Measurement
    worst_case: Measurement
    verdict: str  # one of VERDICTS, on the attacks the claim names (EOT where the model is stochastic)
    reason: str  # why, in words, where the verdict needs one
    worst_case_verdict: str  # one of VERDICTS, against the adaptive worst case

    @property
    def measurements(self) -> tuple[Measurement, Measurement, Measurement]:
        """In the order of :data:`~stochrelax.analysis.results.VARIANTS`."""
        return self.single, self.eot, self.worst_case


def _verdict(claim: Claim, measurement: Measurement, scope: StudyScope) -> tuple[str, str]:
    if claim.absolute and not scope.converged:
        return NOT_JUDGED, (f"an absolute accuracy after the thesis' protocol; the {scope.preset} preset does not "
                            "train to convergence (use --preset standard or thesis)")
    if not measurement.measured:
        return NOT_MEASURED, "the study lacks what it needs (see the notes)"
    if measurement.interval.seeds < 2 and measurement.interval.seed_variance is None:
        return INCONCLUSIVE, "one seed: the spread between trainings is unknown, so no interval; run more seeds"
    state = judge(claim, measurement)
    if state == TOO_SMALL:
        return state, (f"a real effect, but the interval excludes every effect of the margin "
                       f"{claim.unit.threshold_text(claim.margin)} or more ({claim.margin_reason})")
    return state, ""


def evaluate_claims(claims: Sequence[Claim], rows: Sequence[ResultRow], scope: StudyScope = StudyScope(),
                    resamples: ImageResamples | None = None, level: float = LEVEL) -> list[ClaimResult]:
    """Measures every claim on the aggregated rows, once per attack variant, and gives its verdicts.

    The verdict judges the attacks the claim names with EOT (the same numbers as single-draw for a
    deterministic model); its reason says when the thesis' single-draw attacks would have judged
    otherwise. The worst case has a verdict of its own.

    Args:
        claims: what to check (:func:`load_claims`).
        rows: the study's aggregated rows (:func:`stochrelax.analysis.results.aggregate`).
        scope: what the study's preset can judge.
        resamples: the test-image bootstrap (default: :data:`~stochrelax.analysis.intervals.RESAMPLES`
            resamples, seed 0).
        level: the joint confidence of every interval.
    """
    results = []
    for claim, (single, eot, worst) in zip(claims, measure_claims(claims, rows, resamples, level)):
        verdict, reason = _verdict(claim, eot, scope)
        thesis_verdict = _verdict(claim, single, scope)[0]
        if verdict in (HOLDS, FAILS, TOO_SMALL, INCONCLUSIVE) and thesis_verdict != verdict:
            reason = "; ".join(filter(None, [reason, f"{thesis_verdict} against the thesis' single-draw attacks"]))
        worst_verdict = _verdict(claim, worst, scope)[0] if worst.measured else NOT_MEASURED
        results.append(ClaimResult(claim, single, eot, worst, verdict, reason, worst_verdict))
    return results


# --- the verdict file --------------------------------------------------------------------------

class VerdictRecord(NamedTuple):
    """One claim as ``verdicts.csv`` holds it: what the report and the forest plot read."""

    id: str
    claim: str
    where: str
    thesis: str
    criterion: str  # in words, e.g. "≥ ×1.5"
    thresholds: dict[str, float]  # COMPARISONS key → threshold
    unit: str  # a key of UNITS
    estimates: dict[str, tuple[float, float, float, int] | None]  # variant → estimate, low, high, seeds
    verdict: str
    reason: str
    notes: tuple[str, ...]
    preset: str  # "" when unknown
    scope: str  # "pipeline check", "no convergence" or "converged"
    worst_case_verdict: str


def _notes(result: ClaimResult, listed: int = 5) -> list[str]:
    notes = []
    missing = list(dict.fromkeys(result.single.missing + result.eot.missing))
    if missing:
        more = f" and {len(missing) - listed} more" if len(missing) > listed else ""
        notes.append(f"not measured: missing {'; '.join(missing[:listed])}{more}")
    elif not result.worst_case.measured:
        notes.append("no worst case in this study: the EOT attacks overstate sign networks")
    details = {VARIANT_NAMES[variant]: measurement.detail
               for variant, measurement in zip(VARIANTS, result.measurements) if measurement.detail}
    if len(set(details.values())) == 1:
        notes.append(next(iter(details.values())))
    elif details:
        notes.append("; ".join(f"{name}: {detail}" for name, detail in details.items()))
    unpaired = sorted({run for measurement in result.measurements for run in measurement.unpaired})
    if unpaired:
        notes.append(f"no per-image results for {len(unpaired)} run(s) (e.g. {unpaired[0]}): their test-set error "
                     "is binomial and unpaired, so the interval is wider than needed")
    return notes


def _scope_name(scope: StudyScope) -> str:
    return "pipeline check" if scope.pipeline_check else "converged" if scope.converged else "no convergence"


def verdict_records(results: Sequence[ClaimResult], scope: StudyScope = StudyScope()) -> list[VerdictRecord]:
    """The results as the rows of ``verdicts.csv``."""
    def estimate(measurement: Measurement) -> tuple[float, float, float, int] | None:
        found = measurement.interval
        return None if found is None else (found.estimate, found.low, found.high, found.seeds)

    return [VerdictRecord(result.claim.id, result.claim.text, result.claim.where, result.claim.thesis,
                          result.claim.criterion_text(), dict(result.claim.criterion), result.claim.unit.name,
                          {variant: estimate(m) for variant, m in zip(VARIANTS, result.measurements)},
                          result.verdict, result.reason, tuple(_notes(result)), scope.preset or "", _scope_name(scope),
                          result.worst_case_verdict)
            for result in results]


def scope_headline(records: Sequence[VerdictRecord]) -> str:
    """The first line of a verdict table: what the study can tell."""
    preset = records[0].preset if records else ""
    scope = records[0].scope if records else "converged"
    if scope == "pipeline check":
        return (f"Pipeline check: the {preset} preset shows that the pipeline runs; its numbers are noise and these "
                "verdicts are not evidence. The standard preset answers the thesis' question.")
    if scope == "no convergence":
        return (f"The {preset} preset trains briefly: claims about differences get a first answer, claims about "
                "absolute accuracy after the thesis' protocol are not judged. The standard preset answers all.")
    if preset:
        return f"Study made with the {preset} preset."
    return "Study not made by `stochrelax sweep`: every claim judged."


VERDICTS_CAPTION = (f"Each claim measured with single-draw attacks (the thesis' setting), with EOT attacks, and "
                    f"against the adaptive worst case (every L∞ attack cell read as the worst case at its eps): the "
                    f"estimate over seeds and its {LEVEL:.0%} confidence interval (in a study judged in looks, "
                    f"that look's level, which the reason names), which counts the spread between "
                    f"seeds (Student's t) and the finite test set (a bootstrap over test images, paired between "
                    f"configurations). Holds: the whole interval meets the criterion; fails: the whole interval "
                    f"lies short of it (short of the margin, the smallest effect worth claiming, for a claim of an "
                    f"effect); too small to matter: between no effect and the margin; inconclusive: neither. The "
                    f"verdict judges the attacks the claim names (EOT on stochastic models); the worst case has its "
                    f"own verdict.")


def verdict_table(records: Sequence[VerdictRecord]) -> Table:
    """One row per claim: the claim, the thesis' number, the criterion, our estimate and interval with
    single-draw and EOT attacks and against the worst case, the number of seeds, and the verdict."""
    header = ["claim", "thesis", "criterion", *(f"ours: {VARIANT_NAMES[variant]}" for variant in VARIANTS), "seeds",
              "worst-case verdict", "verdict"]
    rows = []
    for record in records:
        unit = UNITS[record.unit]
        cells = ["—" if record.estimates[variant] is None else unit.interval_text(*record.estimates[variant][:3])
                 for variant in VARIANTS]
        seeds = max((found[3] for found in record.estimates.values() if found is not None), default=0)
        verdict = record.verdict + (f" — {record.reason}" if record.reason else "")
        rows.append([f"{record.id}: {record.claim} ({record.where})", record.thesis, record.criterion, *cells,
                     str(seeds), record.worst_case_verdict, verdict])
    notes = [f"{record.id}: {note}" for record in records for note in record.notes]
    return Table(header, rows, notes)


def verdict_summary(records: Sequence[VerdictRecord]) -> Table:
    """The verdict table in brief, for a README: one row per claim with the thesis' number, ours on the
    attack the claim names (EOT where the model is stochastic) with its interval and seeds, and both verdicts."""
    header = ["claim", "thesis", "criterion", "ours (EOT)", "seeds", "verdict", "worst case"]
    rows = []
    for record in records:
        found = record.estimates["eot"]
        unit = UNITS[record.unit]
        ours = ("—" if found is None else f"{unit.text(found[0])} (no interval)" if found[3] < 2
                else unit.interval_text(*found[:3]))
        rows.append([f"`{record.id}`", record.thesis, record.criterion, ours, "—" if found is None else str(found[3]),
                     record.verdict, record.worst_case_verdict])
    return Table(header, rows, [])


_VARIANT_FIELDS = ("estimate", "low", "high", "seeds")
VERDICTS_CSV, VERDICTS_MD = "verdicts.csv", "verdicts.md"
_HEADER = ["id", "claim", "where", "thesis", "criterion", "thresholds", "unit",
           *(f"{variant.replace('-', '_')}_{name}" for variant in VARIANTS for name in _VARIANT_FIELDS),
           "verdict", "reason", "notes", "preset", "scope", "worst_case_verdict"]


def _number(value: float) -> str:
    return repr(float(value)) if math.isfinite(value) else ("inf" if value > 0 else "-inf")


def write_verdicts(results: Sequence[ClaimResult], out_dir: str | Path,
                   scope: StudyScope = StudyScope(), appendix: str = "") -> tuple[Path, Path]:
    """Writes ``verdicts.csv`` (one row per claim, every number at full precision) and ``verdicts.md``
    (the scope's headline, then :func:`verdict_table`, then ``appendix``) into ``out_dir``; returns their paths."""
    records = verdict_records(results, scope)
    rows = []
    for record in records:
        numbers = [field for variant in VARIANTS
                   for field in (("", "", "", "") if record.estimates[variant] is None else
                                 (*map(_number, record.estimates[variant][:3]), record.estimates[variant][3]))]
        rows.append([record.id, record.claim, record.where, record.thesis, record.criterion,
                     json.dumps(record.thresholds), record.unit, *numbers, record.verdict, record.reason,
                     " | ".join(record.notes), record.preset, record.scope, record.worst_case_verdict])
    out_dir = Path(out_dir)
    csv_path, md_path = out_dir / VERDICTS_CSV, out_dir / VERDICTS_MD
    write_text_atomically(csv_path, csv_text(_HEADER, rows))
    table = markdown_table(verdict_table(records))
    write_text_atomically(md_path, f"{scope_headline(records)}\n\n{VERDICTS_CAPTION}\n\n{table}\n"
                                   + (f"\n{appendix}" if appendix else ""))
    return csv_path, md_path


def read_verdicts(path: str | Path) -> list[VerdictRecord]:
    """The records of a ``verdicts.csv`` that :func:`write_verdicts` wrote.

    Raises:
        RunDirError: if the file is not such a table.
    """
    records = []
    for row in read_csv(path, _HEADER, "verdicts"):
        estimates = {}
        for variant in VARIANTS:
            prefix = variant.replace("-", "_")
            estimates[variant] = None if row[f"{prefix}_estimate"] == "" else (
                float(row[f"{prefix}_estimate"]), float(row[f"{prefix}_low"]), float(row[f"{prefix}_high"]),
                int(row[f"{prefix}_seeds"]))
        records.append(VerdictRecord(row["id"], row["claim"], row["where"], row["thesis"], row["criterion"],
                                     json.loads(row["thresholds"]), row["unit"], estimates, row["verdict"],
                                     row["reason"], tuple(filter(None, row["notes"].split(" | "))),
                                     row["preset"], row["scope"], row["worst_case_verdict"]))
    return records


