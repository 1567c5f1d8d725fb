"""TensorBoard scalars beside metrics.jsonl: the same numbers, read back with TensorBoard's own reader;
a resumed run's later epochs replace those an interrupted one left; nothing without tensorboard."""

from __future__ import annotations

import time

import pytest

from stochrelax.rundir import layout as runs, records
from stochrelax.rundir.config import parse_config
from stochrelax.training import scalars
from stochrelax.training.loop import train_run
from stochrelax.training.scalars import TAGS, ScalarLog

pytest.importorskip("tensorboard", reason="the [tensorboard] extra is not installed")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def read_scalars(run_dir) -> dict[str, list[tuple[int, float]]]:
    accumulator = EventAccumulator(str(run_dir / runs.TENSORBOARD_DIR))
    accumulator.Reload()
    return {tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
            for tag in accumulator.Tags()["scalars"]}


@pytest.mark.slow
def test_training_writes_every_epochs_metrics_as_scalars(fashion_mnist, tmp_path):
    config = parse_config({"train": {"epochs": 2}, "data": {"train_limit": 256, "test_limit": 64}})
    train_run(config, fashion_mnist, tmp_path / "run")
    logged = read_scalars(tmp_path / "run")
    metrics = records.read_metrics(tmp_path / "run")
    for name, tag in TAGS.items():
        assert logged[tag] == [(record["epoch"], pytest.approx(record[name])) for record in metrics]


def test_a_resumed_run_replaces_the_scalars_of_epochs_after_its_checkpoint(tmp_path):
    interrupted = ScalarLog(tmp_path, first_epoch=1)
    for epoch in (1, 2, 3):
        interrupted.write({"epoch": epoch, "test_accuracy": 0.1 * epoch, "note": "text is not a scalar"})
    interrupted.close()
    time.sleep(1.1)  # event files are read in name order, which starts with the second they were made in
    resumed = ScalarLog(tmp_path, first_epoch=2)  # the checkpoint was after epoch 1
    for epoch in (2, 3, 4):
        resumed.write({"epoch": epoch, "test_accuracy": 0.5 + 0.1 * epoch, "resumptions": 1})
    resumed.close()
    logged = read_scalars(tmp_path)
    assert logged["accuracy/test"] == [(1, pytest.approx(0.1)), (2, pytest.approx(0.7)), (3, pytest.approx(0.8)),
                                       (4, pytest.approx(0.9))]
    assert logged["other/resumptions"] == [(2, 1.0), (3, 1.0), (4, 1.0)] and "other/note" not in logged


def test_without_tensorboard_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.setattr(scalars, "tensorboard_available", lambda: False)
    log = ScalarLog(tmp_path, first_epoch=1)
    log.write({"epoch": 1, "test_accuracy": 0.5})
    log.close()
    assert not (tmp_path / runs.TENSORBOARD_DIR).exists()


def test_overwriting_a_run_removes_its_scalars(tmp_path):
    run_dir = runs.create_run_dir(tmp_path / "run")
    ScalarLog(run_dir, 1).close()
    assert (run_dir / runs.TENSORBOARD_DIR).is_dir()
    runs.create_run_dir(run_dir, overwrite=True)
    assert sorted(path.name for path in run_dir.iterdir()) == [runs.RUN_FILE]
