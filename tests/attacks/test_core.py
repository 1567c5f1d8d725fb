"""The pieces every attack composes: projection, random start, DLR loss, EOT gradient, checks.

Each property is checked against an independent computation (plain autograd, a hand
computation, or the defining inequalities), never against the function itself.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from stochrelax.attacks.core import (BestIterate, check_eps, check_images, cross_entropy_loss, dlr_loss,
                                     expected_gradient, project_linf, random_start)
from stochrelax.models.allconv import build_model
from stochrelax.nn.layers import StochasticActivation
from stochrelax.nn.rng import seeded
from stochrelax.rundir.config import parse_config
from tests.attacks.support import N, assert_untouched, snapshot

FEW = settings(max_examples=25, deadline=None, database=None, derandomize=True)


def _estimators(model: torch.nn.Module) -> list[str | None]:
    return [m.estimator for m in model.modules() if isinstance(m, StochasticActivation)]


# --------------------------------------------------------------------------------------------
# project_linf


@st.composite
def _projection_case(draw):
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=4, max_size=4)))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    eps = draw(st.one_of(st.just(0.0), st.floats(0.0, 1.0, allow_nan=False), st.sampled_from([1 / 255, 0.03, 0.3])))
    spread = draw(st.floats(0.0, 2.0))  # how far the candidate strays from the images
    seed = draw(st.integers(0, 2**31 - 1))
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(shape, generator=generator, dtype=dtype)
    # Some pixels exactly at the borders of [0, 1], where clipping and the ball interact.
    images = torch.where(torch.rand(shape, generator=generator) < 0.2, images.round(), images)
    candidate = images + spread * (2 * torch.rand(shape, generator=generator, dtype=dtype) - 1)
    return images, candidate, eps


@FEW
@given(_projection_case())
def test_project_linf_lands_in_the_ball_and_in_pixel_range_exactly(case) -> None:
    images, candidate, eps = case
    projected = project_linf(candidate, images, eps)
    assert projected.shape == images.shape and projected.dtype == images.dtype
    # No tolerance: the bounds are the same float expressions a caller would write.
    assert bool((projected >= images - eps).all()) and bool((projected <= images + eps).all())
    assert bool((projected >= 0).all()) and bool((projected <= 1).all())


@FEW
@given(_projection_case())
def test_project_linf_is_the_nearest_point_and_the_identity_inside(case) -> None:
    images, candidate, eps = case
    projected = project_linf(candidate, images, eps)
    # Independent computation: clamp each coordinate into [max(x − eps, 0), min(x + eps, 1)].
    low = torch.clamp(images - eps, min=0.0)
    high = torch.clamp(images + eps, max=1.0)
    assert torch.equal(projected, torch.max(torch.min(candidate, high), low))
    inside = (candidate >= images - eps) & (candidate <= images + eps) & (candidate >= 0) & (candidate <= 1)
    assert torch.equal(projected[inside], candidate[inside])
    assert torch.equal(project_linf(projected, images, eps), projected)  # idempotent


def test_project_linf_identity_on_a_whole_batch_already_inside() -> None:
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(8, 1, 6, 6, generator=generator)
    inside = (images + 0.05 * (2 * torch.rand(images.shape, generator=generator) - 1)).clamp(0, 1)
    assert torch.equal(project_linf(inside, images, 0.05), inside)


# --------------------------------------------------------------------------------------------
# random_start


@FEW
@given(eps=st.floats(0.0, 0.5), seed=st.integers(0, 2**31 - 1))
def test_random_start_stays_in_the_ball_and_pixel_range(eps: float, seed: int) -> None:
    images = torch.rand(4, 1, 7, 7, generator=torch.Generator().manual_seed(seed))
    images[0] = 0.0  # borders of the pixel range
    images[1] = 1.0
    start = random_start(images, eps, torch.Generator().manual_seed(seed + 1))
    assert bool((start >= images - eps).all()) and bool((start <= images + eps).all())
    assert bool((start >= 0).all()) and bool((start <= 1).all())


def test_random_start_is_uniform_over_the_ball() -> None:
    eps, images = 0.1, torch.full((50, 1, 28, 28), 0.5)  # far from the pixel borders: no clipping
    delta = random_start(images, eps, torch.Generator().manual_seed(0)) - images
    n = delta.numel()  # 39,200 draws of U(−eps, eps): mean 0 ± eps/sqrt(3n), std eps/sqrt(3)
    assert abs(delta.mean().item()) < 5 * eps / math.sqrt(3 * n)
    assert delta.std().item() == pytest.approx(eps / math.sqrt(3), rel=0.02)
    assert delta.min().item() < -0.99 * eps and delta.max().item() > 0.99 * eps


def test_random_start_is_reproducible_from_a_generator() -> None:
    images = torch.rand(6, 1, 5, 5, generator=torch.Generator().manual_seed(1))
    with seeded(1):
        first = random_start(images, 0.1, torch.Generator().manual_seed(42))
    with seeded(2):  # a different global state must not matter
        second = random_start(images, 0.1, torch.Generator().manual_seed(42))
    other = random_start(images, 0.1, torch.Generator().manual_seed(43))
    assert torch.equal(first, second)
    assert not torch.equal(first, other)


# --------------------------------------------------------------------------------------------
# dlr_loss


def test_dlr_loss_matches_a_hand_computation() -> None:
    # Sorted logits are 3, 1, 0.5, −1: z_π1 − z_π3 = 2.5 for every row.
    logits = torch.tensor([[3.0, 1.0, 0.5, -1.0]] * 4)
    labels = torch.tensor([0, 1, 2, 3])
    expected = torch.tensor([
        -(3.0 - 1.0) / 2.5,   # true class on top: margin to the runner-up, −0.8
        -(1.0 - 3.0) / 2.5,   # true class second: margin to the top, +0.8
        -(0.5 - 3.0) / 2.5,   # +1.0
        -(-1.0 - 3.0) / 2.5,  # +1.6
    ])
    torch.testing.assert_close(dlr_loss(logits, labels), expected)


def test_dlr_loss_on_unsorted_logits_and_ties() -> None:
    logits = torch.tensor([[0.0, 4.0, -2.0, 1.0, 2.0],   # sorted 4, 2, 1: denominator 3
                           [2.0, 2.0, 1.0, 0.0, -1.0]])  # tie on top: the margin is 0
    labels = torch.tensor([3, 0])
    torch.testing.assert_close(dlr_loss(logits, labels), torch.tensor([-(1.0 - 4.0) / 3.0, 0.0]))


def test_dlr_loss_is_invariant_to_shifting_and_rescaling_the_logits() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(64, 10, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 10, (64,), generator=generator)
    reference = dlr_loss(logits, labels)
    for shift, scale in [(5.0, 1.0), (-3.0, 1.0), (0.0, 7.5), (2.0, 0.01)]:
        torch.testing.assert_close(dlr_loss(scale * logits + shift, labels), reference)
    # Scale-invariant, but not sign-invariant: a negative scale reverses the ranking.
    assert not torch.allclose(dlr_loss(-logits, labels), reference)


# --------------------------------------------------------------------------------------------
# expected_gradient


def test_expected_gradient_on_a_deterministic_model_is_the_plain_gradient(relu_victim) -> None:
    model, images, labels = relu_victim.model, relu_victim.images[:N], relu_victim.labels[:N]
    estimate = expected_gradient(model, images, labels, cross_entropy_loss)
    leaf = images.clone().requires_grad_(True)
    logits = model(leaf)
    (gradient,) = torch.autograd.grad(F.cross_entropy(logits, labels, reduction="sum"), leaf)
    torch.testing.assert_close(estimate.gradient, gradient, rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(estimate.loss, F.cross_entropy(logits, labels, reduction="none").detach())
    torch.testing.assert_close(estimate.logits, logits.detach()[None])
    assert estimate.gradient.abs().sum() > 0


@pytest.mark.parametrize("eot_samples,max_rows", [(4, 16384), (5, 30), (3, 7)])
def test_eot_and_chunking_on_a_deterministic_model_change_nothing(relu_victim, eot_samples: int,
                                                                   max_rows: int) -> None:
    # max_rows 30 with 20 images forces one draw per pass (5 passes); 7 < 20 rows forces it too.
    model, images, labels = relu_victim.model, relu_victim.images[:20], relu_victim.labels[:20]
    single = expected_gradient(model, images, labels, cross_entropy_loss)
    eot = expected_gradient(model, images, labels, cross_entropy_loss, eot_samples=eot_samples, max_rows=max_rows)
    torch.testing.assert_close(eot.gradient, single.gradient, rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(eot.loss, single.loss, rtol=1e-5, atol=1e-7)
    assert eot.logits.shape == (eot_samples, 20, 10)
    torch.testing.assert_close(eot.logits, single.logits.expand(eot_samples, -1, -1), rtol=1e-5, atol=1e-6)


def test_chunked_eot_on_a_stochastic_model_draws_fresh_noise_in_every_chunk(stochastic_victim) -> None:
    model, images, labels = stochastic_victim.model, stochastic_victim.images[:10], stochastic_victim.labels[:10]
    with seeded(0):
        estimate = expected_gradient(model, images, labels, cross_entropy_loss, eot_samples=6, max_rows=20)
    assert estimate.logits.shape == (6, 10, 10)
    distinct = {tuple(row.flatten().tolist()) for row in estimate.logits}
    assert len(distinct) == 6  # three passes of two draws, every draw different
    # The reported loss is the mean over the K draws of the per-draw loss.
    per_draw = torch.stack([F.cross_entropy(z, labels, reduction="none") for z in estimate.logits])
    torch.testing.assert_close(estimate.loss, per_draw.mean(dim=0))


def test_eot_gradient_variance_shrinks_as_one_over_k_and_its_mean_is_unbiased(stochastic_victim) -> None:
    model, images, labels = stochastic_victim.model, stochastic_victim.images[:10], stochastic_victim.labels[:10]
    with seeded(0):
        single = torch.stack([expected_gradient(model, images, labels, cross_entropy_loss).gradient
                              for _ in range(64)])
        eot = torch.stack([expected_gradient(model, images, labels, cross_entropy_loss, eot_samples=16).gradient
                           for _ in range(8)])
    # Total variance over all pixels; independent draws give a ratio of 1/16 ≈ 0.06.
    ratio = (eot.var(dim=0).sum() / single.var(dim=0).sum()).item()
    assert ratio < 0.2, f"K=16 vs K=1 gradient variance ratio {ratio:.3f}, expected ≈ 1/16"
    assert ratio > 0.02, f"variance ratio {ratio:.3f} far below 1/16: the draws are not independent"
    # Unbiased: both means estimate ∇E[L]; under that hypothesis the squared distance of the
    # means has expectation Σ var/64 + Σ var_K/8 (measured ≈ 1×). Threshold 3×.
    expected_sq = (single.var(dim=0) / 64 + eot.var(dim=0) / 8).sum()
    difference = single.mean(dim=0) - eot.mean(dim=0)
    statistic = (difference.pow(2).sum() / expected_sq).item()
    assert statistic < 3.0, f"EOT mean differs from the single-draw mean by {statistic:.2f}× its noise"
    # The test has power: an EOT mean off by a factor of 0.5 would be caught.
    biased = (single.mean(dim=0) - 0.5 * eot.mean(dim=0)).pow(2).sum() / expected_sq
    assert biased.item() > 3.0


def test_bpda_gives_an_input_gradient_through_score_function_sign_units(sign_score_victim) -> None:
    model, images, labels = sign_score_victim.model, sign_score_victim.images[:20], sign_score_victim.labels[:20]
    assert set(_estimators(model)) == {"score"}
    # Without BPDA a score-function network passes no gradient to its input at all.
    leaf = images.clone().requires_grad_(True)
    with torch.enable_grad():
        (plain,) = torch.autograd.grad(F.cross_entropy(model(leaf), labels), leaf, allow_unused=True)
    assert plain is None or not plain.any()

    seen: list[list[bool]] = []

    def proxies_set() -> list[bool]:
        return [m.gradient_proxy is not None for m in model.modules() if isinstance(m, StochasticActivation)]

    def recording_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        seen.append(proxies_set())
        return cross_entropy_loss(logits, targets)

    before = snapshot(model)
    with seeded(0):
        estimate = expected_gradient(model, images, labels, recording_loss, eot_samples=2)
    assert (estimate.gradient.flatten(1).abs().sum(dim=1) > 0).all(), "an image got a zero BPDA gradient"
    assert seen and all(all(s) for s in seen), "units did not differentiate through the proxy"
    assert not any(proxies_set()) and set(_estimators(model)) == {"score"}, "units not restored"
    assert_untouched(model, before)


def test_estimators_are_restored_even_when_the_loss_raises(sign_score_victim) -> None:
    model = sign_score_victim.model

    def broken_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        expected_gradient(model, sign_score_victim.images[:2], sign_score_victim.labels[:2], broken_loss)
    assert set(_estimators(model)) == {"score"}


@pytest.mark.parametrize("victim", ["relu_victim", "stochastic_victim", "sign_score_victim"])
def test_expected_gradient_leaves_mode_and_parameter_grads_alone_on_the_victims(request, victim: str) -> None:
    fixture = request.getfixturevalue(victim)
    model = fixture.model  # training left (zeroed) .grad tensors on its parameters: they must not change
    before = snapshot(model)
    assert not any(before[0]), "victims are in eval mode"
    with seeded(0):
        expected_gradient(model, fixture.images[:8], fixture.labels[:8], cross_entropy_loss, eot_samples=2)
    assert_untouched(model, before)
    # And on a copy without any .grad, none appears.
    fresh = copy.deepcopy(model)
    for parameter in fresh.parameters():
        parameter.grad = None
    with seeded(0):
        expected_gradient(fresh, fixture.images[:8], fixture.labels[:8], cross_entropy_loss, eot_samples=2)
    assert all(p.grad is None for p in fresh.parameters())


def test_expected_gradient_does_not_switch_a_training_model_to_eval() -> None:
    config = parse_config({"model": {"activation": {"kind": "sign", "noise": "logistic", "std": 0.5,
                                                    "estimator": "score"}}})
    with seeded(0):
        model = build_model(config.model)  # fresh modules are in train mode
        images = torch.rand(4, 1, 28, 28)
        before = snapshot(model)
        estimate = expected_gradient(model, images, torch.tensor([0, 1, 2, 3]), cross_entropy_loss, eot_samples=3)
    assert all(before[0])
    assert_untouched(model, before)
    assert all(p.grad is None for p in model.parameters())
    assert set(_estimators(model)) == {"score"}
    assert estimate.gradient.shape == images.shape


def test_expected_gradient_rejects_zero_draws(relu_victim) -> None:
    with pytest.raises(ValueError, match="eot_samples"):
        expected_gradient(relu_victim.model, relu_victim.images[:2], relu_victim.labels[:2], cross_entropy_loss,
                          eot_samples=0)


# --------------------------------------------------------------------------------------------
# check_images, check_eps


def _rejects(function, *args) -> bool:
    try:
        function(*args)
    except ValueError:
        return True
    return False


def test_check_images_accepts_a_valid_batch() -> None:
    images = torch.rand(3, 1, 4, 4)
    images[0] = 0.0
    images[1] = 1.0
    check_images(images, torch.zeros(3, dtype=torch.long))


@pytest.mark.parametrize("images,labels", [
    (torch.full((2, 1, 4, 4), 1.5), torch.zeros(2, dtype=torch.long)),          # above 1
    (torch.full((2, 1, 4, 4), -0.01), torch.zeros(2, dtype=torch.long)),        # below 0
    (torch.full((2, 1, 4, 4), 255.0), torch.zeros(2, dtype=torch.long)),        # 0…255 pixels
    (torch.rand(2, 4, 4), torch.zeros(2, dtype=torch.long)),                    # no channel axis
    (torch.rand(2, 1, 4, 4), torch.zeros(3, dtype=torch.long)),                 # label count
    (torch.rand(2, 1, 4, 4), torch.zeros(2, 1, dtype=torch.long)),              # label shape
], ids=["above-one", "below-zero", "uint8-scale", "3d", "label-count", "label-shape"])
def test_check_images_rejects_bad_batches(images: torch.Tensor, labels: torch.Tensor) -> None:
    assert _rejects(check_images, images, labels)


def test_check_images_rejects_a_single_pixel_out_of_range() -> None:
    images = torch.rand(2, 1, 4, 4) * 0.5
    images[1, 0, 3, 3] = 1.0001
    assert _rejects(check_images, images, torch.zeros(2, dtype=torch.long))


def test_check_images_rejects_nan_pixels() -> None:
    images = torch.rand(2, 1, 4, 4)
    images[0, 0, 0, 0] = float("nan")
    assert _rejects(check_images, images, torch.zeros(2, dtype=torch.long))


@pytest.mark.parametrize("eps", [-0.1, -1e-9, float("inf"), float("-inf"), float("nan")])
def test_check_eps_rejects_invalid_budgets(eps: float) -> None:
    with pytest.raises(ValueError, match="eps"):
        check_eps(eps)


@pytest.mark.parametrize("eps", [0, 0.0, 0.03, 1])
def test_check_eps_returns_valid_budgets_as_floats(eps) -> None:
    result = check_eps(eps)
    assert isinstance(result, float) and result == eps


def test_best_iterate_keeps_the_last_misclassified_else_the_highest_loss_point() -> None:
    points = [torch.full((3, 1, 1, 1), float(value)) for value in range(4)]  # iterate t is the constant t
    losses = [torch.tensor([0.0, 0.0, 0.0]), torch.tensor([2.0, 1.0, 1.0]), torch.tensor([1.0, 3.0, 0.5]),
              torch.tensor([1.5, 0.5, 0.2])]
    wrong = [torch.tensor([False, False, False]), torch.tensor([False, False, True]),
             torch.tensor([False, False, False]), torch.tensor([False, False, True])]
    best = BestIterate(points[0], losses[0], wrong[0])
    improved = [best.update(point, loss, misclassified).tolist()
                for point, loss, misclassified in zip(points[1:], losses[1:], wrong[1:])]
    assert improved == [[True, True, True], [False, True, False], [False, False, False]]
    # example 0: highest loss at t=1; example 1: at t=2; example 2: misclassified last at t=3 (despite a lower loss)
    assert best.result().flatten().tolist() == [1.0, 2.0, 3.0]
    assert best.loss.tolist() == [2.0, 3.0, 1.0]
