"""The harness: rows of ours-against-alternative ratios, how they are measured, the report.

Method (:func:`measure`): every workload of a section runs once untimed (warm-up: lazy
initialisation, allocator, kernel selection), then ``R`` repetitions of all of them in
turn, forwards on even repetitions and backwards on odd ones, so that ours and its
alternative alternate which goes first and share whatever load the machine has at that
moment. Each row (:func:`compare_row`) reports the median rate of each side over the
repetitions, the median of the per-repetition ratios ours/alternative and their spread
(min, max), the target and whether the median ratio meets it. Throughput uses
``time.perf_counter``.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch

from stochrelax.study.sweep import usable_cpus

__all__ = ["Row", "compare_row", "BenchReport", "format_table", "format_report", "machine_facts", "Workload",
           "measure"]


@dataclass
class Row:
    """One comparison: ours against an alternative, both measured in the same repetitions.

    ``ratio`` is the median of the per-repetition ratios ours/alternative (not the ratio
    of the medians); ``ratio_min``/``ratio_max`` their spread. ``target_direction``
    ``"min"`` means the ratio should be at least ``target``, ``"max"`` at most.
    """

    key: str
    title: str
    unit: str  # of ours and alternative, e.g. "images/s"
    ours_label: str
    alternative_label: str
    ours: float  # median over repetitions
    alternative: float
    ratio: float
    ratio_min: float
    ratio_max: float
    target: float | None
    target_direction: str  # "min" (ratio ≥ target) or "max" (ratio ≤ target)
    met: bool | None  # None when there is no target
    repetitions: int
    ours_samples: list[float] = field(default_factory=list)
    alternative_samples: list[float] = field(default_factory=list)
    detail: str = ""  # sizes and settings of the measurement

    @property
    def target_text(self) -> str:
        if self.target is None:
            return "-"
        return f"{'≥' if self.target_direction == 'min' else '≤'} {self.target:g}×"


def compare_row(key: str, title: str, unit: str, ours_label: str, alternative_label: str,
                ours: Sequence[float], alternative: Sequence[float], target: float | None,
                target_direction: str = "min", detail: str = "") -> Row:
    """A :class:`Row` from per-repetition rates of both sides (same length, same repetitions)."""
    if len(ours) != len(alternative) or not ours:
        raise ValueError(f"{key}: need the same number (>= 1) of repetitions on both sides, "
                         f"got {len(ours)} and {len(alternative)}")
    if target_direction not in ("min", "max"):
        raise ValueError(f"target_direction must be 'min' or 'max', got {target_direction!r}")
    ratios = [a / b for a, b in zip(ours, alternative)]
    ratio = statistics.median(ratios)
    met = None if target is None else (ratio >= target if target_direction == "min" else ratio <= target)
    return Row(key, title, unit, ours_label, alternative_label, statistics.median(ours),
               statistics.median(alternative), ratio, min(ratios), max(ratios), target, target_direction, met,
               len(ratios), [float(v) for v in ours], [float(v) for v in alternative], detail)


@dataclass
class BenchReport:
    """What :func:`benchmarks.suite.run_benchmarks` returns; append rows and notes before writing it."""

    rows: list[Row]
    notes: list[str]
    machine: dict
    quick: bool = False
    sizes: dict = field(default_factory=dict)
    seconds: float = 0.0  # wall time of run_benchmarks

    def to_dict(self) -> dict:
        return {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "quick": self.quick,
                "seconds": self.seconds, "machine": self.machine, "sizes": self.sizes,
                "rows": [asdict(row) for row in self.rows], "notes": list(self.notes)}

    def write_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path


def _number(value: float) -> str:
    if value is None or not math.isfinite(value):
        return str(value)
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def format_table(rows: Iterable[Row]) -> str:
    """A plain-text table: one line per row, the median ratio with its spread, target and verdict."""
    header = ("benchmark", "ours", "alternative", "unit", "ratio", "spread", "target", "met")
    lines = []
    for row in rows:
        met = "-" if row.met is None else ("yes" if row.met else "NO")
        lines.append((f"{row.title}: {row.ours_label} vs {row.alternative_label}", _number(row.ours),
                      _number(row.alternative), row.unit, f"{row.ratio:.2f}×",
                      f"{row.ratio_min:.2f}–{row.ratio_max:.2f}", row.target_text, met))
    widths = [max(len(str(line[i])) for line in [header, *lines]) for i in range(len(header))]
    right = {1, 2, 4}

    def render(cells) -> str:
        return "  ".join(str(c).rjust(w) if i in right else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([render(header), render(["-" * w for w in widths]), *map(render, lines)])


def format_report(report: BenchReport) -> str:
    """The table with a line about the machine above it and the notes below it."""
    machine = report.machine
    head = (f"stochrelax bench{' --quick' if report.quick else ''}: {machine.get('cpu_model')}, "
            f"{machine.get('cpu_count')} cores, torch {machine.get('torch_version')} with "
            f"{machine.get('torch_threads')} thread(s); median of {report.sizes.get('repetitions')} repetitions, "
            f"ratio = ours / alternative per repetition (spread: min–max)")
    notes = [f"- {note}" for note in report.notes]
    return "\n".join([head, "", format_table(report.rows), *([""] + notes if notes else [])])


def machine_facts() -> dict:
    """CPU model, core counts, torch version and threads, Python, platform."""
    cpu_model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu_model": cpu_model, "cpu_count": os.cpu_count(), "usable_cpus": usable_cpus(),
            "torch_version": torch.__version__, "torch_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads(),
            "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
            "python": platform.python_version(), "platform": platform.platform()}


# --------------------------------------------------------------------------------------------
# Measuring


@dataclass
class Workload:
    """A piece of work to time: ``run()`` does it and returns how many units it did."""

    name: str
    run: Callable[[], float]
    warmup: Callable[[], object] | None = None  # untimed first call; default: run()


def measure(workloads: Sequence[Workload], repetitions: int,
            log: Callable[[str], None] | None = None) -> dict[str, list[float]]:
    """Rates (units/s) of every workload in each of ``repetitions`` repetitions.

    Each workload is warmed up once, then the repetitions run all workloads in turn,
    in the given order on even repetitions and in reverse on odd ones.
    """
    if repetitions < 1:
        raise ValueError(f"repetitions must be >= 1, got {repetitions}")
    names = [w.name for w in workloads]
    if len(set(names)) != len(names):
        raise ValueError(f"workload names must be unique, got {names}")
    for workload in workloads:
        (workload.warmup or workload.run)()
    rates: dict[str, list[float]] = {w.name: [] for w in workloads}
    for repetition in range(repetitions):
        if log is not None:
            log(f"repetition {repetition + 1}/{repetitions}")
        order = workloads if repetition % 2 == 0 else list(reversed(workloads))
        for workload in order:
            start = time.perf_counter()
            units = workload.run()
            seconds = time.perf_counter() - start
            rates[workload.name].append(units / max(seconds, 1e-9))
    return rates

