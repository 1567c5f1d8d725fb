"""Run directories: what a training run leaves on disk, and how to read it back.

A run directory holds

- ``stochrelax-run.json``  ``{"layout": 1}``: the version of this layout, written first, so
  that a stochrelax that reads another layout refuses the directory instead of misreading it;
- ``config.yaml``       the resolved config (every field), enough to repeat the run;
- ``metrics.jsonl``     one JSON object per epoch (losses, accuracies, seconds);
- ``training_stats.jsonl``  one JSON object per epoch: per-layer distributions of
  activations and gradients during training (:mod:`stochrelax.training.statistics`), as
  ``{"epoch": e, "layers": {"block1": {"activation": S, "gradient": S}, …}}`` with
  ``S = {"mean", "std", "min", "max", "histogram"}`` and ``histogram`` either ``null``
  or ``{"edges": [41 floats], "counts": [40 ints]}`` (first, middle and last epoch);
- ``model.safetensors`` the final weights (never pickle); ``summary.json`` holds their sha256;
- ``checkpoint.safetensors``  while training: the state after the last finished epoch
  (weights, optimizer, random-number generators, …; :mod:`stochrelax.training.loop`), from
  which ``train --resume`` and ``sweep`` continue, with a sha256 of its contents that is
  checked on reading; removed when the run finishes (:mod:`stochrelax.rundir.checkpoints`);
- ``events.jsonl``      one line per start, resumption or failure of training (``{"event", "epoch", …}``;
  a failure also names the batch, the quantity and the first layer that became non-finite);
- ``summary.json``      written last: its presence marks a finished run; ``test_correct`` holds
  which test images the final model classifies correctly (:func:`pack_correct`);
- ``attacks.json``, ``attacks.csv``  the robustness table of ``stochrelax attack``
  (rows merge across invocations; the JSON also holds the diagnostics and, per row, which
  images stayed correct, ``correct``);
- ``certify.csv``, ``certify.json``  the randomized-smoothing certificates of ``stochrelax certify``
  (one row per test image: index, label, prediction, radius, correct, seconds) and how they were
  measured, with the certified accuracy at a few radii (:mod:`stochrelax.evaluation.certification`);
- ``.lock``             locked by the process writing the run (:func:`run_lock`), so two never
  write the same directory; the file stays after its process, which does not matter.

Every file is written to a temporary name and renamed, so a crash never leaves a
half-written file; the ``.jsonl`` files grow by one line per write (:mod:`stochrelax.rundir.records`).
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Hashable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from stochrelax.base.files import write_atomically
from stochrelax.models.allconv import AllConvNet, build_model
from stochrelax.rundir.config import RunConfig, dump_config, load_config

__all__ = ["RunDirError", "Run", "LAYOUT_VERSION", "RUN_FILE", "LOCK_FILE", "CONFIG_FILE", "METRICS_FILE",
           "TRAINING_STATS_FILE", "WEIGHTS_FILE", "SUMMARY_FILE", "ATTACKS_JSON", "ATTACKS_CSV", "CERTIFY_CSV", "CERTIFY_JSON", "CHECKPOINT_FILE",
           "EVENTS_FILE", "TENSORBOARD_DIR", "RUN_FILES", "error_reason", "write_run_file", "check_writable",
           "run_lock",
           "check_run_dir", "create_run_dir", "check_layout", "write_config", "check_same_config", "read_json",
           "read_summary", "is_finished", "save_weights", "write_summary", "verify_weights", "load_run",
           "write_attack_table", "read_attack_table", "pack_correct", "unpack_correct", "find_runs", "group_by_seed"]

Key = TypeVar("Key", bound=Hashable)

LAYOUT_VERSION = 1  # raise it whenever a file of the run directory changes meaning
RUN_FILE = "stochrelax-run.json"
LOCK_FILE = ".lock"
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
TRAINING_STATS_FILE = "training_stats.jsonl"
WEIGHTS_FILE = "model.safetensors"
SUMMARY_FILE = "summary.json"
ATTACKS_JSON = "attacks.json"
ATTACKS_CSV = "attacks.csv"
CERTIFY_CSV = "certify.csv"
CERTIFY_JSON = "certify.json"
CHECKPOINT_FILE = "checkpoint.safetensors"
EVENTS_FILE = "events.jsonl"
TENSORBOARD_DIR = "tensorboard"  # TensorBoard scalars (stochrelax.training.scalars), when tensorboard is installed
_JSON_ONLY = frozenset({"correct"})  # attack-row fields too long for a spreadsheet: attacks.json only
_BOOKKEEPING = frozenset({RUN_FILE, LOCK_FILE})  # a directory holding only these holds no run
RUN_FILES = frozenset({RUN_FILE, LOCK_FILE, CONFIG_FILE, METRICS_FILE, TRAINING_STATS_FILE, WEIGHTS_FILE, SUMMARY_FILE,
                       ATTACKS_JSON, ATTACKS_CSV, CERTIFY_CSV, CERTIFY_JSON, CHECKPOINT_FILE, EVENTS_FILE,
                       TENSORBOARD_DIR})  # every file a run writes (the last a directory)


class RunDirError(Exception):
    """A run directory that cannot be created or read; the message says what to do."""


def error_reason(error: Exception) -> str:
    """A short reason for ``error`` to put in a one-line message: an OSError's own text
    (``"Permission denied"``, without the path), otherwise the first line of its message."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def pack_correct(correct: torch.Tensor) -> str:
    """Per-image correctness, (N,) bool, as the hex string a run stores it in: one bit per image, in order.

    Aggregation over seeds pairs configurations image by image with it (:mod:`stochrelax.analysis.claims`).
    """
    bits = np.packbits(correct.detach().to("cpu", torch.bool).numpy())
    return bits.tobytes().hex()


def unpack_correct(text: str, count: int) -> np.ndarray:
    """The (count,) bool array :func:`pack_correct` stored.

    Raises:
        ValueError: if ``text`` is not hex of ⌈count/8⌉ bytes.
    """
    packed = np.frombuffer(bytes.fromhex(text), dtype=np.uint8)
    if len(packed) != (count + 7) // 8:
        raise ValueError(f"{len(packed)} bytes of per-image results for {count} images")
    return np.unpackbits(packed, count=count).astype(bool)


def write_run_file(path: Path, text: str | None = None, tensors: dict[str, torch.Tensor] | None = None,
                   metadata: dict[str, str] | None = None) -> None:
    """Writes a text or safetensors file of a run all or nothing (:func:`stochrelax.base.files.write_atomically`).

    Raises:
        RunDirError: if the file cannot be written (a full disk, no permission): one line naming it;
            ``path`` is then as it was.
    """
    def write(temporary: Path) -> None:
        if tensors is not None:
            save_file(tensors, temporary, metadata=metadata)
        else:
            temporary.write_text(text)

    try:
        write_atomically(path, write)
    except (OSError, SafetensorError) as error:
        raise RunDirError(f"cannot write {path} ({error_reason(error)}); free some space or fix the "
                          "permissions") from None


def check_writable(path: str | Path, needed_bytes: int = 64 * 2**20) -> None:
    """Checks, before any work, that a run can be written to ``path`` (created if missing, parents too).

    Writes, flushes and removes a probe file, then checks the free space on the disk, so
    a read-only or full disk is reported at once rather than after hours of training.

    Args:
        path: the run directory.
        needed_bytes: the space a run needs on the disk.

    Raises:
        RunDirError: if the directory cannot be created or written, or its disk is too full.
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        descriptor, probe = tempfile.mkstemp(prefix=".write-probe.", dir=path)
        try:
            os.write(descriptor, b"stochrelax")
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
            Path(probe).unlink()
        free = shutil.disk_usage(path).free
    except OSError as error:
        raise RunDirError(f"cannot write to {path} ({error_reason(error)}); choose another --out or fix its permissions") \
            from None
    if free < needed_bytes:
        raise RunDirError(f"{path}: only {free // 2**20} MB free on its disk, a run needs about "
                          f"{needed_bytes // 2**20} MB; free some space or choose another --out")


@contextmanager
def run_lock(run_dir: str | Path) -> Iterator[Path]:
    """Holds the run directory's lock, so no other process writes it meanwhile (created if missing).

    The lock is a ``flock`` on ``run_dir/.lock``, which holds the holder's pid while it is
    held and is emptied on release (so re-reading a finished run changes none of its bytes).
    The operating system releases the lock when the holder exits, however it exits, so a
    crashed process never leaves a stale lock; the file itself stays behind and is harmless.
    The lock belongs to one opening of the file: a second ``run_lock`` on the same
    directory fails also within the process that holds the first.

    Yields:
        The run directory.

    Raises:
        RunDirError: if another process holds the lock, or the lock file cannot be written.
    """
    path = Path(run_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise RunDirError(f"cannot write to {path} ({error_reason(error)}); choose another --out or fix its permissions") \
            from None
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 32, 0).decode("ascii", errors="replace").strip() or "unknown"
            raise RunDirError(f"{path} is being written by another stochrelax process (pid {holder}); "
                              "wait for it to finish or stop it") from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        try:
            yield path
        finally:
            os.ftruncate(descriptor, 0)
    finally:
        os.close(descriptor)  # releases the lock


def check_run_dir(path: str | Path, overwrite: bool = False) -> bool:
    """Checks that a run may be written to ``path``; returns whether an old run must be removed first.

    An existing non-empty directory may be replaced only with ``overwrite``, only if it
    carries the run marker ``stochrelax-run.json``, and only if it holds nothing but the
    files a run writes (:data:`RUN_FILES`, and temporary files a crash left of them), so a
    mistyped ``--out`` never deletes anything of the user's. A directory holding nothing but
    a lock and a layout file counts as empty.

    Raises:
        RunDirError: if the directory exists and may not be replaced.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunDirError(f"{path} is a file, not a directory; choose another --out")
    if not path.exists() or all(child.name in _BOOKKEEPING for child in path.iterdir()):
        return False
    if not overwrite:
        raise RunDirError(f"{path} already exists; pass --overwrite to replace it or choose another --out")
    if not (path / RUN_FILE).is_file():
        raise RunDirError(f"{path} is not a stochrelax run directory (no {RUN_FILE}); refusing to delete it")
    foreign = sorted(child.name for child in path.iterdir() if not _written_by_a_run(child.name))
    if foreign:
        raise RunDirError(f"{path} holds files a run does not write ({', '.join(foreign[:3])}"
                          f"{', …' if len(foreign) > 3 else ''}); refusing to delete them: move them away or "
                          "choose another --out")
    return True


def _written_by_a_run(name: str) -> bool:
    """A file of :data:`RUN_FILES`, or a temporary file of one that a crash left (``.NAME.random``)."""
    return name in RUN_FILES or any(name.startswith(f".{known}.") for known in RUN_FILES)


def create_run_dir(path: str | Path, overwrite: bool = False) -> Path:
    """Creates a run directory holding only its layout file (and a lock, if one is held).

    See :func:`check_run_dir` for when it may replace a run; replacing deletes everything
    but the lock file, so a :func:`run_lock` taken before stays in force.
    """
    path = Path(path)
    if check_run_dir(path, overwrite):
        for child in path.iterdir():
            if child.name == TENSORBOARD_DIR and child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            elif child.name != LOCK_FILE:
                child.unlink()
    path.mkdir(parents=True, exist_ok=True)
    write_run_file(path / RUN_FILE, json.dumps({"layout": LAYOUT_VERSION}) + "\n")
    return path


def check_layout(run_dir: str | Path) -> None:
    """Checks that the run directory was written with the layout this stochrelax reads.

    Raises:
        RunDirError: if its ``stochrelax-run.json`` is missing, unreadable or names another layout.
    """
    path = Path(run_dir)
    run_file = path / RUN_FILE
    if not run_file.is_file():
        raise RunDirError(f"{path} has no {RUN_FILE}: it was written by an older stochrelax; train it again into "
                          f"a new directory (`stochrelax train {path / CONFIG_FILE} --out NEW_DIR`)")
    contents = read_json(run_file, "train the run again with --overwrite")
    if "layout" not in contents:
        raise RunDirError(f'{run_file} is damaged (no "layout" field); train the run again with --overwrite')
    if contents["layout"] != LAYOUT_VERSION:
        raise RunDirError(f"{path} was written with run-directory layout {contents['layout']}; this stochrelax "
                          f"reads layout {LAYOUT_VERSION}: use the stochrelax version that wrote it, or train it "
                          "again with --overwrite")


def write_config(run_dir: Path, config: RunConfig) -> None:
    write_run_file(run_dir / CONFIG_FILE, dump_config(config))


def check_same_config(run_dir: str | Path, config: RunConfig) -> None:
    """Checks that an existing run was started with ``config``, so resuming it continues the same run.

    Raises:
        RunDirError: if the run directory has another layout (:func:`check_layout`) or its
            ``config.yaml`` differs.
    """
    check_layout(run_dir)
    if dump_config(load_config(Path(run_dir) / CONFIG_FILE)) != dump_config(config):
        raise RunDirError(f"{run_dir} was started with a different config; resume it with its own "
                          f"{CONFIG_FILE} or pass --overwrite to start again")


def read_json(path: str | Path, fix: str) -> dict[str, Any]:
    """A JSON object stored in a run or study directory.

    Raises:
        RunDirError: if it cannot be read or is not a JSON object: one line naming the file and ``fix``.
    """
    path = Path(path)
    try:
        contents = json.loads(path.read_bytes())
        problem = None if isinstance(contents, dict) else f"a JSON {type(contents).__name__}, not an object"
    except (OSError, ValueError) as error:
        problem = error_reason(error)
    if problem is not None:
        raise RunDirError(f"{path} is damaged ({problem}); {fix}")
    return contents


def read_summary(run_dir: str | Path) -> dict[str, Any]:
    """A finished run's ``summary.json``.

    Raises:
        RunDirError: if it is damaged, or lacks the test accuracy.
    """
    path = Path(run_dir)
    summary = read_json(path / SUMMARY_FILE, f"train the run again with `stochrelax train {path / CONFIG_FILE} "
                                             f"--out {path} --overwrite`")
    if not isinstance(summary.get("test_accuracy"), (int, float)):
        raise RunDirError(f"{path / SUMMARY_FILE} is damaged (no test_accuracy); train the run again with "
                          f"`stochrelax train {path / CONFIG_FILE} --out {path} --overwrite`")
    return summary


def is_finished(run_dir: str | Path) -> bool:
    """Whether the run finished training (its ``summary.json`` exists, whatever state it is in)."""
    return (Path(run_dir) / SUMMARY_FILE).exists()


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_weights(run_dir: Path, model: torch.nn.Module) -> str:
    """Writes the model's weights and buffers; returns the sha256 (hex) of the file, for ``summary.json``."""
    tensors = {name: tensor.detach().contiguous().cpu() for name, tensor in model.state_dict().items()}
    write_run_file(run_dir / WEIGHTS_FILE, tensors=tensors)
    return _file_sha256(run_dir / WEIGHTS_FILE)


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    write_run_file(run_dir / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")


@dataclass
class Run:
    """A finished run read back from disk."""

    path: Path
    config: RunConfig
    model: AllConvNet  # weights loaded, on the CPU, in training mode as after construction
    summary: dict[str, Any]


def verify_weights(run_dir: str | Path) -> None:
    """Checks a finished run's weights against the sha256 that its ``summary.json`` records.

    Raises:
        RunDirError: if they are missing or do not match.
    """
    path = Path(run_dir)
    weights = path / WEIGHTS_FILE
    summary = read_summary(path)
    if not weights.is_file():
        raise RunDirError(f"{path} has a {SUMMARY_FILE} but no {WEIGHTS_FILE}; train the run again with "
                          f"`stochrelax train {path / CONFIG_FILE} --out {path} --overwrite`")
    if "weights_sha256" in summary and _file_sha256(weights) != summary["weights_sha256"]:
        raise RunDirError(f"{weights} does not match the checksum in {SUMMARY_FILE} (modified or damaged); "
                          f"train the run again with `stochrelax train {path / CONFIG_FILE} --out {path} --overwrite`")


def load_run(run_dir: str | Path) -> Run:
    """Reads a finished run directory: config, weights (safetensors) and summary.

    The weights are checked against the sha256 in ``summary.json`` when it has one.

    Raises:
        RunDirError: if the directory is missing, has another layout, is unfinished, or its
            files are damaged or do not match.
    """
    path = Path(run_dir)
    weights = path / WEIGHTS_FILE
    if not (path / CONFIG_FILE).is_file():
        raise RunDirError(f"{path} is not a stochrelax run directory (no {CONFIG_FILE})")
    check_layout(path)
    if not (path / SUMMARY_FILE).is_file() or not weights.is_file():
        raise RunDirError(f"{path} is an unfinished run (no {SUMMARY_FILE} or {WEIGHTS_FILE}); continue it with "
                          f"`stochrelax train --resume {path}`")
    verify_weights(path)
    summary = read_summary(path)
    config = load_config(path / CONFIG_FILE)
    model = build_model(config.model)
    try:
        state = load_file(weights)
    except (SafetensorError, OSError) as error:
        raise RunDirError(f"{weights} is damaged ({error_reason(error)}); train the run again") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise RunDirError(f"{weights} does not match {CONFIG_FILE}: {error_reason(error)}") from None
    return Run(path, config, model, summary)


def write_attack_table(run_dir: str | Path, report: dict[str, Any]) -> None:
    """Writes a robustness report: all of it as JSON, its ``rows`` as CSV; a row's per-image results
    (``correct``, an (N,) bool tensor) are packed into attacks.json (:func:`pack_correct`)."""
    run_dir = Path(run_dir)
    rows = [{**row, "correct": _packed(row.get("correct"))} for row in report["rows"]]
    report = {**report, "rows": rows}
    table = io.StringIO()
    if rows:
        writer = csv.DictWriter(table, fieldnames=[key for key in rows[0] if key not in _JSON_ONLY],
                                extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    write_run_file(run_dir / ATTACKS_JSON, json.dumps(report, indent=2) + "\n")  # the record first
    write_run_file(run_dir / ATTACKS_CSV, table.getvalue())


def _packed(correct: torch.Tensor | None) -> str:
    """Per-image results as attacks.json stores them ("" where none were recorded)."""
    return "" if correct is None else pack_correct(correct)


def read_attack_table(run_dir: str | Path) -> dict[str, Any] | None:
    """The robustness report of a run, or ``None`` if it was never attacked."""
    path = Path(run_dir) / ATTACKS_JSON
    if not path.exists():
        return None
    fix = f"move it away and attack the run again (`stochrelax attack {path.parent}`)"
    table = read_json(path, fix)
    if not isinstance(table.get("rows"), list):
        raise RunDirError(f"{path} is damaged (no list of rows); {fix}")
    for number, row in enumerate(table["rows"], start=1):
        problem = _row_problem(row)
        if problem:
            raise RunDirError(f"{path} is damaged (row {number}: {problem}); {fix}")
    return table


_ROW_FIELDS = {"attack": str, "budget_name": str, "budget": (int, float), "eot_samples": int,
               "accuracy": (int, float)}
"""What every reader of an attack row relies on, and its type."""


def _row_problem(row: Any) -> str:
    """What is wrong with an attack row, or "" if its fields are there and of their types."""
    if not isinstance(row, dict):
        return f"a JSON {type(row).__name__}, not an object"
    missing = [name for name in _ROW_FIELDS if name not in row]
    if missing:
        return f"no {', '.join(missing)}"
    wrong = [name for name, kind in _ROW_FIELDS.items()
             if not isinstance(row[name], kind) or isinstance(row[name], bool)]
    return f"{', '.join(wrong)} of the wrong type" if wrong else ""


# --- finding runs -------------------------------------------------------------------------------

def find_runs(root: str | Path) -> list[Path]:
    """Every finished run directory (one with a ``summary.json``) at or below ``root``, sorted."""
    return sorted(path.parent for path in Path(root).rglob(SUMMARY_FILE))


def _without_seed(config: RunConfig) -> str:
    fields = config.model_dump(mode="json")
    del fields["train"]["seed"]
    return json.dumps(fields, sort_keys=True)


def group_by_seed(configs: Mapping[Key, RunConfig]) -> list[list[Key]]:
    """Groups runs whose configs are equal except ``train.seed``, in order of first appearance."""
    groups: dict[str, list[Key]] = {}
    for key, config in configs.items():
        groups.setdefault(_without_seed(config), []).append(key)
    return list(groups.values())
