"""Results over seeds, on synthetic run directories (:mod:`synthetic_runs`).

The run directories hold only what a finished run leaves besides its weights (config,
summary, attack table), with accuracies chosen so that every mean and standard deviation
below is computed by hand.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from stochrelax.analysis.results import (RESULTS_CAPTION, Cell, aggregate, describe_units, read_results, read_study,
                                         results_table, write_results)
from stochrelax.cli import main
from stochrelax.rundir import layout as runs, records
from stochrelax.rundir.config import parse_config
from stochrelax.rundir.records import find_failed_runs
from tests.synthetic_runs import (BASELINE, BASELINE_NAME, GAUSSIAN, IMAGES, LOGISTIC, LOGISTIC_NAME, nested_correct,
                                  write_run)


def by_cell(rows, configuration: str) -> dict:
    return {(row.metric, row.budget, row.variant): row for row in rows if row.configuration == configuration}


# --- aggregation ---------------------------------------------------------------------------------

def test_aggregate_gives_mean_and_sample_std_over_seeds_and_needs_no_weights(tmp_path):
    for seed, (clean, fgsm) in enumerate([(0.90, 0.1), (0.88, 0.2), (0.92, 0.3)]):
        write_run(tmp_path, "relu", BASELINE, seed, clean, {("fgsm", 0.1, 1): fgsm})
    assert not list(tmp_path.rglob(runs.WEIGHTS_FILE))

    rows = by_cell(aggregate(runs_dir for runs_dir in sorted(tmp_path.iterdir())), "relu")

    clean = rows[("clean", None, "single")]
    assert (clean.n, clean.values) == (3, {0: 0.90, 1: 0.88, 2: 0.92})
    assert clean.mean == pytest.approx(0.90) and clean.std == pytest.approx(0.02)
    fgsm = rows[("fgsm", 0.1, "single")]
    assert (fgsm.mean, fgsm.std, fgsm.budget_name, fgsm.eot_samples) == (pytest.approx(0.2), pytest.approx(0.1), "eps", 1)
    # A deterministic model: EOT over one draw is the single-draw attack, so the number counts for both.
    assert rows[("fgsm", 0.1, "eot")].values == fgsm.values
    assert rows[("clean", None, "eot")].values == clean.values


def test_stochastic_runs_take_the_largest_eot_and_reuse_single_draw_numbers_only_where_eot_cannot_matter(tmp_path):
    write_run(tmp_path, "logistic", LOGISTIC, 0, 0.85,
              {("fgsm", 0.1, 1): 0.5, ("fgsm", 0.1, 4): 0.4, ("fgsm", 0.1, 16): 0.3, ("missing", 0.3, 1): 0.7,
               ("ifgsm-ll", 0.1, 1): 0.6})

    rows = by_cell(aggregate([tmp_path / "logistic-seed0"]), "logistic")

    assert rows[("fgsm", 0.1, "single")].values == {0: 0.5}
    assert (rows[("fgsm", 0.1, "eot")].values, rows[("fgsm", 0.1, "eot")].eot_samples) == ({0: 0.3}, 16)
    assert rows[("missing", 0.3, "single")].values == rows[("missing", 0.3, "eot")].values == {0: 0.7}
    assert ("ifgsm-ll", 0.1, "single") in rows and ("ifgsm-ll", 0.1, "eot") not in rows  # never attacked with EOT
    only = rows[("fgsm", 0.1, "single")]
    assert (only.n, only.std) == (1, 0.0)


def test_runs_join_by_config_at_any_depth_named_without_the_seed(tmp_path):
    write_run(tmp_path / "a", "relu", BASELINE, 0, 0.90, {})
    write_run(tmp_path / "b" / "c", "relu", BASELINE, 1, 0.80, {})
    write_run(tmp_path, "logistic", LOGISTIC, 0, 0.85, {})

    rows = aggregate(read_study(tmp_path))

    clean = {row.configuration: row.values for row in rows if row.metric == "clean" and row.variant == "single"}
    assert clean == {"relu": {0: 0.90, 1: 0.80}, "logistic": {0: 0.85}}


@pytest.mark.parametrize("second_config, second_seed, message", [
    (LOGISTIC, 1, "two different configurations are named relu"),
    (BASELINE, 0, "both have seed 0"),
])
def test_runs_that_would_mix_numbers_are_refused(tmp_path, second_config, second_seed, message):
    write_run(tmp_path / "x", "relu", BASELINE, 0, 0.90, {})
    write_run(tmp_path / "y", "relu", second_config, second_seed, 0.80, {})
    with pytest.raises(runs.RunDirError, match=message):
        aggregate(read_study(tmp_path))


def test_results_table_has_a_row_per_configuration_and_eot_columns_only_where_eot_was_run(tmp_path):
    write_run(tmp_path, "relu", BASELINE, 0, 0.90, {("fgsm", 0.1, 1): 0.20, ("missing", 0.3, 1): 0.5})
    write_run(tmp_path, "relu", BASELINE, 1, 0.92, {("fgsm", 0.1, 1): 0.30})
    write_run(tmp_path, "logistic", LOGISTIC, 0, 0.85,
              {("fgsm", 0.1, 1): 0.40, ("fgsm", 0.1, 8): 0.36, ("missing", 0.3, 1): 0.6})
    write_run(tmp_path, "unattacked", GAUSSIAN, 0, 0.80, None)

    table = results_table(aggregate(read_study(tmp_path)))

    assert table.header == ["configuration", "units", "adversarial training", "n", "clean accuracy on 1,000 images",
                            "fgsm eps=0.1 on 1,000 images", "fgsm eps=0.1 EOT on 1,000 images",
                            "missing p=0.3 on 1,000 images"]
    rows = {row[0]: row for row in table.rows}
    assert rows["relu"][3:] == ["2", "91.0% ± 1.4%", "25.0% ± 7.1%", "25.0% ± 7.1%", "50.0% (n=1)"]
    assert rows["logistic"][1:] == ["relu, logistic additive std 0.05", "none", "1", "85.0%", "40.0%", "36.0%",
                                    "60.0%"]
    assert rows["unattacked"][5:] == ["—", "—", "—"]
    assert table.notes == ["unattacked has no attack results: run `stochrelax attack` on its runs"]


def test_write_results_writes_a_long_csv_that_reads_back_and_a_wide_markdown_table(tmp_path):
    write_run(tmp_path / "study", BASELINE_NAME, BASELINE, 0, 0.90, {("fgsm", 0.1, 1): 0.2})
    write_run(tmp_path / "study", BASELINE_NAME, BASELINE, 1, 0.92, {("fgsm", 0.1, 1): 0.3})
    rows = aggregate(read_study(tmp_path / "study"))

    csv_path, md_path = write_results(rows, tmp_path)

    assert (csv_path.name, md_path.name) == ("results.csv", "results.md")
    long = list(csv.DictReader(csv_path.open()))
    assert [(row["metric"], row["variant"]) for row in long] == [
        ("clean", "single"), ("clean", "eot"), ("fgsm", "single"), ("fgsm", "eot")]
    fgsm = long[2]
    assert (fgsm["configuration"], fgsm["budget_name"], fgsm["budget"], fgsm["eot_samples"], fgsm["n"],
            fgsm["examples"], fgsm["units"]) == (BASELINE_NAME, "eps", "0.1", "1", "2", str(IMAGES),
                                                 "relu, deterministic")
    assert (float(fgsm["mean"]), float(fgsm["std"])) == (pytest.approx(0.25), pytest.approx(math.sqrt(0.005), abs=1e-6))
    assert json.loads(fgsm["per_seed"]) == {"0": 0.2, "1": 0.3}
    assert md_path.read_text().startswith(RESULTS_CAPTION)
    assert f"| {BASELINE_NAME} | relu, deterministic | none | 2 | 91.0% ± 1.4% | 25.0% ± 7.1% |" in md_path.read_text()
    assert read_results(csv_path) == rows  # per-image results stay in the runs
    assert results_table(read_results(csv_path)) == results_table(rows)


def test_a_results_file_of_another_layout_is_a_one_line_error(tmp_path):
    (tmp_path / "results.csv").write_text("configuration,metric\nrelu,clean\n")
    with pytest.raises(runs.RunDirError, match="not a results table of this version.*run `stochrelax results` again"):
        read_results(tmp_path / "results.csv")


def test_rows_carry_each_seeds_per_image_results(tmp_path):
    write_run(tmp_path, "relu", BASELINE, 0, 0.9, {("fgsm", 0.1, 1): 0.25})
    write_run(tmp_path, "relu", BASELINE, 1, 0.8, {("fgsm", 0.1, 1): 0.35}, images=None)  # an older run
    rows = by_cell(aggregate(read_study(tmp_path)), "relu")
    fgsm = rows[("fgsm", 0.1, "single")]
    examples, correct = fgsm.per_image[0]
    assert (runs.unpack_correct(correct, examples) == nested_correct(0.25).numpy()).all()
    assert fgsm.per_image[1] == (0, None) and fgsm.examples == IMAGES


def test_runs_that_failed_are_listed_under_the_tables_and_left_out_of_them(tmp_path):
    write_run(tmp_path / "study", BASELINE_NAME, BASELINE, 0, 0.90, {("fgsm", 0.1, 1): 0.2})
    failed = tmp_path / "study" / f"{LOGISTIC_NAME}-seed0"
    failed.mkdir()
    runs.write_config(failed, LOGISTIC)
    records.append_event(failed, "start", 1)
    records.append_event(failed, "failed", 2, batch=7, quantity="gradient", layer="blocks.block4.conv",
                      message="non-finite training gradient at epoch 2, batch 7 (first in blocks.block4.conv)")
    resumed = tmp_path / "study" / f"{LOGISTIC_NAME}-seed1"  # failed once, then resumed: not a failure
    resumed.mkdir()
    records.append_event(resumed, "failed", 1, batch=1, quantity="loss", layer=None, message="m")
    records.append_event(resumed, "resume", 1)

    assert [path.name for path, _ in find_failed_runs(tmp_path / "study")] == [failed.name]
    text = main_results_markdown(tmp_path / "study")
    assert text.endswith(f"## Failed runs\n\nNot in the tables above:\n\n- `{failed.name}`: non-finite training "
                         "gradient at epoch 2, batch 7 (first in blocks.block4.conv)\n")
    assert LOGISTIC_NAME not in text.split("## Failed runs")[0]


def main_results_markdown(study: Path) -> str:
    assert main(["results", str(study)]) == 0
    return (study / "results.md").read_text()


def test_read_study_without_runs_is_a_one_line_error(tmp_path):
    with pytest.raises(runs.RunDirError) as raised:
        read_study(tmp_path)
    assert str(raised.value).startswith("no finished run") and "\n" not in str(raised.value)


def test_results_command_prints_the_tables_and_writes_the_files(tmp_path, capsys):
    write_run(tmp_path / "study", BASELINE_NAME, BASELINE, 0, 0.90, {("fgsm", 0.1, 1): 0.2})
    assert main(["results", str(tmp_path / "study"), "--out", str(tmp_path / "out")]) == 0
    assert "| configuration |" in capsys.readouterr().out
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == [
        "power.csv", "results.csv", "results.md", "verdicts.csv", "verdicts.md"]


def test_results_command_without_runs_is_a_one_line_error(tmp_path, capsys):
    assert main(["results", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("stochrelax: error: no finished run")


def test_an_attack_cell_reads_the_worst_case_at_its_eps_under_the_worst_case_variant(tmp_path):
    for seed in (0, 1):
        write_run(tmp_path, LOGISTIC_NAME, LOGISTIC, seed, 0.88, {("fgsm", 0.1, 1): 0.4, ("fgsm", 0.1, 8): 0.4,
                                                                  ("worst-case", 0.1, 8): 0.1,
                                                                  ("missing", 0.3, 1): 0.6})
    rows = aggregate(read_study(tmp_path))
    logistic = by_cell(rows, LOGISTIC_NAME)
    assert logistic[("fgsm", 0.1, "worst-case")].mean == pytest.approx(0.1)  # an L∞ cell reads the worst case
    assert logistic[("fgsm", 0.1, "worst-case")].per_image == logistic[("worst-case", 0.1, "worst-case")].per_image
    assert logistic[("missing", 0.3, "worst-case")].mean == pytest.approx(0.6)  # other cells their EOT number
    assert logistic[("clean", None, "worst-case")].mean == pytest.approx(0.88)
    assert logistic[("worst-case", 0.1, "worst-case")].eot_samples == 8
    table = results_table(rows)
    worst_case = "worst-case eps=0.1 on 1,000 images"
    assert table.header[-1] == worst_case and table.header.count(worst_case) == 1
    assert Cell.parse("worst-case eps=0.1") == Cell("worst-case", "eps", 0.1)
    with pytest.raises(ValueError, match="takes a budget eps"):
        Cell.parse("worst-case p=0.1")


@pytest.mark.parametrize(("model", "units"), [
    ({"activation": {"kind": "sign", "noise": "logistic", "std": 0.05, "estimator": "ste"}},
     "sign, logistic additive std 0.05, ste"),
    ({"activation": {"kind": "relu", "noise": "gaussian", "std": 0.25, "learnable_std": {"granularity": "channel"}}},
     "relu, gaussian additive std 0.25 learnable per channel"),
    ({"input_noise": {"std": 0.12}}, "relu, deterministic, input noise std 0.12"),
])
def test_units_are_described_with_a_learnable_std_and_input_noise(model, units):
    assert describe_units(parse_config({"model": model})) == units
