"""The study's figures: the verdicts as a forest plot, robust accuracy against eps over seeds, and the
empirical L∞ robustness of every configuration beside the certified L2 robustness of the smoothed ones."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import cycle

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from stochrelax.analysis.measures import UNITS
from stochrelax.analysis.results import VARIANT_NAMES, ResultRow
from stochrelax.analysis.verdicts import VerdictRecord
from stochrelax.report.plots.style import BUDGET_LABELS, WIDE, MissingData, figure_legend, new_figure, panels

VARIANT_STYLES = {"single": ("tab:gray", "o"), "eot": ("tab:blue", "s"), "worst-case": ("tab:red", "D")}
VERDICT_COLOURS = {"holds": "tab:green", "fails": "tab:red", "too small to matter": "olive", "inconclusive": "tab:orange"}
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


def _beyond_thesis(row: ResultRow) -> bool:
    """Whether a configuration has what the thesis did not study (a learnable noise std, input noise), as
    :func:`~stochrelax.analysis.results.describe_units` names it."""
    return "learnable" in row.units or "input noise" in row.units


def _family(row: ResultRow) -> str:
    """The panel of a configuration in :func:`robust_accuracy_vs_eps`: its unit kind and noise."""
    if _beyond_thesis(row):
        return "beyond the thesis"
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


GUARANTEE_COLOURS = {"thesis": "tab:gray", "beyond the thesis": "tab:purple"}


def robustness_and_certificates(rows: Sequence[ResultRow], certified: Mapping[str, Sequence[Mapping[float, float]]],
                                eps: float | None = None) -> Figure:
    """Every configuration's empirical L∞ robust accuracy beside the certified L2 accuracy of the smoothed ones.

    Left: the per-example worst case at ``eps`` (default: the largest eps it was run at), mean over
    seeds with a bar from the lowest to the highest seed; configurations beyond the thesis in
    purple. It is an upper bound on robustness: an attack the ensemble lacks might do better.
    Right: the certified accuracy of each smoothed configuration (Cohen et al. 2019) against the L2
    radius, mean over seeds with a min–max band; a lower bound that holds with probability 1 − α
    per image. The two answer different questions (another norm, another kind of guarantee).

    Args:
        rows: results over seeds (:func:`stochrelax.analysis.results.aggregate`).
        certified: configuration -> one mapping radius -> certified accuracy per certified seed.
        eps: the L∞ budget of the left panel.

    Raises:
        MissingData: if no configuration has a worst case.
    """
    worst = [row for row in rows if row.metric == "worst-case" and row.variant == "worst-case" and row.budget]
    if not worst:
        raise MissingData("no worst-case rows in results.csv: run the study's attacks, then `stochrelax results`")
    eps = max(row.budget for row in worst) if eps is None else eps
    shown = sorted((row for row in worst if row.budget == eps), key=lambda row: (_beyond_thesis(row), row.configuration))
    figure = new_figure((WIDE[0], max(3.0, 0.22 * len(shown) + 1.2)))
    bars, curves = figure.subplots(1, 2, width_ratios=(1.3, 1.0))
    for position, row in enumerate(reversed(shown)):
        values = list(row.values.values())
        mean = float(np.mean(values))
        colour = GUARANTEE_COLOURS["beyond the thesis" if _beyond_thesis(row) else "thesis"]
        bars.barh(position, mean, xerr=[[mean - min(values)], [max(values) - mean]] if len(values) > 1 else None,
                  color=colour, capsize=2, height=0.7)
    bars.set_yticks(range(len(shown)), [row.configuration for row in reversed(shown)], fontsize=6)
    bars.set_xlim(0.0, 1.0)
    bars.set_xlabel(f"empirical robust accuracy, L∞ ε = {eps:g} (worst case over the attacks)", fontsize=8)
    bars.set_title("Empirical: an upper bound, L∞", fontsize=9)
    bars.legend(handles=[Patch(color=colour, label=label) for label, colour in GUARANTEE_COLOURS.items()],
                fontsize="x-small", loc="lower right")
    for colour, (name, per_seed) in zip(cycle(matplotlib.colormaps["tab10"].colors), sorted(certified.items())):
        radii = sorted(per_seed[0])
        accuracy = np.array([[seed[radius] for radius in radii] for seed in per_seed])  # (seeds, radii)
        curves.plot(radii, accuracy.mean(axis=0), "-o", color=colour, markersize=3, label=f"{name} (n={len(per_seed)})")
        curves.fill_between(radii, accuracy.min(axis=0), accuracy.max(axis=0), color=colour, alpha=0.2, linewidth=0)
    if not certified:
        curves.text(0.5, 0.5, "no configuration certified\n(only runs with model.input_noise can be)",
                    ha="center", va="center", fontsize=8, transform=curves.transAxes)
    else:
        curves.legend(fontsize="x-small", loc="upper right")
    curves.set_ylim(0.0, 1.02)
    curves.set_xlabel("L2 radius (pixels)", fontsize=8)
    curves.set_ylabel("certified accuracy", fontsize=8)
    curves.set_title("Certified: a lower bound, L2 (smoothed classifiers)", fontsize=9)
    figure.suptitle("Two different guarantees: empirical L∞ robustness of every configuration, certified L2 "
                    "robustness of the smoothed ones", fontsize=10)
    return figure
