"""The study workflow: a sweep's runs aggregated over seeds, each claim judged, and the report.

:func:`analyse_study` is what ``stochrelax results`` runs: it aggregates every finished run
below a study directory (:mod:`stochrelax.results`) and judges the thesis' claims on them
(:mod:`stochrelax.verdicts`), within what the preset that made the study can tell
(:func:`study_scope`). :func:`reproduce` is ``stochrelax reproduce``: the sweep
(:func:`stochrelax.sweep.run_sweep`), then :func:`analyse_study`, then the report
(:func:`stochrelax.report.build_report`). Each step writes files and the next reads them, so a
study can be analysed again, or reported again, without training anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple, Sequence

from stochrelax.claims import Claim, load_claims
from stochrelax.data import load_fashion_mnist
from stochrelax.grid import PlannedRun
from stochrelax.jobs import JobResult
from stochrelax.power import power_markdown, power_rows, write_power
from stochrelax.report import build_report
from stochrelax.results import aggregate, failed_runs_text, read_study, write_results
from stochrelax.runs import SUMMARY_FILE, is_finished
from stochrelax.sweep import recorded_preset, run_sweep
from stochrelax.verdicts import StudyScope, evaluate_claims, write_verdicts

__all__ = ["StudyFiles", "study_scope", "analyse_study", "FIGURE_RUNS", "figure_runs", "StudyOutcome", "reproduce"]


class StudyFiles(NamedTuple):
    """The files :func:`analyse_study` writes."""

    results_csv: Path  # long format: one row per configuration, cell and variant
    results_md: Path  # wide: one row per configuration
    verdicts_csv: Path
    verdicts_md: Path
    power_csv: Path  # per claim, the seeds that would decide it (stochrelax.power)


def study_scope(root: str | Path) -> StudyScope:
    """What the study in ``root`` can judge, from the preset its sweep recorded (every claim without a record)."""
    recorded = recorded_preset(root)
    if recorded is None:
        return StudyScope()
    name, preset = recorded
    return StudyScope(name, preset.converged, preset.pipeline_check)


def analyse_study(root: str | Path, out_dir: str | Path | None = None, scope: StudyScope | None = None,
                  claims: Sequence[Claim] | None = None) -> StudyFiles:
    """Aggregates every finished run below ``root`` and judges the claims on them.

    Args:
        root: the study directory.
        out_dir: where the five files go (default ``root``; created).
        scope: what the study's preset can judge (default: :func:`study_scope` of ``root``).
        claims: the claims to judge (default: the thesis', :func:`~stochrelax.claims.load_claims`).

    Raises:
        RunDirError: if there is no finished run below ``root``, or its sweep record is damaged.
    """
    scope = study_scope(root) if scope is None else scope
    rows = aggregate(read_study(root))
    out_dir = Path(out_dir or root)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = write_results(rows, out_dir, failed_runs_text(root))
    judged = evaluate_claims(load_claims() if claims is None else claims, rows, scope)
    power = power_rows(judged)
    verdicts = write_verdicts(judged, out_dir, scope, appendix=power_markdown(power, judged))
    return StudyFiles(*results, *verdicts, write_power(power, out_dir))


FIGURE_RUNS = ("relu_deterministic-batch_norm", "relu_adversarial_fgsm", "relu_noise-gaussian-additive-0.05",
               "relu_noise-logistic-additive-0.05", "sign_noise-logistic-ste", "relu_learnable", "relu_input_noise-0.25")
"""Configurations of the thesis study whose seed-0 run gets the per-run figures of the report."""


def figure_runs(root: Path) -> list[Path]:
    """The finished seed-0 runs of :data:`FIGURE_RUNS`; for another grid, its first finished runs."""
    finished = [root / f"{name}-seed0" for name in FIGURE_RUNS if is_finished(root / f"{name}-seed0")]
    return finished or sorted(path.parent for path in root.glob(f"*/{SUMMARY_FILE}"))[:len(FIGURE_RUNS)]


class StudyOutcome(NamedTuple):
    """What :func:`reproduce` did and wrote."""

    jobs: list[JobResult]  # every job of the sweep, in the order they finished
    files: StudyFiles
    report: Path  # the report's index.html


def reproduce(runs: Sequence[PlannedRun], out_dir: str | Path, *, command: str, figure_images: int = 2000,
              tsne_count: int = 1000, data_dir: str | Path | None = None, progress: bool = False,
              **sweep_options: Any) -> StudyOutcome:
    """Runs a study end to end: the sweep, results and verdicts, and the report ``OUT/report/index.html``.

    Everything is resumable: run it again after an interruption and finished work is kept.

    Args:
        runs: the grid's runs (:func:`stochrelax.grid.load_grid`).
        out_dir: the study directory.
        command: the command line that reproduces the study, shown in the report.
        figure_images: first N test images the report's figures run the models on.
        tsne_count: test images per t-SNE plot.
        data_dir: Fashion-MNIST directory (default: the usual search).
        progress: progress bars.
        **sweep_options: :func:`~stochrelax.sweep.run_sweep`'s settings (seeds, preset, backend, workers,
            ray_address, device, on_result).
    """
    out_dir = Path(out_dir)
    jobs = run_sweep(runs, out_dir, data_dir=data_dir, progress=progress, **sweep_options)
    files = analyse_study(out_dir)
    data = load_fashion_mnist(data_dir).limit(test_limit=figure_images)
    report = build_report(figure_runs(out_dir), out_dir / "report", data, command, tsne_count, progress=progress,
                          study_root=out_dir)
    return StudyOutcome(jobs, files, report)
