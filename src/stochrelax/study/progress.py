"""Where a running sweep is: jobs finished, resumed, skipped and failed, the jobs in progress
with their epoch, and how long it has left (:mod:`stochrelax.study.eta`).

:class:`SweepTracker` reads what the jobs leave in their run directories — a job in progress
holds its run's lock (:func:`stochrelax.rundir.layout.run_lock`), its epochs are lines of
``metrics.jsonl`` with their seconds, its attacks' seconds are in ``attacks.json`` — so it sees
the work of every backend, on this machine or on a cluster's shared file system, without
messages from the workers.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import NamedTuple, Sequence

from stochrelax.rundir.layout import LOCK_FILE, METRICS_FILE, RunDirError, is_finished, read_attack_table
from stochrelax.rundir.records import read_metrics
from stochrelax.study.eta import Cost, Measured, estimate, job_kind, makespan, noise_ratios_of
from stochrelax.study.grid import Preset
from stochrelax.study.jobs import JobResult, SweepJob, attacks_complete, planned_attacks

__all__ = ["SweepProgress", "SweepTracker", "format_duration"]


def format_duration(seconds: float) -> str:
    """``1h05m``, ``12m30s`` or ``45s``."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _last_progress(job: SweepJob) -> float:
    """When the job last finished a step: its last epoch, else when it took its run's lock (file times)."""
    for name in (METRICS_FILE, LOCK_FILE):
        try:
            return (job.run_dir / name).stat().st_mtime
        except OSError:
            continue
    return time.time()


class SweepProgress(NamedTuple):
    """A snapshot of a sweep."""

    finished: int  # jobs done or failed in this sweep
    total: int
    failed: int
    resumed: int  # finished jobs that continued an unfinished run
    skipped: int  # finished jobs that found their run complete
    running: tuple[tuple[str, int, int], ...]  # (label, epochs done, epochs) of each job in progress
    remaining_seconds: float | None  # None until some job of the sweep has been measured

    def line(self) -> str:
        """One line for a progress display, e.g. ``ETA 12m30s · 2 resumed · relu-seed0 2/3``."""
        parts = ["ETA " + ("?" if self.remaining_seconds is None else format_duration(self.remaining_seconds))]
        parts += [f"{count} {name}" for name, count in (("resumed", self.resumed), ("skipped", self.skipped),
                                                         ("failed", self.failed)) if count]
        parts += [f"{label} {done}/{epochs}" for label, done, epochs in self.running]
        return " · ".join(parts)


@dataclass
class _JobState:
    """What the tracker knows of one job."""

    epochs_done: int  # epochs in its metrics
    attacked: bool  # its attack table is complete
    epoch_seconds: list[float]  # seconds of each recorded epoch
    attack_seconds: float | None  # measured seconds of its attacks


class SweepTracker:
    """Follows the jobs of one sweep and estimates the time it has left.

    Args:
        jobs: the sweep's jobs, in plan order.
        preset: the sweep's preset (its attack settings scale the extrapolations).
        workers: jobs run at once.
    """

    def __init__(self, jobs: Sequence[SweepJob], preset: Preset, workers: int) -> None:
        self.jobs, self.preset, self.workers = list(jobs), preset, workers
        self.results: dict[str, JobResult] = {}
        self._by_label = {job.label: job for job in self.jobs}
        self.states = {job.label: self._read(job) for job in self.jobs}

    def _read(self, job: SweepJob) -> _JobState:
        try:
            metrics = read_metrics(job.run_dir)
            attacked = is_finished(job.run_dir) and attacks_complete(job.run_dir,
                                                                     planned_attacks(job.config, self.preset))
            table = read_attack_table(job.run_dir) if attacked else None
        except (RunDirError, KeyError, TypeError):  # a damaged run: the job will say so; estimate it from scratch
            return _JobState(0, False, [], None)
        seconds = [record["train_seconds"] + record.get("eval_seconds", 0.0) for record in metrics
                   if "train_seconds" in record]
        return _JobState(len(metrics), attacked, seconds, None if table is None else table.get("seconds"))

    def finish(self, result: JobResult) -> None:
        """Records a finished job, and what it measured."""
        self.results[result.label] = result
        state = self._read(self._by_label[result.label])
        if result.evaluated:
            state.attack_seconds = result.attack_seconds
        self.states[result.label] = state

    def _running(self) -> list[SweepJob]:
        """Jobs not finished whose run's lock holds a process id (a lock is emptied on release)."""
        def locked(job: SweepJob) -> bool:
            try:
                return (job.run_dir / LOCK_FILE).read_text().strip() != ""
            except OSError:
                return False

        return [job for job in self.jobs if job.label not in self.results and locked(job)]

    def _measured(self) -> dict[str, Measured]:
        """Per configuration (over its seeds): median seconds per epoch and mean seconds of attacks."""
        epochs: dict[str, list[float]] = {}
        attacks: dict[str, list[float]] = {}
        configs = {}
        for job in self.jobs:
            state = self.states[job.label]
            configs[job.name] = job.config
            epochs.setdefault(job.name, []).extend(state.epoch_seconds)
            if state.attack_seconds is not None:
                attacks.setdefault(job.name, []).append(state.attack_seconds)
        return {name: Measured(job_kind(configs[name]), configs[name],
                               Cost(statistics.median(epochs[name]) if epochs.get(name) else None,
                                    statistics.fmean(attacks[name]) if attacks.get(name) else None))
                for name in configs if epochs.get(name) or attacks.get(name)}

    def snapshot(self) -> SweepProgress:
        """Reads the jobs in progress and estimates the time left."""
        running = self._running()
        for job in running:
            self.states[job.label] = self._read(job)
        measured = self._measured()
        samples = self.preset.attack.prediction_samples, self.preset.attack.eot_samples
        ratios = noise_ratios_of(measured)  # once per snapshot, not once per job
        remaining: dict[str, float | None] = {}
        for job in self.jobs:
            if job.label in self.results:
                continue
            state, cost = self.states[job.label], estimate(job.config, measured, job.name, *samples, ratios)
            epochs_left = max(0, job.config.train.epochs - state.epochs_done)
            training = 0.0 if epochs_left == 0 else None if cost.epoch_seconds is None else \
                epochs_left * cost.epoch_seconds
            attacks = 0.0 if state.attacked else cost.attack_seconds
            remaining[job.label] = None if training is None or attacks is None else training + attacks
        now = time.time()
        for job in running:  # the part of its next step already done: since its last epoch, or its start
            if remaining[job.label] is not None:
                remaining[job.label] = max(0.0, remaining[job.label] - (now - _last_progress(job)))
        running_labels = {job.label for job in running}
        known = None not in remaining.values()
        left = makespan([remaining[label] for label in running_labels],
                        [seconds for label, seconds in remaining.items() if label not in running_labels],
                        self.workers) if known else None
        results = self.results.values()
        return SweepProgress(
            len(self.results), len(self.jobs), sum(result.status == "failed" for result in results),
            sum(result.resumed_from > 0 for result in results),
            sum(result.status == "done" and not (result.trained or result.attacked) for result in results),
            tuple((job.label, self.states[job.label].epochs_done, job.config.train.epochs) for job in running), left)
