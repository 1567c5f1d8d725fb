"""The thesis' figures (Figs. 4.1–4.5, 5.3–5.9, and the distributions during training of section 5.1),
from run directories."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import cycle
from pathlib import Path
from typing import Any, Callable, NamedTuple

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from stochrelax.attacks import ATTACKS, make_attack
from stochrelax.data.fashion_mnist import CLASS_NAMES, FashionMNIST
from stochrelax.evaluation.table import BUDGET_NAMES
from stochrelax.nn.layers import MODES
from stochrelax.nn.noise import NOISES, make_noise
from stochrelax.nn.prediction import evaluating, is_stochastic, predictive_log_prob
from stochrelax.nn.rng import seeded
from stochrelax.report.plots.measures import (block_features, channel_norm_maps, confidences, default_heatmap_indices,
                                              draw_logits, first_test_images, mean_curve, tsne_embedding)
from stochrelax.report.plots.style import (ADVERSARIAL_COLOUR, ATTACK_TITLES, BASELINE_COLOURS, BUDGET_LABELS,
                                           EVALUATION_IMAGES, EXAMPLE_EOT_SAMPLES, EXAMPLE_FIGURES, LINE_STYLES,
                                           MIN_BAR_SLOTS, MODE_HATCHES, NOISE_COLOURS, OUTCOME_COLOURS, OUTCOME_NAMES,
                                           SEED, SINGLE, STATISTICS, WIDE, MissingData, draw_image, epoch_ticks,
                                           figure_legend, new_figure, panels, retrain_command)
from stochrelax.rundir import layout as runs, records
from stochrelax.rundir.config import RunConfig, load_config

# --- thesis Fig. 4.1 ---------------------------------------------------------------------------

def noise_densities(std: float = 2.0, noises: Sequence[str] = ("gaussian", "logistic", "uniform")) -> Figure:
    """Densities of the noise distributions at equal standard deviation (thesis Fig. 4.1).

    Args:
        std: the common standard deviation (thesis: 2).
        noises: names from :data:`stochrelax.nn.noise.NOISES`, drawn on one axis.
    """
    xs = torch.linspace(-4 * std, 4 * std, 801)
    figure = new_figure(SINGLE)
    ax = figure.subplots()
    for name in noises:
        ax.plot(xs.numpy(), make_noise(name, 0.0, std).pdf(xs).numpy(), color=NOISE_COLOURS.get(name), label=name)
    ax.set_xlabel("noise value ξ")
    ax.set_ylabel("probability density")
    ax.set_title(f"Noise densities at equal std = {std:g} (thesis Fig. 4.1)")
    ax.legend()
    return figure


# --- thesis Figs. 4.2, 4.3, 4.5 ----------------------------------------------------------------

def example_grid(run_dir: str | Path, data: FashionMNIST, attack: str, budget: float, count: int = 8,
                 seed: int = 0) -> Figure:
    """Original, adversarial and |difference| images of the first test images (thesis Figs. 4.2, 4.3, 4.5).

    The attack (a name of :data:`stochrelax.attacks.ATTACKS`) runs on the run's model in
    eval mode; a stochastic model is attacked with :data:`EXAMPLE_EOT_SAMPLES` noise
    draws per gradient (EOT). Predictions are those of the run's evaluation setting
    (``train.eval_samples`` draws averaged). Titles give the true class and the
    predictions, red where wrong.

    Args:
        run_dir: a finished run.
        data: Fashion-MNIST; its first ``count`` test images are attacked.
        attack: e.g. ``"fgsm"`` (Fig. 4.3), ``"ifgsm-ll"`` (Fig. 4.2), ``"missing"`` (Fig. 4.5).
        budget: eps or p, whichever the attack takes.
        count: images, one per column.
        seed: seed of the noise draws and of random attacks.
    """
    if attack not in ATTACKS:
        raise ValueError(f"unknown attack {attack!r}; valid: {', '.join(ATTACKS)}")
    info = ATTACKS[attack]
    run = runs.load_run(run_dir)
    model = run.model
    pixels, labels = first_test_images(data, count)
    options = {info.budget_name: budget}
    if info.eot_argument is not None and is_stochastic(model):
        options[info.eot_argument] = EXAMPLE_EOT_SAMPLES
    samples = run.config.train.eval_samples
    with seeded(seed), evaluating(model):
        adversarial = make_attack(attack, model, **options)(pixels, labels)
        clean_prediction = predictive_log_prob(draw_logits(model, pixels, samples)).argmax(dim=1)
        adversarial_prediction = predictive_log_prob(draw_logits(model, adversarial, samples)).argmax(dim=1)
    difference = (adversarial - pixels).abs()
    largest = max(float(difference.max()), 1e-6)
    row_labels = ("original", "adversarial", f"|difference|\n[0, {largest:.2g}]")
    figure = new_figure((WIDE[0], 4.6))
    axes = figure.subplots(3, len(labels), squeeze=False)
    for column, label in enumerate(labels.tolist()):
        for prediction, row in ((clean_prediction, 0), (adversarial_prediction, 1)):
            predicted = int(prediction[column])
            title = f"pred {CLASS_NAMES[predicted]}"
            draw_image(axes[row, column], (pixels if row == 0 else adversarial)[column, 0].numpy(),
                   f"{CLASS_NAMES[label]}\n{title}" if row == 0 else title, vmin=0.0, vmax=1.0)
            axes[row, column].title.set_color(OUTCOME_COLOURS[predicted == label])
        draw_image(axes[2, column], difference[column, 0].numpy(), "", cmap="magma", vmin=0.0, vmax=largest)
    for row, text in enumerate(row_labels):
        axes[row, 0].set_ylabel(text, fontsize=8)
    figure.suptitle(f"{attack}, {info.budget_name} = {budget:g}: adversarial examples for {run.path.name} "
                    f"({EXAMPLE_FIGURES.get(attack, 'cf. thesis Figs. 4.2–4.5')})", fontsize=10)
    return figure


# --- thesis Fig. 4.4 ---------------------------------------------------------------------------

def activation_heatmaps(run_dir: str | Path, data: FashionMNIST, indices: tuple[int, int] | None = None) -> Figure:
    """L2 norm over channels of every block output with spatial size > 1, for two test images (thesis Fig. 4.4).

    One row per image (the input first); each block's colour scale is shared by both rows so
    that their heat maps compare. Row labels give the class and the model's prediction with
    its confidence (``train.eval_samples`` draws); the heat maps are one noise draw.

    Args:
        run_dir: a finished run.
        data: Fashion-MNIST.
        indices: two test-image indices; default: the first "Ankle boot" and the first "Bag".
    """
    run = runs.load_run(run_dir)
    model = run.model
    all_pixels, all_labels = first_test_images(data)
    chosen = list(indices if indices is not None else default_heatmap_indices(all_labels))
    pixels, labels = all_pixels[chosen], all_labels[chosen]
    with seeded(SEED):
        maps = channel_norm_maps(block_features(model, pixels, model.block_names))
        confidence, prediction = predictive_log_prob(
            draw_logits(model, pixels, run.config.train.eval_samples)).exp().max(dim=1)
    figure = new_figure((WIDE[0], 3.4))
    axes = figure.subplots(2, 1 + len(maps), squeeze=False)
    for row, (index, label) in enumerate(zip(chosen, labels.tolist())):
        draw_image(axes[row, 0], pixels[row, 0].numpy(), "input", vmin=0.0, vmax=1.0)
        axes[row, 0].set_ylabel(f"#{index} {CLASS_NAMES[label]}\npred {CLASS_NAMES[int(prediction[row])]} "
                                f"({float(confidence[row]):.2f})", fontsize=7)
        for column, (name, norms) in enumerate(maps.items(), start=1):
            draw_image(axes[row, column], norms[row].numpy(), f"{name} {norms.shape[1]}×{norms.shape[2]}",
                   cmap="viridis", vmin=0.0, vmax=float(norms.max()))
    figure.suptitle(f"L2 norm over channels of the block outputs of {run.path.name} "
                    "(colour scale shared per block; thesis Fig. 4.4)", fontsize=10)
    return figure


# --- thesis Figs. 5.3–5.5 ----------------------------------------------------------------------

def _accuracy_curves(rows: Sequence[Mapping[str, Any]], attack: str) -> dict[int, dict[float, float]]:
    """``{eot_samples: {budget: accuracy of the averaged predictor}}`` of one attack's rows."""
    curves: dict[int, dict[float, float]] = {}
    for row in rows:
        if row["attack"] == attack:
            curves.setdefault(row["eot_samples"], {})[row["budget"]] = row["accuracy"]
    return curves


def _series_label(group_label: str, eot: int, single_draw: bool, levels: int) -> str:
    if single_draw:
        return f"{group_label}, 1-draw attack"
    return f"{group_label}, EOT {eot}" if levels > 1 else group_label


def accuracy_vs_budget(run_dirs: Sequence[str | Path], budget_name: str = "eps") -> Figure:
    """Test accuracy under attack against the attack budget (thesis Figs. 5.3–5.5).

    One panel per attack of the budget kind found in the runs' attack tables (``"eps"``:
    the L∞ attacks; ``"p"``: the missing-features attack), one line per run labelled with
    its directory name, showing the accuracy of the averaged predictor. For stochastic
    runs the EOT attack is solid and the single-draw attack dashed. Runs whose configs
    differ only in ``train.seed`` are drawn as one line, the mean, with a mean ± std
    band. Runs without an attack table are left out.

    Raises:
        MissingData: if no run has an attack table, or none has an attack of this budget kind.
    """
    if budget_name not in BUDGET_LABELS:
        raise ValueError(f"unknown budget {budget_name!r}; valid: {', '.join(BUDGET_LABELS)}")
    paths = [Path(run_dir) for run_dir in run_dirs]
    tables = {path: runs.read_attack_table(path) for path in paths}
    attacked = [path for path in paths if tables[path] is not None]
    if not attacked:
        raise MissingData(f"no attack table in {', '.join(map(str, paths))}: run `stochrelax attack {paths[0]}`"
                          + (" and likewise for the others" if len(paths) > 1 else ""))
    present = {row["attack"] for path in attacked for row in tables[path]["rows"]}
    attacks = [name for name, kind in BUDGET_NAMES.items() if kind == budget_name and name in present]
    if not attacks:
        suggested = ",".join(name for name, info in ATTACKS.items() if info.budget_name == budget_name)
        raise MissingData(f"the attack tables of {', '.join(map(str, attacked))} have no {budget_name} attack: "
                          f"run `stochrelax attack {attacked[0]} --attack {suggested}`")
    figure, axes = panels(len(attacks))
    groups = runs.group_by_seed({path: load_config(path / runs.CONFIG_FILE) for path in attacked})
    for colour, group in zip(cycle(matplotlib.colormaps["tab10"].colors), groups):
        names = [path.name for path in group]
        group_label = names[0] if len(group) == 1 else f"{', '.join(names)} (mean ± std)"
        for ax, attack in zip(axes, attacks):
            curves = [_accuracy_curves(tables[path]["rows"], attack) for path in group]
            levels = sorted(set.intersection(*(set(curve) for curve in curves)))
            for eot in levels:
                budgets, mean, std = mean_curve([curve[eot] for curve in curves])
                single_draw = eot == 1 and len(levels) > 1
                ax.plot(budgets, mean, LINE_STYLES[single_draw], color=colour, marker="o", markersize=3,
                        label=_series_label(group_label, eot, single_draw, len(levels)))
                if len(group) > 1:
                    ax.fill_between(budgets, mean - std, mean + std, color=colour, alpha=0.2, linewidth=0)
    for ax, attack in zip(axes, attacks):
        ax.set_title(ATTACK_TITLES.get(attack, attack), fontsize=9)
        ax.set_xlabel(BUDGET_LABELS[budget_name])
        ax.set_ylabel("test accuracy")
        ax.set_ylim(0.0, 1.02)
    figure_legend(figure, axes, loc="outside lower center", ncols=2, fontsize="small")
    figure.suptitle("Test accuracy under attack (dashed: single-draw attack on a stochastic run; "
                    "bands: mean ± std over seeds)", fontsize=10)
    return figure


# --- thesis Fig. 5.6 ---------------------------------------------------------------------------

def _role(config: RunConfig) -> str:
    """How a run enters the clean-accuracy figure: its own bar, a noise bar, the baseline line, or not at all."""
    if config.model.beyond_thesis:
        return "beyond the thesis"
    if config.train.adversarial.method is not None:
        return "adversarial"
    return "deterministic" if config.model.activation.noise is None else "stochastic"


def _bar_order(config: RunConfig) -> tuple:
    activation = config.model.activation
    return (list(MODES).index(activation.mode), list(NOISES).index(activation.noise), activation.kind,
            activation.std)


def clean_accuracy_bars(run_dirs: Sequence[str | Path]) -> Figure:
    """Clean test accuracy of each run (``summary.json``) as bars (thesis Fig. 5.6).

    Adversarially trained runs (``train.adversarial.method`` set) come first as grey bars;
    stochastic runs follow, grouped by noise mode and distribution (colour: distribution,
    hatching: multiplicative mode) and sorted by noise std; each deterministic clean-trained
    configuration is a dashed horizontal line. Runs that differ only in ``train.seed``
    share a bar (mean, with a ± std error bar) or a line (mean). Runs beyond the thesis
    (:attr:`~stochrelax.models.allconv.ModelConfig.beyond_thesis`) are left out.
    """
    loaded = {Path(run_dir): runs.load_run(run_dir) for run_dir in run_dirs}
    if not loaded:
        raise ValueError("clean_accuracy_bars needs at least one run directory")
    groups = runs.group_by_seed({path: run.config for path, run in loaded.items()})
    roles: dict[str, list[list[Path]]] = {"adversarial": [], "stochastic": [], "deterministic": [],
                                          "beyond the thesis": []}
    for group in groups:
        roles[_role(loaded[group[0]].config)].append(group)
    roles["stochastic"].sort(key=lambda group: _bar_order(loaded[group[0]].config))

    def accuracies(group: list[Path]) -> np.ndarray:
        return np.array([loaded[path].summary["test_accuracy"] for path in group])

    figure = new_figure(WIDE)
    ax = figure.subplots()
    position, previous, ticks, tick_labels, legend = 0.0, None, [], [], {}
    for group in roles["adversarial"] + roles["stochastic"]:
        config = loaded[group[0]].config
        values = accuracies(group)
        activation, adversarial = config.model.activation, config.train.adversarial
        is_adversarial = adversarial.method is not None
        cluster = None if is_adversarial else (activation.mode, activation.noise)
        position += 1.0 + 0.5 * (previous is not None and cluster != previous)
        previous = cluster
        colour = ADVERSARIAL_COLOUR if is_adversarial else NOISE_COLOURS[activation.noise]
        hatch = MODE_HATCHES[activation.mode] if activation.noise is not None else ""
        bars = ax.bar(position, values.mean(), yerr=values.std(ddof=1) if len(values) > 1 else None, capsize=3,
                      color=colour, hatch=hatch, edgecolor="black", linewidth=0.5)
        ax.bar_label(bars, labels=[f"{values.mean():.1%}"], fontsize=7, padding=2)
        name = (f"adversarial\n{adversarial.method}\nε={adversarial.eps:g}" if is_adversarial
                else f"{activation.kind}\nσ={activation.std:g}")
        ticks.append(position)
        tick_labels.append(name + (f"\n{len(group)} seeds" if len(group) > 1 else ""))
        key = "adversarial training" if is_adversarial else f"{activation.noise} noise"
        legend.setdefault(key, Patch(facecolor=colour, edgecolor="black", linewidth=0.5))
        if activation.noise is not None:
            legend.setdefault(f"{activation.mode} noise",
                              Patch(facecolor="white", edgecolor="black", hatch=hatch, linewidth=0.5))
    for colour, group in zip(cycle(BASELINE_COLOURS), roles["deterministic"]):
        config, value = loaded[group[0]].config, accuracies(group).mean()
        label = f"deterministic {config.model.activation.kind}, clean training: {value:.1%}"
        ax.axhline(value, linestyle="--", color=colour, linewidth=1)
        legend[label] = Line2D([], [], linestyle="--", color=colour)
    ax.set_xticks(ticks, tick_labels, fontsize=7)
    span = max(position + 1.0, MIN_BAR_SLOTS)  # few bars stay narrow, centred
    ax.set_xlim((position + 1.0 - span) / 2, (position + 1.0 + span) / 2)
    ax.set_xlabel("run (colour: noise distribution, hatching: noise mode; error bars: ± std over seeds)")
    ax.set_ylabel("clean test accuracy")
    ax.set_ylim(0.0, 1.05)
    figure.legend(legend.values(), legend.keys(), fontsize="small", loc="outside right upper")
    ax.set_title("Clean test accuracy by noise distribution and mode (thesis Fig. 5.6)")
    return figure


# --- thesis Fig. 5.7 ---------------------------------------------------------------------------

def learning_curves(run_dir: str | Path) -> Figure:
    """Train and test accuracy (left) and loss (right) per epoch, from ``metrics.jsonl`` (thesis Fig. 5.7).

    Raises:
        MissingData: if the run has no metrics.
    """
    path = Path(run_dir)
    metrics = records.read_metrics(path)
    if not metrics:
        raise MissingData(f"{path / runs.METRICS_FILE} is missing or empty: train the run again with "
                          f"{retrain_command(path)}")
    epochs = [entry["epoch"] for entry in metrics]
    figure = new_figure(WIDE)
    for ax, quantity in zip(figure.subplots(1, 2), ("accuracy", "loss")):
        for split in ("train", "test"):
            ax.plot(epochs, [entry[f"{split}_{quantity}"] for entry in metrics], marker="o", markersize=3,
                    label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(quantity if quantity == "accuracy" else "loss (predictive NLL)")
        epoch_ticks(ax)
        ax.legend()
        ax.set_title(quantity)
    figure.suptitle(f"Learning curves of {path.name} (thesis Fig. 5.7)")
    return figure


# --- thesis Fig. 5.8 ---------------------------------------------------------------------------

def confidence_histograms(run_dir: str | Path, data: FashionMNIST, samples: int = 1) -> Figure:
    """Histogram of the maximum predictive probability on clean test images, correct vs wrong (thesis Fig. 5.8).

    Uses the first :data:`EVALUATION_IMAGES` test images of ``data``; the predictive
    distribution averages ``samples`` noise draws (thesis: 1).
    """
    run = runs.load_run(run_dir)
    pixels, labels = first_test_images(data, EVALUATION_IMAGES)
    with seeded(SEED):
        logits = draw_logits(run.model, pixels, samples)
    confidence, correct = confidences(predictive_log_prob(logits), labels)
    figure = new_figure(SINGLE)
    ax = figure.subplots()
    edges = np.linspace(0.0, 1.0, 21)
    for outcome in (True, False):
        chosen = confidence[correct == outcome].numpy()
        ax.hist(chosen, bins=edges, color=OUTCOME_COLOURS[outcome], alpha=0.6,
                label=f"{OUTCOME_NAMES[outcome]} ({chosen.size})")
    ax.set_xlabel("confidence (maximum predictive probability)")
    ax.set_ylabel("test images")
    ax.legend(loc="upper left")
    ax.set_title(f"Confidence of {run.path.name}\non {labels.numel()} clean test images, K={logits.shape[0]} "
                 "(thesis Fig. 5.8)", fontsize=9)
    return figure


# --- thesis Fig. 5.9 ---------------------------------------------------------------------------

def tsne_features(run_dir: str | Path, data: FashionMNIST, block: str = "block8", count: int = 2000,
                  seed: int = 0) -> Figure:
    """t-SNE of the flattened output of ``block`` for the first ``count`` test images (thesis Fig. 5.9).

    The features are one noise draw (seeded with ``seed``); the embedding is
    ``sklearn.manifold.TSNE(init="pca", random_state=seed)``. Points are coloured by class.
    """
    run = runs.load_run(run_dir)
    pixels, labels = first_test_images(data, count)
    with seeded(seed):
        features = block_features(run.model, pixels, [block])[block].flatten(1)
    embedding = tsne_embedding(features, seed)
    figure = new_figure((8.0, 6.0))
    ax = figure.subplots()
    colours = matplotlib.colormaps["tab10"].colors
    for index, name in enumerate(CLASS_NAMES):
        chosen = (labels == index).numpy()
        ax.scatter(embedding[chosen, 0], embedding[chosen, 1], s=4, color=colours[index], label=name)
    ax.set_xlabel("t-SNE dimension 1")
    ax.set_ylabel("t-SNE dimension 2")
    figure.legend(loc="outside right upper", fontsize="small", markerscale=3)
    ax.set_title(f"t-SNE of {block} features of {run.path.name}\non {labels.numel()} test images (thesis Fig. 5.9)",
                 fontsize=9)
    return figure


# --- thesis 5.1: distributions during training -------------------------------------------------

def _histogram_density(histogram: Mapping[str, list]) -> tuple[np.ndarray, np.ndarray]:
    edges, counts = np.asarray(histogram["edges"], dtype=float), np.asarray(histogram["counts"], dtype=float)
    return counts / max(counts.sum(), 1.0) / np.diff(edges), edges


def _draw_moments(ax, stats: Sequence[Mapping[str, Any]], layer: str, kind: str) -> None:
    """Mean ± std of one layer's ``kind`` per epoch."""
    epochs = [entry["epoch"] for entry in stats]
    mean = np.array([entry["layers"][layer][kind]["mean"] for entry in stats])
    std = np.array([entry["layers"][layer][kind]["std"] for entry in stats])
    ax.fill_between(epochs, mean - std, mean + std, color="tab:blue", alpha=0.25, linewidth=0, label="± std")
    ax.plot(epochs, mean, marker="o", markersize=3, color="tab:blue", label="mean")
    ax.set_xlabel("epoch", fontsize=7)
    epoch_ticks(ax, 4)


def _draw_histograms(ax, stats: Sequence[Mapping[str, Any]], layer: str, kind: str) -> None:
    """One layer's ``kind`` histograms (density, log scale) at the epochs that recorded one."""
    recorded = [entry for entry in stats if entry["layers"][layer][kind]["histogram"]]
    colours = matplotlib.colormaps["plasma"](np.linspace(0.0, 0.8, len(recorded)))
    for colour, entry in zip(colours, recorded):
        ax.stairs(*_histogram_density(entry["layers"][layer][kind]["histogram"]), color=colour,
                  label=f"epoch {entry['epoch']}")
    ax.set_yscale("log")
    ax.set_xlabel(STATISTICS[kind], fontsize=7)
    ax.xaxis.set_major_locator(MaxNLocator(3))


class DistributionView(NamedTuple):
    """One row of a layer's panels in :func:`training_distributions`."""

    draw: Callable[..., None]  # (ax, stats, layer, statistic)
    quantity: str  # the y label
    over_epochs: bool  # its x axis is the epoch, shared by every such panel


DISTRIBUTION_VIEWS = {"moments": DistributionView(_draw_moments, "mean ± std", True),
                      "histograms": DistributionView(_draw_histograms, "density (log)", False)}
LAYERS_PER_ROW = 5  # training_distributions: layers side by side, so that each panel stays readable
DISTRIBUTION_ROW_INCHES = 1.7  # height of one row of panels


def training_distributions(run_dir: str | Path, statistic: str) -> Figure:
    """The distribution of one statistic per layer during training (thesis 5.1).

    ``statistic`` is a key of :data:`STATISTICS`: the block outputs, or the gradients of the
    training objective w.r.t. the convolution weights, as :mod:`stochrelax.training.statistics` recorded them
    into ``training_stats.jsonl``. Small multiples, :data:`LAYERS_PER_ROW` layers to a row:
    each layer's mean ± std per epoch (the epoch axis shared by all) and below it, when
    histograms were recorded (first, middle and last epoch), those histograms (density, log scale).

    Raises:
        ValueError: if ``statistic`` is not a key of :data:`STATISTICS`.
        MissingData: if the run has no training statistics.
    """
    if statistic not in STATISTICS:
        raise ValueError(f"unknown statistic {statistic!r}; valid: {', '.join(STATISTICS)}")
    path = Path(run_dir)
    stats = records.read_training_stats(path)
    if not stats:
        raise MissingData(f"{path} has no training statistics ({runs.TRAINING_STATS_FILE}): train it again with this "
                          f"version: {retrain_command(path)}")
    layers = list(stats[-1]["layers"])
    recorded = any(entry["layers"][layer][statistic]["histogram"] for entry in stats for layer in layers)
    views = list(DISTRIBUTION_VIEWS) if recorded else ["moments"]
    columns = min(LAYERS_PER_ROW, len(layers))
    layer_rows = [layers[start:start + columns] for start in range(0, len(layers), columns)]
    figure = new_figure((WIDE[0], DISTRIBUTION_ROW_INCHES * len(layer_rows) * len(views) + 1.0))
    grid = figure.subplots(len(layer_rows) * len(views), columns, squeeze=False)
    epoch_axes = []
    for index, (row_layers, view) in enumerate((row_layers, view) for row_layers in layer_rows for view in views):
        axes, (draw, quantity, over_epochs) = grid[index], DISTRIBUTION_VIEWS[view]
        for ax, layer in zip(axes, row_layers):
            if over_epochs:
                epoch_axes.append(ax)
            if index % len(views) == 0:  # the first row of these layers names them
                ax.set_title(layer, fontsize=8)
            draw(ax, stats, layer, statistic)
            ax.tick_params(labelsize=7)
        for unused in axes[len(row_layers):]:
            unused.remove()
        axes[0].set_ylabel(quantity, fontsize=8)
    for ax in epoch_axes[1:]:
        ax.sharex(epoch_axes[0])
    figure_legend(figure, list(grid[:len(views), 0]), loc="outside lower center", ncols=5, fontsize="small")
    figure.suptitle(f"Distribution of the {STATISTICS[statistic]} per layer during training of {path.name} "
                    "(thesis 5.1)", fontsize=10)
    return figure
