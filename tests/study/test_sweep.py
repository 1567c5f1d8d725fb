"""Sweeps: planning jobs, running them on the local and Ray backends, resuming, failing alone, being killed."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from stochrelax.evaluation.certification import CertifySettings, read_certification
from stochrelax.evaluation.table import AttackSettings
from stochrelax.rundir import checkpoints, layout as runs, records
from stochrelax.rundir.config import ConfigError
from stochrelax.study.grid import PlannedRun, Preset, expand_grid
from stochrelax.study.jobs import plan_jobs
from stochrelax.study.sweep import SWEEP_FILE, run_sweep, unfinished_work


@pytest.mark.parametrize("name", ["../x", "../../x", "/tmp/abs"])
def test_planning_refuses_a_run_directory_outside_the_study_directory(name: str, tmp_path: Path) -> None:
    study = tmp_path / "a" / "b" / "study"
    with pytest.raises(ConfigError) as caught:
        plan_jobs([PlannedRun(name, expand_grid(TINY_GRID)[0].config)], 1, TINY, study)
    assert str(caught.value).startswith(f"run {name!r} would be written to ")
    assert f"outside the study directory {study.resolve()}" in str(caught.value)
    assert not (tmp_path / "a").exists()


def test_planning_refuses_a_run_directory_that_is_a_link_to_outside(tmp_path: Path) -> None:
    study = tmp_path / "study"
    study.mkdir()
    (study / "relu-seed0").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(ConfigError, match="outside the study directory"):
        plan_jobs(expand_grid(TINY_GRID), 1, TINY, study)


# --- running a sweep ---------------------------------------------------------------------------

TINY = Preset(epochs=2, train_limit=500, test_limit=200, attack_limit=40, attack=AttackSettings(
    eps=(0.05,), p=(0.3,), eot_samples=2, prediction_samples=2, check_convergence=False))
TINY_GRID = {"base": {"train": {"epochs": 100}},
             "groups": {"relu": {"set": {"model.activation.kind": "relu"}},
                        "noisy": {"set": {"model.activation": {"kind": "relu", "noise": "logistic", "std": 0.05}}}}}
ROWS = {"relu": {("fgsm", 0.05, 1), ("ifgsm-ll", 0.05, 1), ("missing", 0.3, 1)},
        "noisy": {("fgsm", 0.05, 1), ("fgsm", 0.05, 2), ("ifgsm-ll", 0.05, 1), ("ifgsm-ll", 0.05, 2),
                  ("missing", 0.3, 1)}}


def written_files(study: Path) -> dict[Path, int]:
    """When each file of a study was last written, but the sweep's record and the runs' lock files
    (a lock is taken, and its file touched, by every job that looks at its run)."""
    return {path: path.stat().st_mtime_ns for path in study.rglob("*")
            if path.is_file() and path.name not in {SWEEP_FILE, runs.LOCK_FILE}}


def attack_rows(run_dir: Path) -> list[tuple[str, float, int]]:
    return [(row["attack"], row["budget"], row["eot_samples"]) for row in runs.read_attack_table(run_dir)["rows"]]


def test_jobs_are_seed_major_with_one_directory_per_run_and_seed(tmp_path: Path) -> None:
    jobs = plan_jobs(expand_grid(TINY_GRID), 2, TINY, tmp_path)
    assert [job.label for job in jobs] == ["relu-seed0", "noisy-seed0", "relu-seed1", "noisy-seed1"]
    assert all(job.run_dir.parent == tmp_path.resolve() and job.config.train.seed == job.seed for job in jobs)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"preset": "huge"}, "unknown preset 'huge'; valid: smoke, quick, standard, thesis"),
    ({"backend": "slurm"}, "unknown backend 'slurm'; valid: local, ray"),
    ({"workers": 0}, "--workers must be at least 1"),
    ({"seeds": 0}, "--seeds must be at least 1"),
])
def test_bad_sweep_settings_are_refused_before_any_work(kwargs: dict, message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        run_sweep(expand_grid(TINY_GRID), tmp_path / "study", **kwargs)
    assert not (tmp_path / "study").exists()


@pytest.mark.slow
def test_sweep_trains_and_attacks_every_run_and_seed_and_a_rerun_redoes_nothing(real_data_dir, tmp_path) -> None:
    study = tmp_path / "study"
    results = run_sweep(expand_grid(TINY_GRID), study, seeds=2, preset=TINY, workers=2, data_dir=real_data_dir)
    assert sorted(result.label for result in results) == ["noisy-seed0", "noisy-seed1", "relu-seed0", "relu-seed1"]
    assert all(result.status == "done" and result.trained and result.attacked for result in results)
    for result in results:
        run_dir = study / result.label
        assert runs.read_summary(run_dir)["epochs"] == 2 and runs.read_summary(run_dir)["train_examples"] == 500
        assert sorted(attack_rows(run_dir)) == sorted(ROWS[result.label.split("-")[0]])
        assert runs.read_attack_table(run_dir)["test_examples"] == 40
    record = json.loads((study / SWEEP_FILE).read_text())
    assert {label: job["status"] for label, job in record["jobs"].items()} == {
        "relu-seed0": "done", "noisy-seed0": "done", "relu-seed1": "done", "noisy-seed1": "done"}
    files = written_files(study)

    assert {job["work"] for job in record["jobs"].values()} == {"trained and attacked"}
    assert all(job["train_seconds"] > 0 and job["attack_seconds"] > 0 for job in record["jobs"].values())

    snapshots = []
    again = run_sweep(expand_grid(TINY_GRID), study, seeds=2, preset=TINY, workers=1, data_dir=real_data_dir,
                      on_progress=snapshots.append)
    assert not any(result.trained or result.attacked for result in again) and len(again) == 4
    assert written_files(study) == files
    assert {job["work"] for job in json.loads((study / SWEEP_FILE).read_text())["jobs"].values()} == {
        "skipped (already complete)"}
    assert (snapshots[-1].finished, snapshots[-1].skipped, snapshots[-1].remaining_seconds) == (4, 4, 0.0)
    # a sweep of fewer seeds leaves the others on record
    record = json.loads((study / SWEEP_FILE).read_text())
    run_sweep(expand_grid(TINY_GRID), study, seeds=1, preset=TINY, workers=1, data_dir=real_data_dir)
    jobs = json.loads((study / SWEEP_FILE).read_text())["jobs"]
    assert {label: job["status"] for label, job in jobs.items()} == {label: "done" for label in record["jobs"]}
    assert {label: jobs[label] for label in ("relu-seed1", "noisy-seed1")} == {
        label: record["jobs"][label] for label in ("relu-seed1", "noisy-seed1")}


CERTIFYING = dataclasses.replace(TINY, certify_limit=4, certify=CertifySettings(n0=20, n=200, batch=200))
SMOOTHED_GRID = {"base": {"train": {"epochs": 100}},
                 "groups": {"smoothed": {"set": {"model.activation.kind": "relu", "model.input_noise.std": 0.25}},
                            "relu": {"set": {"model.activation.kind": "relu"}}}}


@pytest.mark.slow
def test_a_sweep_certifies_the_runs_with_input_noise_and_a_rerun_certifies_only_what_is_missing(
        real_data_dir, tmp_path) -> None:
    study = tmp_path / "study"
    results = {result.label: result for result in run_sweep(expand_grid(SMOOTHED_GRID), study, preset=CERTIFYING,
                                                              workers=1, data_dir=real_data_dir)}
    assert (results["smoothed-seed0"].certified, results["relu-seed0"].certified) == (True, False)
    assert results["smoothed-seed0"].work == "trained, attacked and certified"
    certification = read_certification(study / "smoothed-seed0")
    assert certification["examples"] == 4 and certification["sigma"] == 0.25
    assert certification["settings"] == dataclasses.asdict(dataclasses.replace(CERTIFYING.certify, seed=0))
    assert not (study / "relu-seed0" / runs.CERTIFY_JSON).exists()
    # the rows of a model with input noise are those of a stochastic model: with and without EOT
    assert ("fgsm", 0.05, 2) in attack_rows(study / "smoothed-seed0")
    assert unfinished_work(study) == []
    (study / "smoothed-seed0" / runs.CERTIFY_JSON).unlink()
    assert unfinished_work(study) == ["smoothed-seed0: certificates incomplete"]
    record = json.loads((study / SWEEP_FILE).read_text())  # a study begun before certification existed resumes
    for key in ("certify", "certify_limit"):
        del record["preset_settings"][key]
    (study / SWEEP_FILE).write_text(json.dumps(record))
    again = {result.label: result for result in run_sweep(expand_grid(SMOOTHED_GRID), study, preset=CERTIFYING,
                                                            workers=1, data_dir=real_data_dir)}
    assert (again["smoothed-seed0"].work, again["relu-seed0"].work) == ("certified", "skipped (already complete)")
    assert read_certification(study / "smoothed-seed0") == certification | {
        "seconds": read_certification(study / "smoothed-seed0")["seconds"]}


def test_a_sweep_into_a_study_of_another_preset_is_refused_before_any_work(tmp_path: Path) -> None:
    study = tmp_path / "study"
    study.mkdir()
    record = {"preset": "custom", "preset_settings": dataclasses.asdict(TINY), "seeds": 1, "backend": "local",
              "jobs": {"relu-seed0": {"run": "relu", "seed": 0, "status": "done"}}}
    (study / SWEEP_FILE).write_text(json.dumps(record))
    before = written_files(study)
    with pytest.raises(ConfigError) as error:
        run_sweep(expand_grid(TINY_GRID), study, preset="smoke")
    assert str(error.value) == (f"{study.resolve()} is a study made with the custom preset; this sweep asks for smoke, "
                                "which differs in train_limit, test_limit, attack_limit, attack, certify_limit, certify: "
                                "continue it with --preset custom or choose another --out")
    assert written_files(study) == before and (study / SWEEP_FILE).read_text() == json.dumps(record)


@pytest.mark.slow
def test_a_run_that_cannot_be_done_fails_alone_and_the_sweep_carries_on(real_data_dir, tmp_path) -> None:
    study = tmp_path / "study"
    (study / "relu-seed0").mkdir(parents=True)
    (study / "relu-seed0" / "notes.txt").write_text("someone else's work")
    results = {result.label: result for result in
               run_sweep(expand_grid(TINY_GRID), study, preset=TINY, workers=1, data_dir=real_data_dir)}
    assert results["relu-seed0"].status == "failed" and "already exists" in results["relu-seed0"].error
    assert results["noisy-seed0"].status == "done"
    assert (study / "relu-seed0" / "notes.txt").read_text() == "someone else's work"
    assert json.loads((study / SWEEP_FILE).read_text())["jobs"]["relu-seed0"]["status"] == "failed"


KILLABLE = Preset(epochs=6, train_limit=1000, test_limit=200, attack_limit=40, attack=AttackSettings(
    eps=(0.05,), p=(0.3,), eot_samples=2, prediction_samples=2, check_convergence=False))
SWEEP_SCRIPT = """
import sys
from stochrelax.study.grid import Preset, expand_grid
from stochrelax.study.sweep import run_sweep
grid = {grid!r}
run_sweep(expand_grid(grid), sys.argv[1], seeds=1, preset=Preset.from_dict({preset!r}), workers=1,
          data_dir=sys.argv[2])
"""


def _worker_pids(parent: int) -> list[int]:
    """Pool workers among the children of ``parent`` (not multiprocessing's resource tracker)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            command = (stat.parent / "cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == parent and b"spawn_main" in command and b"resource_tracker" not in command:
            pids.append(int(stat.parent.name))
    return pids


def _sweep_in_its_first_run(study: Path, data_dir: Path, new_session: bool = False) -> tuple[subprocess.Popen, int]:
    """A sweep of TINY_GRID in a subprocess (in its own session: a process group of its own),
    once its one worker has checkpointed the first run's first epoch (and so holds that run's
    lock); returns the sweep and its worker's pid."""
    script = SWEEP_SCRIPT.format(grid=TINY_GRID, preset=dataclasses.asdict(KILLABLE))
    sweep = subprocess.Popen([sys.executable, "-c", script, str(study), str(data_dir)], start_new_session=new_session,
                             env={**os.environ, "OMP_NUM_THREADS": "1"}, stderr=subprocess.PIPE, text=True)
    checkpoint = study / "relu-seed0" / runs.CHECKPOINT_FILE
    deadline = time.monotonic() + 120
    while not checkpoint.exists():
        assert sweep.poll() is None and time.monotonic() < deadline, "the sweep ended before its first checkpoint"
        time.sleep(0.05)
    workers = _worker_pids(sweep.pid)
    assert len(workers) == 1
    return sweep, workers[0]


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs: it exists and is not a zombie (an orphaned zombie may stay unreaped here)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers die with the sweep on Linux only")
def test_workers_die_with_a_sigkilled_sweep_and_the_rerun_finds_the_run_free(real_data_dir, tmp_path) -> None:
    study = tmp_path / "study"
    sweep, worker = _sweep_in_its_first_run(study, real_data_dir)
    sweep.kill()
    sweep.wait()
    deadline = time.monotonic() + 10
    while True:  # the worker's threads may take a moment to exit; an orphan would hold the lock for minutes
        try:
            with runs.run_lock(study / "relu-seed0"):
                break
        except runs.RunDirError:
            assert time.monotonic() < deadline, "the worker outlived its sweep and still holds the run"
            time.sleep(0.05)
    assert not _alive(worker)


@pytest.mark.slow
def test_a_sweep_whose_worker_is_killed_completes_when_run_again(real_data_dir, tmp_path) -> None:
    study = tmp_path / "study"
    sweep, worker = _sweep_in_its_first_run(study, real_data_dir)
    os.kill(worker, signal.SIGKILL)
    _, stderr = sweep.communicate(timeout=60)
    assert sweep.returncode != 0 and "run the same command again" in stderr
    killed_at = checkpoints.load_checkpoint(study / "relu-seed0")[1]["epoch"]
    assert 1 <= killed_at < KILLABLE.epochs and not runs.is_finished(study / "relu-seed0")

    results = run_sweep(expand_grid(TINY_GRID), study, preset=KILLABLE, workers=1, data_dir=real_data_dir)
    assert sorted((result.label, result.status) for result in results) == [("noisy-seed0", "done"),
                                                                           ("relu-seed0", "done")]
    assert sorted(path.name for path in study.iterdir()) == ["noisy-seed0", "relu-seed0", SWEEP_FILE]
    resumed = study / "relu-seed0"
    assert records.read_events(resumed) == [{"event": "start", "epoch": 1}, {"event": "resume", "epoch": killed_at + 1}]
    relu = next(result for result in results if result.label == "relu-seed0")
    assert relu.resumed_from == killed_at and relu.work == f"resumed after epoch {killed_at} and attacked"
    assert json.loads((study / SWEEP_FILE).read_text())["jobs"]["relu-seed0"]["work"] == relu.work
    for run_dir in study.glob("*-seed0"):  # every epoch recorded exactly once, every attack row once
        assert [m["epoch"] for m in records.read_metrics(run_dir)] == list(range(1, KILLABLE.epochs + 1))
        assert [s["epoch"] for s in records.read_training_stats(run_dir)] == list(range(1, KILLABLE.epochs + 1))
        assert sorted(attack_rows(run_dir)) == sorted(ROWS[run_dir.name.split("-")[0]])
        assert not any(path.name.startswith(".") and path.name != runs.LOCK_FILE or path.name == runs.CHECKPOINT_FILE
                       for path in run_dir.iterdir())  # no temporary file or checkpoint left behind


@pytest.mark.slow
def test_ctrl_c_stops_a_sweep_and_its_workers_at_once_and_the_rerun_completes(real_data_dir, tmp_path) -> None:
    study = tmp_path / "study"
    sweep, worker = _sweep_in_its_first_run(study, real_data_dir, new_session=True)
    os.killpg(sweep.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole process group
    _, stderr = sweep.communicate(timeout=60)
    assert sweep.returncode != 0 and "KeyboardInterrupt" in stderr
    deadline = time.monotonic() + 10
    while _alive(worker):
        assert time.monotonic() < deadline, "the worker outlived the interrupted sweep"
        time.sleep(0.05)
    assert not runs.is_finished(study / "relu-seed0")

    results = run_sweep(expand_grid(TINY_GRID), study, preset=KILLABLE, workers=1, data_dir=real_data_dir)
    assert sorted(result.status for result in results) == ["done", "done"]
    assert [m["epoch"] for m in records.read_metrics(study / "relu-seed0")] == list(range(1, KILLABLE.epochs + 1))
    assert records.read_events(study / "relu-seed0")[-1]["event"] == "resume"


CLI_SWEEP_SCRIPT = """
import sys
from stochrelax import cli
from stochrelax.study import grid
grid.PRESETS["killable"] = grid.Preset.from_dict({preset!r})
sys.exit(cli.main(["sweep", sys.argv[1], "--out", sys.argv[2], "--preset", "killable", "--workers", "2",
                   "--no-progress", "--data-dir", sys.argv[3]]))
"""


@pytest.mark.slow
def test_ctrl_c_of_the_sweep_command_says_how_to_continue_in_one_line_and_leaves_no_lock_behind(real_data_dir,
                                                                                                tmp_path) -> None:
    grid, study = tmp_path / "grid.yaml", tmp_path / "study"
    grid.write_text(yaml.safe_dump(TINY_GRID))
    script = CLI_SWEEP_SCRIPT.format(preset=dataclasses.asdict(KILLABLE))
    sweep = subprocess.Popen([sys.executable, "-c", script, str(grid), str(study), str(real_data_dir)],
                             start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(study.glob(f"*/{runs.CHECKPOINT_FILE}")):
        assert sweep.poll() is None and time.monotonic() < deadline, "the sweep ended before its first checkpoint"
        time.sleep(0.05)
    os.killpg(sweep.pid, signal.SIGINT)
    _, stderr = sweep.communicate(timeout=60)
    assert (sweep.returncode, stderr) == (130, "stochrelax: interrupted; run the same command again to continue: "
                                               "finished runs are kept, unfinished ones resume\n")
    assert [lock.read_text() for lock in study.glob(f"*/{runs.LOCK_FILE}")] == ["", ""]


def test_the_ray_backend_without_a_cluster_is_a_one_line_error(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)  # and no `ray start` on this machine: nothing to join
    with pytest.raises(ConfigError, match=r"no Ray cluster to join .*ray start --head") as error:
        run_sweep(expand_grid(TINY_GRID), tmp_path / "study", preset=TINY, backend="ray")
    assert "\n" not in str(error.value) and not (tmp_path / "study").exists()
