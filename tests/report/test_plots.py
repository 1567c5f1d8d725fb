"""Figures drawn from small real runs (``small_run_dirs``) and the pure helpers behind them."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import matplotlib.image
import pytest
import torch
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

from stochrelax.analysis.results import ResultRow
from stochrelax.data.fashion_mnist import CLASS_NAMES
from stochrelax.report import plots
from stochrelax.rundir import layout as runs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def test_data(fashion_mnist):
    """The 300 test images the small runs were evaluated on (keeps model passes and t-SNE fast)."""
    return fashion_mnist.limit(test_limit=300)


def _bare_copy(run_dir: Path, target: Path) -> Path:
    """A copy of a finished run without attack table and training statistics."""
    return Path(shutil.copytree(run_dir, target, ignore=shutil.ignore_patterns(
        runs.ATTACKS_JSON, runs.ATTACKS_CSV, runs.TRAINING_STATS_FILE)))


def _histogram(low: float, high: float) -> dict:
    return {"edges": torch.linspace(low, high, 41).tolist(), "counts": list(range(1, 41))}


def _stats_line(epoch: int, histograms: bool) -> dict:
    layers = {}
    for index, name in enumerate(("block1", "block2", "block4")):
        layers[name] = {
            "activation": {"mean": 0.1 * epoch + index, "std": 0.5, "min": 0.0, "max": 3.0,
                           "histogram": _histogram(0.0, 3.0) if histograms else None},
            "gradient": {"mean": 1e-4 * epoch, "std": 1e-3 / (index + 1), "min": -1e-2, "max": 1e-2,
                         "histogram": _histogram(-1e-2, 1e-2) if histograms else None},
        }
    return {"epoch": epoch, "layers": layers}


# --- pure helpers ----------------------------------------------------------------------------

def test_expected_calibration_error_matches_hand_computation():
    confidence = torch.tensor([0.95, 0.95, 0.65, 0.65, 0.35])
    correct = torch.tensor([True, False, True, True, False])
    # bins of width 0.1: (0.9, 1] acc 1/2 conf 0.95; (0.6, 0.7] acc 1 conf 0.65; (0.3, 0.4] acc 0 conf 0.35
    expected = 2 / 5 * 0.45 + 2 / 5 * 0.35 + 1 / 5 * 0.35
    assert plots.expected_calibration_error(confidence, correct, bins=10) == pytest.approx(expected)


def test_expected_calibration_error_is_zero_when_calibrated():
    confidence = torch.tensor([0.75] * 4 + [0.5] * 2 + [1.0] * 3)
    correct = torch.tensor([True, True, True, False, True, False, True, True, True])
    assert plots.expected_calibration_error(confidence, correct, bins=15) == pytest.approx(0.0, abs=1e-12)


def test_calibration_bins_count_every_prediction_once():
    confidence = torch.rand(500)
    counts, mean_confidence, _ = plots.calibration_bins(confidence, torch.rand(500) < confidence, bins=7)
    assert counts.sum() == 500
    occupied = counts > 0
    assert torch.all(mean_confidence[occupied] > torch.arange(7)[occupied] / 7)


def test_accuracy_by_samples_averages_softmax_of_the_first_draws():
    # two draws for one image: draw 1 votes class 0 mildly, draw 2 votes class 1 strongly
    logits = torch.tensor([[[1.0, 0.0]], [[0.0, 5.0]]])
    labels = torch.tensor([0])
    assert plots.accuracy_by_samples(logits, labels, [1, 2, 8]) == [1.0, 0.0, 0.0]
    assert plots.single_draw_accuracy(logits, labels)[0] == pytest.approx(0.5)


def test_mean_curve_uses_shared_points_and_sample_std():
    budgets, mean, std = plots.mean_curve([{0.0: 0.8, 0.1: 0.4}, {0.0: 0.6, 0.1: 0.2, 0.2: 0.1}])
    assert budgets.tolist() == [0.0, 0.1]
    assert mean.tolist() == pytest.approx([0.7, 0.3])
    assert std.tolist() == pytest.approx([2 ** 0.5 * 0.1] * 2)


def test_default_heatmap_indices_are_first_ankle_boot_and_first_bag(test_data):
    labels = test_data.test_labels
    boot, bag = plots.default_heatmap_indices(labels)
    assert CLASS_NAMES[labels[boot]] == "Ankle boot" and CLASS_NAMES[labels[bag]] == "Bag"
    assert not (labels[:boot] == CLASS_NAMES.index("Ankle boot")).any()
    assert not (labels[:bag] == CLASS_NAMES.index("Bag")).any()
    with pytest.raises(ValueError, match="pass indices"):
        plots.default_heatmap_indices(torch.zeros(5, dtype=torch.int64))


# --- figures on real runs ------------------------------------------------------------------------

def _has_labels_and_title(figure: Figure) -> bool:
    titled = bool(figure.get_suptitle()) or any(ax.get_title() for ax in figure.axes)
    return titled and all(ax.get_xlabel() or ax.get_ylabel() or not ax.get_xticks().size for ax in figure.axes)


def test_noise_densities_integrate_to_one():
    figure = plots.noise_densities(std=2.0)
    ax = figure.axes[0]
    assert [line.get_label() for line in ax.lines] == ["gaussian", "logistic", "uniform"]
    for line in ax.lines:
        xs, ys = line.get_data()
        assert ys.sum() * (xs[1] - xs[0]) == pytest.approx(1.0, abs=0.02)  # ±4 std holds nearly all mass
    assert "Fig. 4.1" in ax.get_title() and ax.get_xlabel() and ax.get_ylabel()


@pytest.mark.parametrize("attack, budget", [("fgsm", 0.05), ("missing", 0.3)])
def test_example_grid(small_run_dirs, test_data, attack, budget):
    figure = plots.example_grid(small_run_dirs["logistic"], test_data, attack, budget, count=4)
    assert len(figure.axes) == 3 * 4
    assert CLASS_NAMES[test_data.test_labels[0]] in figure.axes[0].get_title()
    assert "pred" in figure.axes[4].get_title()
    assert _has_labels_and_title(figure)


def test_activation_heatmaps_show_blocks_larger_than_one_pixel(small_run_dirs, test_data):
    figure = plots.activation_heatmaps(small_run_dirs["relu"], test_data)
    titles = [ax.get_title() for ax in figure.axes[:8]]
    assert titles == ["input", "block1 26×26", "block2 24×24", "block3 12×12", "block4 10×10", "block5 8×8",
                      "block6 4×4", "block7 2×2"]
    assert len(figure.axes) == 2 * 8
    assert "Ankle boot" in figure.axes[0].get_ylabel() and "Bag" in figure.axes[8].get_ylabel()


def test_accuracy_vs_budget_draws_one_band_for_the_seed_group(small_run_dirs):
    figure = plots.accuracy_vs_budget(list(small_run_dirs.values()), budget_name="p")
    (ax,) = figure.axes
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 1
    labels = [line.get_label() for line in ax.lines]
    assert labels == ["relu", "logistic, logistic_seed1 (mean ± std)", "adversarial"]
    assert _has_labels_and_title(figure)


def test_accuracy_vs_budget_dashes_single_draw_attacks_of_stochastic_runs(small_run_dirs):
    figure = plots.accuracy_vs_budget([small_run_dirs["relu"], small_run_dirs["logistic"]], budget_name="eps")
    (ax,) = figure.axes
    styles = {line.get_label(): line.get_linestyle() for line in ax.lines}
    assert styles == {"relu": "-", "logistic, 1-draw attack": "--", "logistic, EOT 4": "-"}
    assert not [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert ax.lines[0].get_xdata().tolist() == [0.0, 0.05, 0.1]


def test_accuracy_vs_budget_without_attack_tables(small_run_dirs, tmp_path):
    bare = _bare_copy(small_run_dirs["relu"], tmp_path / "bare")
    with pytest.raises(plots.MissingData, match=re.escape(f"`stochrelax attack {bare}`")):
        plots.accuracy_vs_budget([bare])


def test_clean_accuracy_bars(small_run_dirs):
    figure = plots.clean_accuracy_bars(list(small_run_dirs.values()))
    (ax,) = figure.axes
    assert len(ax.patches) == 2  # the adversarial run, then the two logistic seeds as one bar
    assert ax.patches[0].get_facecolor() != ax.patches[1].get_facecolor()
    (baseline,) = [line for line in ax.lines if line.get_linestyle() == "--"]
    relu_accuracy = runs.load_run(small_run_dirs["relu"]).summary["test_accuracy"]
    assert baseline.get_ydata()[0] == pytest.approx(relu_accuracy)
    assert "2 seeds" in ax.get_xticklabels()[1].get_text()
    assert _has_labels_and_title(figure)


def _ticks_in_view(ax) -> list[float]:
    low, high = ax.get_xlim()
    return [tick for tick in ax.get_xticks() if low <= tick <= high]


def test_learning_curves(small_run_dirs):
    figure = plots.learning_curves(small_run_dirs["logistic"])
    accuracy, loss = figure.axes
    assert [line.get_xdata().tolist() for line in accuracy.lines] == [[1, 2], [1, 2]]
    assert [line.get_label() for line in loss.lines] == ["train", "test"]
    assert _ticks_in_view(accuracy) == [1, 2]
    assert _has_labels_and_title(figure)


def test_learning_curves_of_one_epoch_tick_that_epoch_only(small_run_dirs, tmp_path):
    run_dir = _bare_copy(small_run_dirs["relu"], tmp_path / "run")
    first_epoch = (run_dir / runs.METRICS_FILE).read_text().splitlines()[0]
    (run_dir / runs.METRICS_FILE).write_text(first_epoch + "\n")
    for ax in plots.learning_curves(run_dir).axes:
        assert _ticks_in_view(ax) == [1]  # matplotlib's integer locator alone gives 0.96, 0.98, ...


def test_confidence_histograms(small_run_dirs, test_data):
    figure = plots.confidence_histograms(small_run_dirs["adversarial"], test_data)
    (ax,) = figure.axes
    heights = sum(patch.get_height() for patch in ax.patches)
    assert heights == 300  # every test image counted once, as correct or wrong
    assert _has_labels_and_title(figure)


def test_tsne_features(small_run_dirs, test_data):
    figure = plots.tsne_features(small_run_dirs["logistic"], test_data, count=300)
    (ax,) = figure.axes
    assert sum(len(collection.get_offsets()) for collection in ax.collections) == 300
    assert [text.get_text() for text in figure.legends[0].get_texts()] == list(CLASS_NAMES)
    assert _has_labels_and_title(figure)


def test_reliability_diagram_reports_ece(small_run_dirs, test_data):
    figure = plots.reliability_diagram(small_run_dirs["logistic"], test_data, samples=4, bins=10)
    assert "ECE = " in figure.get_suptitle() and "K=4" in figure.get_suptitle()
    assert sum(patch.get_height() for patch in figure.axes[1].patches) == 300
    assert _has_labels_and_title(figure)


def test_reliability_diagram_legend_covers_no_bar(small_run_dirs, test_data):
    figure = plots.reliability_diagram(small_run_dirs["logistic"], test_data, samples=4, bins=10)
    figure.draw_without_rendering()
    reliability = figure.axes[0]
    (legend,) = figure.legends
    assert len(legend.get_texts()) == 3 and reliability.get_legend() is None
    box = legend.get_window_extent()
    assert reliability.patches and not any(box.overlaps(bar.get_window_extent()) for bar in reliability.patches)
    assert not any(box.overlaps(ax.get_window_extent()) for ax in figure.axes)


def test_accuracy_vs_samples(small_run_dirs, test_data):
    figure = plots.accuracy_vs_samples(small_run_dirs["logistic"], test_data, sample_counts=(1, 2, 4))
    (ax,) = figure.axes
    assert ax.get_xscale() == "log"
    assert ax.lines[0].get_xdata().tolist() == [1, 2, 4]
    assert ax.lines[1].get_label().startswith("single draw")
    deterministic = plots.accuracy_vs_samples(small_run_dirs["relu"], test_data, sample_counts=(1, 4))
    assert len(set(deterministic.axes[0].lines[0].get_ydata())) == 1


def _grid_shape(figure: Figure) -> tuple[int, int]:
    return figure.axes[0].get_subplotspec().get_gridspec().get_geometry()


def test_training_distributions_from_hand_written_stats(small_run_dirs, tmp_path):
    run_dir = _bare_copy(small_run_dirs["relu"], tmp_path / "run")
    lines = [_stats_line(epoch, histograms=epoch in (1, 2, 4)) for epoch in range(1, 5)]
    (run_dir / runs.TRAINING_STATS_FILE).write_text("".join(json.dumps(line) + "\n" for line in lines))
    outputs, gradients = (plots.training_distributions(run_dir, statistic) for statistic in ("activation", "gradient"))
    for figure in (outputs, gradients):
        assert _grid_shape(figure) == (2, 3) and len(figure.axes) == 2 * 3  # (mean ± std, histograms) × layers
        assert [ax.get_title() for ax in figure.axes[:3]] == ["block1", "block2", "block4"]
        assert [text.get_text() for text in figure.legends[0].get_texts()] == ["± std", "mean", "epoch 1", "epoch 2",
                                                                               "epoch 4"]
        assert _has_labels_and_title(figure)
    moments = outputs.axes[1]  # block2 output
    assert moments.lines[0].get_xdata().tolist() == [1, 2, 3, 4]
    assert moments.lines[0].get_ydata().tolist() == pytest.approx([1.1, 1.2, 1.3, 1.4])
    assert gradients.axes[5].get_xlabel() == "weight gradient"
    assert "block output" in outputs.get_suptitle() and "weight gradient" in gradients.get_suptitle()
    with pytest.raises(ValueError, match="unknown statistic 'weights'; valid: activation, gradient"):
        plots.training_distributions(run_dir, "weights")


def test_training_distributions_of_a_trained_run_are_small_multiples_of_five_layers_a_row(small_run_dirs):
    figure = plots.training_distributions(small_run_dirs["logistic"], "activation")
    assert _grid_shape(figure) == (4, 5)  # layers 1-5: mean ± std, histograms; layers 6-10: the same
    assert [ax.get_title() for ax in figure.axes] == ([f"block{index}" for index in range(1, 6)] + [""] * 5
                                                      + [f"block{index}" for index in range(6, 11)] + [""] * 5)
    moments = figure.axes[:5] + figure.axes[10:15]
    assert all(ax.get_shared_x_axes().joined(moments[0], ax) for ax in moments)  # one epoch axis
    assert moments[0].lines[0].get_xdata().tolist() == [1, 2]
    assert all(_ticks_in_view(ax) == [1, 2] for ax in moments)
    assert min(label.get_fontsize() for ax in figure.axes for label in ax.get_xticklabels() + ax.get_yticklabels()) >= 7
    assert [text.get_text() for text in figure.legends[0].get_texts()][2:] == ["epoch 1", "epoch 2"]
    assert _has_labels_and_title(figure)


def test_training_distributions_without_stats(small_run_dirs, tmp_path):
    run_dir = _bare_copy(small_run_dirs["relu"], tmp_path / "run")
    command = f"`stochrelax train {run_dir / runs.CONFIG_FILE} --out {run_dir}-retrained`"
    with pytest.raises(plots.MissingData, match=re.escape(command)):
        plots.training_distributions(run_dir, "gradient")


def test_save_figure_writes_png_of_figure_size_times_dpi(tmp_path):
    figure = plots.noise_densities()
    path = plots.save_figure(figure, tmp_path / "figures" / "noise.png")
    assert path.stat().st_size > 0
    height, width = matplotlib.image.imread(path).shape[:2]
    expected_width, expected_height = figure.get_size_inches() * plots.DPI
    assert (width, height) == (round(expected_width), round(expected_height))


# --- the study's empirical and certified robustness ----------------------------------------------

def _worst_case_row(configuration: str, units: str, values: dict[int, float], eps: float = 0.1,
                    adversarial: str = "none") -> ResultRow:
    return ResultRow(configuration, "worst-case", "eps", eps, "worst-case", 4, values, 200, units, adversarial, 2)


def test_robustness_and_certificates_puts_every_configuration_beside_the_smoothed_ones_certificates():
    rows = [_worst_case_row("relu", "relu, deterministic", {0: 0.0, 1: 0.02}),
            _worst_case_row("relu_input_noise-0.25", "relu, deterministic, input noise std 0.25", {0: 0.3, 1: 0.4}),
            _worst_case_row("relu_input_noise-0.25", "relu, deterministic, input noise std 0.25", {0: 0.6, 1: 0.7},
                            eps=0.03)]
    certified = {"relu_input_noise-0.25": [{0.0: 0.8, 0.25: 0.6, 0.5: 0.3}, {0.0: 0.7, 0.25: 0.5, 0.5: 0.1}]}
    figure = plots.robustness_and_certificates(rows, certified)
    bars, curves = figure.axes
    widths = {tick.get_text(): patch.get_width() for tick, patch in zip(bars.get_yticklabels(), bars.patches)}
    assert widths == {"relu": pytest.approx(0.01), "relu_input_noise-0.25": pytest.approx(0.35)}  # at eps 0.1
    colours = [patch.get_facecolor() for patch in bars.patches]
    assert colours[0] != colours[1]  # beyond the thesis in another colour
    (line,) = curves.lines
    assert list(line.get_xdata()) == [0.0, 0.25, 0.5]
    assert list(line.get_ydata()) == pytest.approx([0.75, 0.55, 0.2])
    assert "different guarantees" in figure.get_suptitle() and _has_labels_and_title(figure)


def test_robustness_and_certificates_without_certificates_says_which_runs_can_have_them():
    figure = plots.robustness_and_certificates([_worst_case_row("relu", "relu, deterministic", {0: 0.1})], {})
    assert "model.input_noise" in figure.axes[1].texts[0].get_text()
    with pytest.raises(plots.MissingData, match="no worst-case rows"):
        plots.robustness_and_certificates([], {})
