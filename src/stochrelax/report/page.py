"""``stochrelax report``: one page a researcher opens in a browser, and the same tables in Markdown.

The report only reads what runs left on disk (config, metrics, attack tables, training
statistics, weights) and draws it with :mod:`stochrelax.report.plots`; it computes no new
robustness number. Over a study of many runs and seeds it opens with the verdicts on the
thesis' claims and their forest plot, then robust accuracy against eps and the results over
seeds — all read from the ``verdicts.csv`` and ``results.csv`` that ``stochrelax results``
wrote (:mod:`stochrelax.analysis.claims`, :mod:`stochrelax.analysis.results`); then the summary of the runs
shown, the figures across them, each run's figures, and how to regenerate the page.

A table of contents links every section (a sidebar that stays in view on a wide screen);
a table wider than the page scrolls inside its own box with its first column held in place;
verdict cells are coloured by state; every accuracy says on how many test images it was
measured. ``DIR/index.html`` needs no network and no JavaScript, and has a print
stylesheet: figures are PNG files beside it in ``DIR/figures``. A run that lacks some data
still gets its page, with a line saying what is missing and the command that produces it.
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from matplotlib.figure import Figure
from tqdm import tqdm

from stochrelax.analysis.results import (RESULTS_CAPTION, RESULTS_CSV, Table, configuration_name,
                                         describe_adversarial_training, describe_units, images_text, markdown_table,
                                         read_results, results_table)
from stochrelax.analysis.verdicts import (FAILS, HOLDS, INCONCLUSIVE, NOT_JUDGED, NOT_MEASURED, TOO_SMALL,
                                          VERDICTS_CAPTION, VERDICTS_CSV, read_verdicts, scope_headline, verdict_table)
from stochrelax.data.fashion_mnist import FashionMNIST
from stochrelax.evaluation.certification import (CERTIFIED_RADII, certified_accuracy, read_certificates,
                                                 read_certification)
from stochrelax.evaluation.table import WORST_CASE
from stochrelax.report import plots
from stochrelax.rundir.config import ConfigError
from stochrelax.rundir.layout import CERTIFY_CSV, CERTIFY_JSON, Run, RunDirError, load_run, read_attack_table

__all__ = ["SUMMARY_BUDGETS", "VERDICT_BACKGROUNDS", "TRAINING_DISTRIBUTIONS", "ReportFigure", "summary_table",
           "certification_table", "certified_by_configuration", "build_report"]

# Budgets shown in the summary table (thesis Figs. 5.3–5.5 span these).
SUMMARY_BUDGETS: dict[str, tuple[float, ...]] = {"eps": (0.03, 0.07, 0.1), "p": (0.1, 0.3)}

FIGURES_DIR = "figures"
CONTENTS_ID = "contents"  # the table of contents' id, which every section links back to


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
            read_certificates(run_dir)
            read_certification(run_dir)
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

    Every accuracy column says on how many test images it was measured: runs are attacked on
    fewer images than they are tested on, so the clean accuracy appears twice, on the run's
    test images and on the images its attacks used. Stochastic runs show "single draw / EOT"
    accuracy of the averaged predictor; ``left_out`` (runs that could not be read, with why)
    are listed in the notes.
    """
    tables = {run.path: read_attack_table(run.path) for run in runs}
    attacked = [table for table in tables.values() if table is not None]
    columns: list[tuple[str, str, float]] = []
    for table in attacked:
        for row in table["rows"]:
            key = (row["attack"], row["budget_name"], row["budget"])
            if row["budget"] in SUMMARY_BUDGETS.get(row["budget_name"], ()) and key not in columns:
                columns.append(key)
    header = ["run", "units", "BatchNorm", "adversarial training", "epochs",
              f"clean accuracy on {images_text(run.summary.get('test_examples') for run in runs)} images"]
    if attacked:
        header.append(f"clean accuracy on the {images_text(table.get('test_examples') for table in attacked)} "
                      "attacked images")
    for attack, name, budget in columns:
        images = images_text(row.get("examples") for table in attacked for row in table["rows"]
                             if (row["attack"], row["budget_name"], row["budget"]) == (attack, name, budget))
        header.append(f"{attack} {name}={budget:g} on {images} images")
    rows, notes = [], []
    for run in runs:
        row = [run.path.name, describe_units(run.config), "yes" if run.config.model.batch_norm else "no",
               describe_adversarial_training(run.config),
               str(run.summary.get("epochs", "?")), f"{run.summary['test_accuracy']:.1%}"]
        table = tables[run.path]
        stochastic = run.config.model.stochastic
        if table is None:
            notes.append(f"{run.path.name} has no attack table: run `stochrelax attack {run.path}`")
            row += ["—"] * (len(header) - len(row))
        else:
            row.append(f"{table['clean_accuracy']:.1%}" if "clean_accuracy" in table else "—")
            row += [_cell(table["rows"], attack, budget, stochastic) for attack, _, budget in columns]
            notes += [f"{run.path.name}: {warning}" for warning in table.get("warnings", [])]
        rows.append(row)
    return Table(header, rows, notes + [f"left out: {reason}" for reason in left_out])


def certification_table(runs: Sequence[Run]) -> Table:
    """One row per run that ``stochrelax certify`` certified: σ, draws, α, images, and the certified
    accuracy of its smoothed classifier at each L2 radius of :data:`~stochrelax.evaluation.certification.CERTIFIED_RADII`
    (Cohen, Rosenfeld & Kolter 2019); no rows when none was certified."""
    header = ["run", "σ", "n", "α", "images", *(f"certified accuracy at L2 radius {radius:g}"
                                                  for radius in CERTIFIED_RADII)]
    rows = []
    for run in runs:
        certificates = read_certificates(run.path)
        if certificates is None:
            continue
        record = read_certification(run.path) or {}
        settings = record.get("settings", {})
        rows.append([run.path.name, format(record.get("sigma", float("nan")), "g"), str(settings.get("n", "?")),
                     format(settings.get("alpha", float("nan")), "g"), str(len(certificates)),
                     *(f"{accuracy:.1%}" for accuracy in certified_accuracy(certificates).values())])
    return Table(header, rows, ["Certified accuracy: the fraction of images whose smoothed prediction is correct "
                                "with a certified L2 radius at least r (pixels); abstentions count as wrong. It "
                                "certifies the smoothed classifier, not the base network, and not an L∞ ball."])


def _attack_rows(runs: Sequence[Run]) -> list[dict]:
    """Every row of the runs' attack tables."""
    return [row for run in runs for row in (read_attack_table(run.path) or {}).get("rows", [])]


def _shared_figures(runs: Sequence[Run], data: FashionMNIST) -> list[ReportFigure]:
    """The figures across runs: the noise, examples of the attacks, accuracy against the budgets."""
    first, directories = runs[0], [run.path for run in runs]
    stochastic_std = next((run.config.model.activation.std for run in runs
                           if run.config.model.activation.noise is not None), None)
    rows = _attack_rows(runs)
    attacked = {name: images_text(row.get("examples") for row in rows if row["budget_name"] == name)
                for name in ("eps", "p")}
    clean = images_text(run.summary.get("test_examples") for run in runs)
    return [
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
                     f"Test accuracy of the averaged predictor per attack, on {attacked['eps']} test images; "
                     "stochastic runs with EOT solid, single-draw attacks dashed.",
                     lambda: plots.accuracy_vs_budget(directories, "eps")),
        ReportFigure("accuracy_vs_p", "Accuracy vs missing-feature ratio (Fig. 5.5)",
                     f"Test accuracy when each pixel is zeroed with probability p, on {attacked['p']} test images.",
                     lambda: plots.accuracy_vs_budget(directories, "p")),
        ReportFigure("clean_accuracy", "Clean test accuracy (Fig. 5.6)",
                     f"Clean accuracy on {clean} test images by noise distribution and mode; dashed: deterministic "
                     "baseline.", lambda: plots.clean_accuracy_bars(directories)),
    ]


# The training-distribution figures of a run: statistic of training_stats.jsonl → title
TRAINING_DISTRIBUTIONS = {"activation": "Block outputs during training (thesis 5.1)",
                          "gradient": "Weight gradients during training (thesis 5.1)"}


def _run_figures(run: Run, data: FashionMNIST, tsne_count: int) -> list[ReportFigure]:
    """The figures of one run: how it trained, how confident and calibrated it is, its features."""
    name, path = run.path.name, run.path
    train, test = (images_text([run.summary.get(key)]) for key in ("train_examples", "test_examples"))
    evaluated = images_text([min(len(data.test_labels), plots.EVALUATION_IMAGES)])
    figures = [
        ReportFigure(f"{name}_learning_curves", "Learning curves (Fig. 5.7)",
                     f"Accuracy and loss per epoch on {train} training and {test} test images.",
                     lambda: plots.learning_curves(path)),
        ReportFigure(f"{name}_confidence", "Confidence (Fig. 5.8)",
                     f"Highest predicted probability on {evaluated} clean test images, correct vs wrong predictions.",
                     lambda: plots.confidence_histograms(path, data)),
        ReportFigure(f"{name}_tsne", "t-SNE of block 8 features (Fig. 5.9)",
                     f"t-SNE of the block8 features of {tsne_count} test images, coloured by class.",
                     lambda: plots.tsne_features(path, data, count=tsne_count)),
        *(ReportFigure(f"{name}_{statistic}_distributions", title,
                       "Per layer: mean ± std per epoch, and histograms at the first, middle and last epoch.",
                       lambda statistic=statistic: plots.training_distributions(path, statistic))
          for statistic, title in TRAINING_DISTRIBUTIONS.items()),
        ReportFigure(f"{name}_reliability", "Reliability diagram",
                     f"Accuracy vs confidence per bin on {evaluated} test images, with the expected calibration "
                     "error (ECE).", lambda: plots.reliability_diagram(path, data)),
    ]
    if (path / CERTIFY_CSV).is_file():
        figures.append(ReportFigure(f"{name}_certified_accuracy", "Certified accuracy vs L2 radius",
                                    "Certified accuracy of the smoothed classifier (randomized smoothing, Cohen et al. "
                                    "2019) against the L2 radius, from certify.csv.",
                                    lambda: plots.certified_accuracy_curve(path)))
    if run.config.model.activation.noise is not None:
        figures.append(ReportFigure(f"{name}_accuracy_vs_samples", "Accuracy vs noise samples K",
                                    f"Accuracy of the predictor averaging K noisy passes, against K, on {evaluated} "
                                    "test images.", lambda: plots.accuracy_vs_samples(path, data)))
    if run.config.model.activation.learnable_std is not None:
        figures.append(ReportFigure(f"{name}_learned_noise_std", "Learned noise std",
                                    "The learnable noise std of each layer per epoch (mean over channels, band: "
                                    "smallest to largest channel), as Parametric Noise Injection learns it.",
                                    lambda: plots.learned_noise_std(path)))
    return figures


@dataclass(frozen=True)
class _TableSection:
    heading: str
    intro: str
    table: Table
    css_class: str  # the HTML table's class
    cell_classes: dict[tuple[int, int], str] = field(default_factory=dict)  # (row, column) → class of that cell


def _html_table(section: _TableSection) -> str:
    """The table in a box of its own that scrolls sideways when the table is wider than the page, then its notes."""
    table = section.table
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in table.header)
    body = "".join("<tr>" + "".join(f"<td{_class_attribute(section.cell_classes.get((row, column)))}>"
                                    f"{html.escape(cell)}</td>" for column, cell in enumerate(cells)) + "</tr>"
                   for row, cells in enumerate(table.rows))
    notes = "".join(f"<li>{html.escape(note)}</li>" for note in table.notes)
    return (f'<div class="table-box" role="region" tabindex="0" aria-label="{html.escape(section.heading)}">'
            f'<table class="{section.css_class}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'
            + (f'<div class="notes"><p>Notes</p><ul>{notes}</ul></div>' if notes else ""))


def _class_attribute(css_class: str | None) -> str:
    return "" if css_class is None else f' class="{html.escape(css_class)}"'


# Background of a verdict cell by the verdict's state: green holds, red fails, amber inconclusive, greys no verdict.
VERDICT_BACKGROUNDS: dict[str, str] = {HOLDS: "#cdebd3", FAILS: "#f5cccc", TOO_SMALL: "#e6ecc4",
                                       INCONCLUSIVE: "#fde3b5",
                                       NOT_MEASURED: "#e2e2e2", NOT_JUDGED: "#d8e1f0"}


def _verdict_class(state: str) -> str:
    """The CSS class of a verdict cell in that state, e.g. ``verdict-not-measured``."""
    return "verdict-" + state.replace(" ", "-")


@dataclass(frozen=True)
class _Study:
    """What the report shows of a study, read from the files ``stochrelax results`` wrote."""

    headline: str  # what the study's preset can tell
    verdicts: _TableSection
    forest: ReportFigure
    robustness: ReportFigure  # robust accuracy against eps
    guarantees: ReportFigure  # empirical L∞ robustness beside certified L2 robustness
    results: _TableSection


def certified_by_configuration(study_root: str | Path) -> dict[str, list[dict[float, float]]]:
    """Per configuration, the certified accuracy at each radius of every run below ``study_root`` that
    ``stochrelax certify`` (or a sweep) certified, one mapping per seed, from the runs' ``certify.json``."""
    certified: dict[str, list[dict[float, float]]] = {}
    for path in sorted(Path(study_root).rglob(CERTIFY_JSON)):
        record = read_certification(path.parent)
        certified.setdefault(configuration_name(path.parent), []).append(
            {float(point["radius"]): float(point["accuracy"]) for point in record["certified_accuracy"]})
    return certified


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
    table = verdict_table(records)
    verdict_cells = {(row, len(table.header) - column): _verdict_class(state)
                     for row, record in enumerate(records)
                     for column, state in ((1, record.verdict), (2, record.worst_case_verdict))
                     if state in VERDICT_BACKGROUNDS}
    attacked = images_text(row.examples for row in rows if row.budget_name == "eps")
    return _Study(
        scope_headline(records),
        _TableSection("Verdicts", f"{VERDICTS_CAPTION} From {study_root}.", table, "verdicts", verdict_cells),
        ReportFigure("forest_plot", "The claims at a glance",
                     "Per claim: the estimate and its 95% interval with single-draw attacks, EOT attacks and the "
                     "worst case; black: the criterion's threshold; claim ids coloured by the verdict "
                     "(green holds, red fails, orange inconclusive).", lambda: plots.forest_plot(records)),
        ReportFigure("robust_accuracy_vs_eps", "Robust accuracy against eps",
                     f"Every configuration's robust accuracy on {attacked} test images: the mean over seeds, the band "
                     "from the lowest to the highest seed.", lambda: plots.robust_accuracy_vs_eps(rows)),
        ReportFigure("robustness_and_certificates", "Empirical and certified robustness",
                     "Two different guarantees, not to be compared number for number. Left: every configuration's "
                     "robust accuracy under the adaptive L∞ worst case, an empirical upper bound (a stronger attack "
                     "could only lower it). Right: the certified L2 accuracy of the smoothed classifiers of the runs "
                     "with Gaussian input noise (randomized smoothing, Cohen et al. 2019), a lower bound that holds "
                     "with probability 1 − α per image, for the smoothed classifier only, in another norm.",
                     lambda: plots.robustness_and_certificates(rows, certified_by_configuration(study_root))),
        _TableSection("Results over seeds", RESULTS_CAPTION, results_table(rows), "results"))


def _figure_html(figure: ReportFigure, out_dir: Path, level: int, about: str = "") -> str:
    """Draws and saves one figure; its HTML under a heading of that level, or a line saying what is missing
    and how to make it. ``about`` (a run) prefixes the image's alternative text."""
    title = f"<h{level}>{html.escape(figure.title)}</h{level}>"
    try:
        drawn = figure.draw()
    except (plots.MissingData, RunDirError) as missing:  # a file it needs is missing or damaged: say which
        return (f'<section id="{html.escape(figure.key)}">{title}'
                f'<p class="missing">Missing: {html.escape(str(missing))}</p></section>')
    relative = f"{FIGURES_DIR}/{figure.key}.png"
    plots.save_figure(drawn, out_dir / relative)
    alt = f"{about}: {figure.title}" if about else figure.title
    return (f'<figure id="{html.escape(figure.key)}">{title}<img src="{html.escape(relative)}" '
            f'alt="{html.escape(alt)}"><figcaption>{html.escape(figure.caption)}</figcaption></figure>')


@dataclass(frozen=True)
class _PageSection:
    """A section of the page, and the parts of it the table of contents lists beneath it."""

    anchor: str  # its id
    heading: str
    content: str  # HTML under the heading
    parts: tuple[tuple[str, str], ...] = ()  # (id, label)


def _section_html(section: _PageSection) -> str:
    return (f'<section id="{section.anchor}"><div class="section-head"><h2>{html.escape(section.heading)}</h2>'
            f'<a class="to-contents" href="#{CONTENTS_ID}">↑ contents</a></div>{section.content}</section>')


def _contents_html(sections: Sequence[_PageSection]) -> str:
    def link(anchor: str, label: str) -> str:
        return f'<a href="#{anchor}">{html.escape(label)}</a>'

    items = "".join(f"<li>{link(section.anchor, section.heading)}"
                    + ("<ol>" + "".join(f"<li>{link(*part)}</li>" for part in section.parts) + "</ol>"
                       if section.parts else "") + "</li>" for section in sections)
    return f'<nav id="{CONTENTS_ID}" class="contents" aria-label="Contents"><h2>Contents</h2><ol>{items}</ol></nav>'


def _run_anchor(run: Run) -> str:
    """The id of a run's section: its directory name with anything but letters, digits, ``_.-`` replaced."""
    return "run-" + re.sub(r"[^A-Za-z0-9_.-]", "-", run.path.name)


def _run_section_html(run: Run, figures: Sequence[str]) -> str:
    """A run's section: what the run is, then its figures (their HTML)."""
    what = (f"{describe_units(run.config)}; adversarial training: {describe_adversarial_training(run.config)}; "
            f"{run.summary.get('epochs', '?')} epochs")
    return (f'<section id="{_run_anchor(run)}" class="run"><h3>{html.escape(run.path.name)}</h3>'
            f'<p class="run-what">{html.escape(what)}</p>{"".join(figures)}</section>')


STYLESHEET = Path(__file__).with_name("report.css")
"""The page's CSS, shipped with the package; the verdict cells' colours are appended from :data:`VERDICT_BACKGROUNDS`."""


def _style() -> str:
    verdict_colours = "".join(f"td.{_verdict_class(state)}{{background:{colour}}}\n"
                              for state, colour in VERDICT_BACKGROUNDS.items())
    return STYLESHEET.read_text() + verdict_colours


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
    summary = _TableSection("Summary", "The runs whose figures follow. Accuracy of the averaged predictor; stochastic "
                            "runs show single-draw / EOT attacks.", summary_table(runs, left_out), "summary")
    certified = _TableSection("Certified robustness", "Randomized smoothing: the runs certified with "
                              "`stochrelax certify`.", certification_table(runs), "certified")
    shared, per_run = _shared_figures(runs, data), [(run, _run_figures(run, data, tsne_count)) for run in runs]
    to_draw = [(figure, 3, "") for figure in ([study.forest, study.robustness, study.guarantees] if study else [])
               + shared]
    to_draw += [(figure, 4, run.path.name) for run, figures in per_run for figure in figures]
    drawn = {figure.key: _figure_html(figure, out_dir, level, about)
             for figure, level, about in tqdm(to_draw, desc="figures", disable=not progress)}
    sections = []
    if study is not None:
        sections += [
            _PageSection("verdicts", "Verdicts", drawn[study.forest.key] + _html_table(study.verdicts)
                         + f"<p>{html.escape(study.verdicts.intro)}</p>"),
            _PageSection("robustness", "Robustness curves", drawn[study.robustness.key] + drawn[study.guarantees.key]),
            _PageSection("results", study.results.heading,
                         f"<p>{html.escape(study.results.intro)}</p>{_html_table(study.results)}"),
        ]
    sections += [
        _PageSection("summary", summary.heading, f"<p>{html.escape(summary.intro)}</p>{_html_table(summary)}"),
        *([_PageSection("certified", certified.heading,
                        f"<p>{html.escape(certified.intro)}</p>{_html_table(certified)}")] if certified.table.rows else []),
        _PageSection("figures", "Figures across runs", "".join(drawn[figure.key] for figure in shared)),
        _PageSection("runs", "Per-run figures",
                     "".join(_run_section_html(run, [drawn[figure.key] for figure in figures])
                             for run, figures in per_run),
                     tuple((_run_anchor(run), run.path.name) for run, _ in per_run)),
        _PageSection("regenerate", "How to regenerate",
                     f"<p>Regenerate this page with <code>{html.escape(command)}</code>. <code>report.md</code> "
                     "beside it holds the same tables in Markdown; the figures are the PNG files in "
                     f"<code>{FIGURES_DIR}/</code>.</p>"),
    ]
    headline = f'<p class="headline">{html.escape(study.headline)}</p>' if study else ""
    page = ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1"><title>stochrelax report</title>'
            f'<style>{_style()}</style></head><body><div class="page"><header class="masthead"><h1>stochrelax report</h1>'
            f"{headline}</header>{_contents_html(sections)}<main>{''.join(map(_section_html, sections))}</main>"
            "</div></body></html>\n")
    (out_dir / "index.html").write_text(page)
    markdown = ["# stochrelax report", ""]
    if study is not None:
        markdown += [study.headline, "", "## Verdicts", "", study.verdicts.intro, "", markdown_table(study.verdicts.table)]
    for section in ([study.results] if study else []) + [summary] + ([certified] if certified.table.rows else []):
        markdown += ["", f"## {section.heading}", "", section.intro, "", markdown_table(section.table)]
    markdown += ["", f"Regenerate with `{command}`"]
    (out_dir / "report.md").write_text("\n".join(markdown) + "\n")
    return out_dir / "index.html"
