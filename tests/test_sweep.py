"""Experiment grids (expansion into named, validated runs; the shipped thesis study) and sweeps over them."""

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

from stochrelax import runs
from stochrelax.cli import main
from stochrelax.config import ConfigError
from stochrelax.robustness import AttackSettings
from stochrelax.sweep import PRESETS, SWEEP_FILE, PlannedRun, Preset, expand_grid, load_grid, plan_jobs, run_sweep

THESIS_STUDY = Path(__file__).resolve().parents[1] / "configs" / "thesis_study.yaml"


def test_axes_are_crossed_into_named_runs_on_top_of_base_and_group_settings() -> None:
    grid = {"base": {"train": {"epochs": 7}},
            "groups": {"noisy": {"set": {"model.activation.kind": "relu"},
                                 "axes": {"model.activation.noise": ["gaussian", "logistic"],
                                          "model.activation.std": [0.05, 0.1]}},
                       "plain": {"set": {"model": {"batch_norm": False}}}}}
    runs = expand_grid(grid)
    assert [run.name for run in runs] == ["noisy-gaussian-0.05", "noisy-gaussian-0.1", "noisy-logistic-0.05",
                                          "noisy-logistic-0.1", "plain"]
    noisy = runs[3].config
    assert (noisy.model.activation.noise, noisy.model.activation.std, noisy.train.epochs) == ("logistic", 0.1, 7)
    assert runs[4].config.model.batch_norm is False and runs[4].config.model.activation.noise is None


def test_flag_axes_name_runs_by_their_key() -> None:
    runs = expand_grid({"groups": {"relu": {"axes": {"model.batch_norm": [True, False]}}}})
    assert [run.name for run in runs] == ["relu-batch_norm", "relu-no_batch_norm"]


@pytest.mark.parametrize(("grid", "message"), [
    ({"groups": {"g": {"axes": {"model.activation.noise": ["gausian"]}, "set": {"model.activation.std": 0.1}}}},
     "run g-gausian: model.activation.noise"),
    ({"groups": {"g": {"axes": {"model.batch_norm": []}}}}, "non-empty list"),
    ({"groups": {"g": {"sets": {}}}}, "unknown key(s) sets"),
    ({"base": {"train": {"epochs": 0}}, "groups": {"g": {}}}, "base: train.epochs"),
    ({"bases": {}, "groups": {"g": {}}}, "unknown key(s) bases"),
    ({"groups": {}}, "'groups' must map"),
])
def test_malformed_grids_are_one_line_errors(grid: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        expand_grid(grid)
    assert "\n" not in str(caught.value)
    assert message in str(caught.value)


def test_duplicate_run_names_are_refused() -> None:
    grid = {"groups": {"a-relu": {}, "a": {"axes": {"model.activation.kind": ["relu"]}}}}
    with pytest.raises(ConfigError, match="occurs twice"):
        expand_grid(grid)


def test_thesis_study_expresses_the_thesis_grid() -> None:
    runs = {run.name: run.config for run in load_grid(THESIS_STUDY)}
    assert len(runs) == 28
    assert all(config.train.epochs == 100 and config.train.batch_size == 64 for config in runs.values())
    relu_noise = [config.model.activation for name, config in runs.items() if name.startswith("relu_noise-")]
    assert {(a.noise, a.mode, a.std) for a in relu_noise} == {
        (noise, mode, std) for noise in ("gaussian", "logistic", "uniform")
        for mode in ("additive", "multiplicative") for std in (0.025, 0.05, 0.1)}
    sign_noise = [config.model.activation for name, config in runs.items() if name.startswith("sign_noise-")]
    assert {(a.noise, a.estimator) for a in sign_noise} == {
        (noise, estimator) for noise in ("gaussian", "logistic") for estimator in ("ste", "score")}
    assert runs["sign_deterministic-no_batch_norm"].model.activation.estimator == "classic_ste"
    fgsm = runs["relu_adversarial_fgsm"].train.adversarial
    assert (fgsm.method, fgsm.eps, fgsm.regenerate_every) == ("fgsm_mixture", 0.07, 20)
    assert runs["relu_adversarial_pgd"].train.adversarial.method == "pgd"


def test_missing_grid_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="grid file not found"):
        load_grid(tmp_path / "nope.yaml")


# --- run names are directory names inside the study directory ---------------------------------

SAFE_NAME_RULE = "use 1 to 200 letters, digits, '.', '_', '-', '=' or '+', not starting with '.'"
UNSAFE_GROUP_NAMES = ["../../x", "/tmp/abs", "a/b", "..", ".", ".hidden", "", "a b", "a\\b", "a\nb", "x" * 201]
UNSAFE_AXIS_VALUES = ["../x", "/etc", "a/b", "..", ".x", "", "has space", "tab\there"]


def unsafe_group_grid(name: str) -> dict:
    return {"groups": {name: {"set": {"model.activation.kind": "relu"}}}}


def unsafe_axis_grid(value: str) -> dict:
    return {"groups": {"g": {"axes": {"model.batch_norm": [True], "model.architecture": ["thesis_allconv", value]}}}}


@pytest.mark.parametrize("name", UNSAFE_GROUP_NAMES)
def test_a_group_name_that_is_not_a_safe_directory_name_is_refused(name: str) -> None:
    with pytest.raises(ConfigError) as caught:
        expand_grid(unsafe_group_grid(name))
    assert str(caught.value) == f"grid: group {name!r} cannot be used in a run directory's name; {SAFE_NAME_RULE}"


@pytest.mark.parametrize("value", UNSAFE_AXIS_VALUES)
def test_an_axis_value_that_is_not_a_safe_directory_name_is_refused(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        expand_grid(unsafe_axis_grid(value))
    assert str(caught.value) == (f"grid: group g: axis 'model.architecture' value {value!r} cannot be used in a run "
                                 f"directory's name; {SAFE_NAME_RULE}")


def test_an_axis_of_lists_is_refused_as_names_of_runs() -> None:
    with pytest.raises(ConfigError, match=r"axis 'train.betas' value \[0.9, 0.99\] cannot be used"):
        expand_grid({"groups": {"g": {"axes": {"train.betas": [[0.9, 0.99]]}}}})


def test_a_run_name_longer_than_a_directory_name_may_be_is_refused() -> None:
    grid = {"groups": {"g" * 150: {"axes": {"model.activation.std": [0.05], "model.activation.noise": ["x" * 60]}}}}
    with pytest.raises(ConfigError, match=r"run 'g{150}-0\.05-x{60}' cannot be used in a run directory's name"):
        expand_grid(grid)


def test_names_made_of_the_allowed_characters_are_kept() -> None:
    grid = {"groups": {"Lr=1e-3+bn_v2.1": {"set": {"model.activation.noise": "gaussian"},
                                           "axes": {"model.activation.std": [0.05, 1e-05], "train.seed": [-0]}}}}
    assert [run.name for run in expand_grid(grid)] == ["Lr=1e-3+bn_v2.1-0.05-0", "Lr=1e-3+bn_v2.1-1e-05-0"]


@pytest.mark.parametrize("grid", [unsafe_group_grid("../../x"), unsafe_axis_grid("../x")], ids=["group", "axis"])
def test_load_grid_refuses_unsafe_names_from_a_file(grid: dict, tmp_path: Path) -> None:
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: group .*'\.\./.*x' cannot be used"):
        load_grid(path)


@pytest.mark.parametrize("text", ["groups: {g: {set: &a {model: *a}}}", "base: &a {train: {x: *a}}\ngroups: {g: {}}"],
                         ids=["set", "base"])
def test_a_mapping_that_contains_itself_is_refused(text: str, tmp_path: Path) -> None:
    path = tmp_path / "grid.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"^a mapping contains itself \(a YAML alias to a mapping around it\)"):
        load_grid(path)


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


@pytest.mark.parametrize("name", ["../../x", "ABSOLUTE", "a/b", ".."])
def test_sweep_command_refuses_unsafe_names_and_writes_nothing(name: str, tmp_path: Path, capsys) -> None:
    name = str(tmp_path.parent / f"{tmp_path.name}-abs") if name == "ABSOLUTE" else name
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump(unsafe_group_grid(name)))
    study = tmp_path / "a" / "b" / "study"
    status = main(["sweep", str(grid), "--out", str(study), "--preset", "smoke", "--device", "cpu", "--no-progress"])
    assert status == 2
    expected = f"stochrelax: error: {grid}: group {name!r} cannot be used in a run directory's name; {SAFE_NAME_RULE}"
    assert capsys.readouterr().err.splitlines() == [expected]
    assert sorted(tmp_path.rglob("*")) == [grid]  # no study directory, nothing next to it
    assert not Path(f"{tmp_path.parent / tmp_path.name}-abs-seed0").exists()


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


def test_presets_set_epochs_data_and_seed_and_keep_the_rest() -> None:
    config = expand_grid(TINY_GRID)[1].config
    applied = TINY.apply(config, seed=3)
    assert (applied.train.epochs, applied.train.seed, applied.data.train_limit, applied.data.test_limit) == \
        (2, 3, 500, 200)
    assert applied.model == config.model and applied.train.lr == config.train.lr
    thesis = PRESETS["thesis"].apply(config, seed=0)
    assert (thesis.train.epochs, thesis.data.train_limit, thesis.data.test_limit) == (100, None, None)
    standard = PRESETS["standard"].apply(config, seed=0)
    assert (standard.train.epochs, standard.data.train_limit, standard.data.test_limit) == (10, None, None)


def test_presets_declare_what_their_verdicts_can_tell() -> None:
    """smoke only checks the pipeline; claims about absolute accuracy need a preset that converges."""
    assert [name for name, preset in PRESETS.items() if preset.pipeline_check] == ["smoke"]
    assert [name for name, preset in PRESETS.items() if preset.converged] == ["standard", "thesis"]
    assert Preset.from_dict(dataclasses.asdict(PRESETS["standard"])) == PRESETS["standard"]


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

    again = run_sweep(expand_grid(TINY_GRID), study, seeds=2, preset=TINY, workers=1, data_dir=real_data_dir)
    assert not any(result.trained or result.attacked for result in again) and len(again) == 4
    assert written_files(study) == files
    # a sweep of fewer seeds leaves the others on record
    record = json.loads((study / SWEEP_FILE).read_text())
    run_sweep(expand_grid(TINY_GRID), study, seeds=1, preset=TINY, workers=1, data_dir=real_data_dir)
    jobs = json.loads((study / SWEEP_FILE).read_text())["jobs"]
    assert {label: job["status"] for label, job in jobs.items()} == {label: "done" for label in record["jobs"]}
    assert {label: jobs[label] for label in ("relu-seed1", "noisy-seed1")} == {
        label: record["jobs"][label] for label in ("relu-seed1", "noisy-seed1")}


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
                                "which differs in train_limit, test_limit, attack_limit, attack: continue it "
                                "with --preset custom or choose another --out")
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
from stochrelax.sweep import Preset, expand_grid, run_sweep
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
    killed_at = runs.load_checkpoint(study / "relu-seed0")[1]["epoch"]
    assert 1 <= killed_at < KILLABLE.epochs and not runs.is_finished(study / "relu-seed0")

    results = run_sweep(expand_grid(TINY_GRID), study, preset=KILLABLE, workers=1, data_dir=real_data_dir)
    assert sorted((result.label, result.status) for result in results) == [("noisy-seed0", "done"),
                                                                           ("relu-seed0", "done")]
    assert sorted(path.name for path in study.iterdir()) == ["noisy-seed0", "relu-seed0", SWEEP_FILE]
    resumed = study / "relu-seed0"
    assert runs.read_events(resumed) == [{"event": "start", "epoch": 1}, {"event": "resume", "epoch": killed_at + 1}]
    for run_dir in study.glob("*-seed0"):  # every epoch recorded exactly once, every attack row once
        assert [m["epoch"] for m in runs.read_metrics(run_dir)] == list(range(1, KILLABLE.epochs + 1))
        assert [s["epoch"] for s in runs.read_training_stats(run_dir)] == list(range(1, KILLABLE.epochs + 1))
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
    assert [m["epoch"] for m in runs.read_metrics(study / "relu-seed0")] == list(range(1, KILLABLE.epochs + 1))
    assert runs.read_events(study / "relu-seed0")[-1]["event"] == "resume"


CLI_SWEEP_SCRIPT = """
import sys
from stochrelax import cli, sweep
sweep.PRESETS["killable"] = sweep.Preset.from_dict({preset!r})
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
