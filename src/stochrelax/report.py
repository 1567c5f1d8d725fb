"""``stochrelax report``: one page a researcher opens in a browser, and the same tables in Markdown.

The report only reads what runs left on disk (config, metrics, attack tables, training
statistics, weights) and draws it with :mod:`stochrelax.plots`; it computes no new
robustness number. Over a study of many runs and seeds it opens with the verdicts on the
thesis' claims and their forest plot, then robust accuracy against eps and the results over
seeds — all read from the ``verdicts.csv`` and ``results.csv`` that ``stochrelax results``
wrote (:mod:`stochrelax.claims`, :mod:`stochrelax.results`).
``DIR/index.html`` needs no network and no JavaScript: figures are PNG files beside it in
``DIR/figures``. A run that lacks some data still gets its page, with a line saying what
is missing and the command that produces it.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from matplotlib.figure import Figure
from tqdm import tqdm

from stochrelax import plots
from stochrelax.config import ConfigError
from stochrelax.data import FashionMNIST
from stochrelax.results import (RESULTS_CAPTION, RESULTS_CSV, Table, describe_adversarial_training, describe_units,
                                markdown_table, read_results, results_table)
from stochrelax.robustness import WORST_CASE
from stochrelax.runs import Run, RunDirError, load_run, read_attack_table
from stochrelax.verdicts import VERDICTS_CAPTION, VERDICTS_CSV, read_verdicts, scope_headline, verdict_table

__all__ = ["SUMMARY_BUDGETS", "ReportFigure", "summary_table", "build_report"]

# Budgets shown in the summary table (thesis Figs. 5.3–5.5 span these).
SUMMARY_BUDGETS: dict[str, tuple[float, ...]] = {"eps": (0.03, 0.07, 0.1), "p": (0.1, 0.3)}

FIGURES_DIR = "figures"


@dataclass(frozen=True)
class ReportFigure:
    """One figure of the report: how to draw it and the one-line caption under it."""

    key: str  # file name stem
    title: str
    caption: str
    draw: Callable[[], Figure]


def _cell(rows: list[dict], attack: str, budget: float, stochastic: bool) -> str:
    matching = {row["eot_samples"]: row["accuracy"] for row in rows
                if row["attack"] == attack and math.isclose(row["budget"], budget)}
    if not matching:
        return "—"
    single = matching.get(1)
    eot = max((k for k in matching if k > 1), default=None)
    if attack == WORST_CASE:  # one number: the worst case attacks with EOT already
        return f"{matching[max(matching)]:.1%}"
    if stochastic and eot is not None:
        single_text = "—" if single is None else f"{single:.1%}"
        return f"{single_text} / {matching[eot]:.1%}"
    return f"{single:.1%}" if single is not None else "—"


def _load_runs(run_dirs: Sequence[str | Path]) -> tuple[list[Run], list[str]]:
    """The runs that can be read, and a line for each that cannot (what is wrong with it).

    Raises:
        RunDirError: if none can be read.
    """
    runs, left_out = [], []
    for run_dir in run_dirs:
        try:
            run = load_run(run_dir)
            read_attack_table(run_dir)  # a damaged table would break the page later
        except (RunDirError, ConfigError) as error:
            left_out.append(str(error))
            continue
        runs.append(run)
    if not runs:
        raise RunDirError(f"no run could be read: {left_out[0]}" + (f" (and {len(left_out) - 1} more)"
                                                                    if len(left_out) > 1 else ""))
    return runs, left_out


def summary_table(runs: Sequence[Run], left_out: Sequence[str] = ()) -> Table:
    """One row per run: what it is, clean accuracy, accuracy under each attack at :data:`SUMMARY_BUDGETS`.

    Stochastic runs show "single draw / EOT" accuracy of the averaged predictor; ``left_out`` (runs
    that could not be read, with why) are listed in the notes.
    """
    tables = {run.path: read_attack_table(run.path) for run in runs}
    columns: list[tuple[str, str, float]] = []
    for table in filter(None, tables.values()):
        for row in table["rows"]:
            key = (row["attack"], row["budget_name"], row["budget"])
            if row["budget"] in SUMMARY_BUDGETS.get(row["budget_name"], ()) and key not in columns:
                columns.append(key)
    header = ["run", "units", "BatchNorm", "adversarial training", "epochs", "clean accuracy"]
    header += [f"{attack} {name}={budget:g}" for attack, name, budget in columns]
    rows, notes = [], []
    for run in runs:
        row = [run.path.name, describe_units(run.config), "yes" if run.config.model.batch_norm else "no",
               describe_adversarial_training(run.config),
               str(run.summary.get("epochs", "?")), f"{run.summary['test_accuracy']:.1%}"]
        table = tables[run.path]
        stochastic = run.config.model.activation.noise is not None
        if table is None:
            notes.append(f"{run.path.name} has no attack table: run `stochrelax attack {run.path}`")
            row += ["—"] * len(columns)
        else:
            row += [_cell(table["rows"], attack, budget, stochastic) for attack, _, budget in columns]
            notes += [f"{run.path.name}: {warning}" for warning in table.get("warnings", [])]
        rows.append(row)
    return Table(header, rows, notes + [f"left out: {reason}" for reason in left_out])


def _figures(runs: Sequence[Run], data: FashionMNIST, tsne_count: int) -> list[ReportFigure]:
    first, directories = runs[0], [run.path for run in runs]
    stochastic_std = next((run.config.model.activation.std for run in runs
                           if run.config.model.activation.noise is not None), None)
    figures = [
        ReportFigure("noise_densities", "Noise densities (Fig. 4.1)",
                     f"Densities of the noise distributions at equal standard deviation "
                     f"({stochastic_std or 2.0:g}).", lambda: plots.noise_densities(stochastic_std or 2.0)),
        ReportFigure("examples_ifgsm_ll", "Targeted iterative FGSM examples (Fig. 4.2)",
                     f"{first.path.name}: originals, least-likely-class adversarial images at eps 0.05, and "
                     "their absolute difference.", lambda: plots.example_grid(first.path, data, "ifgsm-ll", 0.05)),
        ReportFigure("examples_fgsm", "FGSM examples (Fig. 4.3)",
                     f"{first.path.name}: originals, FGSM images at eps 0.05, and their absolute difference.",
                     lambda: plots.example_grid(first.path, data, "fgsm", 0.05)),
        ReportFigure("examples_missing", "Missing-features examples (Fig. 4.5)",
                     f"{first.path.name}: originals, images with 30% of pixels zeroed, and the difference.",
                     lambda: plots.example_grid(first.path, data, "missing", 0.3)),
        ReportFigure("activation_heatmaps", "Activation heat maps (Fig. 4.4)",
                     f"{first.path.name}: L2 norm over channels of each block's output, for an ankle boot "
                     "and a bag.", lambda: plots.activation_heatmaps(first.path, data)),
        ReportFigure("accuracy_vs_eps", "Accuracy under attack vs eps (Figs. 5.3, 5.4)",
                     "Test accuracy of the averaged predictor per attack; stochastic runs with EOT solid, "
                     "single-draw attacks dashed.", lambda: plots.accuracy_vs_budget(directories, "eps")),
        ReportFigure("accuracy_vs_p", "Accuracy vs missing-feature ratio (Fig. 5.5)",
                     "Test accuracy when each pixel is zeroed with probability p.",
                     lambda: plots.accuracy_vs_budget(directories, "p")),
        ReportFigure("clean_accuracy", "Clean test accuracy (Fig. 5.6)",
                     "Clean accuracy by noise distribution and mode; dashed: deterministic baseline.",
                     lambda: plots.clean_accuracy_bars(directories)),
    ]
    for run in runs:
        name = run.path.name
        figures += [
            ReportFigure(f"{name}_learning_curves", f"{name}: learning curves (Fig. 5.7)",
                         "Train and test accuracy and loss per epoch.", lambda path=run.path: plots.learning_curves(path)),
            ReportFigure(f"{name}_confidence", f"{name}: confidence (Fig. 5.8)",
                         "Highest predicted probability on clean test images, correct vs wrong predictions.",
                         lambda path=run.path: plots.confidence_histograms(path, data)),
            ReportFigure(f"{name}_tsne", f"{name}: t-SNE of block 8 features (Fig. 5.9)",
                         f"t-SNE of the block8 features of {tsne_count} test images, coloured by class.",
                         lambda path=run.path: plots.tsne_features(path, data, count=tsne_count)),
            *(ReportFigure(f"{name}_{statistic}_distributions", f"{name}: {label}s during training",
                           "Per layer: mean ± std per epoch, and histograms at a few epochs (thesis 5.1).",
                           lambda path=run.path, statistic=statistic: plots.training_distributions(path, statistic))
              for statistic, label in (("activation", "block output"), ("gradient", "weight gradient"))),
            ReportFigure(f"{name}_reliability", f"{name}: reliability diagram",
                         "Accuracy vs confidence per bin, with the expected calibration error (ECE).",
                         lambda path=run.path: plots.reliability_diagram(path, data)),
        ]
        if run.config.model.activation.noise is not None:
            figures.append(ReportFigure(f"{name}_accuracy_vs_samples", f"{name}: accuracy vs noise samples K",
                                        "Accuracy of the predictor averaging K noisy passes, against K.",
                                        lambda path=run.path: plots.accuracy_vs_samples(path, data)))
    return figures


def _html_table(table: Table, css_class: str) -> str:
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in table.header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in table.rows)
    notes = "".join(f'<li class="note">{html.escape(note)}</li>' for note in table.notes)
    return (f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
            + (f"<ul>{notes}</ul>" if notes else ""))


@dataclass(frozen=True)
class _TableSection:
    heading: str
    intro: str
    table: Table
    css_class: str  # the HTML table's class


@dataclass(frozen=True)
class _Study:
    """What the report shows of a study, read from the files ``stochrelax results`` wrote."""

    headline: str  # what the study's preset can tell
    verdicts: _TableSection
    figures: list[ReportFigure]  # the forest plot, then robust accuracy against eps
    results: _TableSection


def _read_study(study_root: str | Path) -> _Study:
    """The verdicts and the results over seeds of a study, from its ``verdicts.csv`` and ``results.csv``.

    Raises:
        RunDirError: if either file is missing.
    """
    root = Path(study_root)
    for name in (VERDICTS_CSV, RESULTS_CSV):
        if not (root / name).is_file():
            raise RunDirError(f"{root / name} is missing: run `stochrelax results {root}` first")
    records, rows = read_verdicts(root / VERDICTS_CSV), read_results(root / RESULTS_CSV)
    figures = [
        ReportFigure("forest_plot", "The claims at a glance",
                     "Per claim: the estimate and its 95% interval with single-draw attacks, EOT attacks and the "
                     "worst case; black: the criterion's threshold; claim ids coloured by the verdict "
                     "(green holds, red fails, orange inconclusive).", lambda: plots.forest_plot(records)),
        ReportFigure("robust_accuracy_vs_eps", "Robust accuracy against eps",
                     "Every configuration's robust accuracy: the mean over seeds, the band from the lowest to the "
                     "highest seed.", lambda: plots.robust_accuracy_vs_eps(rows)),
    ]
    return _Study(scope_headline(records),
                  _TableSection("Verdicts", f"{VERDICTS_CAPTION} From {study_root}.", verdict_table(records),
                                "verdicts"),
                  figures, _TableSection("Results over seeds", RESULTS_CAPTION, results_table(rows), "results"))


def _html_section(section: _TableSection) -> str:
    return (f"<h2>{html.escape(section.heading)}</h2><p>{html.escape(section.intro)}</p>"
            f"{_html_table(section.table, section.css_class)}")


def _figure_html(figure: ReportFigure, out_dir: Path) -> str:
    """Draws and saves one figure; its HTML, or a line saying what is missing and how to make it."""
    title = f"<h3>{html.escape(figure.title)}</h3>"
    try:
        drawn = figure.draw()
    except (plots.MissingData, RunDirError) as missing:  # a file it needs is missing or damaged: say which
        return f'<section>{title}<p class="missing">Missing: {html.escape(str(missing))}</p></section>'
    relative = f"{FIGURES_DIR}/{figure.key}.png"
    plots.save_figure(drawn, out_dir / relative)
    return (f'<figure id="{html.escape(figure.key)}">{title}<img src="{html.escape(relative)}" '
            f'alt="{html.escape(figure.title)}"><figcaption>{html.escape(figure.caption)}</figcaption></figure>')


_STYLE = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:0.85em}th,td{border:1px solid #ccc;padding:4px 6px;text-align:right}
th:first-child,td:first-child,th:nth-child(2),td:nth-child(2){text-align:left}
img{max-width:100%}figcaption{color:#555}.missing,.note{color:#a33}code{background:#f3f3f3;padding:1px 4px}
.headline{font-weight:bold}figure{margin:1em 0}"""


def build_report(run_dirs: Sequence[str | Path], out_dir: str | Path, data: FashionMNIST, command: str,
                 tsne_count: int = 2000, progress: bool = False, study_root: str | Path | None = None) -> Path:
    """Writes ``out_dir/index.html``, ``out_dir/report.md`` and ``out_dir/figures/*.png``.

    Args:
        run_dirs: finished run directories; the summary table and the figures show these.
        out_dir: where the report goes (created; its report files are replaced).
        data: Fashion-MNIST, for the figures that need test images.
        command: the command line that regenerates the page, shown on it.
        tsne_count: test images in each t-SNE plot.
        progress: show a progress bar over the figures.
        study_root: a directory of many runs and seeds (``stochrelax sweep``) that ``stochrelax
            results`` has analysed; given, the page opens with the verdicts on the thesis' claims,
            their forest plot, robust accuracy against eps and the results over seeds, read from
            its ``verdicts.csv`` and ``results.csv``.

    Returns:
        The path of ``index.html``.

    Raises:
        RunDirError: if ``study_root`` lacks those files.
    """
    runs, left_out = _load_runs(run_dirs)
    out_dir = Path(out_dir)
    (out_dir / FIGURES_DIR).mkdir(parents=True, exist_ok=True)
    study = None if study_root is None else _read_study(study_root)
    summary = _TableSection("Summary", "Accuracy of the averaged predictor; stochastic runs show single-draw / EOT "
                            "attacks.", summary_table(runs, left_out), "summary")
    figures = (study.figures if study else []) + _figures(runs, data, tsne_count)
    drawn = {figure.key: _figure_html(figure, out_dir) for figure in tqdm(figures, desc="figures",
                                                                           disable=not progress)}
    body = []
    if study is not None:
        forest, robust = (drawn.pop(figure.key) for figure in study.figures)
        body += [f'<p class="headline">{html.escape(study.headline)}</p>', "<h2>Verdicts</h2>", forest,
                 _html_table(study.verdicts.table, study.verdicts.css_class),
                 f"<p>{html.escape(study.verdicts.intro)}</p>", robust]
    body += [_html_section(section) for section in ([study.results] if study else []) + [summary]]
    body += ["<h2>Figures</h2>", *drawn.values(), f"<p>Regenerate with <code>{html.escape(command)}</code></p>"]
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>stochrelax report</title>'
            f"<style>{_STYLE}</style></head><body><h1>stochrelax report</h1>{''.join(body)}</body></html>\n")
    (out_dir / "index.html").write_text(page)
    markdown = ["# stochrelax report", ""]
    if study is not None:
        markdown += [study.headline, "", "## Verdicts", "", study.verdicts.intro, "", markdown_table(study.verdicts.table)]
    for section in ([study.results] if study else []) + [summary]:
        markdown += ["", f"## {section.heading}", "", section.intro, "", markdown_table(section.table)]
    markdown += ["", f"Regenerate with `{command}`"]
    (out_dir / "report.md").write_text("\n".join(markdown) + "\n")
    return out_dir / "index.html"
