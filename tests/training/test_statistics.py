"""Tests of :mod:`stochrelax.training.statistics`: per-layer activation and gradient distributions during training.

The recorder is checked against statistics computed directly with torch on fixed
models and inputs; :func:`~stochrelax.training.loop.train_run` and :func:`~stochrelax.training.loop.fit`
are checked through the file they write and through element counts, which tell which
forward passes were recorded (training steps only: not evaluation, not the generation
of adversarial examples).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from stochrelax.models.allconv import build_model
from stochrelax.nn.prediction import evaluating
from stochrelax.nn.rng import seeded
from stochrelax.rundir import layout as runs, records
from stochrelax.rundir.config import TrainConfig, parse_config
from stochrelax.training.loop import TrainingDiverged, fit, train_run
from stochrelax.training.statistics import (HISTOGRAM_BINS, SUMMARY_KEYS, TrainingStatsRecorder, histogram_counts,
                                            histogram_epochs, histogram_range)

BLOCKS = [f"block{index}" for index in range(1, 11)]
ACTIVATED = ["block1", "block2", "block4", "block5", "block7", "block9"]  # blocks with a unit after the conv
CONV_ONLY = ["block3", "block6", "block8", "block10"]  # weighted pooling and classifier: the conv output


def make_model(activation: dict | None = None, seed: int = 0) -> torch.nn.Module:
    with seeded(seed):
        return build_model(parse_config({"model": {"activation": activation or {"kind": "relu"}}}).model)


def elements_per_example(model: torch.nn.Module) -> dict[str, int]:
    with evaluating(model), torch.no_grad():  # one example: BatchNorm needs running statistics
        features = model.forward_features(torch.zeros(1, 1, 28, 28), model.block_names)
    return {name: feature.numel() for name, feature in features.items()}


def histogram_total(summary: dict) -> int:
    return sum(summary["histogram"]["counts"])


def assert_summary_matches(summary: dict, values: torch.Tensor) -> None:
    values = values.double()
    assert summary["mean"] == pytest.approx(values.mean().item(), rel=1e-5, abs=1e-7)
    assert summary["std"] == pytest.approx(values.std(correction=0).item(), rel=1e-4)
    assert summary["min"] == pytest.approx(values.min().item(), rel=1e-6)
    assert summary["max"] == pytest.approx(values.max().item(), rel=1e-6)


# --- train_run writes training_stats.jsonl ---------------------------------------------------

@pytest.fixture(scope="module")
def stats_run(fashion_mnist, tmp_path_factory):
    """The default (deterministic ReLU) network, 3 epochs on 1000 training and 200 test images."""
    config = parse_config({"train": {"epochs": 3}, "data": {"train_limit": 1000, "test_limit": 200}})
    run_dir = tmp_path_factory.mktemp("stats") / "run"
    train_run(config, fashion_mnist, run_dir)
    return config, run_dir, records.read_training_stats(run_dir)


def test_train_run_writes_one_line_per_epoch_with_every_block(stats_run):
    _, run_dir, stats = stats_run
    assert (run_dir / runs.TRAINING_STATS_FILE).read_text().count("\n") == 3
    assert [line["epoch"] for line in stats] == [m["epoch"] for m in records.read_metrics(run_dir)] == [1, 2, 3]
    for line in stats:
        assert set(line) == {"epoch", "layers"}
        assert list(line["layers"]) == BLOCKS
        for layer in line["layers"].values():
            assert set(layer) == {"activation", "gradient"}
            for summary in layer.values():
                assert tuple(summary) == SUMMARY_KEYS
                assert summary["min"] <= summary["mean"] <= summary["max"] and summary["std"] > 0


def test_histograms_are_recorded_exactly_on_the_first_middle_and_last_epoch(stats_run):
    _, _, stats = stats_run
    with_histograms = [line["epoch"] for line in stats
                       if all(s["histogram"] is not None for layer in line["layers"].values() for s in layer.values())]
    without = [line["epoch"] for line in stats
               if all(s["histogram"] is None for layer in line["layers"].values() for s in layer.values())]
    assert with_histograms == histogram_epochs(3) == [1, 2, 3] and without == []


@pytest.mark.parametrize("epochs, expected", [(1, [1]), (2, [1, 2]), (3, [1, 2, 3]), (4, [1, 2, 4]),
                                              (10, [1, 5, 10]), (11, [1, 6, 11]), (100, [1, 50, 100])])
def test_histogram_epochs_are_the_first_the_middle_and_the_last(epochs, expected):
    assert histogram_epochs(epochs) == expected


def test_histogram_counts_cover_every_recorded_element_and_only_training_steps(stats_run, fashion_mnist):
    config, _, stats = stats_run
    model = make_model()
    per_example = elements_per_example(model)
    weights = {name: block.conv.weight.numel() for name, block in model.blocks.named_children()}
    steps = math.ceil(1000 / config.train.batch_size)  # 16 training steps; evaluation (200 images) not counted
    for line in stats:
        for name, layer in line["layers"].items():
            assert histogram_total(layer["activation"]) == 1000 * per_example[name]
            assert histogram_total(layer["gradient"]) == steps * weights[name]
            for summary in layer.values():
                assert len(summary["histogram"]["counts"]) == HISTOGRAM_BINS
                assert all(isinstance(count, int) and count >= 0 for count in summary["histogram"]["counts"])


def test_histogram_edges_are_increasing_and_fixed_for_the_run(stats_run):
    _, _, stats = stats_run
    for name in BLOCKS:
        for quantity in ("activation", "gradient"):
            edges = [line["layers"][name][quantity]["histogram"]["edges"] for line in stats]
            assert len(edges[0]) == HISTOGRAM_BINS + 1
            assert all(low < high for low, high in zip(edges[0], edges[0][1:]))
            assert edges[1] == edges[0] and edges[2] == edges[0]
            assert edges[0][0] <= 0 <= edges[0][-1]


def test_relu_blocks_are_non_negative_and_conv_only_blocks_are_not(stats_run):
    _, _, stats = stats_run
    for line in stats:
        layers = line["layers"]
        assert all(layers[name]["activation"]["min"] >= 0 for name in ACTIVATED)
        assert all(layers[name]["activation"]["histogram"]["edges"][0] == 0 for name in ACTIVATED)
        assert all(layers[name]["activation"]["min"] < 0 for name in CONV_ONLY)


def test_read_training_stats_of_a_run_without_them_is_empty(tmp_path):
    assert records.read_training_stats(tmp_path) == []
    lines = [{"epoch": 1, "layers": {}}, {"epoch": 2, "layers": {"block1": {}}}]
    for line in lines:
        records.append_training_stats(tmp_path, line)
    assert records.read_training_stats(tmp_path) == lines


# --- the recorder against torch on fixed inputs -----------------------------------------------

def test_recorded_activations_and_gradients_match_torch_on_the_concatenated_batches():
    model = make_model({"kind": "relu", "noise": "logistic", "std": 0.3})
    generator = torch.Generator().manual_seed(1)
    batches = [torch.rand(7, 1, 28, 28, generator=generator), torch.rand(5, 1, 28, 28, generator=generator)]
    labels = [torch.randint(0, 10, (7,), generator=generator), torch.randint(0, 10, (5,), generator=generator)]
    recorder = TrainingStatsRecorder(histogram_epochs=[1])
    outputs, gradients = {name: [] for name in BLOCKS}, {name: [] for name in BLOCKS}
    with recorder.attach(model):
        recorder.begin_epoch(1)
        for images, targets in zip(batches, labels):
            with seeded(len(images)):  # the same noise draw for the recorded pass and the reference pass
                features = model.forward_features(images, BLOCKS)
            with recorder.paused(), seeded(len(images)):
                reference = model.forward_features(images, BLOCKS)
            assert all(torch.equal(features[name], reference[name]) for name in BLOCKS)
            model.zero_grad(set_to_none=True)
            F.cross_entropy(features["block10"].flatten(1), targets).backward()
            recorder.record_gradients()
            for name, block in model.blocks.named_children():
                outputs[name].append(reference[name].detach().flatten())
                gradients[name].append(block.conv.weight.grad.flatten().clone())
        stats = recorder.end_epoch()
    assert stats["epoch"] == 1 and recorder.history == [stats]
    for name in BLOCKS:
        for quantity, recorded in (("activation", outputs[name]), ("gradient", gradients[name])):
            summary, values = stats["layers"][name][quantity], torch.cat(recorded)
            assert_summary_matches(summary, values)
            first = recorded[0]  # the edges come from the first batch: its range with 0, widened by 1.5
            low, high = 1.5 * min(first.min().item(), 0.0), 1.5 * max(first.max().item(), 0.0)
            edges = summary["histogram"]["edges"]
            assert edges[0] == pytest.approx(low, rel=1e-6) and edges[-1] == pytest.approx(high, rel=1e-6)
            expected = torch.histc(values.clamp(edges[0], edges[-1]), HISTOGRAM_BINS, edges[0], edges[-1])
            assert summary["histogram"]["counts"] == [round(count) for count in expected.tolist()]
            assert histogram_total(summary) == values.numel()


def test_values_outside_the_fixed_edges_are_clamped_into_the_end_bins_on_later_epochs():
    model = make_model()
    recorder = TrainingStatsRecorder(histogram_epochs=[1, 3])
    small, large = torch.full((4, 1, 28, 28), 0.5), torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with recorder.attach(model):
        for epoch, images in ((1, small), (2, large), (3, large)):
            recorder.begin_epoch(epoch)
            model(images)
            recorder.end_epoch()
    first, second, third = recorder.history
    block = "block3"  # the pooling conv: a constant image gives just its bias, random images far more
    assert second["layers"][block]["activation"]["histogram"] is None
    summary = third["layers"][block]["activation"]
    edges, counts = summary["histogram"]["edges"], summary["histogram"]["counts"]
    assert edges == first["layers"][block]["activation"]["histogram"]["edges"]
    assert summary["min"] < edges[0] and summary["max"] > edges[-1]
    assert sum(counts) == 4 * elements_per_example(model)[block]
    assert counts[0] > 0 and counts[-1] > 0
    assert all(s["histogram"] is None for layer in second["layers"].values() for s in layer.values())


@pytest.mark.parametrize("activation", [{"kind": "sign"}, {"kind": "sign", "noise": "logistic", "std": 0.5}],
                         ids=["deterministic_sign", "stochastic_sign"])
def test_sign_blocks_record_only_plus_and_minus_one(activation):
    model = make_model(activation)
    recorder = TrainingStatsRecorder(histogram_epochs=[1])
    images = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    with recorder.attach(model):
        recorder.begin_epoch(1)
        model(images[:9])
        model(images[9:])
        stats = recorder.end_epoch()
    for name in ACTIVATED:
        summary = stats["layers"][name]["activation"]
        assert (summary["min"], summary["max"]) == (-1.0, 1.0)
        assert summary["std"] == pytest.approx(math.sqrt(1 - summary["mean"] ** 2), rel=1e-5)
        edges, counts = summary["histogram"]["edges"], summary["histogram"]["counts"]
        occupied = [(edges[i], edges[i + 1]) for i, count in enumerate(counts) if count]
        assert len(occupied) == 2
        assert occupied[0][0] <= -1 < occupied[0][1] and occupied[1][0] <= 1 < occupied[1][1]
        plus = counts[[i for i, count in enumerate(counts) if count][1]]
        assert summary["mean"] == pytest.approx((2 * plus - sum(counts)) / sum(counts), rel=1e-5, abs=1e-7)


# --- hooks are temporary and change nothing ---------------------------------------------------

def no_hooks(model: torch.nn.Module) -> bool:
    return all(not module._forward_hooks for module in model.modules())


def test_recording_leaves_outputs_unchanged_and_removes_its_hooks():
    model = make_model().eval()
    images = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    before = model(images)
    recorder = TrainingStatsRecorder(histogram_epochs=[1])
    with recorder.attach(model):
        assert all(len(block._forward_hooks) == 1 for block in model.blocks)
        recorder.begin_epoch(1)
        during = model(images)
        recorder.end_epoch()
    assert torch.equal(before, during)
    assert no_hooks(model)


def test_fit_with_a_recorder_trains_the_same_weights_and_removes_its_hooks(fashion_mnist):
    data, config = fashion_mnist.limit(128, 32), TrainConfig(epochs=1, batch_size=32)
    trained = {}
    for recorder in (None, TrainingStatsRecorder(histogram_epochs=[1])):
        with seeded(0):
            model = make_model()
            fit(model, data, config, recorder=recorder)
        assert no_hooks(model)
        trained[recorder is None] = model.state_dict()
    assert all(torch.equal(trained[True][name], trained[False][name]) for name in trained[True])


def test_hooks_are_removed_when_training_diverges(fashion_mnist):
    model = make_model()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(math.nan)
    with pytest.raises(TrainingDiverged):
        fit(model, fashion_mnist.limit(64, 32), TrainConfig(epochs=2, batch_size=32),
            recorder=TrainingStatsRecorder(histogram_epochs=[1]))
    assert no_hooks(model)


# --- only the training forward passes are recorded --------------------------------------------

@pytest.mark.parametrize("activation, train, rows_per_example", [
    ({"kind": "relu"}, {}, 1),
    ({"kind": "relu"}, {"adversarial": {"method": "pgd", "eps": 0.1, "pgd_steps": 2}}, 1),
    ({"kind": "relu", "noise": "logistic", "std": 0.5}, {"train_samples": 3, "eval_samples": 2}, 3),
], ids=["clean", "pgd_training", "three_noise_samples"])
def test_fit_records_the_training_passes_only(fashion_mnist, activation, train, rows_per_example):
    """Evaluation (96 test images) and PGD's forward passes would add to the counts; K noise draws count K times."""
    model = make_model(activation)
    per_example = elements_per_example(model)
    config = parse_config({"train": {"epochs": 1, "batch_size": 50, **train}}).train
    recorder = TrainingStatsRecorder(histogram_epochs=[1])
    fit(model, fashion_mnist.limit(120, 96), config, recorder=recorder)
    (stats,) = recorder.history
    for name, block in model.blocks.named_children():
        assert histogram_total(stats["layers"][name]["activation"]) == rows_per_example * 120 * per_example[name]
        assert histogram_total(stats["layers"][name]["gradient"]) == 3 * block.conv.weight.numel()  # 3 steps


def test_fgsm_mixture_records_the_mixed_epoch_but_not_the_fgsm_generation(fashion_mnist):
    model = make_model()
    per_example = elements_per_example(model)["block1"]
    config = parse_config({"train": {"epochs": 2, "batch_size": 64,
                                     "adversarial": {"method": "fgsm_mixture", "regenerate_every": 1}}}).train
    recorder = TrainingStatsRecorder(histogram_epochs=[1, 2])
    fit(model, fashion_mnist.limit(64, 32), config, recorder=recorder)
    totals = [histogram_total(stats["layers"]["block1"]["activation"]) for stats in recorder.history]
    assert totals == [64 * per_example, 128 * per_example]  # epoch 2: clean + FGSM copy, one step each


@pytest.mark.parametrize("shape,trials", [((8, 5, 7, 7), 100), ((5, 1, 97, 101), 12), ((64, 12, 24, 24), 12),
                                          ((1, 1, 1, 250_001), 12)],
                         ids=["counted-singly", "in-pairs", "in-triples", "in-triples-and-a-rest"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["contiguous", "channels-last"])
def test_histogram_counts_are_torch_histc_of_the_clamped_values_bin_for_bin(channels_last, shape, trials):
    generator = torch.Generator().manual_seed(0)
    for trial in range(trials):  # scales from 1e-4 to 1e2, ReLU-like and signed, the edges themselves, NaN and ±inf
        scale = 10 ** torch.empty(()).uniform_(-4, 2, generator=generator).item()
        values = torch.randn(*shape, generator=generator) * scale
        values = values.relu() if trial % 3 == 0 else values
        low, high = histogram_range(*torch.stack(torch.aminmax(values[:2])).tolist())
        special = torch.cat([torch.linspace(low, high, HISTOGRAM_BINS + 1), torch.tensor([math.nan, math.inf, -math.inf])])
        values.view(-1)[:len(special)] = special
        values = values.to(memory_format=torch.channels_last) if channels_last else values
        expected = torch.histc(values.clamp(low, high), HISTOGRAM_BINS, low, high)
        assert torch.equal(histogram_counts(values, low, high), expected.long()), trial
