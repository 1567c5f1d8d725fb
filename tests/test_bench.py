"""The benchmark's plain paths compute what stochrelax computes; the quick suite runs and reports.

No assertion here is about time: a benchmark is not a test.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from stochrelax import bench
from stochrelax.attacks import PGD
from stochrelax.attacks.core import cross_entropy_loss, expected_gradient, targeted_cross_entropy_loss
from stochrelax.config import TrainConfig
from stochrelax.estimators import MovingAverageBaseline
from stochrelax.models import THESIS_ALLCONV, ModelConfig, build_model, predictive_log_prob, sample_logits
from stochrelax.rng import seeded
from stochrelax.train import fit


def _model(activation: dict, seed: int = 0) -> torch.nn.Module:
    with seeded(seed):
        return build_model(ModelConfig.model_validate({"activation": activation}))


STRONG_NOISE = {"kind": "relu", "noise": "logistic", "std": 0.5}  # so that draws differ visibly


# --------------------------------------------------------------------------------------------
# (a) the DataLoader loop trains exactly as fit does


@pytest.mark.slow
@pytest.mark.parametrize("variant", list(bench.TRAIN_VARIANTS))
def test_plain_loop_trains_like_fit(fashion_mnist, variant: str) -> None:
    """Same initial weights, same data order (same seed), same noise: identical losses and weights."""
    data = fashion_mnist.limit(192, 64)
    activation = bench.TRAIN_VARIANTS[variant]
    ours, plain = _model(activation), _model(activation)
    with seeded(1):
        history = fit(ours, data, TrainConfig(epochs=1, seed=3))
    with seeded(1):
        loader = bench.plain_loader(data.train_images, data.train_labels, 64, torch.Generator().manual_seed(3))
        losses = bench.plain_train_epoch(plain, loader, torch.optim.Adam(plain.parameters(), lr=1e-3),
                                         MovingAverageBaseline(0.9))
    assert len(losses) == 3
    # Mean of equal-sized batches' means = fit's mean over examples (up to float summation order).
    assert sum(losses) / len(losses) == pytest.approx(history[0].train_loss, rel=1e-6)
    for (name, a), b in zip(ours.state_dict().items(), plain.state_dict().values()):
        assert torch.equal(a, b), f"{variant}: {name} differs after one epoch"


def test_plain_loader_yields_float_pixels_in_the_order_of_batches(fashion_mnist) -> None:
    from stochrelax.data import batches

    images, labels = fashion_mnist.train_images[:100], fashion_mnist.train_labels[:100]
    loader = bench.plain_loader(images, labels, 32, torch.Generator().manual_seed(5))
    ours = list(batches(images, labels, 32, shuffle=True, generator=torch.Generator().manual_seed(5)))
    before = torch.get_rng_state()
    plain = list(loader)
    assert torch.equal(torch.get_rng_state(), before), "the loader must not draw from the global generator"
    assert [len(y) for _, y in plain] == [32, 32, 32, 4]
    for (x1, y1), (x2, y2) in zip(ours, plain):
        assert x2.dtype == torch.float32 and x2.shape[1:] == (1, 28, 28)
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


# --------------------------------------------------------------------------------------------
# (b) the looped EOT gradient is the batched one


@pytest.mark.parametrize("loss_fn", [cross_entropy_loss, targeted_cross_entropy_loss])
def test_looped_eot_gradient_equals_batched_on_a_deterministic_model(fashion_mnist, loss_fn) -> None:
    model = _model(bench.TRAIN_VARIANTS["deterministic"]).eval()
    images, labels = fashion_mnist.test_images[:16].float() / 255, fashion_mnist.test_labels[:16]
    for draws in (1, 2, 16):
        batched = expected_gradient(model, images, labels, loss_fn, draws).gradient
        looped = bench.looped_expected_gradient(model, images, labels, loss_fn, draws)
        assert torch.equal(batched, looped), draws  # measured: bit-identical on the CPU


def test_looped_eot_pgd_equals_pgd_on_a_deterministic_model(fashion_mnist) -> None:
    model = _model(bench.TRAIN_VARIANTS["deterministic"]).eval()
    images, labels = fashion_mnist.test_images[:16].float() / 255, fashion_mnist.test_labels[:16]
    ours = PGD(model, 0.1, 5, eot_samples=4, generator=torch.Generator().manual_seed(0))(images, labels)
    looped = bench.LoopedEOTPGD(model, 0.1, 5, eot_samples=4, generator=torch.Generator().manual_seed(0))(images,
                                                                                                        labels)
    assert torch.equal(ours, looped)


def test_looped_eot_gradient_has_the_batched_mean_on_a_stochastic_model(fashion_mnist) -> None:
    """Both estimate E_ξ ∇x L with K independent draws: their difference is noise of variance 2σ²/K.

    σ² per pixel is estimated from K single-draw gradients; the mean over pixels of the
    squared standardised difference is then about 1 (measured 1.04 with these seeds); it is
    2.1 when the looped side's network has noise std 0.1 instead of 0.5, and 31 without noise.
    """
    model = _model(STRONG_NOISE).eval()
    images, labels = fashion_mnist.test_images[:8].float() / 255, fashion_mnist.test_labels[:8]
    draws = 64
    with seeded(0):
        batched = expected_gradient(model, images, labels, cross_entropy_loss, draws).gradient
    with seeded(1):
        looped = bench.looped_expected_gradient(model, images, labels, cross_entropy_loss, draws)
    with seeded(2):
        singles = torch.stack([bench.looped_expected_gradient(model, images, labels, cross_entropy_loss, 1)
                               for _ in range(draws)])
    variance = singles.var(dim=0)
    varying = variance > 1e-20
    assert varying.float().mean() > 0.5  # the noise really moves the gradient
    z2 = ((batched - looped)[varying] ** 2 / (2 * variance[varying] / draws)).mean().item()
    assert 0.6 < z2 < 1.6, z2
    assert not torch.equal(batched, looped)


# --------------------------------------------------------------------------------------------
# (c) the looped Monte Carlo prediction is the batched one


def test_looped_prediction_equals_batched_on_a_deterministic_model(fashion_mnist) -> None:
    model = _model(bench.TRAIN_VARIANTS["deterministic"]).eval()
    images = fashion_mnist.test_images[:32].float() / 255
    with torch.no_grad():
        batched = predictive_log_prob(sample_logits(model, images, 32)).exp()
    looped = bench.looped_predictive_probs(model, images, 32)
    # Equal up to the rounding of averaging 32 equal float32 numbers (measured max 7e-8).
    assert torch.allclose(batched, looped, rtol=0, atol=1e-6)
    assert torch.equal(batched.argmax(dim=1), looped.argmax(dim=1))


def test_looped_prediction_has_the_batched_mean_on_a_stochastic_model(fashion_mnist) -> None:
    """As for the EOT gradient: mean squared standardised difference about 1 (measured 1.01;
    6.9 when the looped side's network has half the noise std)."""
    model = _model(STRONG_NOISE).eval()
    images = fashion_mnist.test_images[:16].float() / 255
    draws = 128
    with seeded(0), torch.no_grad():
        batched = predictive_log_prob(sample_logits(model, images, draws)).exp()
        singles = torch.softmax(sample_logits(model, images, draws), dim=-1)  # (K, B, classes)
    with seeded(1):
        looped = bench.looped_predictive_probs(model, images, draws)
    variance = singles.var(dim=0)
    varying = variance > 1e-12
    assert varying.float().mean() > 0.5
    z2 = ((batched - looped)[varying] ** 2 / (2 * variance[varying] / draws)).mean().item()
    assert 0.6 < z2 < 1.6, z2
    assert torch.allclose(batched.sum(dim=1), torch.ones(16)) and torch.allclose(looped.sum(dim=1), torch.ones(16))


# --------------------------------------------------------------------------------------------
# (d) FLOPs


def _flops_by_hand(specs, size: int = 28, channels: int = 1) -> int:
    total = 0
    for spec in specs:
        size = (size - spec.kernel_size) // spec.stride + 1
        total += 2 * channels * spec.kernel_size ** 2 * spec.out_channels * size * size
        channels = spec.out_channels
    return total


def test_conv_flops_of_the_thesis_network() -> None:
    # 26²·6·9·1 + 24²·12·9·6 + 12²·12·4·12 + 10²·24·9·12 + 8²·48·9·24 + 4²·48·4·48 + 2²·96·9·48
    # + 96·4·96 + 50·96 + 10·50 multiply-adds, ×2.
    assert _flops_by_hand(THESIS_ALLCONV) == 3_541_912
    for activation in (bench.TRAIN_VARIANTS["deterministic"], bench.TRAIN_VARIANTS["sign-score"]):
        model = _model(activation)
        before = ([m.training for m in model.modules()], torch.get_rng_state(),
                  {k: v.clone() for k, v in model.state_dict().items()})
        assert bench.count_conv_flops(model) == 3_541_912
        assert [m.training for m in model.modules()] == before[0]
        assert torch.equal(torch.get_rng_state(), before[1])
        assert all(torch.equal(v, before[2][k]) for k, v in model.state_dict().items())
    assert not any(m._forward_hooks for m in model.modules())


# --------------------------------------------------------------------------------------------
# the harness


def test_measure_alternates_and_compare_row_takes_the_median_ratio() -> None:
    calls = []
    workloads = [bench.Workload(name, lambda name=name: calls.append(name) or 10.0) for name in "abc"]
    rates = bench.measure(workloads, 3)
    assert calls == list("abc") + list("abc") + list("cba") + list("abc")  # warm-up, then alternating
    assert all(len(v) == 3 and all(r > 0 for r in v) for v in rates.values())
    row = bench.compare_row("k", "t", "u", "ours", "alt", [4.0, 2.0, 9.0], [1.0, 1.0, 3.0], 2.5)
    assert (row.ratio, row.ratio_min, row.ratio_max, row.met) == (3.0, 2.0, 4.0, True)
    assert (row.ours, row.alternative) == (4.0, 1.0)
    row = bench.compare_row("m", "t", "MB", "ours", "budget", [600.0], [1536.0], 1.0, "max")
    assert row.met and row.target_text == "≤ 1×"
    table = bench.format_table([row])
    assert "t: ours vs budget" in table and "0.39×" in table
    with pytest.raises(ValueError):
        bench.compare_row("k", "t", "u", "a", "b", [1.0], [1.0, 2.0], None)


# --------------------------------------------------------------------------------------------
# (e) the quick suite


@pytest.mark.slow
def test_quick_benchmarks_report_every_row(real_data_dir, tmp_path) -> None:
    report = bench.run_benchmarks(quick=True, progress=False, data_dir=real_data_dir)
    assert [row.key for row in report.rows] == list(bench.ROW_KEYS)
    for row in report.rows:
        values = [row.ours, row.alternative, row.ratio, row.ratio_min, row.ratio_max,
                  *row.ours_samples, *row.alternative_samples]
        assert all(math.isfinite(v) and v > 0 for v in values), row
        assert row.ratio_min <= row.ratio <= row.ratio_max
        assert row.repetitions == len(row.ours_samples) == len(row.alternative_samples) >= 1
        assert (row.met is None) == (row.target is None)
    assert any("many seeds" in note for note in report.notes)
    assert report.machine["torch_threads"] == torch.get_num_threads() and report.machine["cpu_count"] >= 1
    path = report.write_json(tmp_path / "bench.json")
    loaded = json.loads(path.read_text())
    assert [row["key"] for row in loaded["rows"]] == list(bench.ROW_KEYS) and loaded["quick"] is True
    text = bench.format_report(report)
    assert all(row.title in text for row in report.rows)
