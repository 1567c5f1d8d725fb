"""Sweeps: every run × seed of an experiment grid (:mod:`stochrelax.study.grid`), trained and attacked.

:func:`run_sweep` executes a grid: every run × seed is one job that trains the run
(``OUT/NAME-seedS``) and attacks it with the thesis' attacks, single-draw and with EOT, and
with the adaptive per-example worst case (:mod:`stochrelax.study.jobs`, :mod:`stochrelax.evaluation.worst_case`).
Jobs go to a local process pool (the CPU threads divided among the workers) or to a Ray
cluster, one task per job, and the sweep shows where it is (:mod:`stochrelax.study.progress`). Everything a job does is resumable: a
finished run is not trained again, an unfinished one continues from its last epoch
checkpoint, and a run whose attack table is complete is not attacked again — so an
interrupted sweep is finished by running the same command again. A preset
(:data:`stochrelax.study.grid.PRESETS`) scales epochs, data and attack budgets.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import multiprocessing
import os
import signal
import sys
import threading
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NamedTuple

import torch
from tqdm import tqdm

from stochrelax.base.files import write_text_atomically
from stochrelax.rundir.config import ConfigError, load_config
from stochrelax.rundir.layout import CONFIG_FILE, LOCK_FILE, RunDirError, is_finished, read_json, run_lock
from stochrelax.study.grid import PRESETS, PlannedRun, Preset
from stochrelax.study.jobs import (JobResult, SweepJob, attacks_complete, certification_complete, plan_jobs,
                                   planned_attacks, planned_certification, run_job)
from stochrelax.study.progress import SweepProgress, SweepTracker

__all__ = ["run_sweep", "BACKENDS", "HEARTBEAT_SECONDS", "SweepInterrupted", "SWEEP_FILE", "unfinished_work",
           "usable_cpus", "recorded_preset"]

SWEEP_FILE = "sweep.json"
HEARTBEAT_SECONDS = 2.0  # how often a backend reports that it is still waiting, so that progress is redrawn


# --- backends ----------------------------------------------------------------------------------

class SweepInterrupted(RuntimeError):
    """A worker or node was lost; the message says how to continue."""


JobRunner = Callable[[list[SweepJob], Preset, str | None, str, int], Iterator[JobResult | None]]
"""Runs the jobs; yields each result as it arrives, and None every :data:`HEARTBEAT_SECONDS` while waiting."""


def usable_cpus() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _die_with_parent() -> None:
    """Asks Linux to SIGKILL this process when the process that started it dies, however it
    dies: a worker left behind would go on training, holding its run's lock, and make the
    rerun of the sweep find that run busy. Elsewhere a worker ends after its current job."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() == 1:  # the parent died before the request was made
            os.kill(os.getpid(), signal.SIGKILL)


def _worker_init(threads: int) -> None:
    """Pool workers leave Ctrl-C to the sweep, which stops them (a terminal sends SIGINT to all),
    and die with the sweep. Their progress bars lock with a thread lock: tqdm's default, a
    multiprocessing lock, would be left behind by a stopped worker (a "leaked semaphore" warning)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    tqdm.set_lock(threading.RLock())
    torch.set_num_threads(threads)


def worker_threads(workers: int) -> int:
    """torch threads per worker when ``workers`` processes share this machine's cores."""
    return max(1, usable_cpus() // workers)


def process_pool(workers: int) -> ProcessPoolExecutor:
    """The local backend's pool: ``workers`` spawned processes (so CUDA and threads start
    clean), each with :func:`worker_threads` torch threads: two torch processes with all
    threads each on the same cores run 10–20× slower than one."""
    return ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_worker_init,
                               initargs=(worker_threads(workers),))


def _clear_locks(jobs: list[SweepJob]) -> None:
    """Empties the lock files that stopped workers left holding their pid (the locks themselves died with them)."""
    for job in jobs:
        if (job.run_dir / LOCK_FILE).is_file():
            try:
                with run_lock(job.run_dir):
                    pass
            except RunDirError:
                continue  # held by another process: its pid belongs there


def _local(jobs: list[SweepJob], preset: Preset, data_dir: str | None, device: str, workers: int,
           address: str | None = None) -> Iterator[JobResult | None]:
    """Runs the jobs on a :func:`process_pool`. On Ctrl-C the workers are stopped at once:
    every file they write is replaced atomically, so nothing is lost but the epoch in progress."""
    threads = worker_threads(workers)
    children_before = set(multiprocessing.active_children())
    with process_pool(workers) as pool:
        futures = [pool.submit(run_job, job, preset, data_dir, device, threads) for job in jobs]
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, timeout=HEARTBEAT_SECONDS, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
                if not done:
                    yield None
        except BrokenProcessPool:
            raise SweepInterrupted("a worker process died (killed, or out of memory); run the same command "
                                   "again to continue: finished runs are kept, unfinished ones resume") from None
        except KeyboardInterrupt:
            # Stop the workers first and let the pool see them gone before anything is cancelled:
            # cancelling first races the pool's own bookkeeping (an InvalidStateError from its thread).
            workers_started = set(multiprocessing.active_children()) - children_before
            for worker in workers_started:
                worker.terminate()
            for worker in workers_started:
                worker.join()
            pool.shutdown(wait=True)
            _clear_locks(jobs)
            raise
        finally:
            for future in futures:
                future.cancel()


def _ray(jobs: list[SweepJob], preset: Preset, data_dir: str | None, device: str, workers: int,
         address: str | None = None) -> Iterator[JobResult | None]:
    """One Ray task per job on an existing cluster (``ray.init(address=...)``), joined at
    once so that a missing cluster is reported before anything is written. Each task uses
    one CPU thread (``workers`` is the cluster's business: Ray runs as many tasks as it has
    CPUs). A task lost with its node is retried by Ray and resumes from the run's
    checkpoint. ``OUT`` must be on a file system every node sees, and every node needs
    stochrelax and Fashion-MNIST."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--backend ray needs Ray: pip install 'stochrelax[ray]'") from None
    try:
        ray.init(address=address or "auto", log_to_driver=False, logging_level="warning")
    except ConnectionError as error:
        reason = str(error).strip().splitlines()[0]
        raise ConfigError(f"--backend ray: no Ray cluster to join ({reason}); start one with `ray start --head` "
                          "or pass --ray-address HOST:PORT") from None
    task = ray.remote(num_cpus=1, max_retries=3)(run_job)
    return _ray_results(ray, [task.remote(job, preset, data_dir, device, 1) for job in jobs])


def _ray_results(ray: Any, pending: list) -> Iterator[JobResult | None]:
    """Each task's result as it finishes (None while waiting); disconnects from the cluster at the end."""
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1, timeout=HEARTBEAT_SECONDS)
            if not done:
                yield None
                continue
            try:
                yield ray.get(done[0])
            except ray.exceptions.RayError as error:
                raise SweepInterrupted(f"a Ray task failed ({type(error).__name__}); run the same command again "
                                       "to continue: finished runs are kept, unfinished ones resume") from None
    finally:
        ray.shutdown()


BACKENDS: dict[str, JobRunner] = {"local": _local, "ray": _ray}


def run_sweep(runs: Iterable[PlannedRun], out_dir: str | Path, *, seeds: int = 1, preset: str | Preset = "quick",
              backend: str = "local", workers: int = 1, ray_address: str | None = None,
              data_dir: str | Path | None = None, device: str = "cpu", progress: bool = False,
              on_result: Callable[[JobResult], None] | None = None,
              on_progress: Callable[[SweepProgress], None] | None = None) -> list[JobResult]:
    """Trains and attacks every run × seed of a grid; see the module docstring.

    Writes ``OUT/sweep.json`` (the plan, then each job's outcome) and one run directory
    per job. Finished work found in ``out_dir`` is kept, not redone.

    Args:
        runs: the grid's runs (:func:`load_grid`).
        out_dir: the study directory.
        seeds: seeds 0 … seeds−1 of every run.
        preset: a name from :data:`PRESETS`, or a :class:`Preset`.
        backend: a name from :data:`BACKENDS`.
        workers: local processes working at once.
        ray_address: the Ray cluster (default: the one ``ray start`` left for this machine).
        data_dir: Fashion-MNIST directory (default: the usual search).
        device: ``cpu`` or ``cuda``; the device of every job.
        progress: a progress bar over the jobs, with the jobs in progress (epoch k/n), the resumed and
            skipped ones, and the time left estimated from measured job times (:mod:`stochrelax.study.progress`).
        on_result: called with each job's result as it arrives.
        on_progress: called with a :class:`~stochrelax.study.progress.SweepProgress` after each result, and
            every :data:`HEARTBEAT_SECONDS` while jobs run.

    Returns:
        The results of every job, in the order they finished.

    Raises:
        ConfigError: for an unknown preset or backend, or fewer than one worker or seed.
        SweepInterrupted: when a worker or Ray task is lost (what finished is kept).
    """
    named = {"preset": (preset, PRESETS)} if isinstance(preset, str) else {}
    for kind, (name, registry) in {**named, "backend": (backend, BACKENDS)}.items():
        if name not in registry:
            raise ConfigError(f"unknown {kind} {name!r}; valid: {', '.join(registry)}")
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    settings = PRESETS[preset] if isinstance(preset, str) else preset
    jobs = plan_jobs(runs, seeds, settings, out_dir)
    out_dir = Path(out_dir).resolve()
    preset_name = preset if isinstance(preset, str) else "custom"
    recorded = _recorded_jobs(out_dir, preset_name, settings)
    runner = BACKENDS[backend](jobs, settings, None if data_dir is None else str(data_dir), device, workers,
                               ray_address)
    out_dir.mkdir(parents=True, exist_ok=True)
    planned = {job.label: recorded.get(job.label, {"run": job.name, "seed": job.seed, "status": "pending"})
               for job in jobs}
    record = {"preset": preset_name, "preset_settings": asdict(settings), "seeds": seeds, "backend": backend,
              "jobs": {**recorded, **planned}}  # jobs of an earlier sweep of this study stay on record
    _write_sweep_file(out_dir, record)
    results = []
    tracker = SweepTracker(jobs, settings, workers)
    bar_format = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} jobs [{elapsed}] {postfix}"
    with tqdm(total=len(jobs), desc="sweep", bar_format=bar_format, disable=not progress) as bar:
        for result in runner:
            if result is not None:
                results.append(result)
                tracker.finish(result)
                record["jobs"][result.label].update(asdict(result), work=result.work)
                _write_sweep_file(out_dir, record)
                bar.update()
                if on_result is not None:
                    on_result(result)
            snapshot = tracker.snapshot()
            bar.set_postfix_str(snapshot.line())
            if on_progress is not None:
                on_progress(snapshot)
    return results


_DECLARATIONS = ("converged", "pipeline_check")  # what a preset says of its verdicts, not how it trains or attacks


def _recorded_jobs(out_dir: Path, preset_name: str, settings: Preset) -> dict[str, dict[str, Any]]:
    """The jobs an earlier sweep of ``out_dir`` recorded, after checking that it used the same preset.

    Raises:
        ConfigError: if the study was made with another preset: continuing it would mix runs of
            two protocols in one study (and overwrite its record).
    """
    if not (out_dir / SWEEP_FILE).exists():
        return {}
    record = _read_record(out_dir)
    recorded, wanted = asdict(record.preset), asdict(settings)
    differences = [key for key, value in wanted.items()  # a field added since the study began applies as it is
                   if key not in _DECLARATIONS and key in record.settings_recorded and recorded[key] != value]
    if differences:
        raise ConfigError(f"{out_dir} is a study made with the {record.name} preset; this sweep asks for "
                          f"{preset_name}, which differs in {', '.join(differences)}: continue it with --preset "
                          f"{record.name} or choose another --out")
    return record.jobs


def unfinished_work(out_dir: str | Path) -> list[str]:
    """What the sweep recorded in ``out_dir/sweep.json`` still lacks: one line per run that
    failed, is not trained, or misses attack results of its preset; empty when complete."""
    out_dir = Path(out_dir)
    if not (out_dir / SWEEP_FILE).exists():
        return [f"{out_dir} holds no {SWEEP_FILE}: it was not written by `stochrelax sweep`"]
    record = _read_record(out_dir)
    preset = record.preset
    problems = []
    for label, job in record.jobs.items():
        run_dir = out_dir / label
        if job["status"] != "done":
            problems.append(f"{label}: {job['status']}" + (f" ({job['error']})" if job.get("error") else ""))
            continue
        if not is_finished(run_dir):
            problems.append(f"{label}: not trained")
            continue
        config = load_config(run_dir / CONFIG_FILE)
        if not attacks_complete(run_dir, planned_attacks(config, preset)):
            problems.append(f"{label}: attack results incomplete")
        elif not certification_complete(run_dir, planned_certification(config, preset, config.train.seed),
                                        preset.certify_limit):
            problems.append(f"{label}: certificates incomplete")
    return problems


def recorded_preset(out_dir: str | Path) -> tuple[str, Preset] | None:
    """The preset's name and settings that made the study in ``out_dir``; None without a ``sweep.json``."""
    if not (Path(out_dir) / SWEEP_FILE).exists():
        return None
    record = _read_record(Path(out_dir))
    return record.name, record.preset


class _SweepRecord(NamedTuple):
    """What ``sweep.json`` records of a study."""

    name: str  # the preset's name ("custom" for one given as settings)
    preset: Preset
    jobs: dict[str, dict[str, Any]]  # label -> the job's plan and outcome
    settings_recorded: frozenset[str]  # the preset's fields it recorded (an older version records fewer)


def _read_record(out_dir: Path) -> _SweepRecord:
    """``sweep.json``, checked: its preset and its jobs.

    Raises:
        RunDirError: if it is damaged.
    """
    path = out_dir / SWEEP_FILE
    fix = "move the study directory away or choose another --out"
    record = read_json(path, fix)
    try:
        preset = Preset.from_dict(record["preset_settings"])
        if not isinstance(record["preset"], str) or not all(
                isinstance(job, dict) and isinstance(job["status"], str) for job in record["jobs"].values()):
            raise ValueError("a field of the wrong type")
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise RunDirError(f"{path} is damaged ({type(error).__name__}: {error}); {fix}") from None
    return _SweepRecord(record["preset"], preset, record["jobs"], frozenset(record["preset_settings"]))


def _write_sweep_file(out_dir: Path, record: dict[str, Any]) -> None:
    write_text_atomically(out_dir / SWEEP_FILE, json.dumps(record, indent=2) + "\n")
