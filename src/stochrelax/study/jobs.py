"""The jobs of a sweep: one run × seed each, trained (or resumed, or found finished) and attacked.

:func:`plan_jobs` turns a grid's runs into jobs; :func:`run_job` does one, in whichever worker
process or Ray task it lands, and reports a :class:`JobResult`: what it did (trained from the
start, resumed after an epoch, attacked, certified (a run with input noise), or skipped because
it was complete) and how long training and the evaluation after it took, which the sweep's remaining-time estimate learns from
(:mod:`stochrelax.study.progress`).
"""

from __future__ import annotations

import functools
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Iterable

import torch

from stochrelax.data.fashion_mnist import FashionMNIST, load_fashion_mnist
from stochrelax.evaluation.certification import CertifySettings, certify_run, read_certification
from stochrelax.evaluation.robustness import attack_plan, attack_run
from stochrelax.evaluation.table import budget_key
from stochrelax.rundir.config import ConfigError, RunConfig
from stochrelax.rundir.layout import RunDirError, is_finished, load_run, read_attack_table
from stochrelax.rundir.records import read_events
from stochrelax.study.grid import RUN_NAME_RULE, PlannedRun, Preset
from stochrelax.training.loop import TrainingDiverged, train_run

__all__ = ["SweepJob", "JobResult", "plan_jobs", "planned_attacks", "attacks_complete", "planned_certification",
           "certification_complete", "run_job"]


@dataclass(frozen=True)
class SweepJob:
    """One run × seed of a sweep: train ``config`` into ``run_dir``, then attack it."""

    name: str  # the grid's run name
    seed: int
    config: RunConfig  # preset applied, train.seed = seed
    run_dir: Path

    @property
    def label(self) -> str:
        return self.run_dir.name


@dataclass(frozen=True)
class JobResult:
    """What a job reports back to the sweep."""

    label: str
    status: str  # "done" or "failed"
    trained: bool  # training ran (not found finished)
    attacked: bool  # attacks ran (not found complete)
    seconds: float
    test_accuracy: float | None = None
    error: str | None = None
    resumed_from: int = 0  # the epoch training continued after (0: from the start, or not trained)
    train_seconds: float = 0.0
    attack_seconds: float = 0.0  # the attacks and, for a run with input noise, its certification
    certified: bool = False  # certification ran (not found complete)

    @property
    def evaluated(self) -> bool:
        """Whether anything ran after training: attacks or certification."""
        return self.attacked or self.certified

    @property
    def work(self) -> str:
        """What the job did, in words: e.g. ``resumed after epoch 2 and attacked``, ``skipped (already complete)``."""
        training = (f"resumed after epoch {self.resumed_from}" if self.resumed_from else "trained") \
            if self.trained else ""
        done = [step for step in (training, "attacked" if self.attacked else "", "certified" if self.certified else "")
                if step]
        if not done:
            return "skipped (already complete)"
        return " and ".join(done) if len(done) < 3 else f"{', '.join(done[:-1])} and {done[-1]}"


def plan_jobs(runs: Iterable[PlannedRun], seeds: int, preset: Preset, out_dir: str | Path) -> list[SweepJob]:
    """Every run × seed (0 … seeds−1), seed-major: all runs of seed 0 come first, so an
    interrupted sweep has whole seeds rather than whole runs.

    Raises:
        ConfigError: for fewer than one seed, or a run whose directory would lie outside ``out_dir``.
    """
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}")
    out_dir = Path(out_dir).resolve()
    runs = list(runs)
    jobs = [SweepJob(run.name, seed, preset.apply(run.config, seed), out_dir / f"{run.name}-seed{seed}")
            for seed in range(seeds) for run in runs]
    for job in jobs:  # expand_grid allows only safe names; this guards runs made some other way
        if not job.run_dir.resolve().is_relative_to(out_dir):
            raise ConfigError(f"run {job.name!r} would be written to {job.run_dir.resolve()}, outside the study "
                              f"directory {out_dir}; rename the run ({RUN_NAME_RULE}) or remove the link")
    return jobs


@functools.lru_cache(maxsize=2)
def _data(data_dir: str | None) -> FashionMNIST:
    """Fashion-MNIST, read once per worker process."""
    return load_fashion_mnist(data_dir)


def planned_attacks(config: RunConfig, preset: Preset) -> list[tuple[str, float, int]]:
    """(attack, budget, EOT draws) of every row the preset measures on a run of ``config``."""
    return attack_plan(preset.attack, config.model.stochastic)


def attacks_complete(run_dir: Path, planned: list[tuple[str, float, int]]) -> bool:
    """Whether the run's attack table has every ``planned`` row."""
    table = read_attack_table(run_dir)
    if table is None:
        return False
    measured = {(row["attack"], budget_key(row["budget"]), row["eot_samples"]) for row in table["rows"]}
    return all((name, budget_key(budget), eot) in measured for name, budget, eot in planned)


def planned_certification(config: RunConfig, preset: Preset, seed: int) -> CertifySettings | None:
    """How the preset certifies a run of ``config`` with seed ``seed``: ``None`` for a run without input
    noise (Cohen et al.'s certificate needs noise on the input) or a preset that certifies no image."""
    if config.model.input_noise is None or not preset.certify_limit:
        return None
    return replace(preset.certify, seed=seed)


def certification_complete(run_dir: Path, settings: CertifySettings | None, images: int) -> bool:
    """Whether the run's ``certify.json`` certified ``images`` images with ``settings`` (always, for ``None``)."""
    if settings is None:
        return True
    record = read_certification(run_dir)
    return record is not None and record.get("examples") == images and record.get("settings") == asdict(settings)


def run_job(job: SweepJob, preset: Preset, data_dir: str | None = None, device: str = "cpu",
            threads: int | None = None) -> JobResult:
    """Trains (or resumes, or skips a finished) run, attacks it unless its table is complete, and certifies
    a run with input noise unless its certificates are (:func:`planned_certification`).

    Runs in a worker process: ``threads`` sets torch's intra-op threads there. A run
    whose training diverges, or whose directory holds something else, is reported as
    failed; other errors propagate.
    """
    if threads is not None:
        torch.set_num_threads(threads)
    start = time.perf_counter()
    data = _data(data_dir)
    trained = not is_finished(job.run_dir)
    events_before = len(read_events(job.run_dir)) if trained else 0
    try:
        summary = train_run(job.config, data, job.run_dir, device=device, resume=True)
    except (TrainingDiverged, RunDirError) as error:
        return JobResult(job.label, "failed", trained, False, time.perf_counter() - start, error=str(error))
    resumed = [event["epoch"] - 1 for event in read_events(job.run_dir)[events_before:]  # epochs done before
               if event["event"] == "resume"]
    trained_at = time.perf_counter()
    attacked = not attacks_complete(job.run_dir, planned_attacks(job.config, preset))
    if attacked:
        attack_run(load_run(job.run_dir), data.limit(test_limit=preset.attack_limit),
                   replace(preset.attack, seed=job.seed), device=device)
    certification = planned_certification(job.config, preset, job.seed)
    certified = not certification_complete(job.run_dir, certification, preset.certify_limit)
    if certified:
        certify_run(load_run(job.run_dir), data.limit(test_limit=preset.certify_limit), certification, device=device)
    end = time.perf_counter()
    return JobResult(job.label, "done", trained, attacked, end - start, summary["test_accuracy"],
                     resumed_from=resumed[0] if trained and resumed else 0, train_seconds=trained_at - start,
                     attack_seconds=end - trained_at, certified=certified)
