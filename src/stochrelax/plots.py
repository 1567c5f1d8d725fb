"""Figures of the thesis (Figs. 4.1–4.5, 5.3–5.9, section 5.1) and two beyond it, from run directories.

Every figure function returns a :class:`matplotlib.figure.Figure` built without pyplot,
so no global figure state is created and no backend is selected: the figures render
with Agg when saved (:func:`save_figure`) and are freed with the last reference.

What needs the model (noise draws, predictions, confidences, features, calibration) is
computed by the small helpers in the first half of this module, which take tensors and
return tensors or numbers; the figure functions load a run (:func:`stochrelax.runs.load_run`),
call them and draw. Models are used in eval mode with their noise on (a stochastic
network is a stochastic predictor at test time too), under :func:`stochrelax.rng.seeded`
so that a figure is the same every time it is drawn.

Functions that evaluate a model on the clean test set use the first
:data:`EVALUATION_IMAGES` test images of the ``data`` they are given; pass
``data.limit(test_limit=N)`` for fewer.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import cycle
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator
from sklearn.manifold import TSNE

from stochrelax import runs
from stochrelax.attacks import ATTACKS, make_attack
from stochrelax.claims import UNITS
from stochrelax.config import RunConfig, load_config
from stochrelax.data import CLASS_NAMES, FashionMNIST
from stochrelax.layers import MODES
from stochrelax.models import ROWS_PER_PASS, evaluating, is_stochastic, predictive_log_prob, sample_logits
from stochrelax.noise import NOISES, make_noise
from stochrelax.rng import seeded
from stochrelax.results import VARIANT_NAMES, ResultRow
from stochrelax.robustness import BUDGET_NAMES
from stochrelax.verdicts import VerdictRecord

__all__ = [
    "MissingData", "DPI", "EVALUATION_IMAGES",
    # helpers (tensors in, tensors or numbers out)
    "first_test_images", "draw_logits", "block_features", "confidences", "calibration_bins",
    "expected_calibration_error", "accuracy_by_samples", "single_draw_accuracy", "channel_norm_maps",
    "default_heatmap_indices", "mean_curve", "tsne_embedding",
    # figures
    "noise_densities", "example_grid", "activation_heatmaps", "accuracy_vs_budget", "clean_accuracy_bars",
    "learning_curves", "confidence_histograms", "tsne_features", "training_distributions",
    "reliability_diagram", "accuracy_vs_samples", "forest_plot", "robust_accuracy_vs_eps", "save_figure",
]

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


def _retrain_command(run_dir: Path) -> str:
    """How to train the run again into a new directory (``--overwrite`` would delete its attack tables)."""
    return f"`stochrelax train {run_dir / runs.CONFIG_FILE} --out {run_dir}-retrained`"


# --- helpers: tensors in, tensors or numbers out ---------------------------------------------

def first_test_images(data: FashionMNIST, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``limit`` test images as [0, 1] pixels (N, 1, 28, 28) and their labels (N,)."""
    subset = data.limit(test_limit=limit)
    return subset.test_images.float() / 255, subset.test_labels


@torch.no_grad()
def draw_logits(model: torch.nn.Module, pixels: torch.Tensor, samples: int) -> torch.Tensor:
    """Class scores of ``samples`` noise draws for every image, in eval mode with the noise on.

    Returns:
        (K, N, classes); K = 1 for a model without active noise.
    """
    batch = max(1, ROWS_PER_PASS // samples)  # images per call: whole draws of them fill a pass
    with evaluating(model):
        return torch.cat([sample_logits(model, chunk, samples) for chunk in pixels.split(batch)], dim=1)


@torch.no_grad()
def block_features(model: torch.nn.Module, pixels: torch.Tensor, names: Sequence[str]) -> dict[str, torch.Tensor]:
    """Outputs of the named blocks for every image (one noise draw), e.g. ``{"block8": (N, 96, 1, 1)}``."""
    with evaluating(model):
        chunks = [model.forward_features(chunk, names) for chunk in pixels.split(ROWS_PER_PASS)]
    return {name: torch.cat([chunk[name] for chunk in chunks]) for name in names}


def confidences(log_prob: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Maximum predictive probability (N,) and whether its class is the label (N,) bool."""
    confidence, prediction = log_prob.exp().max(dim=1)
    return confidence, prediction == labels


def calibration_bins(confidence: torch.Tensor, correct: torch.Tensor,
                     bins: int = 15) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Equal-width confidence bins (lo, hi] on [0, 1] (the first also takes 0).

    Returns:
        Per bin (bins,): the number of predictions, their mean confidence and their
        accuracy (both 0 for an empty bin).
    """
    confidence = confidence.double()
    edges = torch.linspace(0.0, 1.0, bins + 1, dtype=torch.float64)
    index = torch.bucketize(confidence, edges[1:-1])  # (N,) in [0, bins)
    counts = torch.bincount(index, minlength=bins).double()
    confidence_sum = torch.bincount(index, weights=confidence, minlength=bins)
    correct_sum = torch.bincount(index, weights=correct.double(), minlength=bins)
    occupied = counts.clamp(min=1)
    return counts, confidence_sum / occupied, correct_sum / occupied


def expected_calibration_error(confidence: torch.Tensor, correct: torch.Tensor, bins: int = 15) -> float:
    """ECE = Σ_b (n_b / N) · |accuracy_b − mean confidence_b| over equal-width bins (Guo et al. 2017).

    Args:
        confidence: (N,) maximum predictive probability of each prediction.
        correct: (N,) whether each prediction is right.
        bins: number of equal-width bins on [0, 1].
    """
    counts, mean_confidence, accuracy = calibration_bins(confidence, correct, bins)
    return float((counts / counts.sum() * (accuracy - mean_confidence).abs()).sum())


def accuracy_by_samples(logits: torch.Tensor, labels: torch.Tensor, sample_counts: Sequence[int]) -> list[float]:
    """Accuracy of the predictor averaging the softmax of the first K draws, for each K.

    Args:
        logits: (K_max, N, classes) class scores of independent noise draws; a K above
            K_max uses all K_max draws (K_max = 1 for a deterministic model).
        labels: (N,).
        sample_counts: the K to evaluate.
    """
    return [(predictive_log_prob(logits[:count]).argmax(dim=1) == labels).double().mean().item()
            for count in sample_counts]


def single_draw_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """Accuracy of one noisy pass: mean and std over the K draws of ``logits`` (K, N, classes)."""
    per_draw = (logits.argmax(dim=2) == labels).double().mean(dim=1)  # (K,)
    return per_draw.mean().item(), (per_draw.std().item() if per_draw.numel() > 1 else 0.0)


def channel_norm_maps(features: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """L2 norm over channels of every block output with spatial size > 1: (N, C, H, W) → (N, H, W)."""
    return {name: output.norm(dim=1) for name, output in features.items() if output.shape[-2] * output.shape[-1] > 1}


def default_heatmap_indices(labels: torch.Tensor) -> tuple[int, int]:
    """Indices of the first "Ankle boot" and the first "Bag" (thesis Fig. 4.4: two classes, similar heat maps).

    Raises:
        ValueError: if one of the classes is not among ``labels``.
    """
    found = []
    for name in ("Ankle boot", "Bag"):
        positions = (labels == CLASS_NAMES.index(name)).nonzero()
        if positions.numel() == 0:
            raise ValueError(f"no {name!r} among the {labels.numel()} test images; pass indices")
        found.append(int(positions[0]))
    return found[0], found[1]


def mean_curve(curves: Sequence[Mapping[float, float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and sample std (0 for one curve) over curves ``{x: y}``, at the x values all of them share."""
    xs = sorted(set.intersection(*(set(curve) for curve in curves)))
    values = np.array([[curve[x] for x in xs] for curve in curves])  # (curves, points)
    std = values.std(axis=0, ddof=1) if len(curves) > 1 else np.zeros(len(xs))
    return np.array(xs), values.mean(axis=0), std


def tsne_embedding(features: torch.Tensor, seed: int) -> np.ndarray:
    """2-D t-SNE (PCA initialisation) of (N, D) features; perplexity 30, or less for few points."""
    perplexity = min(30.0, (features.shape[0] - 1) / 3)
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(
        features.double().numpy())


# --- figure scaffolding ------------------------------------------------------------------------

def _figure(size: tuple[float, float]) -> Figure:
    return Figure(figsize=size, layout="constrained")


def _panels(count: int, max_columns: int = 3) -> tuple[Figure, list]:
    """A wide figure with ``count`` panels, at most ``max_columns`` per row."""
    columns = min(count, max_columns)
    rows = math.ceil(count / columns)
    figure = _figure((WIDE[0], WIDE[1] * rows))
    axes = list(figure.subplots(rows, columns, squeeze=False).ravel())
    for unused in axes[count:]:
        unused.remove()
    return figure, axes[:count]


def _figure_legend(figure: Figure, axes: Sequence, **options: Any) -> None:
    """One figure legend with every distinct label of ``axes``; ``options`` go to ``Figure.legend``."""
    entries: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    figure.legend(entries.values(), entries.keys(), **options)


def _image(ax, picture: np.ndarray, title: str, **options: Any) -> None:
    ax.imshow(picture, cmap=options.pop("cmap", "gray"), **options)
    ax.set_title(title, fontsize=7)
    ax.set_xticks([])
    ax.set_yticks([])


# --- thesis Fig. 4.1 ---------------------------------------------------------------------------

def noise_densities(std: float = 2.0, noises: Sequence[str] = ("gaussian", "logistic", "uniform")) -> Figure:
    """Densities of the noise distributions at equal standard deviation (thesis Fig. 4.1).

    Args:
        std: the common standard deviation (thesis: 2).
        noises: names from :data:`stochrelax.noise.NOISES`, drawn on one axis.
    """
    xs = torch.linspace(-4 * std, 4 * std, 801)
    figure = _figure(SINGLE)
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
    figure = _figure((WIDE[0], 4.6))
    axes = figure.subplots(3, len(labels), squeeze=False)
    for column, label in enumerate(labels.tolist()):
        for prediction, row in ((clean_prediction, 0), (adversarial_prediction, 1)):
            predicted = int(prediction[column])
            title = f"pred {CLASS_NAMES[predicted]}"
            _image(axes[row, column], (pixels if row == 0 else adversarial)[column, 0].numpy(),
                   f"{CLASS_NAMES[label]}\n{title}" if row == 0 else title, vmin=0.0, vmax=1.0)
            axes[row, column].title.set_color(OUTCOME_COLOURS[predicted == label])
        _image(axes[2, column], difference[column, 0].numpy(), "", cmap="magma", vmin=0.0, vmax=largest)
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
    figure = _figure((WIDE[0], 3.4))
    axes = figure.subplots(2, 1 + len(maps), squeeze=False)
    for row, (index, label) in enumerate(zip(chosen, labels.tolist())):
        _image(axes[row, 0], pixels[row, 0].numpy(), "input", vmin=0.0, vmax=1.0)
        axes[row, 0].set_ylabel(f"#{index} {CLASS_NAMES[label]}\npred {CLASS_NAMES[int(prediction[row])]} "
                                f"({float(confidence[row]):.2f})", fontsize=7)
        for column, (name, norms) in enumerate(maps.items(), start=1):
            _image(axes[row, column], norms[row].numpy(), f"{name} {norms.shape[1]}×{norms.shape[2]}",
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
    figure, axes = _panels(len(attacks))
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
    _figure_legend(figure, axes, loc="outside lower center", ncols=2, fontsize="small")
    figure.suptitle("Test accuracy under attack (dashed: single-draw attack on a stochastic run; "
                    "bands: mean ± std over seeds)", fontsize=10)
    return figure


# --- thesis Fig. 5.6 ---------------------------------------------------------------------------

def _role(config: RunConfig) -> str:
    """How a run enters the clean-accuracy figure: its own bar, a noise bar, or the baseline line."""
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
    share a bar (mean, with a ± std error bar) or a line (mean).
    """
    loaded = {Path(run_dir): runs.load_run(run_dir) for run_dir in run_dirs}
    if not loaded:
        raise ValueError("clean_accuracy_bars needs at least one run directory")
    groups = runs.group_by_seed({path: run.config for path, run in loaded.items()})
    roles: dict[str, list[list[Path]]] = {"adversarial": [], "stochastic": [], "deterministic": []}
    for group in groups:
        roles[_role(loaded[group[0]].config)].append(group)
    roles["stochastic"].sort(key=lambda group: _bar_order(loaded[group[0]].config))

    def accuracies(group: list[Path]) -> np.ndarray:
        return np.array([loaded[path].summary["test_accuracy"] for path in group])

    figure = _figure(WIDE)
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
    metrics = runs.read_metrics(path)
    if not metrics:
        raise MissingData(f"{path / runs.METRICS_FILE} is missing or empty: train the run again with "
                          f"{_retrain_command(path)}")
    epochs = [entry["epoch"] for entry in metrics]
    figure = _figure(WIDE)
    for ax, quantity in zip(figure.subplots(1, 2), ("accuracy", "loss")):
        for split in ("train", "test"):
            ax.plot(epochs, [entry[f"{split}_{quantity}"] for entry in metrics], marker="o", markersize=3,
                    label=split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(quantity if quantity == "accuracy" else "loss (predictive NLL)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
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
    figure = _figure(SINGLE)
    ax = figure.subplots()
    edges = np.linspace(0.0, 1.0, 21)
    for outcome in (True, False):
        chosen = confidence[correct == outcome].numpy()
        ax.hist(chosen, bins=edges, color=OUTCOME_COLOURS[outcome], alpha=0.6,
                label=f"{OUTCOME_NAMES[outcome]} ({chosen.size})")
    ax.set_xlabel("confidence (maximum predictive probability)")
    ax.set_ylabel("test images")
    ax.legend(loc="upper left")
    ax.set_title(f"Confidence of {run.path.name} on {labels.numel()} clean test images, K={logits.shape[0]} "
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
    figure = _figure((8.0, 6.0))
    ax = figure.subplots()
    colours = matplotlib.colormaps["tab10"].colors
    for index, name in enumerate(CLASS_NAMES):
        chosen = (labels == index).numpy()
        ax.scatter(embedding[chosen, 0], embedding[chosen, 1], s=4, color=colours[index], label=name)
    ax.set_xlabel("t-SNE dimension 1")
    ax.set_ylabel("t-SNE dimension 2")
    figure.legend(loc="outside right upper", fontsize="small", markerscale=3)
    ax.set_title(f"t-SNE of {block} features of {run.path.name}, {labels.numel()} test images (thesis Fig. 5.9)",
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
    ax.plot(epochs, mean, marker="o", markersize=2, color="tab:blue", label="mean")
    ax.set_xlabel("epoch", fontsize=6)
    ax.xaxis.set_major_locator(MaxNLocator(3, integer=True))


def _draw_histograms(ax, stats: Sequence[Mapping[str, Any]], layer: str, kind: str) -> None:
    """One layer's ``kind`` histograms (density, log scale) at the epochs that recorded one."""
    recorded = [entry for entry in stats if entry["layers"][layer][kind]["histogram"]]
    colours = matplotlib.colormaps["plasma"](np.linspace(0.0, 0.8, len(recorded)))
    for colour, entry in zip(colours, recorded):
        ax.stairs(*_histogram_density(entry["layers"][layer][kind]["histogram"]), color=colour,
                  label=f"epoch {entry['epoch']}")
    ax.set_yscale("log")
    ax.set_xlabel(STATISTICS[kind], fontsize=6)
    ax.xaxis.set_major_locator(MaxNLocator(2))


# training_distributions' rows: (statistic, view, y label)
DISTRIBUTION_VIEWS = {"moments": (_draw_moments, "mean ± std"), "histograms": (_draw_histograms, "density")}


def training_distributions(run_dir: str | Path) -> Figure:
    """Distributions of activations and gradients per layer during training (thesis 5.1).

    One column per layer. For the block outputs and for the gradients of the training
    objective w.r.t. the convolution weights, as recorded by :mod:`stochrelax.stats` into
    ``training_stats.jsonl``: a row of mean ± std per epoch and, when histograms were
    recorded (first, middle and last epoch), a row of those histograms (density, log scale).

    Raises:
        MissingData: if the run has no training statistics.
    """
    path = Path(run_dir)
    stats = runs.read_training_stats(path)
    if not stats:
        raise MissingData(f"{path} has no training statistics ({runs.TRAINING_STATS_FILE}): train it again with this "
                          f"version: {_retrain_command(path)}")
    layers = list(stats[-1]["layers"])
    recorded = any(entry["layers"][layer][kind]["histogram"]
                   for entry in stats for layer in layers for kind in STATISTICS)
    views = list(DISTRIBUTION_VIEWS) if recorded else ["moments"]
    rows = [(kind, view) for kind in STATISTICS for view in views]
    figure = _figure((WIDE[0], 1.8 * len(rows) + 0.6))
    grid = figure.subplots(len(rows), len(layers), squeeze=False)
    for axes, (kind, view) in zip(grid, rows):
        draw, quantity = DISTRIBUTION_VIEWS[view]
        for ax, layer in zip(axes, layers):
            draw(ax, stats, layer, kind)
            ax.tick_params(labelsize=5)
            ax.set_title(layer, fontsize=7)
        axes[0].set_ylabel(f"{STATISTICS[kind]}\n{quantity}", fontsize=7)
    _figure_legend(figure, [axes[0] for axes in grid], loc="outside right upper", fontsize="x-small")
    figure.suptitle(f"Block outputs and weight gradients per layer during training of {path.name} (thesis 5.1)",
                    fontsize=10)
    return figure


# --- beyond the thesis -------------------------------------------------------------------------

def reliability_diagram(run_dir: str | Path, data: FashionMNIST, samples: int = 16, bins: int = 15) -> Figure:
    """Accuracy against confidence per confidence bin, with the expected calibration error (not in the thesis).

    Uses the first :data:`EVALUATION_IMAGES` test images of ``data`` and the predictive
    distribution of ``samples`` noise draws. Left: accuracy per bin against the diagonal
    of perfect calibration; right: the number of predictions per bin.
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
    figure = _figure(WIDE)
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
    reliability.legend(loc="upper left", fontsize="small")
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
    figure = _figure(SINGLE)
    ax = figure.subplots()
    ax.plot(sample_counts, accuracies, marker="o", label="K-sample averaged predictor")
    ax.axhline(single_mean, linestyle="--", color="gray", label=f"single draw: {single_mean:.1%} ± {single_std:.1%}")
    ax.axhspan(single_mean - single_std, single_mean + single_std, color="gray", alpha=0.15, linewidth=0)
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(sample_counts), [str(count) for count in sample_counts])
    ax.set_xlabel("noise draws K averaged per prediction")
    ax.set_ylabel("clean test accuracy")
    ax.legend(loc="lower right", fontsize="small")
    ax.set_title(f"Accuracy vs noise draws K of {run.path.name} on {labels.numel()} test images", fontsize=9)
    return figure


# --- the study: verdicts and robust accuracy over seeds ------------------------------------------

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
    figure = _figure((WIDE[0], FOREST_ROW_INCHES * sum(heights) + 0.8))
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
    _figure_legend(figure, list(axes), loc="outside upper center", ncols=3, fontsize="small")
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
    panels = sorted(set(families.values()))
    figure, axes = _panels(len(panels))
    for ax, family in zip(axes, panels):
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


def save_figure(figure: Figure, path: str | Path) -> Path:
    """Writes ``figure`` as a PNG of (figure size × :data:`DPI`) pixels, creating the folder; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, format="png")
    return path
