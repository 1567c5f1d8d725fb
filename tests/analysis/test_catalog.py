"""Listing runs and their state (finished, unfinished, failed, damaged) and comparing runs side by side,
on synthetic run directories (:mod:`tests.synthetic_runs`) and hand-made unfinished ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stochrelax.analysis.catalog import (DAMAGED, FAILED, FINISHED, UNFINISHED, compare_runs, find_run_dirs, list_runs,
                                         run_status, status_table)
from stochrelax.analysis.results import markdown_table, text_table
from stochrelax.cli import main
from stochrelax.rundir import layout as runs, records
from stochrelax.rundir.config import parse_config
from tests.synthetic_runs import BASELINE, BASELINE_NAME, LOGISTIC, LOGISTIC_NAME, epoch_metrics, write_run

WORST = {("worst-case", 0.05, 4): 0.40, ("worst-case", 0.1, 4): 0.25, ("fgsm", 0.1, 1): 0.55}


def unfinished_run(root: Path, name: str, epochs_done: int, epochs: int = 10, checkpoint: bool = True) -> Path:
    run_dir = runs.create_run_dir(root / name)
    runs.write_config(run_dir, parse_config({"train": {"epochs": epochs}}))
    for epoch in range(1, epochs_done + 1):
        records.append_metrics(run_dir, epoch_metrics(epoch, test_accuracy=0.5))
    if checkpoint:
        (run_dir / runs.CHECKPOINT_FILE).write_bytes(b"stands in for a checkpoint")
    return run_dir


@pytest.fixture
def study(tmp_path: Path) -> Path:
    root = tmp_path / "study"
    write_run(root, BASELINE_NAME, BASELINE, 0, 0.88, WORST)
    write_run(root, LOGISTIC_NAME, LOGISTIC, 0, 0.86, None)
    unfinished_run(root, "halfway", 3)
    failed = unfinished_run(root, "diverged", 2)
    records.append_event(failed, "failed", 3, quantity="loss", message="non-finite loss in block4")
    damaged = unfinished_run(root, "damaged", 1)
    (damaged / runs.CONFIG_FILE).write_text("model: [not, a, section]\n")
    (root / "notes").mkdir()  # not a run: no marker, no config
    return root


def test_every_run_directory_below_the_roots_is_found_and_nothing_else(study):
    assert [path.name for path in find_run_dirs([study])] == sorted(
        ["damaged", "diverged", "halfway", f"{BASELINE_NAME}-seed0", f"{LOGISTIC_NAME}-seed0"])


def test_each_run_gets_its_state_and_what_it_means(study):
    statuses = {status.path.name: status for status in list_runs([study])}
    baseline = statuses[f"{BASELINE_NAME}-seed0"]
    assert (baseline.status, baseline.clean_accuracy, baseline.clean_images) == (FINISHED, 0.88, 1000)
    assert (baseline.robust_accuracy, baseline.robust_eps, baseline.robust_images) == (0.25, 0.1, 1000)
    assert (baseline.units, baseline.noise, baseline.adversarial_training) == ("relu", "none", "none")
    logistic = statuses[f"{LOGISTIC_NAME}-seed0"]
    assert logistic.noise == "logistic additive std 0.05" and logistic.robust_accuracy is None  # never attacked
    halfway = statuses["halfway"]
    assert (halfway.status, halfway.detail, halfway.epochs_done, halfway.epochs) == (UNFINISHED, "epoch 3 of 10", 3, 10)
    diverged = statuses["diverged"]
    assert (diverged.status, diverged.detail) == (FAILED, "at epoch 3: non-finite loss in block4")
    damaged = statuses["damaged"]
    assert damaged.status == DAMAGED and "config.yaml" in damaged.detail and damaged.units is None


def test_an_unfinished_run_without_a_checkpoint_says_so(tmp_path):
    status = run_status(unfinished_run(tmp_path, "lost", 2, checkpoint=False))
    assert (status.status, status.detail) == (UNFINISHED, "epoch 2 of 10 (no checkpoint)")


def test_the_worst_case_is_listed_at_the_largest_eps_when_eps_0_1_was_not_attacked(tmp_path):
    run_dir = write_run(tmp_path, BASELINE_NAME, BASELINE, 0, 0.9, {("worst-case", 0.03, 4): 0.6,
                                                                     ("worst-case", 0.07, 4): 0.3})
    status = run_status(run_dir)
    assert (status.robust_accuracy, status.robust_eps) == (0.3, 0.07)
    assert status_table([status]).rows[0][7] == "30.0% (1000) at ε=0.07"


def test_the_status_table_names_runs_relative_to_the_root_and_labels_images(study):
    table = status_table(list_runs([study]), study)
    baseline = next(row for row in table.rows if row[0] == f"{BASELINE_NAME}-seed0")
    assert baseline[1:2] + baseline[5:8] == ["finished", "1/1", "88.0% (1000)", "25.0% (1000)"]
    assert next(row for row in table.rows if row[0] == "halfway")[1] == "unfinished: epoch 3 of 10"
    header, rule, *lines = text_table(table).splitlines()
    status_column = header.index("status")
    assert rule[status_column - 2:status_column] == "  " and rule[status_column] == "-"  # columns aligned
    assert all(line[status_column - 2:status_column] == "  " and line[status_column] != " " for line in lines)


def test_compare_shows_only_the_config_fields_that_differ_then_the_metrics(tmp_path):
    first = write_run(tmp_path, BASELINE_NAME, BASELINE, 0, 0.88, WORST)
    second = write_run(tmp_path, LOGISTIC_NAME, LOGISTIC, 1, 0.86, {("fgsm", 0.1, 1): 0.61, ("fgsm", 0.1, 4): 0.58,
                                                                      ("missing", 0.3, 1): 0.7})
    table = compare_runs([first, second])
    assert table.header == ["", first.name, second.name]
    rows = {row[0]: row[1:] for row in table.rows}
    assert rows["model.activation.noise"] == ["none", "logistic"] and rows["train.seed"] == ["0", "1"]
    assert "model.batch_norm" not in rows and "train.lr" not in rows  # equal in both
    assert rows["clean accuracy (images)"] == ["88.0% (1000)", "86.0% (1000)"]
    assert rows["fgsm eps=0.1"] == ["55.0% (1000)", "61.0% (1000)"]
    # the deterministic run's single-draw number is its EOT number too; missing features have no EOT row
    assert rows["fgsm eps=0.1, EOT"] == ["55.0% (1000)", "58.0% (1000)"]
    assert rows["missing p=0.3"] == ["—", "70.0% (1000)"] and "missing p=0.3, EOT" not in rows
    assert rows["worst-case eps=0.1"] == ["25.0% (1000)", "—"]
    assert markdown_table(table).splitlines()[0] == f"|  | {first.name} | {second.name} |"


def test_compare_refuses_an_unfinished_run_in_one_line(study, capsys):
    assert main(["compare", str(study / "halfway")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_the_runs_command_lists_the_study_and_counts_states(study, capsys):
    assert main(["runs", str(study)]) == 0
    output = capsys.readouterr().out.splitlines()
    assert output[-1] == "5 runs: 1 damaged, 1 failed, 1 unfinished, 2 finished"
    assert any(line.startswith("halfway ") and "unfinished: epoch 3 of 10" in line for line in output)


def test_the_runs_command_prints_json_for_scripts(study, capsys):
    assert main(["runs", str(study), "--json"]) == 0
    listed = {entry["path"]: entry for entry in json.loads(capsys.readouterr().out)}
    entry = listed[str(study / f"{BASELINE_NAME}-seed0")]
    assert (entry["status"], entry["clean_accuracy"], entry["robust_accuracy"]) == ("finished", 0.88, 0.25)
    assert entry["modified"][:4].isdigit()


def test_the_runs_command_refuses_a_missing_directory_in_one_line(tmp_path, capsys):
    assert main(["runs", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err == (f"stochrelax: error: {tmp_path / 'nowhere'} is not a directory; give "
                                       "directories that hold runs\n")


@pytest.mark.parametrize(("model", "noise"), [
    ({"activation": {"kind": "relu", "noise": "gaussian", "std": 0.25, "learnable_std": {"granularity": "layer"}}},
     "gaussian additive std 0.25 learnable per layer"),
    ({"input_noise": {"std": 0.5}}, "input noise std 0.5"),
    ({"activation": {"kind": "relu", "noise": "logistic", "std": 0.05}, "input_noise": {"std": 0.12}},
     "logistic additive std 0.05, input noise std 0.12"),
])
def test_the_noise_column_names_a_learnable_std_and_input_noise(tmp_path, model, noise):
    run_dir = runs.create_run_dir(tmp_path / "run")
    runs.write_config(run_dir, parse_config({"model": model}))
    assert run_status(run_dir).noise == noise
