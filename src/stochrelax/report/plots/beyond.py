"""Figures beyond the thesis about one run: a reliability diagram, accuracy against the number
of noise samples averaged, the learned noise std per layer and epoch, and the certified accuracy of its
smoothed classifier against the L2 radius."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from stochrelax.data.fashion_mnist import FashionMNIST
from stochrelax.evaluation.certification import (CERTIFIED_RADII, certified_accuracy, read_certificates,
                                                 read_certification)
from stochrelax.nn.prediction import predictive_log_prob
from stochrelax.nn.rng import seeded
from stochrelax.report.plots.measures import (accuracy_by_samples, calibration_bins, confidences, draw_logits,
                                              expected_calibration_error, first_test_images, single_draw_accuracy)
from stochrelax.report.plots.style import (EVALUATION_IMAGES, SEED, SINGLE, WIDE, MissingData, epoch_ticks,
                                           figure_legend, new_figure, retrain_command)
from stochrelax.rundir import layout as runs, records


def reliability_diagram(run_dir: str | Path, data: FashionMNIST, samples: int = 16, bins: int = 15) -> Figure:
    """Accuracy against confidence per confidence bin, with the expected calibration error (not in the thesis).

    Uses the first :data:`EVALUATION_IMAGES` test images of ``data`` and the predictive
    distribution of ``samples`` noise draws. Left: accuracy per bin against the diagonal
    of perfect calibration; right: the number of predictions per bin. The legend sits below
    the panels: the bars reach every corner of the left one.
    """
    run = runs.load_run(run_dir)
    pixels, labels = first_test_images(data, EVALUATION_IMAGES)
    with seeded(SEED):
        logits = draw_logits(run.model, pixels, samples)
    confidence, correct = confidences(predictive_log_prob(logits), labels)
    counts, mean_confidence, accuracy = calibration_bins(confidence, correct, bins)
    ece = expected_calibration_error(confidence, correct, bins)
    edges = np.linspace(0.0, 1.0, bins + 1)
    occupied = (counts > 0).numpy()
    figure = new_figure(WIDE)
    reliability, population = figure.subplots(1, 2)
    reliability.bar(edges[:-1][occupied], accuracy.numpy()[occupied], width=1 / bins, align="edge",
                    color="tab:blue", edgecolor="black", linewidth=0.5, label="accuracy")
    reliability.plot(mean_confidence.numpy()[occupied], accuracy.numpy()[occupied], "o", color="tab:orange",
                     markersize=3, label="accuracy at the bin's mean confidence")
    reliability.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    reliability.set_xlabel("confidence (maximum predictive probability)")
    reliability.set_ylabel("accuracy")
    reliability.set_xlim(0.0, 1.0)
    reliability.set_ylim(0.0, 1.0)
    figure_legend(figure, [reliability], loc="outside lower center", ncols=3, fontsize="small")
    reliability.set_title("accuracy per confidence bin", fontsize=9)
    population.bar(edges[:-1], counts.numpy(), width=1 / bins, align="edge", color="tab:gray", edgecolor="black",
                   linewidth=0.5)
    population.set_xlabel("confidence (maximum predictive probability)")
    population.set_ylabel("test images")
    population.set_xlim(0.0, 1.0)
    population.set_title("predictions per bin", fontsize=9)
    figure.suptitle(f"Reliability of {run.path.name} on {labels.numel()} test images, K={logits.shape[0]}: "
                    f"ECE = {ece:.3f} ({bins} bins)")
    return figure


def accuracy_vs_samples(run_dir: str | Path, data: FashionMNIST,
                        sample_counts: Sequence[int] = (1, 2, 4, 8, 16, 32)) -> Figure:
    """Clean accuracy of the K-sample averaged predictor against K, log x axis (not in the thesis).

    Uses the first :data:`EVALUATION_IMAGES` test images of ``data``; the predictor with
    K draws averages the first K of max(``sample_counts``) draws. The dashed line is the
    accuracy of one noisy pass (mean ± std over the draws). A deterministic network gives
    a flat line.
    """
    run = runs.load_run(run_dir)
    pixels, labels = first_test_images(data, EVALUATION_IMAGES)
    with seeded(SEED):
        logits = draw_logits(run.model, pixels, max(sample_counts))
    accuracies = accuracy_by_samples(logits, labels, sample_counts)
    single_mean, single_std = single_draw_accuracy(logits, labels)
    figure = new_figure(SINGLE)
    ax = figure.subplots()
    ax.plot(sample_counts, accuracies, marker="o", label="K-sample averaged predictor")
    ax.axhline(single_mean, linestyle="--", color="gray", label=f"single draw: {single_mean:.1%} ± {single_std:.1%}")
    ax.axhspan(single_mean - single_std, single_mean + single_std, color="gray", alpha=0.15, linewidth=0)
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(sample_counts), [str(count) for count in sample_counts])
    ax.set_xlabel("noise draws K averaged per prediction")
    ax.set_ylabel("clean test accuracy")
    ax.legend(loc="lower right", fontsize="small")
    ax.set_title(f"Accuracy vs noise draws K of {run.path.name}\non {labels.numel()} test images", fontsize=9)
    return figure


def certified_accuracy_curve(run_dir: str | Path, points: int = 200) -> Figure:
    """Certified accuracy of a run's smoothed classifier against the L2 radius, from its ``certify.csv``
    (Cohen, Rosenfeld & Kolter 2019, Fig. 1 and section 4; not in the thesis).

    The curve is the fraction of certified images whose prediction is correct with a certified
    radius at least r, at ``points`` radii from 0 to the largest certified one; the markers are the
    radii of :data:`~stochrelax.evaluation.certification.CERTIFIED_RADII`.

    Raises:
        MissingData: if the run was never certified.
    """
    path = Path(run_dir)
    rows = read_certificates(path)
    if rows is None:
        raise MissingData(f"{path} was never certified: run `stochrelax certify {path}` (its model needs "
                          "model.input_noise)")
    record = read_certification(path) or {}
    settings = record.get("settings", {})
    largest = max([row.radius for row in rows if np.isfinite(row.radius)] + [max(CERTIFIED_RADII)])
    radii = np.linspace(0.0, largest, points)
    curve = certified_accuracy(rows, radii.tolist())
    marked = certified_accuracy(rows)
    figure = new_figure(SINGLE)
    ax = figure.subplots()
    ax.plot(radii, list(curve.values()), label="certified accuracy")
    ax.plot(list(marked), list(marked.values()), "o", color="tab:orange", markersize=4,
            label="at " + ", ".join(f"{radius:g}" for radius in marked))
    ax.set_xlabel("L2 radius (pixels)")
    ax.set_ylabel("certified accuracy")
    ax.set_ylim(0.0, 1.0)
    ax.set_xlim(0.0, largest)
    ax.legend(loc="upper right", fontsize="small")
    how = ", ".join(f"{name} {settings[key]:g}" for name, key in (("n", "n"), ("α", "alpha")) if key in settings)
    ax.set_title(f"Certified accuracy of the smoothed {path.name}, σ = {record.get('sigma', float('nan')):g}\n"
                 f"on {len(rows)} test images" + (f" ({how})" if how else ""), fontsize=9)
    return figure


def learned_noise_std(run_dir: str | Path) -> Figure:
    """The learned noise std of each layer per epoch, from ``metrics.jsonl`` (not in the thesis).

    One line per layer with a learnable std (its mean over channels), a band from the smallest to
    the largest channel's std when there is one per channel, and the initial std dashed. PNI (He
    et al. 2019) reports the std shrinking towards 0 under clean training and staying away from 0
    under adversarial training.

    Raises:
        MissingData: if the run has no metrics, or its metrics hold no learned std.
    """
    path = Path(run_dir)
    metrics = [entry for entry in records.read_metrics(path) if "noise_std" in entry]
    if not metrics:
        raise MissingData(f"{path / runs.METRICS_FILE} holds no learned noise std (model.activation.learnable_std): "
                          f"train the run again with {retrain_command(path)}")
    epochs = [entry["epoch"] for entry in metrics]
    figure = new_figure(SINGLE)
    ax = figure.subplots()
    for layer in metrics[-1]["noise_std"]:
        line, = ax.plot(epochs, [entry["noise_std"][layer] for entry in metrics], marker="o", markersize=3,
                        label=layer)
        if layer in metrics[-1].get("noise_std_min", {}):
            ax.fill_between(epochs, [entry["noise_std_min"][layer] for entry in metrics],
                            [entry["noise_std_max"][layer] for entry in metrics], color=line.get_color(), alpha=0.15,
                            linewidth=0)
    ax.axhline(runs.load_run(path).config.model.activation.std, linestyle="--", color="gray", label="initial std")
    ax.set_ylim(bottom=0.0)
    ax.set_xlabel("epoch")
    ax.set_ylabel("learned noise std")
    epoch_ticks(ax)
    ax.legend(fontsize="small")
    ax.set_title(f"Learned noise std per layer of {path.name}", fontsize=9)
    return figure
