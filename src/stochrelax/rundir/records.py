"""A run's records: ``metrics.jsonl``, ``training_stats.jsonl`` and ``events.jsonl``, one JSON
line per epoch or event (:mod:`stochrelax.rundir.layout` describes the run directory).

The files grow by one whole line per write. A last line cut short by a kill is ignored
when reading and dropped on resumption, as are epochs recorded after the last checkpoint
(:func:`truncate_records`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, ValidationError

from stochrelax.rundir.config import validation_message
from stochrelax.rundir.layout import (EVENTS_FILE, METRICS_FILE, SUMMARY_FILE, TRAINING_STATS_FILE, RunDirError,
                                      error_reason, write_run_file)

__all__ = ["append_metrics", "append_training_stats", "append_event", "read_metrics", "read_training_stats",
           "read_events", "read_failure", "truncate_records", "find_failed_runs"]


class _RecordLine(BaseModel):
    """What every line of a run's ``.jsonl`` files has; further keys are kept as they are."""

    model_config = ConfigDict(extra="allow")
    epoch: int


class _Event(_RecordLine):
    event: str


class _Metrics(_RecordLine):
    """One epoch of ``metrics.jsonl``: the numbers that the figures, the catalog and the sweep's progress read."""

    train_loss: float
    train_accuracy: float
    test_loss: float
    test_accuracy: float
    train_seconds: float
    eval_seconds: float


class _Histogram(BaseModel):
    edges: list[float]
    counts: list[int]


class _Summary(BaseModel):
    """One layer's statistic in ``training_stats.jsonl`` (:mod:`stochrelax.training.statistics`); ``None`` when nothing reached it."""

    mean: Optional[float]
    std: Optional[float]
    min: Optional[float]
    max: Optional[float]
    histogram: Optional[_Histogram]


class _TrainingStats(_RecordLine):
    layers: dict[str, dict[str, _Summary]]


def _append_line(path: Path, record: dict[str, Any]) -> None:
    try:
        with open(path, "a") as stream:
            stream.write(json.dumps(record) + "\n")
    except OSError as error:
        raise RunDirError(f"cannot write {path} ({error_reason(error)}); free some space or fix the "
                          "permissions") from None


def _read_records(path: Path, schema: type[_RecordLine]) -> list[dict[str, Any]]:
    """The records of a ``.jsonl`` file (none if it is missing), without a last line that a kill cut short.

    Only the last line can be cut short, and then it has no newline after it; an
    unreadable line anywhere else, or a line without what ``schema`` requires (a key
    that one flipped bit renamed, say), means the file was damaged.

    Raises:
        RunDirError: if a line other than an unterminated last one is not JSON, or any line does not fit ``schema``.
    """
    if not path.exists():
        return []
    lines = path.read_bytes().split(b"\n")  # the last item is the text after the last newline
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            if number == len(lines):
                break
            raise RunDirError(f"{path} line {number} is not JSON; the file is damaged") from None
        try:
            schema.model_validate(record)
        except ValidationError as error:
            raise RunDirError(f"{path} line {number} is damaged: {validation_message(error, schema)}") from None
        records.append(record)
    return records


def _write_records(path: Path, records: list[dict[str, Any]]) -> None:
    write_run_file(path, "".join(json.dumps(record) + "\n" for record in records))


def truncate_records(run_dir: str | Path, last_epoch: int) -> None:
    """Prepares the ``.jsonl`` files of an unfinished run for resuming after the checkpoint of ``last_epoch``.

    Keeps only the metrics and training statistics of epochs ≤ ``last_epoch``, and drops
    a last line cut short from every file, events included, so the next line appended
    does not run into it.
    """
    run_dir = Path(run_dir)
    for name, schema in ((METRICS_FILE, _Metrics), (TRAINING_STATS_FILE, _TrainingStats)):
        _write_records(run_dir / name, [record for record in _read_records(run_dir / name, schema)
                                        if record["epoch"] <= last_epoch])
    _write_records(run_dir / EVENTS_FILE, _read_records(run_dir / EVENTS_FILE, _Event))


def append_event(run_dir: str | Path, event: str, epoch: int, **details: Any) -> None:
    """Logs that training started (``event="start"``), resumed (``"resume"``) or failed
    (``"failed"``, with what failed and where as ``details``) at ``epoch``."""
    _append_line(Path(run_dir) / EVENTS_FILE, {"event": event, "epoch": epoch, **details})


def read_failure(run_dir: str | Path) -> dict[str, Any] | None:
    """The ``"failed"`` event of a run whose training stopped on it (its last event), else ``None``."""
    events = read_events(run_dir) if (Path(run_dir) / EVENTS_FILE).is_file() else []
    return events[-1] if events and events[-1]["event"] == "failed" else None


def read_events(run_dir: str | Path) -> list[dict[str, Any]]:
    return _read_records(Path(run_dir) / EVENTS_FILE, _Event)


def append_metrics(run_dir: Path, metrics: dict[str, Any]) -> None:
    """Appends one epoch's metrics as a JSON line (a whole line per write)."""
    _append_line(Path(run_dir) / METRICS_FILE, metrics)


def append_training_stats(run_dir: Path, stats: dict[str, Any]) -> None:
    """Appends one epoch's activation and gradient statistics (:mod:`stochrelax.training.statistics`) as a JSON line."""
    _append_line(Path(run_dir) / TRAINING_STATS_FILE, stats)


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    return _read_records(Path(run_dir) / METRICS_FILE, _Metrics)


def read_training_stats(run_dir: str | Path) -> list[dict[str, Any]]:
    """The per-epoch activation and gradient statistics of a run, in order; empty if it has none."""
    return _read_records(Path(run_dir) / TRAINING_STATS_FILE, _TrainingStats)


def find_failed_runs(root: str | Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every unfinished run at or below ``root`` whose training stopped on a non-finite value,
    with its ``"failed"`` event (epoch, batch, quantity, layer, message), sorted by path."""
    failures = ((path.parent, read_failure(path.parent)) for path in Path(root).rglob(EVENTS_FILE)
                if not (path.parent / SUMMARY_FILE).is_file())
    return sorted((path, failure) for path, failure in failures if failure is not None)
