"""``certify_run`` and reading its files back (:mod:`stochrelax.evaluation.certification`), the figure and the report table."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from matplotlib.figure import Figure

from stochrelax.evaluation.certification import (CERTIFICATE_COLUMNS, CERTIFIED_RADII, CertificateRow, CertifySettings,
                                                 certified_accuracy, certify_run, read_certificates, read_certification)
from stochrelax.evaluation.smoothing import certify
from stochrelax.models.allconv import build_model
from stochrelax.nn.rng import seeded
from stochrelax.report import plots
from stochrelax.report.page import certification_table
from stochrelax.rundir import layout as runs
from stochrelax.rundir.config import parse_config

SETTINGS = CertifySettings(n0=20, n=300, alpha=0.01, batch=320, seed=4)


def in_memory_run(path: Path, model_section: dict) -> runs.Run:
    """A run of an untrained network, in ``path`` (certification needs only its directory and model)."""
    config = parse_config({"model": model_section})
    with seeded(0):
        model = build_model(config.model)
    path.mkdir(parents=True, exist_ok=True)
    return runs.Run(path, config, model, {})


@pytest.fixture(scope="module")
def certified(fashion_mnist, tmp_path_factory):
    run = in_memory_run(tmp_path_factory.mktemp("certified") / "run", {"input_noise": {"std": 0.25}})
    data = fashion_mnist.limit(test_limit=4)
    return run, data, certify_run(run, data, SETTINGS)


def test_certify_run_writes_one_row_per_image_with_the_certificates_of_smoothing(certified) -> None:
    run, data, result = certified
    with (run.path / runs.CERTIFY_CSV).open(newline="") as handle:
        records = list(csv.DictReader(handle))
    assert tuple(records[0]) == CERTIFICATE_COLUMNS == ("index", "label", "prediction", "radius", "correct", "seconds")
    assert [int(record["index"]) for record in records] == [0, 1, 2, 3]
    assert [int(record["label"]) for record in records] == data.test_labels.tolist()
    for index, row in enumerate(result.rows):  # image i is certified with seed + i
        expected = certify(run.model, data.test_images[index].float() / 255, SETTINGS.n0, SETTINGS.n, SETTINGS.alpha,
                           SETTINGS.batch, SETTINGS.seed + index)
        assert (row.prediction, row.radius) == (expected.prediction, expected.radius)
        assert row.correct == (row.prediction == row.label) and row.seconds > 0
    assert read_certificates(run.path) == result.rows


def test_certify_json_records_how_and_the_certified_accuracy(certified) -> None:
    run, _, result = certified
    record = json.loads((run.path / runs.CERTIFY_JSON).read_text())
    assert record["sigma"] == result.sigma == 0.25 and record["examples"] == 4
    assert record["settings"] == {"n0": 20, "n": 300, "alpha": 0.01, "batch": 320, "seed": 4, "sigma": None}
    assert [entry["radius"] for entry in record["certified_accuracy"]] == list(CERTIFIED_RADII)
    assert [entry["accuracy"] for entry in record["certified_accuracy"]] == list(result.accuracy.values())
    assert read_certification(run.path) == record


def test_certified_accuracy_counts_correct_certificates_at_least_that_radius() -> None:
    rows = [CertificateRow(0, 3, 3, 0.6, True, 0.1), CertificateRow(1, 2, 2, 0.2, True, 0.1),
            CertificateRow(2, 1, -1, 0.0, False, 0.1), CertificateRow(3, 5, 4, 0.9, False, 0.1)]
    assert certified_accuracy(rows) == {0.0: 0.5, 0.25: 0.25, 0.5: 0.25, 0.75: 0.0, 1.0: 0.0}


def test_a_run_without_input_noise_is_refused_and_nothing_is_written(fashion_mnist, tmp_path) -> None:
    run = in_memory_run(tmp_path / "run", {"activation": {"kind": "relu", "noise": "gaussian", "std": 0.1}})
    with pytest.raises(runs.RunDirError, match="no Gaussian input noise.*noise inside the network is not what"):
        certify_run(run, fashion_mnist.limit(test_limit=2), SETTINGS)
    assert list(run.path.iterdir()) == []


def test_a_sigma_other_than_the_models_is_refused(fashion_mnist, tmp_path) -> None:
    run = in_memory_run(tmp_path / "run", {"input_noise": {"std": 0.25}})
    with pytest.raises(runs.RunDirError, match="sigma 0.5 differs from the model's input noise std 0.25"):
        certify_run(run, fashion_mnist.limit(test_limit=2), CertifySettings(n0=10, n=20, sigma=0.5))


def test_reading_an_uncertified_run_gives_none_and_a_damaged_file_one_line(tmp_path) -> None:
    assert read_certificates(tmp_path) is None and read_certification(tmp_path) is None
    (tmp_path / runs.CERTIFY_CSV).write_text("index,label,prediction,radius,correct,seconds\n0,1,1,0.3,maybe,0.1\n")
    with pytest.raises(runs.RunDirError, match="certify.csv is damaged.*stochrelax certify"):
        read_certificates(tmp_path)
    (tmp_path / runs.CERTIFY_CSV).write_text("index,label\n0,1\n")
    with pytest.raises(runs.RunDirError, match="no column prediction, radius, correct, seconds"):
        read_certificates(tmp_path)


def test_the_certify_files_are_files_a_run_writes() -> None:
    assert {runs.CERTIFY_CSV, runs.CERTIFY_JSON} <= runs.RUN_FILES


def test_the_curve_and_the_report_table_read_the_certificates(certified, tmp_path) -> None:
    run, _, result = certified
    assert isinstance(plots.certified_accuracy_curve(run.path), Figure)
    with pytest.raises(plots.MissingData, match="never certified"):
        plots.certified_accuracy_curve(tmp_path)
    table = certification_table([run, in_memory_run(tmp_path / "other", {})])
    assert table.header[:5] == ["run", "σ", "n", "α", "images"] and len(table.header) == 5 + len(CERTIFIED_RADII)
    assert table.rows == [["run", "0.25", "300", "0.01", "4", *(f"{value:.1%}" for value in result.accuracy.values())]]
