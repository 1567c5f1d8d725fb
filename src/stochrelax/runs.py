"""Run directories: what a training run leaves on disk, and how to read it back.

A run directory holds

- ``config.yaml``       the resolved config (every field), enough to repeat the run;
- ``metrics.jsonl``     one JSON object per epoch (losses, accuracies, seconds);
- ``training_stats.jsonl``  one JSON object per epoch: per-layer distributions of
  activations and gradients during training (:mod:`stochrelax.stats`), as
  ``{"epoch": e, "layers": {"block1": {"activation": S, "gradient": S}, …}}`` with
  ``S = {"mean", "std", "min", "max", "histogram"}`` and ``histogram`` either ``null``
  or ``{"edges": [41 floats], "counts": [40 ints]}`` (first, middle and last epoch);
- ``model.safetensors`` the final weights (never pickle);
- ``checkpoint.safetensors``  while training: the state after the last finished epoch
  (weights, optimizer, random-number generators, …; :mod:`stochrelax.train`), from
  which ``train --resume`` and ``sweep`` continue; removed when the run finishes;
- ``events.jsonl``      one line per start or resumption of training (``{"event", "epoch"}``);
- ``summary.json``      written last: its presence marks a finished run;
- ``attacks.json``, ``attacks.csv``  the robustness table of ``stochrelax attack``
  (rows merge across invocations; the JSON also holds the diagnostics).

Every file is written to a temporary name and renamed, so a crash never leaves a
half-written file; the ``.jsonl`` files grow by one line per write. A line cut short by a kill, or an epoch
recorded after the last checkpoint, is dropped on resumption (:func:`truncate_records`).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from stochrelax.config import RunConfig, dump_config, load_config
from stochrelax.models import AllConvNet, build_model

__all__ = ["RunDirError", "Run", "CONFIG_FILE", "METRICS_FILE", "TRAINING_STATS_FILE", "WEIGHTS_FILE",
           "SUMMARY_FILE", "check_run_dir", "create_run_dir", "write_config", "append_metrics",
           "append_training_stats", "save_weights", "write_summary", "read_metrics", "read_training_stats",
           "load_run", "ATTACKS_JSON", "ATTACKS_CSV", "write_attack_table", "read_attack_table",
           "CHECKPOINT_FILE", "EVENTS_FILE", "save_checkpoint", "load_checkpoint", "remove_checkpoint",
           "truncate_records", "append_event", "read_events", "is_finished", "check_same_config",
           "read_summary"]

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
TRAINING_STATS_FILE = "training_stats.jsonl"
WEIGHTS_FILE = "model.safetensors"
SUMMARY_FILE = "summary.json"
ATTACKS_JSON = "attacks.json"
ATTACKS_CSV = "attacks.csv"
CHECKPOINT_FILE = "checkpoint.safetensors"
EVENTS_FILE = "events.jsonl"


class RunDirError(Exception):
    """A run directory that cannot be created or read; the message says what to do."""


def _write_atomically(path: Path, text: str | None = None, tensors: dict[str, torch.Tensor] | None = None,
                      metadata: dict[str, str] | None = None) -> None:
    """Writes to a temporary file, flushes it to disk and renames it over ``path``."""
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(descriptor)
    try:
        if tensors is not None:
            save_file(tensors, temporary, metadata=metadata)
        else:
            Path(temporary).write_text(text)
        with open(temporary, "rb") as stream:
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def check_run_dir(path: str | Path, overwrite: bool = False) -> bool:
    """Checks that a run may be written to ``path``; returns whether an old run must be removed first.

    An existing non-empty directory may be replaced only with ``overwrite`` and only if
    it is a stochrelax run directory (it has a ``config.yaml``), so a mistyped ``--out``
    never deletes unrelated files.

    Raises:
        RunDirError: if the directory exists and may not be replaced.
    """
    path = Path(path)
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return False
    if not overwrite:
        raise RunDirError(f"{path} already exists; pass --overwrite to replace it or choose another --out")
    if not (path / CONFIG_FILE).is_file():
        raise RunDirError(f"{path} is not a stochrelax run directory (no {CONFIG_FILE}); refusing to delete it")
    return True


def create_run_dir(path: str | Path, overwrite: bool = False) -> Path:
    """Creates an empty run directory (see :func:`check_run_dir` for when it may replace one)."""
    path = Path(path)
    if check_run_dir(path, overwrite):
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_config(run_dir: Path, config: RunConfig) -> None:
    _write_atomically(run_dir / CONFIG_FILE, dump_config(config))


def check_same_config(run_dir: str | Path, config: RunConfig) -> None:
    """Checks that an existing run was started with ``config``, so resuming it continues the same run.

    Raises:
        RunDirError: if the run directory's ``config.yaml`` differs.
    """
    if dump_config(load_config(Path(run_dir) / CONFIG_FILE)) != dump_config(config):
        raise RunDirError(f"{run_dir} was started with a different config; resume it with its own "
                          f"{CONFIG_FILE} or pass --overwrite to start again")


def read_summary(run_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(run_dir) / SUMMARY_FILE).read_text())


def _append_line(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as stream:
        stream.write(json.dumps(record) + "\n")


def _read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _whole_records(path: Path) -> list[dict[str, Any]]:
    """The records of a ``.jsonl`` file, without a last line that a kill cut short."""
    records = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return records


def truncate_records(run_dir: str | Path, last_epoch: int) -> None:
    """Keeps only the metrics and training statistics of epochs ≤ ``last_epoch`` (the checkpoint's)."""
    for name in (METRICS_FILE, TRAINING_STATS_FILE):
        path = Path(run_dir) / name
        kept = [record for record in _whole_records(path) if record["epoch"] <= last_epoch]
        _write_atomically(path, "".join(json.dumps(record) + "\n" for record in kept))


def append_event(run_dir: str | Path, event: str, epoch: int) -> None:
    """Logs that training started (``event="start"``) or resumed (``"resume"``) at ``epoch``."""
    _append_line(Path(run_dir) / EVENTS_FILE, {"event": event, "epoch": epoch})


def read_events(run_dir: str | Path) -> list[dict[str, Any]]:
    return _whole_records(Path(run_dir) / EVENTS_FILE)


def is_finished(run_dir: str | Path) -> bool:
    """Whether the run finished training (its ``summary.json`` exists)."""
    return (Path(run_dir) / SUMMARY_FILE).is_file()


def append_metrics(run_dir: Path, metrics: dict[str, Any]) -> None:
    """Appends one epoch's metrics as a JSON line (a whole line per write)."""
    _append_line(Path(run_dir) / METRICS_FILE, metrics)


def append_training_stats(run_dir: Path, stats: dict[str, Any]) -> None:
    """Appends one epoch's activation and gradient statistics (:mod:`stochrelax.stats`) as a JSON line."""
    _append_line(Path(run_dir) / TRAINING_STATS_FILE, stats)


def save_weights(run_dir: Path, model: torch.nn.Module) -> None:
    tensors = {name: tensor.detach().contiguous().cpu() for name, tensor in model.state_dict().items()}
    _write_atomically(run_dir / WEIGHTS_FILE, tensors=tensors)


def save_checkpoint(run_dir: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
    """Atomically replaces the run's checkpoint: tensors in safetensors, ``metadata`` as JSON inside it."""
    tensors = {name: tensor.detach().contiguous().cpu() for name, tensor in tensors.items()}
    _write_atomically(Path(run_dir) / CHECKPOINT_FILE, tensors=tensors, metadata={"state": json.dumps(metadata)})


def load_checkpoint(run_dir: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """The tensors and metadata of the run's checkpoint, or ``None`` if it has none.

    Raises:
        RunDirError: if the checkpoint cannot be read.
    """
    path = Path(run_dir) / CHECKPOINT_FILE
    if not path.is_file():
        return None
    try:
        with safe_open(path, framework="pt") as stream:
            metadata = json.loads((stream.metadata() or {})["state"])
            tensors = {name: stream.get_tensor(name) for name in stream.keys()}
    except (SafetensorError, OSError, KeyError, json.JSONDecodeError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise RunDirError(f"{path} is damaged ({reason}); delete it to restart the run from epoch 1") from None
    return tensors, metadata


def remove_checkpoint(run_dir: str | Path) -> None:
    (Path(run_dir) / CHECKPOINT_FILE).unlink(missing_ok=True)


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    _write_atomically(run_dir / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    return _read_lines(Path(run_dir) / METRICS_FILE)


def read_training_stats(run_dir: str | Path) -> list[dict[str, Any]]:
    """The per-epoch activation and gradient statistics of a run, in order; empty if it has none."""
    return _read_lines(Path(run_dir) / TRAINING_STATS_FILE)


@dataclass
class Run:
    """A finished run read back from disk."""

    path: Path
    config: RunConfig
    model: AllConvNet  # weights loaded, on the CPU, in training mode as after construction
    summary: dict[str, Any]


def load_run(run_dir: str | Path) -> Run:
    """Reads a finished run directory: config, weights (safetensors) and summary.

    Raises:
        RunDirError: if the directory is missing, unfinished or its files do not match.
    """
    path = Path(run_dir)
    if not (path / CONFIG_FILE).is_file():
        raise RunDirError(f"{path} is not a stochrelax run directory (no {CONFIG_FILE})")
    if not (path / SUMMARY_FILE).is_file() or not (path / WEIGHTS_FILE).is_file():
        raise RunDirError(f"{path} is an unfinished run (no {SUMMARY_FILE} or {WEIGHTS_FILE}); train it again")
    config = load_config(path / CONFIG_FILE)
    model = build_model(config.model)
    try:
        model.load_state_dict(load_file(path / WEIGHTS_FILE))
    except (RuntimeError, OSError, SafetensorError) as error:
        first_line = str(error).strip().splitlines()[0]
        raise RunDirError(f"{path / WEIGHTS_FILE} does not match {CONFIG_FILE}: {first_line}") from None
    return Run(path, config, model, json.loads((path / SUMMARY_FILE).read_text()))


def write_attack_table(run_dir: str | Path, report: dict[str, Any]) -> None:
    """Writes a robustness report: all of it as JSON, its ``rows`` as CSV."""
    run_dir = Path(run_dir)
    rows = report["rows"]
    table = io.StringIO()
    if rows:
        writer = csv.DictWriter(table, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    _write_atomically(run_dir / ATTACKS_CSV, table.getvalue())
    _write_atomically(run_dir / ATTACKS_JSON, json.dumps(report, indent=2) + "\n")


def read_attack_table(run_dir: str | Path) -> dict[str, Any] | None:
    """The robustness report of a run, or ``None`` if it was never attacked."""
    path = Path(run_dir) / ATTACKS_JSON
    return json.loads(path.read_text()) if path.is_file() else None
