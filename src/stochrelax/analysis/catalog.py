"""What runs there are: one status line per run directory, and a few runs side by side.

:func:`list_runs` finds every run directory below some directories (one holding a
``config.yaml`` and the run marker) and reads, without loading weights, what state it is in:

- **finished** — it has a ``summary.json``;
- **unfinished** — training stopped between epochs (``train --resume`` or the sweep continues it);
- **failed** — training stopped on a non-finite value (its last event, :mod:`stochrelax.rundir.records`);
- **damaged** — a file of it cannot be read; the detail says which and what to do.

:func:`compare_runs` puts a few runs side by side: the config fields in which they differ,
then their metrics (clean accuracy, and accuracy under every attack row any of them has).
This is what ``stochrelax runs`` and ``stochrelax compare`` print.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from stochrelax.analysis.results import Table, describe_adversarial_training, describe_input_noise, describe_unit_noise
from stochrelax.evaluation.table import WORST_CASE
from stochrelax.rundir.config import ConfigError, RunConfig, load_config
from stochrelax.rundir.layout import (CHECKPOINT_FILE, CONFIG_FILE, RUN_FILE, SUMMARY_FILE, RunDirError, check_layout,
                                      read_attack_table, read_summary)
from stochrelax.rundir.records import read_failure, read_metrics

__all__ = ["FINISHED", "UNFINISHED", "FAILED", "DAMAGED", "LISTED_EPS", "RunStatus", "find_run_dirs", "run_status",
           "list_runs", "status_table", "compare_runs"]

FINISHED, UNFINISHED, FAILED, DAMAGED = "finished", "unfinished", "failed", "damaged"
LISTED_EPS = 0.1  # the eps at which a run's worst-case robust accuracy is listed (the thesis' headline budget)


@dataclass(frozen=True)
class RunStatus:
    """A run directory's state and headline numbers, read from its files."""

    path: Path
    status: str  # FINISHED, UNFINISHED, FAILED or DAMAGED
    detail: str  # e.g. "epoch 2 of 10", the failure, or what is damaged
    units: str | None = None  # e.g. "sign, ste"
    noise: str | None = None  # e.g. "logistic additive std 0.05", or "none"
    adversarial_training: str | None = None
    epochs_done: int | None = None
    epochs: int | None = None
    clean_accuracy: float | None = None  # of the final model (finished runs)
    clean_images: int | None = None
    robust_accuracy: float | None = None  # worst case at robust_eps
    robust_eps: float | None = None
    robust_images: int | None = None
    modified: datetime | None = None  # the last change of any of its files

    def as_json(self) -> dict[str, Any]:
        """The status as JSON values (path as text, time as ISO 8601)."""
        record = asdict(self)
        record.update(path=str(self.path), modified=None if self.modified is None else self.modified.isoformat())
        return record


def find_run_dirs(roots: Iterable[str | Path]) -> list[Path]:
    """Every run directory at or below ``roots`` (one with a ``config.yaml`` and the run marker), sorted.

    Raises:
        RunDirError: if a root does not exist.
    """
    found = set()
    for root in map(Path, roots):
        if not root.is_dir():
            raise RunDirError(f"{root} is not a directory; give directories that hold runs")
        found |= {marker.parent for marker in root.rglob(RUN_FILE) if (marker.parent / CONFIG_FILE).is_file()}
    return sorted(found)


def _units(config: RunConfig) -> str:
    activation = config.model.activation
    return ", ".join(filter(None, [activation.kind, activation.estimator]))


def _noise(config: RunConfig) -> str:
    return ", ".join(part for part in (describe_unit_noise(config), describe_input_noise(config)) if part) or "none"


def _worst_case(run_dir: Path) -> tuple[float, float, int] | None:
    """Accuracy, eps and images of the worst case at :data:`LISTED_EPS`, else at the largest eps attacked."""
    table = read_attack_table(run_dir)
    rows = [row for row in (table or {"rows": []})["rows"] if row["attack"] == WORST_CASE and row["budget"] > 0]
    if not rows:
        return None
    row = min(rows, key=lambda candidate: (abs(candidate["budget"] - LISTED_EPS), -candidate["budget"]))
    return row["accuracy"], row["budget"], row["examples"]


def _last_change(run_dir: Path) -> datetime:
    return datetime.fromtimestamp(max(path.stat().st_mtime for path in [run_dir, *run_dir.iterdir()]))


def run_status(run_dir: str | Path) -> RunStatus:
    """The state of one run directory; a damaged one is reported, not raised."""
    path = Path(run_dir)
    modified = _last_change(path)
    try:
        check_layout(path)
        config = load_config(path / CONFIG_FILE)
        epochs_done = max((record["epoch"] for record in read_metrics(path)), default=0)
        described = {"units": _units(config), "noise": _noise(config),
                     "adversarial_training": describe_adversarial_training(config),
                     "epochs_done": epochs_done, "epochs": config.train.epochs, "modified": modified}
        failure = read_failure(path)
        if (path / SUMMARY_FILE).is_file():
            summary = read_summary(path)
            worst = _worst_case(path)
            robust = {} if worst is None else dict(zip(("robust_accuracy", "robust_eps", "robust_images"), worst))
            trained = summary.get("epochs", config.train.epochs)
            described.update(epochs_done=trained, epochs=trained)
            return RunStatus(path, FINISHED, f"{trained} epochs", **described, clean_accuracy=summary["test_accuracy"],
                             clean_images=summary.get("test_examples"), **robust)
        if failure is not None:
            return RunStatus(path, FAILED, f"at epoch {failure['epoch']}: {failure.get('message', 'non-finite')}",
                             **described)
        resumable = "" if (path / CHECKPOINT_FILE).is_file() or epochs_done == 0 else " (no checkpoint)"
        return RunStatus(path, UNFINISHED, f"epoch {epochs_done} of {config.train.epochs}{resumable}", **described)
    except (RunDirError, ConfigError, KeyError, TypeError) as error:
        return RunStatus(path, DAMAGED, " ".join(str(error).split()), modified=modified)


def list_runs(roots: Iterable[str | Path]) -> list[RunStatus]:
    """:func:`run_status` of every run directory below ``roots``."""
    return [run_status(path) for path in find_run_dirs(roots)]


def _percent(value: float | None, images: int | None) -> str:
    if value is None:
        return "—"
    return f"{value:.1%}" + ("" if images is None else f" ({images})")


def status_table(statuses: Sequence[RunStatus], root: Path | None = None) -> Table:
    """One row per run; names relative to ``root`` when given. Accuracies carry the number of images in brackets."""
    header = ["run", "status", "units", "noise", "adversarial training", "epochs", "clean accuracy (images)",
              f"worst case ε={LISTED_EPS:g} (images)", "last change"]
    rows = []
    for status in statuses:
        name = str(status.path.relative_to(root)) if root is not None and status.path.is_relative_to(root) \
            else str(status.path)
        robust = _percent(status.robust_accuracy, status.robust_images)
        if status.robust_eps is not None and status.robust_eps != LISTED_EPS:
            robust += f" at ε={status.robust_eps:g}"
        epochs = "—" if status.epochs is None else f"{status.epochs_done}/{status.epochs}"
        state = status.status if status.status == FINISHED else f"{status.status}: {status.detail}"
        rows.append([name, state, status.units or "—", status.noise or "—", status.adversarial_training or "—",
                     epochs, _percent(status.clean_accuracy, status.clean_images), robust,
                     "—" if status.modified is None else status.modified.strftime("%Y-%m-%d %H:%M")])
    return Table(header, rows, [])


def _flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``."""
    flat = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _attack_cells(rows: Sequence[dict[str, Any]]) -> dict[tuple[str, str, float, bool], dict]:
    """A run's attack rows keyed by (attack, budget name, budget, EOT); the worst case, one row per
    eps, is keyed as EOT."""
    return {(row["attack"], row["budget_name"], row["budget"], row["eot_samples"] > 1 or row["attack"] == WORST_CASE):
            row for row in rows}


def _with_eot_cells(cells: dict, measured: set, stochastic: bool) -> dict:
    """A deterministic run's single-draw rows also fill the EOT cells other runs measured: noise
    draws cannot change its gradients (as in :mod:`stochrelax.analysis.results`)."""
    if stochastic:
        return cells
    return {**{(*key[:3], True): row for key, row in cells.items() if (*key[:3], True) in measured}, **cells}


def _value_text(value: Any) -> str:
    return "none" if value is None else json.dumps(value) if isinstance(value, (list, dict)) else str(value)


MetricReader = Callable[[dict[str, Any]], str]
SUMMARY_METRICS: dict[str, MetricReader] = {
    "clean accuracy (images)": lambda summary: _percent(summary["test_accuracy"], summary.get("test_examples")),
    "test loss": lambda summary: f"{summary['test_loss']:.4f}" if "test_loss" in summary else "—",
    "train accuracy": lambda summary: _percent(summary.get("train_accuracy"), summary.get("train_examples")),
    "epochs": lambda summary: str(summary.get("epochs", "—")),
    "seconds per epoch": lambda summary: f"{summary['seconds_per_epoch']:.1f}" if "seconds_per_epoch" in summary
    else "—",
}
"""What :func:`compare_runs` shows of each finished run's ``summary.json``."""


def compare_runs(run_dirs: Sequence[str | Path]) -> Table:
    """The runs side by side, one column each: config fields that differ, then metrics.

    The rows are the config fields (dotted, e.g. ``model.activation.noise``) whose values differ
    between the runs, then :data:`SUMMARY_METRICS`, then the accuracy under every attack and
    budget that any of them was attacked with, single-draw and with EOT (the number of images in
    brackets).

    Raises:
        RunDirError: if a run is missing, damaged or unfinished.
    """
    paths = [Path(run_dir) for run_dir in run_dirs]
    configs, summaries, attack_cells, stochastic = [], [], [], []
    for path in paths:
        if not (path / CONFIG_FILE).is_file():
            raise RunDirError(f"{path} is not a stochrelax run directory (no {CONFIG_FILE})")
        check_layout(path)
        config = load_config(path / CONFIG_FILE)
        configs.append(_flatten(config.model_dump(mode="json")))
        summaries.append(read_summary(path))
        table = read_attack_table(path)
        attack_cells.append(_attack_cells((table or {"rows": []})["rows"]))
        stochastic.append(config.model.stochastic)
    fields = [key for key in configs[0] if len({json.dumps(config.get(key)) for config in configs}) > 1]
    fields += [key for config in configs[1:] for key in config if key not in configs[0] and key not in fields]
    rows = [[field, *(_value_text(config.get(field)) for config in configs)] for field in fields]
    rows += [[name, *(read(summary) for summary in summaries)] for name, read in SUMMARY_METRICS.items()]
    measured = {key for cells in attack_cells for key in cells}
    attack_cells = [_with_eot_cells(cells, measured, noisy) for cells, noisy in zip(attack_cells, stochastic)]
    for key in sorted(measured):
        attack, budget_name, budget, eot = key
        label = f"{attack} {budget_name}={budget:g}" + (", EOT" if eot and attack != WORST_CASE else "")
        rows.append([label, *(_percent(cells[key]["accuracy"], cells[key]["examples"]) if key in cells else "—"
                              for cells in attack_cells)])
    notes = [] if fields else ["the runs' configs are equal"]
    return Table(["", *(path.name for path in paths)], rows, notes)
