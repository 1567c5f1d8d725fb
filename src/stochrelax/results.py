"""Results over many runs and seeds, and the thesis' claims checked against them.

The thesis reports one training run per model and asks for "mean value and standard
deviation of accuracy values" over repeated runs (5.4.1, line 415; 6.2, line 455). A
*study* is a directory tree of finished runs (``stochrelax sweep`` names them
``{configuration}-seed{S}``). This module reads what the runs left on disk — config,
summary and attack table, never the weights — and

1. aggregates them (:func:`aggregate`, :func:`results_table`): per configuration, metric
   (clean accuracy or an attack), budget and attack variant, the accuracy of every seed,
   with its mean and sample standard deviation;
2. checks the thesis' claims, stated as data in the packaged ``claims.yaml``
   (:func:`load_claims`), against those numbers (:func:`evaluate_claims`,
   :func:`verdict_table`): with single-draw attacks, the thesis' setting; with EOT
   attacks (Athalye et al. 2018), which randomized defenses must survive before their
   robustness means anything; and against the adaptive per-example worst case.

:func:`write_results` does both for a directory tree and writes ``results.csv``,
``results.md``, ``verdicts.csv`` and ``verdicts.md``.

Attack variants. Every number belongs to a variant: ``"single"`` (the attack's gradient
from one noise draw) or ``"eot"`` (the largest number of draws > 1 measured). Where EOT
cannot change an attack — the model is deterministic, or the attack never queries the
model's gradient or scores (missing features) — the single-draw number is also the EOT
number, so that every comparison has its cells under both variants. Clean accuracy is
the same under both. A third variant, ``"worst-case"``, reads every L∞ attack cell as the
per-example worst case at its eps (:mod:`stochrelax.robustness`) — the robust accuracy the
verdicts judge — and every other cell as its EOT number. The accuracy is always that of
the averaged predictor.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import operator
import re
import statistics
import string
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated, Any, Callable, Iterable, Literal, NamedTuple, Sequence

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from stochrelax import plots
from stochrelax.attacks import ATTACKS
from stochrelax.robustness import BUDGET_NAMES, WORST_CASE
from stochrelax.config import ConfigError, RunConfig, load_config, read_yaml
from stochrelax.runs import CONFIG_FILE, EVENTS_FILE, SUMMARY_FILE, RunDirError, read_attack_table, read_failure

__all__ = ["Table", "markdown_table", "describe_units", "describe_adversarial_training",
           "RunResults", "find_runs", "read_run_results", "read_study",
           "VARIANTS", "Cell", "ResultRow", "aggregate", "results_table",
           "ClaimsError", "Unit", "Measurement", "Measure", "MEASURES", "COMPARISONS", "NameGrid",
           "OneConfiguration", "AgainstReference", "MatchedPairs", "Claim", "CLAIMS_FILE",
           "parse_claims", "load_claims", "VERDICTS", "NOT_MEASURED", "ClaimResult", "evaluate_claims",
           "verdict_table", "RESULTS_CAPTION", "VERDICTS_CAPTION", "ResultFiles", "write_results",
           "find_failed_runs", "failed_runs_text"]


# --- tables ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Table:
    """A table as text cells, rendered as HTML by :mod:`stochrelax.report` and as Markdown here."""

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


def describe_units(config: RunConfig) -> str:
    """The units of a network in words, e.g. ``relu, logistic additive std 0.05``."""
    activation = config.model.activation
    if activation.noise is None:
        units = f"{activation.kind}, deterministic"
    else:
        units = f"{activation.kind}, {activation.noise} {activation.mode} std {activation.std:g}"
    if activation.estimator:
        units += f", {activation.estimator}"
    return units


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
    test_accuracy: float  # clean accuracy on the whole test set (summary.json)
    attack_rows: tuple[dict[str, Any], ...] | None  # rows of attacks.json; None: never attacked


def find_runs(root: str | Path) -> list[Path]:
    """Every finished run directory (one with a ``summary.json``) at or below ``root``, sorted."""
    return sorted(path.parent for path in Path(root).rglob(SUMMARY_FILE))


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
        raise RunDirError(f"{path} is an unfinished run (no {SUMMARY_FILE}); train it again")
    summary = json.loads((path / SUMMARY_FILE).read_text())
    if "test_accuracy" not in summary:
        raise RunDirError(f"{path / SUMMARY_FILE} has no test_accuracy; train the run again")
    table = read_attack_table(path)
    return RunResults(path, load_config(path / CONFIG_FILE), float(summary["test_accuracy"]),
                      None if table is None else tuple(table["rows"]))


def find_failed_runs(root: str | Path) -> list[tuple[Path, dict[str, Any]]]:
    """Every unfinished run at or below ``root`` whose training stopped on a non-finite value,
    with its ``"failed"`` event (epoch, batch, quantity, layer, message), sorted by path."""
    failures = ((path.parent, read_failure(path.parent)) for path in Path(root).rglob(EVENTS_FILE)
                if not (path.parent / SUMMARY_FILE).is_file())
    return sorted((path, failure) for path, failure in failures if failure is not None)


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
_VARIANT_NAMES = {"single": "single-draw", "eot": "EOT", "worst-case": "worst case"}
Values = dict[int, float]  # a number per seed

_SEED_SUFFIX = re.compile(r"-seed\d+$")
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
        return cls(metric, budget_name, _budget_key(value))


CLEAN = Cell("clean", None, None)


def _budget_key(budget: float) -> float:
    """Budgets as dictionary keys: rounded, so 0.1 and 0.1000000001 are one cell."""
    return round(float(budget), 9)


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
    for group in plots.group_by_seed({run.path: run.config for run in runs}):
        members = tuple(by_path[path] for path in group)
        name = _SEED_SUFFIX.sub("", members[0].path.name)
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
    return config.model.activation.noise is not None and queries_model


def _run_cells(run: RunResults) -> dict[tuple[Cell, str], tuple[float, int]]:
    """(cell, variant) → (accuracy, EOT draws) of one run (see the module docstring for the variants)."""
    cells = {(CLEAN, variant): (run.test_accuracy, 1) for variant in ("single", "eot")}
    by_draws: dict[Cell, dict[int, float]] = {}  # later rows of the same cell and draws win: they are newer
    worst: dict[float, tuple[float, int]] = {}  # eps -> worst-case accuracy and its EOT draws
    for row in run.attack_rows or ():
        if row["attack"] == WORST_CASE:
            worst[_budget_key(row["budget"])] = (float(row["accuracy"]), int(row["eot_samples"]))
            continue
        cell = Cell(row["attack"], row["budget_name"], _budget_key(row["budget"]))
        by_draws.setdefault(cell, {})[int(row["eot_samples"])] = float(row["accuracy"])
    for cell, accuracies in by_draws.items():
        if 1 in accuracies:
            cells[(cell, "single")] = (accuracies[1], 1)
        eot_draws = max((draws for draws in accuracies if draws > 1), default=None)
        if eot_draws is not None:
            cells[(cell, "eot")] = (accuracies[eot_draws], eot_draws)
        elif 1 in accuracies and not _eot_can_change(run.config, cell.metric):
            cells[(cell, "eot")] = (accuracies[1], 1)
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
    rows = []
    for cell, variant in keys:
        measured = sorted((seed, cells[(cell, variant)]) for seed, cells in per_run if (cell, variant) in cells)
        rows.append(ResultRow(configuration.name, cell.metric, cell.budget_name, cell.budget, variant,
                              max(draws for _, (_, draws) in measured),
                              {seed: accuracy for seed, (accuracy, _) in measured}))
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


def results_table(runs: Iterable[RunResults | str | Path]) -> Table:
    """One row per configuration, one column per cell and variant: mean ± sample std over seeds.

    A cell measured on fewer seeds than the configuration has adds ``(n=k)``. An EOT column
    appears only for cells some run attacked with EOT; the worst case has one column per eps;
    a run without an attack table adds a note.
    """
    runs = _as_results(runs)
    configurations = _configurations(runs)
    rows_of = {configuration.name: _configuration_rows(configuration) for configuration in configurations}
    every_row = [row for rows in rows_of.values() for row in rows]
    attacked = sorted({row.cell for row in every_row if row.cell != CLEAN}, key=_cell_order)
    with_eot = {row.cell for row in every_row if row.variant == "eot" and row.eot_samples > 1}
    columns = [(cell, variant) for cell in attacked
               for variant in (("worst-case",) if cell.metric == WORST_CASE else VARIANTS[:2])
               if variant != "eot" or cell in with_eot]
    header = ["configuration", "units", "adversarial training", "n", "clean accuracy"]
    header += [str(cell) + (" EOT" if variant == "eot" else "") for cell, variant in columns]
    table_rows = []
    for configuration in configurations:
        found = {(row.cell, row.variant): row for row in rows_of[configuration.name]}
        seeds = len(configuration.runs)
        cells = []
        for key in [(CLEAN, "single"), *columns]:
            row = found.get(key)
            cells.append("—" if row is None else _mean_std(row) + (f" (n={row.n})" if row.n < seeds else ""))
        config = configuration.runs[0].config
        table_rows.append([configuration.name, describe_units(config), describe_adversarial_training(config),
                           str(seeds), *cells])
    notes = [f"{run.path.name} has no attack table: run `stochrelax attack {run.path}`"
             for run in runs if run.attack_rows is None]
    images = sorted({int(row["examples"]) for run in runs for row in run.attack_rows or () if "examples" in row})
    if images:
        notes.append(f"attacks measured on {' or '.join(map(str, images))} test images per run "
                     "(clean accuracy: each run's own test set)")
    return Table(header, table_rows, notes)


# --- claims: measures, criteria, verdicts ------------------------------------------------------

class ClaimsError(ConfigError):
    """A claims file that cannot be used; the message is one line naming the claim."""


@dataclass(frozen=True)
class Unit:
    """How a measure's numbers read: accuracy in %, a difference in points, a ratio as ×."""

    scale: float
    decimals: int
    prefix: str = ""
    suffix: str = ""
    signed: bool = False

    def text(self, value: float) -> str:
        return f"{self.prefix}{value * self.scale:{'+' if self.signed else ''}.{self.decimals}f}{self.suffix}"

    def threshold_text(self, value: float) -> str:
        """A criterion's threshold, shortest form: ``88%``, ``×1.5``, ``0 points``."""
        return f"{self.prefix}{value * self.scale:g}{self.suffix}"

    def spread_text(self, mean: float, std: float, n: int) -> str:
        """``mean ± std (n=N)``; the std is left out for one seed."""
        if n == 1:
            return f"{self.text(mean)} (n=1)"
        number = f"{mean * self.scale:{'+' if self.signed else ''}.{self.decimals}f}"
        return f"{self.prefix}{number} ± {std * self.scale:.{self.decimals}f}{self.suffix} (n={n})"


ACCURACY = Unit(100, 1, suffix="%")
POINTS = Unit(100, 1, suffix=" points", signed=True)
RATIO = Unit(1, 2, prefix="×")


@dataclass(frozen=True)
class Measurement(_OverSeeds):
    """A measure's value per seed (paired by seed where it compares configurations)."""

    values: Values
    detail: str = ""  # which configuration a measure that picks one picked
    missing: tuple[str, ...] = ()  # runs or cells the measure needs and the study lacks

    @property
    def measured(self) -> bool:
        return not self.missing


@dataclass(frozen=True)
class _Lookup:
    """The aggregated rows by (configuration, cell, variant)."""

    values: dict[tuple[str, Cell, str], Values]
    configurations: frozenset[str]

    @classmethod
    def of(cls, rows: Sequence[ResultRow]) -> "_Lookup":
        return cls({(row.configuration, row.cell, row.variant): row.values for row in rows},
                   frozenset(row.configuration for row in rows))

    def seed_means(self, configuration: str, cells: Sequence[Cell], variant: str) -> tuple[Values, list[str]]:
        """Per seed, the mean accuracy over ``cells``; or what is missing."""
        if configuration not in self.configurations:
            return {}, [f"{configuration} (no finished run)"]
        missing = [f"{configuration}: {cell} ({_VARIANT_NAMES[variant]})" for cell in cells
                   if (configuration, cell, variant) not in self.values]
        if missing:
            return {}, missing
        per_cell = [self.values[(configuration, cell, variant)] for cell in cells]
        seeds = sorted(set.intersection(*(set(values) for values in per_cell)))
        if not seeds:
            return {}, [f"{configuration}: no seed has every one of {', '.join(map(str, cells))}"]
        return {seed: statistics.fmean(values[seed] for values in per_cell) for seed in seeds}, []


def _paired(first: Values, second: Values, combine: Callable[[float, float], float],
            names: tuple[str, str]) -> tuple[Values, list[str]]:
    seeds = sorted(first.keys() & second.keys())
    if not seeds:
        return {}, [f"no seed in common between {names[0]} and {names[1]}"]
    return {seed: combine(first[seed], second[seed]) for seed in seeds}, []


def _ratio(value: float, reference: float) -> float:
    return value / reference if reference > 0 else math.inf


# Arguments of the measures, validated when claims.yaml is read.

def _cells_from_texts(texts: Any) -> Any:
    return tuple(Cell.parse(text) for text in texts) if isinstance(texts, list) else texts


def _name_grids_from_texts(entries: Any) -> Any:
    if not isinstance(entries, list):
        return entries
    return [{"template": entry} if isinstance(entry, str) else entry for entry in entries]


Cells = Annotated[tuple[Cell, ...], BeforeValidator(_cells_from_texts), Field(min_length=1)]
AxisValues = dict[str, Annotated[list[str | int | float], Field(min_length=1)]]


def _placeholders(template: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(template) if field}


def _combinations(over: AxisValues) -> list[dict[str, str]]:
    return [dict(zip(over, map(str, values))) for values in itertools.product(*over.values())]


def _check_placeholders(templates: Sequence[str], over: AxisValues) -> None:
    for template in templates:
        if _placeholders(template) != set(over):
            raise ValueError(f"{template!r} has placeholders {sorted(_placeholders(template))} but 'over' gives "
                             f"{sorted(over)}; they must be the same")


class _Arguments(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NameGrid(_Arguments):
    """Configuration names: ``template`` filled with every combination of the values in ``over``,
    e.g. ``relu_noise-logistic-{mode}-{std}`` over modes and stds. A plain name has no placeholders."""

    template: str
    over: AxisValues = {}

    @model_validator(mode="after")
    def _same_placeholders(self) -> "NameGrid":
        _check_placeholders([self.template], self.over)
        return self

    def names(self) -> list[str]:
        return [self.template.format(**values) for values in _combinations(self.over)]


Names = Annotated[list[NameGrid], BeforeValidator(_name_grids_from_texts), Field(min_length=1)]


class OneConfiguration(_Arguments):
    """A configuration's accuracy, averaged over ``cells``."""

    configuration: str
    cells: Cells


PICKS: dict[str, Callable] = {"smallest": min, "largest": max}  # which candidate a claim is about


class AgainstReference(_Arguments):
    """Each candidate configuration against a reference, per seed, averaged over ``cells``; the
    claim is about the candidate whose mean is ``pick`` (e.g. the best stochastic model)."""

    candidates: Names
    reference: str
    cells: Cells
    pick: Literal[tuple(PICKS)]


class MatchedPairs(_Arguments):
    """``better`` minus ``worse`` for every combination of ``over`` (both templates take the same
    placeholders), per seed, averaged over ``cells`` and then over the pairs."""

    better: str
    worse: str
    over: AxisValues = {}
    cells: Cells

    @model_validator(mode="after")
    def _same_placeholders(self) -> "MatchedPairs":
        _check_placeholders([self.better, self.worse], self.over)
        return self


def _mean_accuracy(lookup: _Lookup, variant: str, arguments: OneConfiguration) -> Measurement:
    values, missing = lookup.seed_means(arguments.configuration, arguments.cells, variant)
    return Measurement(values, missing=tuple(missing))


def _against_reference(lookup: _Lookup, variant: str, arguments: AgainstReference,
                       combine: Callable[[float, float], float]) -> Measurement:
    reference, missing = lookup.seed_means(arguments.reference, arguments.cells, variant)
    names = [name for grid in arguments.candidates for name in grid.names()]
    candidates = {}
    for name in names:
        candidates[name], lacking = lookup.seed_means(name, arguments.cells, variant)
        missing += lacking
    if missing:
        return Measurement({}, missing=tuple(missing))
    compared = {}
    for name, values in candidates.items():
        compared[name], lacking = _paired(values, reference, combine, (name, arguments.reference))
        missing += lacking
    if missing:
        return Measurement({}, missing=tuple(missing))
    chosen = PICKS[arguments.pick](compared, key=lambda name: statistics.fmean(compared[name].values()))
    return Measurement(compared[chosen], detail=f"{chosen} ({arguments.pick} of {len(names)})" if len(names) > 1
                       else "")


def _matched_difference(lookup: _Lookup, variant: str, arguments: MatchedPairs) -> Measurement:
    pairs = [(arguments.better.format(**values), arguments.worse.format(**values))
             for values in _combinations(arguments.over)]
    differences, missing = [], []
    for better, worse in pairs:
        better_values, lacking_better = lookup.seed_means(better, arguments.cells, variant)
        worse_values, lacking_worse = lookup.seed_means(worse, arguments.cells, variant)
        missing += lacking_better + lacking_worse
        if not lacking_better + lacking_worse:
            difference, lacking = _paired(better_values, worse_values, operator.sub, (better, worse))
            missing += lacking
            differences.append(difference)
    if missing:
        return Measurement({}, missing=tuple(missing))
    seeds = sorted(set.intersection(*(set(difference) for difference in differences)))
    if not seeds:
        return Measurement({}, missing=(f"no seed in common among the pairs {pairs}",))
    return Measurement({seed: statistics.fmean(difference[seed] for difference in differences) for seed in seeds},
                       detail=f"mean over {len(pairs)} pairs" if len(pairs) > 1 else "")


@dataclass(frozen=True)
class Measure:
    """A measure a claim names: its arguments' schema, how it is computed, and its unit."""

    arguments: type[BaseModel]
    evaluate: Callable[[_Lookup, str, Any], Measurement]  # (lookup, variant, arguments)
    unit: Unit


MEASURES: dict[str, Measure] = {
    "mean_accuracy": Measure(OneConfiguration, _mean_accuracy, ACCURACY),
    # candidate minus reference, and candidate over reference (a baseline at 0% gives an infinite ratio)
    "difference_to_reference": Measure(AgainstReference, partial(_against_reference, combine=operator.sub), POINTS),
    "ratio_to_reference": Measure(AgainstReference, partial(_against_reference, combine=_ratio), RATIO),
    "matched_difference": Measure(MatchedPairs, _matched_difference, POINTS),
}

COMPARISONS: dict[str, tuple[Callable[[float, float], bool], str]] = {
    "at_least": (operator.ge, "≥"), "at_most": (operator.le, "≤"), "above": (operator.gt, ">"),
    "below": (operator.lt, "<"),
}


@dataclass(frozen=True)
class Claim:
    """A claim of the thesis and how to check it: a measure and a criterion on its mean over seeds."""

    id: str
    text: str  # the claim in words
    where: str  # where the thesis states it
    thesis: str  # the thesis' number
    measure: str  # a key of MEASURES
    arguments: BaseModel  # the measure's validated arguments
    criterion: dict[str, float]  # COMPARISONS key → threshold; all must hold

    @property
    def unit(self) -> Unit:
        return MEASURES[self.measure].unit

    def criterion_text(self) -> str:
        return " and ".join(f"{COMPARISONS[name][1]} {self.unit.threshold_text(threshold)}"
                            for name, threshold in self.criterion.items())

    def _meets(self, value: float) -> bool:
        return all(COMPARISONS[name][0](value, threshold) for name, threshold in self.criterion.items())

    def holds(self, measurement: Measurement) -> bool:
        return self._meets(measurement.mean)

    def seeds_holding(self, measurement: Measurement) -> int:
        """In how many seeds the criterion holds on its own: a verdict the seeds disagree on is weak."""
        return sum(self._meets(value) for value in measurement.values.values())


class _ClaimEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    claim: str
    where: str
    thesis: str
    measure: str
    arguments: dict[str, Any]
    criterion: dict[Literal[tuple(COMPARISONS)], float] = Field(min_length=1)


CLAIMS_FILE = Path(__file__).with_name("claims.yaml")
CLAIMS_FILE_KEYS = ("claims", "definitions")  # definitions: YAML anchors (cell lists) the claims refer to


def _describe(error: ValidationError) -> str:
    """Pydantic's errors as ``location: message; …`` (no location for the whole entry)."""
    return "; ".join(": ".join(filter(None, [".".join(map(str, detail["loc"])),
                                             detail["msg"].removeprefix("Value error, ")]))
                     for detail in error.errors())


def parse_claims(raw: Any, source: str = "claims") -> list[Claim]:
    """Validates a claims mapping (parsed YAML, see ``claims.yaml``) into claims.

    Raises:
        ClaimsError: one line naming the file, the claim and what is wrong with it.
    """
    if not isinstance(raw, dict) or not isinstance(raw.get("claims"), list) or not raw["claims"]:
        raise ClaimsError(f"{source}: expected a mapping with a non-empty list 'claims'")
    unknown = [str(key) for key in raw if key not in CLAIMS_FILE_KEYS]
    if unknown:
        raise ClaimsError(f"{source}: unknown key(s) {', '.join(unknown)}; allowed keys: {', '.join(CLAIMS_FILE_KEYS)}")
    claims: dict[str, Claim] = {}
    for position, entry in enumerate(raw["claims"], start=1):
        label = entry.get("id") if isinstance(entry, dict) and entry.get("id") else f"#{position}"
        where = f"{source}: claim {label}"
        if not isinstance(entry, dict):
            raise ClaimsError(f"{where}: expected a mapping with keys {', '.join(_ClaimEntry.model_fields)}")
        try:
            parsed = _ClaimEntry.model_validate(entry)
        except ValidationError as error:
            raise ClaimsError(f"{where}: {_describe(error)}") from None
        if parsed.measure not in MEASURES:
            raise ClaimsError(f"{where}: unknown measure {parsed.measure!r}; valid: {', '.join(MEASURES)}")
        try:
            arguments = MEASURES[parsed.measure].arguments.model_validate(parsed.arguments)
        except ValidationError as error:
            raise ClaimsError(f"{where}: arguments of {parsed.measure}: {_describe(error)}") from None
        if parsed.id in claims:
            raise ClaimsError(f"{where}: the id occurs twice")
        claims[parsed.id] = Claim(parsed.id, parsed.claim, parsed.where, parsed.thesis, parsed.measure, arguments,
                                  dict(parsed.criterion))
    return list(claims.values())


def load_claims(path: str | Path = CLAIMS_FILE) -> list[Claim]:
    """Reads and validates a claims file; by default the thesis' claims shipped with the package.

    Raises:
        ConfigError: if the file is missing or not YAML; ClaimsError if a claim is malformed.
    """
    return parse_claims(read_yaml(path, kind="claims"), source=str(path))


# Studies without the worst case: (holds with single-draw attacks, holds with EOT attacks) → verdict
VERDICTS: dict[tuple[bool, bool], str] = {
    (True, True): "reproduced",
    (True, False): "reproduced only without EOT",
    (False, True): "reproduced only with EOT",
    (False, False): "not reproduced",
}
# With the worst case, the robust accuracy: (holds with the thesis' single-draw attacks, holds against the worst case)
WORST_CASE_VERDICTS: dict[tuple[bool, bool], str] = {
    (True, True): "reproduced",
    (True, False): "reproduced only against the thesis' attacks",
    (False, True): "reproduced only against the worst case",
    (False, False): "not reproduced",
}
NOT_MEASURED = "not measured"


@dataclass(frozen=True)
class ClaimResult:
    """A claim measured with single-draw attacks, with EOT attacks and against the worst case, and the verdict."""

    claim: Claim
    single: Measurement
    eot: Measurement
    worst_case: Measurement
    verdict: str  # a value of WORST_CASE_VERDICTS (VERDICTS where the study has no worst case), or NOT_MEASURED

    @property
    def measurements(self) -> tuple[Measurement, Measurement, Measurement]:
        """In the order of :data:`VARIANTS`."""
        return self.single, self.eot, self.worst_case


def evaluate_claims(claims: Sequence[Claim], rows: Sequence[ResultRow]) -> list[ClaimResult]:
    """Measures every claim on the aggregated rows, once per attack variant, and gives its verdict.

    A claim holds when its criterion holds for the mean over seeds. The verdict judges the
    robust accuracy by the worst case (every L∞ attack cell read as the worst case at its eps)
    and says whether it changes from the thesis' single-draw attacks: "reproduced only
    against the thesis' attacks" when the claim holds against them and fails against the
    worst case. A study without worst-case rows gets the single-draw/EOT verdicts of
    :data:`VERDICTS`. "Not measured" when a run or cell it needs is missing.
    """
    lookup = _Lookup.of(rows)
    results = []
    for claim in claims:
        measure = MEASURES[claim.measure]
        single, eot, worst = (measure.evaluate(lookup, variant, claim.arguments) for variant in VARIANTS)
        if not (single.measured and eot.measured):
            verdict = NOT_MEASURED
        elif worst.measured:
            verdict = WORST_CASE_VERDICTS[(claim.holds(single), claim.holds(worst))]
        else:
            verdict = VERDICTS[(claim.holds(single), claim.holds(eot))]
        results.append(ClaimResult(claim, single, eot, worst, verdict))
    return results


def _measurement_text(claim: Claim, measurement: Measurement) -> str:
    return claim.unit.spread_text(measurement.mean, measurement.std, measurement.n) if measurement.measured else "—"


def _result_notes(result: ClaimResult, listed: int = 5) -> list[str]:
    notes = []
    missing = list(dict.fromkeys(result.single.missing + result.eot.missing))
    if not missing and not result.worst_case.measured:
        notes.append(f"{result.claim.id}: no worst case in this study, so the verdict rests on the thesis' attacks "
                     "and EOT; sign networks in particular are overstated by them")
    if missing:
        more = f" and {len(missing) - listed} more" if len(missing) > listed else ""
        notes.append(f"{result.claim.id}: not measured, missing {'; '.join(missing[:listed])}{more}")
    details = {_VARIANT_NAMES[variant]: measurement.detail
               for variant, measurement in zip(VARIANTS, result.measurements) if measurement.detail}
    if len(set(details.values())) == 1:
        notes.append(f"{result.claim.id}: {next(iter(details.values()))}")
    elif details:
        notes.append(f"{result.claim.id}: " + "; ".join(f"{name}: {detail}" for name, detail in details.items()))
    return notes


def _agreement_text(result: ClaimResult) -> str:
    """Seeds in which the criterion holds, single-draw · EOT · worst case, e.g. ``2/2 · 1/2 · 0/2``."""
    return " · ".join(f"{result.claim.seeds_holding(measurement)}/{measurement.n}" if measurement.measured else "—"
                      for measurement in result.measurements)


def verdict_table(results: Sequence[ClaimResult]) -> Table:
    """One row per claim: what the thesis says and where, the criterion, our number with
    single-draw and EOT attacks and against the worst case (mean ± std over seeds, n), the
    verdict, and in how many seeds the criterion holds on its own (single-draw · EOT · worst case)."""
    header = ["id", "claim", "where", "thesis", "criterion", "ours: single-draw attacks", "ours: EOT attacks",
              "ours: worst case", "verdict", "seeds holding"]
    rows = [[result.claim.id, result.claim.text, result.claim.where, result.claim.thesis,
             result.claim.criterion_text(), *(_measurement_text(result.claim, m) for m in result.measurements),
             result.verdict, _agreement_text(result)]
            for result in results]
    return Table(header, rows, [note for result in results for note in _result_notes(result)])


# --- files -------------------------------------------------------------------------------------

# What the tables show, above them in results.md, verdicts.md and the report.
RESULTS_CAPTION = ("Accuracy of the averaged predictor, mean ± sample std over seeds; n: seeds. Columns marked EOT: "
                   "attacks averaging their gradient over noise draws. Worst case: an image counts as robust only if "
                   "it survives every attack of an adaptive ensemble (proxies, surrogates, APGD, Square) — the robust "
                   "accuracy to report.")
VERDICTS_CAPTION = ("The thesis' claims, each measured with single-draw attacks (the thesis' setting), with EOT "
                    "attacks, and against the adaptive worst case (every L∞ attack cell read as the worst case at "
                    "its eps); the verdict judges the worst case and says when it differs from the thesis' attacks. "
                    "Criteria apply to the mean over seeds, comparisons pair runs by seed. Seeds holding: in how many "
                    "seeds the criterion holds on its own (single-draw · EOT · worst case); where they disagree, the "
                    "verdict rests on the mean alone and more seeds are needed.")


class ResultFiles(NamedTuple):
    """The files :func:`write_results` writes."""

    results_csv: Path  # long format: one row per configuration, cell and variant
    results_md: Path  # wide: one row per configuration
    verdicts_csv: Path
    verdicts_md: Path


def _csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    stream = io.StringIO()
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return stream.getvalue()


def _number(value: float) -> str:
    return f"{value:.6f}"


def _measurement_fields(claim: Claim, measurement: Measurement) -> tuple[str, str, int, int | str]:
    """mean, std, n and seeds holding for the CSV; empty and 0 when not measured."""
    if not measurement.measured:
        return "", "", 0, ""
    return _number(measurement.mean), _number(measurement.std), measurement.n, claim.seeds_holding(measurement)


def write_results(root: str | Path, out_dir: str | Path | None = None) -> ResultFiles:
    """Aggregates every finished run below ``root`` and checks the thesis' claims on them.

    Writes, in ``out_dir`` (default ``root``): ``results.csv`` (long: configuration, metric,
    budget_name, budget, variant, eot_samples, n, mean, std, per_seed as JSON), ``results.md``
    (the wide table of :func:`results_table`, then the runs that failed, see
    :func:`find_failed_runs`), ``verdicts.csv`` and ``verdicts.md`` (the
    claims of the packaged ``claims.yaml``, see :func:`verdict_table`).

    Returns:
        The four paths.

    Raises:
        RunDirError: if there is no finished run below ``root``.
    """
    runs = read_study(root)
    rows = aggregate(runs)
    results = evaluate_claims(load_claims(), rows)
    out_dir = Path(out_dir or root)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = ResultFiles(out_dir / "results.csv", out_dir / "results.md", out_dir / "verdicts.csv",
                        out_dir / "verdicts.md")
    files.results_csv.write_text(_csv_text(
        ["configuration", "metric", "budget_name", "budget", "variant", "eot_samples", "n", "mean", "std", "per_seed"],
        ([row.configuration, row.metric, row.budget_name or "", "" if row.budget is None else f"{row.budget:g}",
          row.variant, row.eot_samples, row.n, _number(row.mean), _number(row.std),
          json.dumps({str(seed): value for seed, value in row.values.items()})] for row in rows)))
    failed = failed_runs_text(root)
    files.results_md.write_text(f"{RESULTS_CAPTION}\n\n{markdown_table(results_table(runs))}\n"
                                + (f"\n{failed}" if failed else ""))
    files.verdicts_csv.write_text(_csv_text(
        ["id", "claim", "where", "thesis", "criterion", "single_mean", "single_std", "single_n", "single_seeds_holding",
         "eot_mean", "eot_std", "eot_n", "eot_seeds_holding", "worst_case_mean", "worst_case_std", "worst_case_n",
         "worst_case_seeds_holding", "verdict", "notes"],
        ([result.claim.id, result.claim.text, result.claim.where, result.claim.thesis, result.claim.criterion_text(),
          *(field for m in result.measurements for field in _measurement_fields(result.claim, m)),
          result.verdict,
          " | ".join(_result_notes(result))] for result in results)))
    files.verdicts_md.write_text(f"{VERDICTS_CAPTION}\n\n{markdown_table(verdict_table(results))}\n")
    return files
