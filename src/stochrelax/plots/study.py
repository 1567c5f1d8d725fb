"""The study's figures: the verdicts as a forest plot and robust accuracy against eps over seeds."""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import cycle

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from stochrelax.claims import UNITS
from stochrelax.plots.style import BUDGET_LABELS, WIDE, MissingData, figure_legend, new_figure, panels
from stochrelax.results import VARIANT_NAMES, ResultRow
from stochrelax.verdicts import VerdictRecord


VARIANT_STYLES = {"single": ("tab:gray", "o"), "eot": ("tab:blue", "s"), "worst-case": ("tab:red", "D")}
VERDICT_COLOURS = {"holds": "tab:green", "fails": "tab:red", "inconclusive": "tab:orange"}
FOREST_ROW_INCHES = 0.32  # height per claim in the forest plot


def _finite_limits(values: Sequence[float], margin: float = 0.08) -> tuple[float, float]:
    finite = [value for value in values if math.isfinite(value)]
    low, high = min(finite), max(finite)
    pad = (high - low) * margin or max(abs(high), 1.0) * margin
    return low - pad, high + pad


def forest_plot(records: Sequence[VerdictRecord]) -> Figure:
    """Every claim's estimate and 95% interval against its criterion (one panel per unit).

    One row per claim (its id coloured by the verdict), one marker and interval per attack
    variant (single-draw, EOT, worst case), the criterion's thresholds as red segments.
    An unbounded interval (one seed) runs to the panel's edge as a dotted line.

    Raises:
        MissingData: if no claim was measured.
    """
    measured = [record for record in records if any(record.estimates.values())]
    if not measured:
        raise MissingData("no claim was measured: run `stochrelax results` on a study with finished runs")
    by_unit: dict[str, list[VerdictRecord]] = {}
    for record in measured:
        by_unit.setdefault(record.unit, []).append(record)
    heights = [len(group) + 1.2 for group in by_unit.values()]
    figure = new_figure((WIDE[0], FOREST_ROW_INCHES * sum(heights) + 0.8))
    axes = figure.subplots(len(by_unit), 1, squeeze=False, height_ratios=heights)[:, 0]
    for ax, (unit_name, group) in zip(axes, by_unit.items()):
        unit = UNITS[unit_name]
        values = [bound for record in group for found in record.estimates.values() if found for bound in found[:3]]
        values += [threshold for record in group for threshold in record.thresholds.values()]
        low_limit, high_limit = _finite_limits(values)
        for row, record in enumerate(group):
            y = len(group) - 1 - row
            for offset, (variant, found) in zip((0.22, 0.0, -0.22), record.estimates.items()):
                if found is None:
                    continue
                colour, marker = VARIANT_STYLES[variant]
                estimate, low, high = found[:3]
                ax.hlines(y + offset, max(low, low_limit), min(high, high_limit), color=colour, linewidth=1.6,
                          linestyles="-" if math.isfinite(low) and math.isfinite(high) else ":")
                ax.plot(estimate, y + offset, marker, color=colour, markersize=4,
                        label=VARIANT_NAMES[variant])
            for threshold in record.thresholds.values():
                ax.vlines(threshold, y - 0.42, y + 0.42, color="black", linewidth=1.2)
        ax.set_yticks(range(len(group)), [record.id for record in reversed(group)], fontsize=7)
        for tick, record in zip(ax.get_yticklabels(), reversed(group)):
            tick.set_color(VERDICT_COLOURS.get(record.verdict, "dimgray"))
        ax.set_ylim(-0.6, len(group) - 0.4)
        ax.set_xlim(low_limit, high_limit)
        ax.xaxis.set_major_formatter(lambda value, _, unit=unit: unit.threshold_text(value))
        ax.tick_params(axis="x", labelsize=7)
        ax.set_xlabel(f"{unit_name} (black: the criterion's threshold)", fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    figure_legend(figure, list(axes), loc="outside upper center", ncols=3, fontsize="small")
    return figure


def _family(row: ResultRow) -> str:
    """The panel of a configuration in :func:`robust_accuracy_vs_eps`: its unit kind and noise."""
    if row.adversarial_training not in ("", "none"):
        return "adversarially trained"
    kind, _, noise = row.units.partition(", ")  # e.g. "relu", "logistic additive std 0.05, ste"
    return f"{kind}, {noise.split(',')[0].split()[0]}" if noise else kind


def robust_accuracy_vs_eps(rows: Sequence[ResultRow]) -> Figure:
    """Robust accuracy against eps for every configuration: the mean over seeds with a min–max band.

    Robust accuracy is the worst case where the study has it, else FGSM with EOT. One panel per
    family (deterministic, each noise of ReLU units, sign units, adversarially trained).

    Raises:
        MissingData: if no configuration has either.
    """
    metric = "worst-case" if any(row.metric == "worst-case" for row in rows) else "fgsm"
    variant = "worst-case" if metric == "worst-case" else "eot"
    curves: dict[str, dict[float, dict[int, float]]] = {}
    families: dict[str, str] = {}
    for row in rows:
        if row.metric == metric and row.variant == variant and row.budget is not None:
            curves.setdefault(row.configuration, {})[row.budget] = row.values
            families[row.configuration] = _family(row)
    if not curves:
        raise MissingData("no worst-case or FGSM rows in results.csv: run the study's attacks "
                          "(`stochrelax attack RUN --attack worst-case`), then `stochrelax results`")
    family_names = sorted(set(families.values()))
    figure, axes = panels(len(family_names))
    for ax, family in zip(axes, family_names):
        members = [name for name in curves if families[name] == family]
        for colour, name in zip(cycle(matplotlib.colormaps["tab10"].colors), members):
            budgets = sorted(curves[name])
            per_seed = [list(curves[name][budget].values()) for budget in budgets]
            ax.plot(budgets, [np.mean(values) for values in per_seed], "-o", color=colour, markersize=3,
                    label=f"{name} (n={max(map(len, per_seed))})")
            ax.fill_between(budgets, [min(values) for values in per_seed], [max(values) for values in per_seed],
                            color=colour, alpha=0.2, linewidth=0)
        ax.set_title(family, fontsize=9)
        ax.set_xlabel(BUDGET_LABELS["eps"], fontsize=8)
        ax.set_ylabel("robust accuracy", fontsize=8)
        ax.set_ylim(0.0, 1.02)
        ax.legend(fontsize=5.5, loc="upper right")
    what = "the per-example worst case" if metric == "worst-case" else "FGSM with EOT (no worst case in this study)"
    figure.suptitle(f"Robust accuracy against {what}: mean over seeds, band from the lowest to the highest seed",
                    fontsize=10)
    return figure
