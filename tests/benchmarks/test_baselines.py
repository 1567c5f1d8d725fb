"""The plain alternatives of :mod:`benchmarks.baselines` compute what stochrelax computes.

No assertion here is about time: a benchmark is not a test.
"""

from __future__ import annotations

import pytest
import torch

from benchmarks import baselines
from benchmarks.suite import TRAIN_VARIANTS, thesis_model
from stochrelax.attacks import PGD
from stochrelax.attacks.core import cross_entropy_loss, expected_gradient, targeted_cross_entropy_loss
from stochrelax.nn.estimators import MovingAverageBaseline
from stochrelax.nn.prediction import predictive_log_prob, sample_logits
from stochrelax.nn.rng import seeded
from stochrelax.rundir.config import TrainConfig
from stochrelax.training.loop import fit

STRONG_NOISE = {"kind": "relu", "noise": "logistic", "std": 0.5}  # so that draws differ visibly


# --------------------------------------------------------------------------------------------
# (a) the DataLoader loop trains exactly as fit does


@pytest.mark.slow
@pytest.mark.parametrize("variant", list(TRAIN_VARIANTS))
def test_plain_loop_trains_like_fit(fashion_mnist, variant: str) -> None:
    """Same initial weights, same data order (same seed), same noise: identical losses and weights."""
    data = fashion_mnist.limit(192, 64)
    activation = TRAIN_VARIANTS[variant]
    ours, plain = thesis_model(activation), thesis_model(activation)
    with seeded(1):
        history = fit(ours, data, TrainConfig(epochs=1, seed=3))
    with seeded(1):
        loader = baselines.plain_loader(data.train_images, data.train_labels, 64, torch.Generator().manual_seed(3))
        losses = baselines.plain_train_epoch(plain, loader, torch.optim.Adam(plain.parameters(), lr=1e-3),
                                             MovingAverageBaseline(0.9))
    assert len(losses) == 3
    # Mean of equal-sized batches' means = fit's mean over examples (up to float summation order).
    assert sum(losses) / len(losses) == pytest.approx(history[0].train_loss, rel=1e-6)
    for (name, a), b in zip(ours.state_dict().items(), plain.state_dict().values()):
        assert torch.equal(a, b), f"{variant}: {name} differs after one epoch"


def test_plain_loader_yields_float_pixels_in_the_order_of_batches(fashion_mnist) -> None:
    from stochrelax.data.fashion_mnist import batches

    images, labels = fashion_mnist.train_images[:100], fashion_mnist.train_labels[:100]
    loader = baselines.plain_loader(images, labels, 32, torch.Generator().manual_seed(5))
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
    model = thesis_model(TRAIN_VARIANTS["deterministic"]).eval()
    images, labels = fashion_mnist.test_images[:16].float() / 255, fashion_mnist.test_labels[:16]
    for draws in (1, 2, 16):
        batched = expected_gradient(model, images, labels, loss_fn, draws).gradient
        looped = baselines.looped_expected_gradient(model, images, labels, loss_fn, draws)
        assert torch.equal(batched, looped), draws  # measured: bit-identical on the CPU


def test_looped_eot_pgd_equals_pgd_on_a_deterministic_model(fashion_mnist) -> None:
    model = thesis_model(TRAIN_VARIANTS["deterministic"]).eval()
    images, labels = fashion_mnist.test_images[:16].float() / 255, fashion_mnist.test_labels[:16]
    ours = PGD(model, 0.1, 5, eot_samples=4, generator=torch.Generator().manual_seed(0))(images, labels)
    looped_attack = baselines.LoopedEOTPGD(model, 0.1, 5, eot_samples=4, generator=torch.Generator().manual_seed(0))
    looped = looped_attack(images, labels)
    assert torch.equal(ours, looped)


def test_looped_eot_gradient_has_the_batched_mean_on_a_stochastic_model(fashion_mnist) -> None:
    """Both estimate E_ξ ∇x L with K independent draws: their difference is noise of variance 2σ²/K.

    σ² per pixel is estimated from K single-draw gradients; the mean over pixels of the
    squared standardised difference is then about 1 (measured 1.04 with these seeds); it is
    2.1 when the looped side's network has noise std 0.1 instead of 0.5, and 31 without noise.
    """
    model = thesis_model(STRONG_NOISE).eval()
    images, labels = fashion_mnist.test_images[:8].float() / 255, fashion_mnist.test_labels[:8]
    draws = 64
    with seeded(0):
        batched = expected_gradient(model, images, labels, cross_entropy_loss, draws).gradient
    with seeded(1):
        looped = baselines.looped_expected_gradient(model, images, labels, cross_entropy_loss, draws)
    with seeded(2):
        singles = torch.stack([baselines.looped_expected_gradient(model, images, labels, cross_entropy_loss, 1)
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
    model = thesis_model(TRAIN_VARIANTS["deterministic"]).eval()
    images = fashion_mnist.test_images[:32].float() / 255
    with torch.no_grad():
        batched = predictive_log_prob(sample_logits(model, images, 32)).exp()
    looped = baselines.looped_predictive_probs(model, images, 32)
    # Equal up to the rounding of averaging 32 equal float32 numbers (measured max 7e-8).
    assert torch.allclose(batched, looped, rtol=0, atol=1e-6)
    assert torch.equal(batched.argmax(dim=1), looped.argmax(dim=1))


def test_looped_prediction_has_the_batched_mean_on_a_stochastic_model(fashion_mnist) -> None:
    """As for the EOT gradient: mean squared standardised difference about 1 (measured 1.01;
    6.9 when the looped side's network has half the noise std)."""
    model = thesis_model(STRONG_NOISE).eval()
    images = fashion_mnist.test_images[:16].float() / 255
    draws = 128
    with seeded(0), torch.no_grad():
        batched = predictive_log_prob(sample_logits(model, images, draws)).exp()
        singles = torch.softmax(sample_logits(model, images, draws), dim=-1)  # (K, B, classes)
    with seeded(1):
        looped = baselines.looped_predictive_probs(model, images, draws)
    variance = singles.var(dim=0)
    varying = variance > 1e-12
    assert varying.float().mean() > 0.5
    z2 = ((batched - looped)[varying] ** 2 / (2 * variance[varying] / draws)).mean().item()
    assert 0.6 < z2 < 1.6, z2
    assert torch.allclose(batched.sum(dim=1), torch.ones(16)) and torch.allclose(looped.sum(dim=1), torch.ones(16))
