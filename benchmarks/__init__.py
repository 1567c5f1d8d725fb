"""Benchmarks: stochrelax against the obvious alternatives, side by side in one process run.

Every row is a ratio of two things measured in the same run on the same machine:
"ours" (stochrelax's public API) and "the alternative" (the plain way to do the same
work: a ``DataLoader`` training loop, IBM's adversarial-robustness-toolbox, a Python
loop over EOT draws or Monte Carlo samples, a large matrix product). A benchmark is not
a test; ``tests/benchmarks/`` checks that each plain path computes the same thing as
ours, never a time.

This package lives beside ``src/`` in a source checkout and is not installed with
stochrelax: run it from the repository root with ``python -m benchmarks [--quick]
[--out FILE] [--threads N] [--data-dir DIR] [--no-progress]``, or as ``stochrelax bench``,
which finds it from an editable install. :func:`run` does what both run.

Modules: :mod:`benchmarks.harness` (rows, alternating repetitions, the report),
:mod:`benchmarks.baselines` (the plain alternatives), :mod:`benchmarks.limits` (FLOPs,
the matrix product, peak memory), :mod:`benchmarks.suite` (the rows, their sizes,
:func:`~benchmarks.suite.run_benchmarks`), :mod:`benchmarks.end_to_end` (the thesis
study's projected wall time, the smoke study's measured one).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from benchmarks.end_to_end import project_thesis_study, time_smoke_reproduce
from benchmarks.harness import format_report
from benchmarks.suite import run_benchmarks
from stochrelax.study.grid import STUDY_GRID, load_grid
from stochrelax.study.sweep import usable_cpus

__all__ = ["run"]


def run(quick: bool, out: Path | None, threads: int, data_dir: Path | None, progress: bool) -> None:
    """Runs the suite with ``threads`` torch threads, prints the report and writes it to ``out`` as JSON.

    Besides the rows, the report's notes project the thesis preset's wall time for one
    seed from the measured rates and, without ``quick``, time the smoke study end to end.

    Args:
        quick: tiny sizes, and no end-to-end run.
        out: where to write the report as JSON, or None for no file.
        threads: torch's intra-op threads for every measurement (a sweep's workers use 1).
        data_dir: Fashion-MNIST directory (default: the usual lookup).
        progress: log each measurement to stderr.
    """
    torch.set_num_threads(threads)
    report = run_benchmarks(quick=quick, progress=progress, data_dir=data_dir)
    cores = usable_cpus()
    seconds, detail = project_thesis_study(report.rows, [planned.config for planned in load_grid(STUDY_GRID)],
                                           cores)
    report.notes.append(f"projected wall time of the thesis preset, one seed: {seconds / 3600:.0f} h ({detail}, "
                        f"one run per core at the rates above, measured with {threads} thread(s))")
    if not quick:
        with tempfile.TemporaryDirectory() as study:
            smoke = time_smoke_reproduce(study, data_dir)
        report.notes.append(f"end to end: stochrelax reproduce --preset smoke --seeds 1 took {smoke:.0f} s")
    print(format_report(report))
    if out is not None:
        print(f"written to {report.write_json(out)}")
