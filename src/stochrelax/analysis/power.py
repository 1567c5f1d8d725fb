"""What a study would need to decide each claim: seeds, or test images, at the estimated effect.

For each claim the verdict's interval (:mod:`stochrelax.analysis.verdicts`) is rebuilt from its own variance
components (:meth:`stochrelax.analysis.intervals.Interval.with_seeds`) as if the study had more seeds, or
attacked more images: the seed variance σ²/S with the degrees of freedom the design would have
(pooled or not), the shared image variance scaled by the images. The first number of seeds at
which the interval around the *same* estimate decides the claim is what the table reports — the
point of 50% power, since a new study's estimate moves as much one way as the other. A pick is
rebuilt from the picked candidate's components, with its one-sided levels. :func:`write_power`
writes ``power.csv``; :func:`power_markdown` is the section ``verdicts.md`` ends with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from stochrelax.analysis.results import Table, csv_text, markdown_table
from stochrelax.analysis.verdicts import INCONCLUSIVE, ClaimResult, judge_bounds
from stochrelax.base.files import write_text_atomically

__all__ = ["MAX_SEEDS", "IMAGE_FACTORS", "PowerRow", "power_rows", "power_table", "power_markdown", "write_power",
           "POWER_CSV"]

MAX_SEEDS = 50  # the most seeds the table looks for
IMAGE_FACTORS = (2, 4, 10)  # multiples of the attacked images the table tries at the study's seeds
POWER_CSV = "power.csv"


@dataclass(frozen=True)
class PowerRow:
    """One claim: where it stands and what would decide it at its estimated effect."""

    id: str
    verdict: str
    estimate: float
    seeds: int
    seed_se: float  # of the seed mean, at the study's seeds
    image_se: float
    df: float
    seeds_needed: int | None  # at the study's images; None: more than MAX_SEEDS, or no interval to rebuild
    decides_as: str  # the verdict reached with seeds_needed ("" where none)
    images_factor_needed: float | None  # at the study's seeds, the smallest of IMAGE_FACTORS that decides it


def _decided(result: ClaimResult, seeds: int, image_factor: float = 1.0) -> str:
    found = result.eot.interval.with_seeds(seeds, image_factor)
    low, high = max(found.low, result.claim.unit.bounds[0]), min(found.high, result.claim.unit.bounds[1])
    return judge_bounds(result.claim, low, high)


def power_rows(results: Sequence[ClaimResult]) -> list[PowerRow]:
    """A row for every claim whose verdict's measurement has an interval to rebuild."""
    rows = []
    for result in results:
        found = result.eot.interval
        if found is None or found.seed_variance is None:
            continue
        needed = next((seeds for seeds in range(max(found.seeds, 2), MAX_SEEDS + 1)
                       if _decided(result, seeds) != INCONCLUSIVE), None)
        factor = next((factor for factor in (1, *IMAGE_FACTORS)
                       if _decided(result, found.seeds, factor) != INCONCLUSIVE), None)
        rows.append(PowerRow(result.claim.id, result.verdict, found.estimate, found.seeds, found.seed_se,
                             found.image_se, found.df, needed, _decided(result, needed) if needed else "", factor))
    return rows


def _number(value: float) -> str:
    return repr(float(value)) if math.isfinite(value) else "nan"


_HEADER = ["id", "verdict", "estimate", "seeds", "seed_se", "image_se", "df", "seeds_needed", "decides_as",
           "images_factor_needed"]


def power_table(rows: Sequence[PowerRow], results: Sequence[ClaimResult]) -> Table:
    """The rows in words: each claim's estimate, its standard errors and the seeds that would decide it."""
    units = {result.claim.id: result.claim.unit for result in results}
    body = []
    for row in rows:
        unit = units[row.id]
        needed = f"{row.seeds_needed} ({row.decides_as})" if row.seeds_needed else f"more than {MAX_SEEDS}"
        images = "—" if row.images_factor_needed is None else f"×{row.images_factor_needed:g}"
        scale = 1.0 if unit.multiplicative else unit.scale
        body.append([row.id, row.verdict, unit.text(row.estimate), f"{row.seed_se * scale:.2g}",
                     f"{row.image_se * scale:.2g}", f"{row.df:g}", str(row.seeds), needed, images])
    header = ["claim", "verdict", "estimate", "seed se", "image se", "df", "seeds", "seeds to decide",
              "images to decide at these seeds"]
    notes = ["standard errors in the claim's unit (points or %; a ratio's on the log scale); seeds to decide: the "
             "first number of seeds at which the interval around the same estimate decides the claim (50% power); "
             "images: the multiple of the attacked images that decides it at the study's seeds (— : none of "
             f"{', '.join(f'×{factor}' for factor in IMAGE_FACTORS)})"]
    return Table(header, body, notes)


def power_markdown(rows: Sequence[PowerRow], results: Sequence[ClaimResult]) -> str:
    """The section ``verdicts.md`` ends with: what to run next."""
    return (f"## What would decide each claim\n\nFrom the study's own variance components ({POWER_CSV}).\n\n"
            f"{markdown_table(power_table(rows, results))}\n")


def write_power(rows: Sequence[PowerRow], out_dir: str | Path) -> Path:
    """Writes ``power.csv`` (one row per claim, full precision) into ``out_dir``; returns its path."""
    path = Path(out_dir) / POWER_CSV
    write_text_atomically(path, csv_text(_HEADER, [
        [row.id, row.verdict, _number(row.estimate), row.seeds, _number(row.seed_se), _number(row.image_se),
         _number(row.df), row.seeds_needed or "", row.decides_as,
         "" if row.images_factor_needed is None else f"{row.images_factor_needed:g}"] for row in rows]))
    return path
