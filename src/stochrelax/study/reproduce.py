"""The study workflow: a sweep's runs aggregated over seeds, each claim judged, and the report.

:func:`analyse_study` is what ``stochrelax results`` runs: it aggregates every finished run
below a study directory (:mod:`stochrelax.analysis.results`) and judges the thesis' claims on them
(:mod:`stochrelax.analysis.verdicts`), within what the preset that made the study can tell
(:func:`study_scope`). :func:`reproduce` is ``stochrelax reproduce``: the sweep
(:func:`stochrelax.study.sweep.run_sweep`), then :func:`analyse_study`, then the report
(:func:`stochrelax.report.page.build_report`). Each step writes files and the next reads them, so a
study can be analysed again, or reported again, without training anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

from stochrelax.analysis.claims import Claim, load_claims
from stochrelax.analysis.power import power_markdown, power_rows, write_power
from stochrelax.analysis.results import RunResults, aggregate, failed_runs_text, read_study, write_results
from stochrelax.analysis.verdicts import ClaimResult, StudyScope, evaluate_claims, write_verdicts
from stochrelax.data.fashion_mnist import load_fashion_mnist
from stochrelax.report.page import build_report
from stochrelax.rundir.layout import SUMMARY_FILE, is_finished
from stochrelax.study.grid import PlannedRun
from stochrelax.study.jobs import JobResult
from stochrelax.study.looks import (LookPlan, configurations_to_extend, judge_looks, open_claims, read_look_plan,
                                    runs_of_look, write_look_plan)
from stochrelax.study.sweep import recorded_preset, run_sweep

__all__ = ["StudyFiles", "study_scope", "judge_study", "analyse_study", "FIGURE_RUNS", "figure_runs", "StudyOutcome",
           "reproduce", "sweep_in_looks"]


class StudyFiles(NamedTuple):
    """The files :func:`analyse_study` writes."""

    results_csv: Path  # long format: one row per configuration, cell and variant
    results_md: Path  # wide: one row per configuration
    verdicts_csv: Path
    verdicts_md: Path
    power_csv: Path  # per claim, the seeds that would decide it (stochrelax.analysis.power)


def study_scope(root: str | Path) -> StudyScope:
    """What the study in ``root`` can judge, from the preset its sweep recorded (every claim without a record)."""
    recorded = recorded_preset(root)
    if recorded is None:
        return StudyScope()
    name, preset = recorded
    return StudyScope(name, preset.converged, preset.pipeline_check)


def _looks_taken(runs: Sequence[RunResults], plan: LookPlan) -> int:
    """How many of the plan's looks the runs have reached: a later look is taken once a seed of it exists."""
    seeds = max(run.config.train.seed for run in runs)
    return 1 + sum(seeds >= earlier for earlier in plan.seeds[:-1])


def judge_study(root: str | Path, runs: Sequence[RunResults], scope: StudyScope,
                claims: Sequence[Claim] | None = None, looks: int | None = None) -> list[ClaimResult]:
    """The claims judged on a study's runs: at once, or look by look where ``root`` records a
    :class:`~stochrelax.study.looks.LookPlan` (``looks.json``).

    Args:
        looks: judge with the plan's first ``looks`` looks (default: every look the runs have reached).
    """
    claims = load_claims() if claims is None else claims
    plan = read_look_plan(root)
    if plan is None:
        return evaluate_claims(claims, aggregate(runs), scope)
    taken = _looks_taken(runs, plan) if looks is None else looks
    rows_per_look = [aggregate(runs_of_look(runs, plan, look)) for look in range(taken)]
    return judge_looks(claims, rows_per_look, plan, scope)


def analyse_study(root: str | Path, out_dir: str | Path | None = None, scope: StudyScope | None = None,
                  claims: Sequence[Claim] | None = None) -> StudyFiles:
    """Aggregates every finished run below ``root`` and judges the claims on them.

    Args:
        root: the study directory.
        out_dir: where the five files go (default ``root``; created).
        scope: what the study's preset can judge (default: :func:`study_scope` of ``root``).
        claims: the claims to judge (default: the thesis', :func:`~stochrelax.analysis.claims.load_claims`).

    Raises:
        RunDirError: if there is no finished run below ``root``, or its sweep record is damaged.
    """
    scope = study_scope(root) if scope is None else scope
    runs = read_study(root)
    out_dir = Path(out_dir or root)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = write_results(aggregate(runs), out_dir, failed_runs_text(root))
    judged = judge_study(root, runs, scope, claims)
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
              looks: LookPlan | None = None, on_plan: Callable[[str], None] | None = None,
              **sweep_options: Any) -> StudyOutcome:
    """Runs a study end to end: the sweep, results and verdicts, and the report ``OUT/report/index.html``.

    Everything is resumable: run it again after an interruption and finished work is kept.

    Args:
        runs: the grid's runs (:func:`stochrelax.study.grid.load_grid`).
        out_dir: the study directory.
        command: the command line that reproduces the study, shown in the report.
        figure_images: first N test images the report's figures run the models on.
        tsne_count: test images per t-SNE plot.
        data_dir: Fashion-MNIST directory (default: the usual search).
        progress: progress bars.
        looks: judge in looks (:mod:`stochrelax.study.looks`): the first look's seeds for every run, then more
            seeds only for the configurations that a still-inconclusive claim reads; ``seeds`` is then the
            plan's. None: one look at ``seeds``.
        on_plan: called with a line saying what each further look will run, and why.
        **sweep_options: :func:`~stochrelax.study.sweep.run_sweep`'s settings (seeds, preset, backend, workers,
            ray_address, device, on_result).
    """
    out_dir = Path(out_dir)
    if looks is None:
        jobs = run_sweep(runs, out_dir, data_dir=data_dir, progress=progress, **sweep_options)
    else:
        jobs = sweep_in_looks(runs, out_dir, looks, on_plan, data_dir=data_dir, progress=progress,
                              **{key: value for key, value in sweep_options.items() if key != "seeds"})
    files = analyse_study(out_dir)
    data = load_fashion_mnist(data_dir).limit(test_limit=figure_images)
    report = build_report(figure_runs(out_dir), out_dir / "report", data, command, tsne_count, progress=progress,
                          study_root=out_dir)
    return StudyOutcome(jobs, files, report)


def sweep_in_looks(runs: Sequence[PlannedRun], out_dir: str | Path, plan: LookPlan,
                   on_plan: Callable[[str], None] | None = None, claims: Sequence[Claim] | None = None,
                   **sweep_options: Any) -> list[JobResult]:
    """The sweep of every run at the first look's seeds, then, at each further look, of only the
    configurations that a claim still open reads, at that look's seeds. The plan is recorded first
    (``looks.json``), so that it cannot follow the results; a rerun resumes where it stopped, and each
    look's choice of configurations is made from the looks before it alone.

    Args:
        runs: the grid's runs.
        out_dir: the study directory.
        plan: the looks' seeds and errors.
        on_plan: called with a line per further look: the claims open, the jobs it adds.
        claims: the claims that decide (default: the thesis').
        **sweep_options: :func:`~stochrelax.study.sweep.run_sweep`'s settings but ``seeds``.

    Returns:
        The results of every job of every look.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_look_plan(out_dir, plan)
    jobs = run_sweep(runs, out_dir, seeds=plan.seeds[0], **sweep_options)
    by_name = {run.name: run for run in runs}
    for look in range(1, len(plan.seeds)):
        judged = judge_study(out_dir, read_study(out_dir), study_scope(out_dir), claims, looks=look)
        extend = [by_name[name] for name in configurations_to_extend(judged) if name in by_name]
        still_open = [result.claim.id for result in open_claims(judged)]
        added = len(extend) * (plan.seeds[look] - plan.seeds[look - 1])
        if on_plan is not None:
            on_plan(f"{plan.describe(look)}: {len(still_open)} claims still open"
                    + (f" ({', '.join(still_open)})" if still_open else "")
                    + f" -> {added} more jobs: seeds {plan.seeds[look - 1]}-{plan.seeds[look] - 1} of the "
                      f"{len(extend)} configurations they read")
        if not extend:
            break
        jobs += run_sweep(extend, out_dir, seeds=plan.seeds[look], **sweep_options)
    return jobs
