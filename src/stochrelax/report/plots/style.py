"""What every figure shares: sizes, colours and labels, the figure scaffolding (built without
pyplot), saving, and :class:`MissingData` for a run that lacks what a figure needs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from stochrelax.rundir import layout as runs

DPI = 100  # pixels per inch of saved figures
EVALUATION_IMAGES = 2000  # clean test images used by the confidence, calibration and K-sample figures
SEED = 0  # noise seed of the figures that take no seed argument
EXAMPLE_EOT_SAMPLES = 16  # noise draws per gradient when example_grid attacks a stochastic model
MIN_BAR_SLOTS = 8.0  # clean_accuracy_bars: x range of at least this many bar widths
WIDE = (10.0, 4.0)  # inches: a multi-panel figure across a report page
SINGLE = (6.0, 4.0)  # inches: a one-panel figure

BUDGET_LABELS = {"eps": "maximum L∞ perturbation ε (pixels)", "p": "fraction of missing pixels p"}
ATTACK_TITLES = {
    "fgsm": "untargeted FGSM (thesis Fig. 5.4)",
    "ifgsm-ll": "targeted iterative FGSM (thesis Fig. 5.3)",
    "pgd": "PGD",
    "apgd-ce": "APGD-CE",
    "apgd-dlr": "APGD-DLR",
    "square": "Square (score-based)",
    "missing": "missing features (thesis Fig. 5.5)",
    "worst-case": "worst case over an adaptive ensemble",
}
EXAMPLE_FIGURES = {"ifgsm-ll": "thesis Fig. 4.2", "fgsm": "thesis Fig. 4.3", "missing": "thesis Fig. 4.5"}
NOISE_COLOURS = {"gaussian": "tab:blue", "logistic": "tab:orange", "uniform": "tab:green"}
MODE_HATCHES = {"additive": "", "multiplicative": "//"}
ADVERSARIAL_COLOUR = "tab:gray"
BASELINE_COLOURS = ("black", "dimgray", "darkgray")
LINE_STYLES = {True: "--", False: "-"}  # keyed by "single-draw attack on a stochastic run"
OUTCOME_COLOURS = {True: "tab:green", False: "tab:red"}  # keyed by "prediction correct"
OUTCOME_NAMES = {True: "correct", False: "wrong"}
STATISTICS = {"activation": "block output", "gradient": "weight gradient"}  # training_stats.jsonl key -> label


class MissingData(Exception):
    """A figure needs a file that the run directory lacks; the message says which command makes it."""


def retrain_command(run_dir: Path) -> str:
    """How to train the run again into a new directory (``--overwrite`` would delete its attack tables)."""
    return f"`stochrelax train {run_dir / runs.CONFIG_FILE} --out {run_dir}-retrained`"


# --- figure scaffolding ------------------------------------------------------------------------

def new_figure(size: tuple[float, float]) -> Figure:
    return Figure(figsize=size, layout="constrained")


def panels(count: int, max_columns: int = 3) -> tuple[Figure, list]:
    """A wide figure with ``count`` panels, at most ``max_columns`` per row."""
    columns = min(count, max_columns)
    rows = math.ceil(count / columns)
    figure = new_figure((WIDE[0], WIDE[1] * rows))
    axes = list(figure.subplots(rows, columns, squeeze=False).ravel())
    for unused in axes[count:]:
        unused.remove()
    return figure, axes[:count]


def figure_legend(figure: Figure, axes: Sequence, **options: Any) -> None:
    """One figure legend with every distinct label of ``axes``; ``options`` go to ``Figure.legend``."""
    entries: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    figure.legend(entries.values(), entries.keys(), **options)


def epoch_ticks(ax, max_ticks: int | str = "auto") -> None:
    """Whole-number ticks on an epoch x axis, also when it shows a single epoch.

    ``MaxNLocator(integer=True)`` alone falls back to fractional ticks when fewer than two
    integers are in view, which a one-epoch run always has.
    """
    ax.xaxis.set_major_locator(MaxNLocator(max_ticks, integer=True, min_n_ticks=1))


def draw_image(ax, picture: np.ndarray, title: str, **options: Any) -> None:
    ax.imshow(picture, cmap=options.pop("cmap", "gray"), **options)
    ax.set_title(title, fontsize=7)
    ax.set_xticks([])
    ax.set_yticks([])


def save_figure(figure: Figure, path: str | Path) -> Path:
    """Writes ``figure`` as a PNG of (figure size × :data:`DPI`) pixels, creating the folder; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, format="png")
    return path
