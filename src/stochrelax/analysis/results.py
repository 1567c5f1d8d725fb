"""Results over many runs and seeds, and the thesis' claims checked against them.

The thesis reports one training run per model and asks for "mean value and standard
deviation of accuracy values" over repeated runs (5.4.1, line 415; 6.2, line 455). A
*study* is a directory tree of finished runs (``stochrelax sweep`` names them
``{configuration}-seed{S}``). This module reads what the runs left on disk — config,
summary and attack table, never the weights — and

aggregates them (:func:`aggregate`): per configuration, metric (clean accuracy or an
attack), budget and attack variant, the accuracy of every seed with its mean and sample
standard deviation, and which images each seed got right (for paired statistics in
:mod:`stochrelax.analysis.claims`, which checks the thesis' claims against these rows).
:func:`write_results` writes ``results.csv`` (long) and ``results.md`` (wide,
:func:`results_table`); :func:`read_results` reads the CSV back for the report.

Attack variants. Every number belongs to a variant: ``"single"`` (the attack's gradient
from one noise draw) or ``"eot"`` (the largest number of draws > 1 measured). Where EOT
cannot change an attack — the model is deterministic, or the attack never queries the
model's gradient or scores (missing features) — the single-draw number is also the EOT
number, so that every comparison has its cells under both variants. Clean accuracy is
the same under both. A third variant, ``"worst-case"``, reads every L∞ attack cell as the
per-example worst case at its eps (:mod:`stochrelax.evaluation.worst_case`) — the robust accuracy the
verdicts judge — and every other cell as its EOT number. The accuracy is always that of
the averaged predictor.
"""

from __future__ import annotations

import csv
import io
import json
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, NamedTuple, Sequence

from stochrelax.attacks import ATTACKS
from stochrelax.evaluation.table import BUDGET_NAMES, WORST_CASE, budget_key
from stochrelax.rundir.config import RunConfig, load_config
from stochrelax.rundir.layout import (CONFIG_FILE, SUMMARY_FILE, RunDirError, find_runs, group_by_seed,
                                      read_attack_table, read_summary)
from stochrelax.rundir.records import find_failed_runs

__all__ = ["Table", "markdown_table", "text_table", "csv_text", "describe_units", "describe_unit_noise",
           "describe_input_noise", "describe_adversarial_training",
           "RunResults", "read_run_results", "read_study", "failed_runs_text",
           "VARIANTS", "VARIANT_NAMES", "Cell", "CLEAN", "ResultRow", "aggregate", "results_table",
           "images_text", "RESULTS_CAPTION", "RESULTS_CSV", "RESULTS_MD", "read_csv", "write_results", "read_results"]


# --- tables ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Table:
    """A table as text cells, rendered as HTML by :mod:`stochrelax.report.page` and as Markdown here."""

    header: list[str]
    rows: list[list[str]]
    notes: list[str]  # what is missing and how to produce it, or where a number comes from


def markdown_table(table: Table) -> str:
    """The table in Markdown, its notes as a list below it."""
    lines = ["| " + " | ".join(table.header) + " |", "|" + "---|" * len(table.header)]
    lines += ["| " + " | ".join(row) + " |" for row in table.rows]
    if table.notes:
        lines += [""] + [f"- {note}" for note in table.notes]
    return "\n".join(lines)


def text_table(table: Table) -> str:
    """The table as aligned plain text for a terminal, its notes below it."""
    widths = [max(len(cell) for cell in column) for column in zip(table.header, *table.rows)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
             for row in [table.header, ["-" * width for width in widths], *table.rows]]
    return "\n".join(lines + [f"note: {note}" for note in table.notes])


def describe_unit_noise(config: RunConfig) -> str | None:
    """The noise in the units in words, e.g. ``gaussian additive std 0.25 learnable per layer``; ``None`` without."""
    activation = config.model.activation
    if activation.noise is None:
        return None
    learnable = "" if activation.learnable_std is None else f" learnable per {activation.learnable_std.granularity}"
    return f"{activation.noise} {activation.mode} std {activation.std:g}{learnable}"


def describe_input_noise(config: RunConfig) -> str | None:
    """The noise on the input in words, ``input noise std 0.25``; ``None`` without."""
    input_noise = config.model.input_noise
    return None if input_noise is None else f"input noise std {input_noise.std:g}"


def describe_units(config: RunConfig) -> str:
    """The units of a network in words, e.g. ``relu, logistic additive std 0.05``; a learnable std and
    noise on the input are named too (``relu, gaussian additive std 0.25 learnable per layer``,
    ``relu, deterministic, input noise std 0.25``)."""
    activation = config.model.activation
    parts = [activation.kind, describe_unit_noise(config) or "deterministic", activation.estimator,
             describe_input_noise(config)]
    return ", ".join(part for part in parts if part)


def describe_adversarial_training(config: RunConfig) -> str:
    """``none`` or the adversarial training method and its budget, e.g. ``fgsm_mixture eps 0.07``."""
    adversarial = config.train.adversarial
    return "none" if adversarial.method is None else f"{adversarial.method} eps {adversarial.eps:g}"


# --- reading finished runs ---------------------------------------------------------------------

@dataclass(frozen=True)
class RunResults:
    """What aggregation needs of a finished run: no weights, so a study of hundreds of runs reads fast."""

    path: Path
    config: RunConfig
    test_accuracy: float  # clean accuracy on the run's test set (summary.json)
    attack_rows: tuple[dict[str, Any], ...] | None  # rows of attacks.json; None: never attacked
    test_examples: int = 0  # images of that test set (0: not recorded)
    test_correct: str | None = None  # which of them the model got right (runs.pack_correct); None: not recorded


def read_run_results(run_dir: str | Path) -> RunResults:
    """Reads a finished run's config, clean accuracy and attack table.

    Raises:
        RunDirError: if the directory has no config or no finished summary.
        ConfigError: if its config is invalid.
    """
    path = Path(run_dir)
    if not (path / CONFIG_FILE).is_file():
        raise RunDirError(f"{path} is not a stochrelax run directory (no {CONFIG_FILE})")
    if not (path / SUMMARY_FILE).is_file():
        raise RunDirError(f"{path} is an unfinished run (no {SUMMARY_FILE}); continue it with "
                          f"`stochrelax train --resume {path}`")
    summary = read_summary(path)
    table = read_attack_table(path)
    return RunResults(path, load_config(path / CONFIG_FILE), float(summary["test_accuracy"]),
                      None if table is None else tuple(table["rows"]), int(summary.get("test_examples", 0)),
                      summary.get("test_correct"))


def failed_runs_text(root: str | Path) -> str:
    """A Markdown list of the runs below ``root`` that failed, one line each; empty if none did."""
    lines = [f"- `{path.relative_to(root) if path != Path(root) else path.name}`: {failure['message']}"
             for path, failure in find_failed_runs(root)]
    return "\n".join(["## Failed runs", "", "Not in the tables above:", "", *lines]) + "\n" if lines else ""


def read_study(root: str | Path) -> list[RunResults]:
    """Every finished run at or below ``root``.

    Raises:
        RunDirError: if there is none.
    """
    paths = find_runs(root)
    if not paths:
        raise RunDirError(f"no finished run (a directory with {SUMMARY_FILE}) below {root}")
    return [read_run_results(path) for path in paths]


# --- aggregation over seeds --------------------------------------------------------------------

# attacks with one noise draw per gradient, with EOT over many, and the adaptive per-example worst case
VARIANTS = ("single", "eot", "worst-case")
VARIANT_NAMES = {"single": "single-draw", "eot": "EOT", "worst-case": "worst case"}
Values = dict[int, float]  # a number per seed

_SEED_SUFFIX = re.compile(r"-seed\d+$")


def configuration_name(run_dir: str | Path) -> str:
    """The configuration a run of a sweep belongs to: its directory's name without ``-seed{S}``."""
    return _SEED_SUFFIX.sub("", Path(run_dir).name)
_CELL_TEXT = re.compile(r"^(?P<metric>[\w-]+)(?:\s+(?P<budget_name>\w+)=(?P<budget>\S+))?$")


@dataclass(frozen=True)
class Cell:
    """One measured number of a model: clean accuracy, or accuracy under an attack at a budget."""

    metric: str  # "clean" or an attack of stochrelax.attacks.ATTACKS
    budget_name: str | None  # "eps" or "p"; None for clean accuracy
    budget: float | None

    def __str__(self) -> str:
        return self.metric if self.budget_name is None else f"{self.metric} {self.budget_name}={self.budget:g}"

    @classmethod
    def parse(cls, text: str) -> "Cell":
        """``"clean"`` or ``"ATTACK NAME=BUDGET"``, e.g. ``"fgsm eps=0.03"``, ``"missing p=0.3"``.

        Raises:
            ValueError: for an unknown attack, a budget the attack does not take, or no budget.
        """
        match = _CELL_TEXT.match(str(text).strip())
        if match is None:
            raise ValueError(f"{text!r} is not a cell; write 'clean' or 'ATTACK NAME=BUDGET', e.g. 'fgsm eps=0.03'")
        metric, budget_name, budget = match["metric"], match["budget_name"], match["budget"]
        if metric == CLEAN.metric:
            if budget_name is not None:
                raise ValueError(f"{text!r}: clean accuracy takes no budget")
            return CLEAN
        if metric not in BUDGET_NAMES:
            raise ValueError(f"{text!r}: unknown attack {metric!r}; valid: clean, {', '.join(BUDGET_NAMES)}")
        expected = BUDGET_NAMES[metric]
        if budget_name != expected:
            raise ValueError(f"{text!r}: {metric} takes a budget {expected}=…")
        try:
            value = float(budget)
        except ValueError:
            raise ValueError(f"{text!r}: budget {budget!r} is not a number") from None
        return cls(metric, budget_name, budget_key(value))


CLEAN = Cell("clean", None, None)


def _cell_order(cell: Cell) -> tuple:
    """Clean accuracy first, then attacks in registry order and the worst case, then budgets ascending."""
    attacks = list(BUDGET_NAMES)
    rank = -1 if cell == CLEAN else attacks.index(cell.metric) if cell.metric in attacks else len(attacks)
    return rank, cell.metric, cell.budget or 0.0


class _OverSeeds:
    """Number, mean and sample standard deviation (ddof 1; 0 for one seed) of ``values``, a number per seed."""

    values: Values

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values.values())

    @property
    def std(self) -> float:
        return statistics.stdev(self.values.values()) if self.n > 1 else 0.0


@dataclass(frozen=True)
class ResultRow(_OverSeeds):
    """One configuration's accuracy on one cell under one attack variant, over seeds."""

    configuration: str  # run directory name without "-seed{S}"
    metric: str  # "clean" or an attack name
    budget_name: str | None  # "eps" or "p"; None for clean accuracy
    budget: float | None
    variant: str  # one of VARIANTS
    eot_samples: int  # noise draws per attack gradient (largest among the seeds); 1 where EOT cannot matter
    values: Values  # accuracy of the averaged predictor per seed
    examples: int = 0  # test images it was measured on (largest among the seeds; 0: not recorded)
    units: str = ""  # describe_units of the configuration
    adversarial_training: str = ""  # describe_adversarial_training of the configuration
    configuration_seeds: int = 0  # seeds the configuration has (a cell may lack some)
    # seed -> (images, which were right as runs.pack_correct bits or None); not in results.csv
    per_image: dict[int, tuple[int, str | None]] = field(default_factory=dict, compare=False, repr=False)

    @property
    def cell(self) -> Cell:
        return Cell(self.metric, self.budget_name, self.budget)


@dataclass(frozen=True)
class _Configuration:
    name: str
    runs: tuple[RunResults, ...]  # one per seed


def _as_results(runs: Iterable[RunResults | str | Path]) -> list[RunResults]:
    return [run if isinstance(run, RunResults) else read_run_results(run) for run in runs]


def _configurations(runs: Sequence[RunResults]) -> list[_Configuration]:
    """Runs whose configs differ only in ``train.seed`` are one configuration, named after the
    first run's directory without its ``-seed{S}`` suffix.

    Raises:
        RunDirError: if two different configurations get one name, or two runs of one
            configuration have the same seed — either would silently mix numbers.
    """
    by_path = {run.path: run for run in runs}
    configurations: dict[str, _Configuration] = {}
    for group in group_by_seed({run.path: run.config for run in runs}):
        members = tuple(by_path[path] for path in group)
        name = configuration_name(members[0].path)
        if name in configurations:
            raise RunDirError(f"two different configurations are named {name}: {configurations[name].runs[0].path} "
                              f"and {members[0].path}; aggregate them separately")
        seen: dict[int, Path] = {}
        for run in members:
            seed = run.config.train.seed
            if seed in seen:
                raise RunDirError(f"{name}: {seen[seed]} and {run.path} both have seed {seed}; keep one")
            seen[seed] = run.path
        configurations[name] = _Configuration(name, members)
    return list(configurations.values())


def _eot_can_change(config: RunConfig, attack: str) -> bool:
    """Whether EOT changes an attack on this model: a stochastic model, and an attack that queries it
    (an attack missing from the registry counts as one, so no number is reused on a guess)."""
    queries_model = attack not in ATTACKS or ATTACKS[attack].eot_argument is not None
    return config.model.stochastic and queries_model


class _CellValue(NamedTuple):
    """One number of one run, and how it was measured."""

    accuracy: float
    eot_samples: int
    examples: int  # test images (0: not recorded)
    correct: str | None  # which were right (runs.pack_correct); None: not recorded


def _cell_value(row: dict[str, Any]) -> _CellValue:
    return _CellValue(float(row["accuracy"]), int(row["eot_samples"]), int(row.get("examples", 0)),
                     row.get("correct") or None)


def _run_cells(run: RunResults) -> dict[tuple[Cell, str], _CellValue]:
    """(cell, variant) → the number of one run (see the module docstring for the variants)."""
    clean = _CellValue(run.test_accuracy, 1, run.test_examples, run.test_correct)
    cells = {(CLEAN, variant): clean for variant in ("single", "eot")}
    by_draws: dict[Cell, dict[int, _CellValue]] = {}  # later rows of the same cell and draws win: they are newer
    worst: dict[float, _CellValue] = {}  # eps -> the worst case
    for row in run.attack_rows or ():
        if row["attack"] == WORST_CASE:
            worst[budget_key(row["budget"])] = _cell_value(row)
            continue
        cell = Cell(row["attack"], row["budget_name"], budget_key(row["budget"]))
        by_draws.setdefault(cell, {})[int(row["eot_samples"])] = _cell_value(row)
    for cell, numbers in by_draws.items():
        if 1 in numbers:
            cells[(cell, "single")] = numbers[1]
        eot_draws = max((draws for draws in numbers if draws > 1), default=None)
        if eot_draws is not None:
            cells[(cell, "eot")] = numbers[eot_draws]
        elif 1 in numbers and not _eot_can_change(run.config, cell.metric):
            cells[(cell, "eot")] = numbers[1]
    for budget, measured in worst.items():
        cells[(Cell(WORST_CASE, "eps", budget), "worst-case")] = measured
    if worst:  # every cell read as the robust accuracy: an L∞ attack's is the worst case at its eps
        for (cell, variant), measured in list(cells.items()):
            if variant == "eot":
                cells[(cell, "worst-case")] = worst.get(cell.budget) if cell.budget_name == "eps" else measured
        cells = {key: value for key, value in cells.items() if value is not None}
    return cells


def _configuration_rows(configuration: _Configuration) -> list[ResultRow]:
    per_run = [(run.config.train.seed, _run_cells(run)) for run in configuration.runs]
    keys = sorted({key for _, cells in per_run for key in cells},
                  key=lambda key: (_cell_order(key[0]), VARIANTS.index(key[1])))
    config = configuration.runs[0].config
    rows = []
    for cell, variant in keys:
        measured = sorted((seed, cells[(cell, variant)]) for seed, cells in per_run if (cell, variant) in cells)
        rows.append(ResultRow(configuration.name, cell.metric, cell.budget_name, cell.budget, variant,
                              max(number.eot_samples for _, number in measured),
                              {seed: number.accuracy for seed, number in measured},
                              max(number.examples for _, number in measured), describe_units(config),
                              describe_adversarial_training(config), len(configuration.runs),
                              {seed: (number.examples, number.correct) for seed, number in measured}))
    return rows


def aggregate(runs: Iterable[RunResults | str | Path]) -> list[ResultRow]:
    """Per configuration, cell and variant, the accuracy of every seed (see :class:`ResultRow`).

    Args:
        runs: finished runs, read (:func:`read_run_results`) or as directories.

    Raises:
        RunDirError: for a directory that is no finished run, two different configurations
            with one name, or two runs of one configuration with one seed.
    """
    return [row for configuration in _configurations(_as_results(runs)) for row in _configuration_rows(configuration)]


def _mean_std(row: ResultRow) -> str:
    return f"{row.mean:.1%}" if row.n == 1 else f"{row.mean:.1%} ± {row.std:.1%}"


def images_text(counts: Iterable[int | None]) -> str:
    """How many test images numbers were measured on, e.g. ``1,000`` or ``100 or 500``; ``?`` when unknown."""
    counts = sorted(set(counts) - {0, None})
    return " or ".join(f"{count:,}" for count in counts) if counts else "?"


def results_table(rows: Sequence[ResultRow]) -> Table:
    """One row per configuration, one column per cell and variant: mean ± sample std over seeds.

    A cell measured on fewer seeds than the configuration has adds ``(n=k)``. An EOT column
    appears only for cells some run attacked with EOT; the worst case has one column per eps;
    every accuracy column says on how many test images it was measured (runs test on more
    images than they are attacked on); a configuration without attack rows adds a note.
    """
    by_configuration: dict[str, list[ResultRow]] = {}
    for row in rows:
        by_configuration.setdefault(row.configuration, []).append(row)
    attacked = sorted({row.cell for row in rows if row.cell != CLEAN}, key=_cell_order)
    with_eot = {row.cell for row in rows if row.variant == "eot" and row.eot_samples > 1}
    columns = [(cell, variant) for cell in attacked
               for variant in (("worst-case",) if cell.metric == WORST_CASE else VARIANTS[:2])
               if variant != "eot" or cell in with_eot]
    images = {(cell, variant): images_text(row.examples for row in rows if (row.cell, row.variant) == (cell, variant))
              for cell, variant in [(CLEAN, "single"), *columns]}
    header = ["configuration", "units", "adversarial training", "n",
              f"clean accuracy on {images[CLEAN, 'single']} images"]
    header += [str(cell) + (" EOT" if variant == "eot" else "") + f" on {images[cell, variant]} images"
               for cell, variant in columns]
    table_rows = []
    for name, configuration_rows in by_configuration.items():
        found = {(row.cell, row.variant): row for row in configuration_rows}
        seeds = configuration_rows[0].configuration_seeds
        cells = []
        for key in [(CLEAN, "single"), *columns]:
            row = found.get(key)
            cells.append("—" if row is None else _mean_std(row) + (f" (n={row.n})" if row.n < seeds else ""))
        table_rows.append([name, configuration_rows[0].units, configuration_rows[0].adversarial_training, str(seeds),
                           *cells])
    notes = [f"{name} has no attack results: run `stochrelax attack` on its runs"
             for name, configuration_rows in by_configuration.items()
             if all(row.cell == CLEAN for row in configuration_rows)]
    return Table(header, table_rows, notes)


# --- files -------------------------------------------------------------------------------------

# What the table shows, above it in results.md and the report.
RESULTS_CAPTION = ("Accuracy of the averaged predictor, mean ± sample std over seeds; n: seeds. Columns marked EOT: "
                   "attacks averaging their gradient over noise draws. Worst case: an image counts as robust only if "
                   "it survives every attack of an adaptive ensemble (proxies, surrogates, APGD, Square) — the robust "
                   "accuracy to report.")
RESULTS_CSV, RESULTS_MD = "results.csv", "results.md"
_HEADER = ["configuration", "units", "adversarial_training", "configuration_seeds", "metric", "budget_name", "budget",
           "variant", "eot_samples", "examples", "n", "mean", "std", "per_seed"]


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A CSV file's text: the header, then the rows."""
    stream = io.StringIO()
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return stream.getvalue()


def read_csv(path: str | Path, header: Sequence[str], kind: str) -> list[dict[str, str]]:
    """The lines of a CSV file that :func:`csv_text` wrote with ``header``, as mappings.

    Raises:
        RunDirError: if its columns are not ``header`` (a file of another version, or not a ``kind`` table).
    """
    with open(path, newline="") as stream:
        reader = csv.DictReader(stream)
        if reader.fieldnames != list(header):
            raise RunDirError(f"{path}: not a {kind} table of this version (columns {reader.fieldnames}); "
                              "run `stochrelax results` again")
        return list(reader)


def write_results(rows: Sequence[ResultRow], out_dir: str | Path, failed_runs: str = "") -> tuple[Path, Path]:
    """Writes ``results.csv`` (long: one line per configuration, cell and variant; the values per seed
    as JSON at full precision) and ``results.md`` (:func:`results_table`, then ``failed_runs``, see
    :func:`failed_runs_text`) into ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    csv_path, md_path = out_dir / RESULTS_CSV, out_dir / RESULTS_MD
    csv_path.write_text(csv_text(_HEADER, (
        [row.configuration, row.units, row.adversarial_training, row.configuration_seeds, row.metric,
         row.budget_name or "", "" if row.budget is None else repr(row.budget), row.variant, row.eot_samples,
         row.examples, row.n, f"{row.mean:.6f}", f"{row.std:.6f}",
         json.dumps({str(seed): value for seed, value in row.values.items()})] for row in rows)))
    md_path.write_text(f"{RESULTS_CAPTION}\n\n{markdown_table(results_table(rows))}\n"
                       + (f"\n{failed_runs}" if failed_runs else ""))
    return csv_path, md_path


def read_results(path: str | Path) -> list[ResultRow]:
    """The rows of a ``results.csv`` that :func:`write_results` wrote (without per-image results).

    Raises:
        RunDirError: if the file is not such a table.
    """
    return [ResultRow(line["configuration"], line["metric"], line["budget_name"] or None,
                      float(line["budget"]) if line["budget"] else None, line["variant"], int(line["eot_samples"]),
                      {int(seed): value for seed, value in json.loads(line["per_seed"]).items()},
                      int(line["examples"]), line["units"], line["adversarial_training"],
                      int(line["configuration_seeds"]))
            for line in read_csv(path, _HEADER, "results")]
