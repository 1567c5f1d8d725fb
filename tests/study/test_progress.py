"""Where a sweep is, read from its run directories: jobs in progress and their epoch, resumed and skipped
jobs, and the time left worked out by hand from the seconds the runs recorded."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from stochrelax.evaluation.table import AttackSettings
from stochrelax.rundir import layout as runs, records
from stochrelax.rundir.config import parse_config
from stochrelax.study.grid import PlannedRun, Preset
from stochrelax.study.jobs import JobResult, plan_jobs
from stochrelax.study.progress import SweepTracker, format_duration
from tests.synthetic_runs import epoch_metrics

PRESET = Preset(epochs=3, train_limit=100, test_limit=100, attack_limit=10, attack=AttackSettings(
    eps=(0.05,), p=(0.3,), eot_samples=2, prediction_samples=2, check_convergence=False))
RELU = parse_config({"model": {"activation": {"kind": "relu"}}})
NOISY = parse_config({"model": {"activation": {"kind": "relu", "noise": "logistic", "std": 0.05}}})


def epochs_done(run_dir: Path, seconds: list[float]) -> None:
    runs.create_run_dir(run_dir)
    for epoch, spent in enumerate(seconds, start=1):
        records.append_metrics(run_dir, epoch_metrics(epoch, train_seconds=spent, eval_seconds=0.0))


def running(run_dir: Path) -> None:
    (run_dir / runs.LOCK_FILE).write_text(f"{os.getpid()}\n")
    now = time.time()
    for path in run_dir.iterdir():
        os.utime(path, (now, now))  # its last epoch ended just now


@pytest.mark.parametrize(("seconds", "text"), [(45, "45s"), (750, "12m30s"), (3900, "1h05m")])
def test_durations_read_as_hours_minutes_seconds(seconds, text):
    assert format_duration(seconds) == text


def test_the_time_left_adds_up_each_jobs_epochs_and_attacks_on_the_workers(tmp_path):
    jobs = plan_jobs([PlannedRun("relu", RELU), PlannedRun("noisy", NOISY)], 2, PRESET, tmp_path)
    tracker = SweepTracker(jobs, PRESET, workers=2)
    assert tracker.snapshot().remaining_seconds is None  # nothing measured yet

    epochs_done(tmp_path / "relu-seed0", [10.0, 10.0, 10.0])
    tracker.finish(JobResult("relu-seed0", "done", True, True, 50.0, 0.8, attack_seconds=20.0))
    epochs_done(tmp_path / "noisy-seed0", [15.0])
    running(tmp_path / "noisy-seed0")
    snapshot = tracker.snapshot()
    assert snapshot.running == (("noisy-seed0", 1, 3),)
    # noisy: its own epochs (15 s) and, unmeasured, attacks extrapolated from relu by √(P·K) = 2;
    # in progress 2 × 15 + 40 = 70 s; pending relu-seed1 3 × 10 + 20 = 50 s and noisy-seed1 3 × 15 + 40 = 85 s
    # on two workers: relu-seed1 0–50 then noisy-seed1 50–135 beside noisy-seed0 0–70
    assert snapshot.remaining_seconds == pytest.approx(135.0, abs=1.0)
    assert (snapshot.finished, snapshot.total, snapshot.resumed, snapshot.skipped) == (1, 4, 0, 0)
    assert snapshot.line().startswith("ETA 2m1") and "noisy-seed0 1/3" in snapshot.line()


def test_resumed_skipped_and_failed_jobs_are_counted(tmp_path):
    jobs = plan_jobs([PlannedRun("relu", RELU)], 3, PRESET, tmp_path)
    tracker = SweepTracker(jobs, PRESET, workers=1)
    for result in (JobResult("relu-seed0", "done", True, True, 5.0, 0.8, resumed_from=2),
                   JobResult("relu-seed1", "done", False, False, 0.1, 0.8),
                   JobResult("relu-seed2", "failed", True, False, 1.0, error="diverged")):
        tracker.finish(result)
    snapshot = tracker.snapshot()
    assert (snapshot.finished, snapshot.resumed, snapshot.skipped, snapshot.failed) == (3, 1, 1, 1)
    assert snapshot.remaining_seconds == 0.0
    assert snapshot.line() == "ETA 0s · 1 resumed · 1 skipped · 1 failed"
