"""PGD: cross-checked with ART, the best iterate returned, stronger than FGSM, reproducible, inside its budget,
BPDA on sign units."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from stochrelax.attacks import FGSM, PGD
from stochrelax.attacks.core import random_start
from stochrelax.nn.rng import seeded
from tests.attacks.support import accuracy, assert_in_budget, first_images, mean_accuracy, snapshot


@pytest.fixture(scope="module")
def art_classifier(relu_victim):
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(model=copy.deepcopy(relu_victim.model),  # ART writes .grad into the model it wraps
                             loss=torch.nn.CrossEntropyLoss(), input_shape=(1, 28, 28),
                             nb_classes=10, clip_values=(0.0, 1.0))


def _art_pgd(classifier, images: torch.Tensor, labels: torch.Tensor, eps: float, steps: int,
             random_init: int) -> torch.Tensor:
    from art.attacks.evasion import ProjectedGradientDescent

    attack = ProjectedGradientDescent(classifier, norm=np.inf, eps=eps, eps_step=2.5 * eps / steps, max_iter=steps,
                                      num_random_init=random_init, targeted=False, verbose=False)
    state = np.random.get_state()  # ART draws its random start from numpy's global generator
    np.random.seed(0)
    try:
        with seeded(0):
            return torch.from_numpy(attack.generate(images.numpy(), y=labels.numpy()))
    finally:
        np.random.set_state(state)


class Recording(torch.nn.Module):
    """Wraps a model; records the rows and the logits of each forward pass."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model, self.passes = model, []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.model(images)
        self.passes.append((images.detach().clone(), logits.detach().clone()))
        return logits


class Bump(torch.nn.Module):
    """Two classes on one pixel x: logits (0, height − 10 (x − 0.6)²), so the loss of class 0 peaks at x = 0.6."""

    def __init__(self, height: float) -> None:
        super().__init__()
        self.height = height

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.flatten(1).sum(dim=1)  # (B,)
        return torch.stack([torch.zeros_like(x), self.height - 10 * (x - 0.6) ** 2], dim=1)  # (B, 2)


def test_pgd_without_random_start_matches_art(relu_victim, art_classifier) -> None:
    model, images, labels = first_images(relu_victim)
    eps, steps = 0.05, 20
    ours = PGD(model, eps=eps, steps=steps, random_start=False)(images, labels)
    art = _art_pgd(art_classifier, images, labels, eps, steps, random_init=0)
    # Same deterministic iterates, but ART returns the last one: where it is misclassified, it is
    # also our choice (measured max |difference| 9e-9); elsewhere we may return an earlier,
    # misclassified or higher-loss, iterate (measured: 0.006 away; accuracy 0.30 for both).
    broken = model(art).argmax(dim=1) != labels
    assert (ours[broken] - art[broken]).abs().max().item() <= 1e-5
    assert accuracy(model, ours, labels) <= accuracy(model, art, labels)


def test_pgd_with_random_start_matches_art_accuracy(relu_victim, art_classifier) -> None:
    model, images, labels = first_images(relu_victim)
    eps, steps = 0.05, 20
    ours = PGD(model, eps=eps, steps=steps, generator=torch.Generator().manual_seed(0))(images, labels)
    art = _art_pgd(art_classifier, images, labels, eps, steps, random_init=1)
    ours_accuracy, art_accuracy = accuracy(model, ours, labels), accuracy(model, art, labels)
    # The two random starts differ (different generators), so single images can end on different
    # sides of the boundary; over seeds 0–4 both gave 0.28–0.30 on these 100 images. A 3 pp
    # tolerance is three images, above that seed-to-seed spread.
    assert abs(ours_accuracy - art_accuracy) <= 0.03, (ours_accuracy, art_accuracy)
    assert ours_accuracy < accuracy(model, images, labels) - 0.2
    assert_in_budget(ours, images, eps)


@pytest.mark.parametrize("eps", [0.03, 0.05, 0.1])
def test_pgd_is_never_weaker_than_fgsm(relu_victim, eps: float) -> None:
    model, images, labels = first_images(relu_victim)
    pgd = PGD(model, eps=eps, steps=20, generator=torch.Generator().manual_seed(0))(images, labels)
    fgsm = FGSM(model, eps=eps)(images, labels)
    # Measured (PGD vs FGSM): 0.44 vs 0.50, 0.29 vs 0.41, 0.07 vs 0.23.
    assert accuracy(model, pgd, labels) <= accuracy(model, fgsm, labels)
    assert_in_budget(pgd, images, eps)


def test_default_steps_and_step_size(relu_victim) -> None:
    model, images, labels = first_images(relu_victim, 20)
    attack = PGD(model, eps=0.1)
    assert attack.steps == 20 and attack.step_size == pytest.approx(2.5 * 0.1 / 20) and attack.random_start
    assert PGD(model, eps=0.08, steps=40).step_size == pytest.approx(2.5 * 0.08 / 40)
    default = PGD(model, eps=0.08, steps=10, random_start=False)(images, labels)
    explicit = PGD(model, eps=0.08, steps=10, step_size=2.5 * 0.08 / 10, random_start=False)(images, labels)
    assert torch.equal(default, explicit)
    smaller = PGD(model, eps=0.08, steps=10, step_size=0.001, random_start=False)(images, labels)
    assert not torch.equal(default, smaller)


def test_without_random_start_pgd_is_deterministic(relu_victim) -> None:
    model, images, labels = first_images(relu_victim, 20)
    attack = PGD(model, eps=0.05, steps=5, random_start=False)
    with seeded(1):
        first = attack(images, labels)
    with seeded(2):
        second = attack(images, labels)
    assert torch.equal(first, second) and not torch.equal(first, images)


def test_pgd_is_reproducible_with_a_generator(relu_victim) -> None:
    model, images, labels = first_images(relu_victim, 20)
    with seeded(1):
        first = PGD(model, eps=0.05, steps=3, generator=torch.Generator().manual_seed(7))(images, labels)
    with seeded(2):  # the global generator must not matter
        second = PGD(model, eps=0.05, steps=3, generator=torch.Generator().manual_seed(7))(images, labels)
    other = PGD(model, eps=0.05, steps=3, generator=torch.Generator().manual_seed(8))(images, labels)
    assert torch.equal(first, second)
    assert not torch.equal(first, other)


def test_a_single_step_from_the_random_start_is_the_projected_sign_step(relu_victim) -> None:
    model, images, labels = first_images(relu_victim, 20)
    eps, step = 0.05, 0.02
    start = random_start(images, eps, torch.Generator().manual_seed(3))
    leaf = start.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(torch.nn.functional.cross_entropy(model(leaf), labels, reduction="sum"), leaf)
    expected = torch.min(torch.max(start + step * gradient.sign(), images - eps), images + eps).clamp(0, 1)
    attack = PGD(model, eps=eps, steps=1, step_size=step, generator=torch.Generator().manual_seed(3))
    assert torch.equal(attack(images, labels), expected)


def test_eot_pgd_follows_the_mean_gradient(stochastic_victim) -> None:
    model, images, labels = first_images(stochastic_victim, 10)
    eps, step, steps, draws = 0.05, 0.02, 2, 4
    with seeded(3):
        expected = [images.clone()]  # x_0 … x_T
        for _ in range(steps):  # K draws in one batched pass of K·B rows, as the attack draws them
            leaf = expected[-1].clone().requires_grad_(True)
            loss = torch.nn.functional.cross_entropy(model(leaf.repeat(draws, 1, 1, 1)), labels.repeat(draws),
                                                     reduction="sum")
            (gradient,) = torch.autograd.grad(loss, leaf)
            expected.append(torch.min(torch.max(expected[-1] + step * gradient.sign(), images - eps),
                                      images + eps).clamp(0, 1))
    recording = Recording(model)
    with seeded(3):
        adversarial = PGD(recording, eps=eps, steps=steps, step_size=step, random_start=False,
                          eot_samples=draws)(images, labels)
    assert [len(rows) for rows, _ in recording.passes] == [draws * len(images)] * (steps + 1)  # x_T evaluated too
    for (rows, _), iterate in zip(recording.passes, expected):
        assert torch.equal(rows, iterate.repeat(draws, 1, 1, 1))
    returned = (adversarial[None] == torch.stack(expected)).flatten(2).all(dim=2)  # (T + 1, B)
    assert bool(returned.any(dim=0).all())  # each example gets one of its iterates


@pytest.mark.parametrize("height, start, steps, returned", [
    (-1.0, 0.3, 2, 0.55),  # iterates 0.3, 0.55, 0.8 (overshot): the highest-loss one, not the last
    (-1.0, 0.59, 1, 0.59),  # 0.59, 0.84: the start
    (-1.0, 0.3, 1, 0.55),  # 0.3, 0.55: the final iterate, reached by the last step
    (1.0, 0.3, 2, 0.8),  # all misclassified: the last one, though 0.55 has the higher loss
])
def test_pgd_returns_the_best_iterate(height: float, start: float, steps: int, returned: float) -> None:
    # Sign steps of 0.25 overshoot the peak at 0.6 and oscillate around it; the class-1 logit
    # stays below 0 (never misclassified) for height −1 and above it for height 1.
    images, labels = torch.full((1, 1, 1, 1), start), torch.zeros(1, dtype=torch.long)
    adversarial = PGD(Bump(height), eps=0.5, steps=steps, step_size=0.25, random_start=False)(images, labels)
    assert adversarial.item() == pytest.approx(returned, abs=1e-6)


def test_pgd_returns_the_last_misclassified_or_highest_loss_iterate_of_a_network(relu_victim) -> None:
    model, images, labels = first_images(relu_victim, 32)
    recording = Recording(model)
    # Steps of eps overshoot: the final iterate is not the one to return for 3 of these 32 (seeds 1-4: 2-6).
    adversarial = PGD(recording, eps=0.05, steps=5, step_size=0.05,
                      generator=torch.Generator().manual_seed(0))(images, labels)
    iterates = torch.stack([rows for rows, _ in recording.passes])  # (T + 1, B, C, H, W)
    logits = torch.stack([scores for _, scores in recording.passes])  # (T + 1, B, classes)
    losses = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.repeat(len(logits)),
                                               reduction="none").view(len(logits), -1)  # (T + 1, B)
    wrong = logits.argmax(dim=2) != labels  # (T + 1, B)
    last_wrong = len(wrong) - 1 - wrong.flip(0).int().argmax(dim=0)  # (B,), meaningful where any is wrong
    chosen = torch.where(wrong.any(dim=0), last_wrong, losses.argmax(dim=0))  # (B,)
    assert torch.equal(adversarial, iterates[chosen, torch.arange(len(images))])
    assert not torch.equal(adversarial, iterates[-1])


@settings(max_examples=10, deadline=None, database=None, derandomize=True)
@given(eps=st.floats(0.0, 0.5, allow_nan=False), steps=st.integers(1, 3), step_scale=st.floats(0.1, 3.0),
       start=st.booleans(), seed=st.integers(0, 1000))
def test_budget_is_exact_for_random_eps(relu_victim, eps: float, steps: int, step_scale: float, start: bool,
                                        seed: int) -> None:
    model, images, labels = first_images(relu_victim, 16)
    attack = PGD(model, eps=eps, steps=steps, step_size=step_scale * eps, random_start=start,
                 generator=torch.Generator().manual_seed(seed))
    assert_in_budget(attack(images, labels), images, eps)


def test_pgd_with_bpda_defeats_score_function_sign_units(sign_score_victim) -> None:
    model, images, labels = first_images(sign_score_victim)
    eps = 0.2
    with seeded(2):
        adversarial = PGD(model, eps=eps, steps=10, generator=torch.Generator().manual_seed(0))(images, labels)
    noise = random_start(images, eps, torch.Generator().manual_seed(5))  # a random point of the same ball
    clean, attacked, random = (mean_accuracy(model, x, labels) for x in (images, adversarial, noise))
    # Measured: clean ≈ 0.26, random noise ≈ 0.25, PGD ≈ 0.09 (accuracy over 8 draws each).
    assert attacked < 0.5 * clean, (clean, attacked)
    assert attacked < random - 0.08, (random, attacked)
    assert {m.estimator for m in model.modules() if hasattr(m, "estimator")} == {"score"}
    assert_in_budget(adversarial, images, eps)


def test_pgd_works_inside_no_grad(relu_victim) -> None:
    model, images, labels = first_images(relu_victim, 20)
    outside = PGD(model, eps=0.05, steps=3, generator=torch.Generator().manual_seed(0))(images, labels)
    with torch.no_grad():
        inside = PGD(model, eps=0.05, steps=3, generator=torch.Generator().manual_seed(0))(images, labels)
    assert torch.equal(inside, outside)
    assert accuracy(model, inside, labels) < accuracy(model, images, labels)


@pytest.mark.parametrize("victim", ["relu_victim", "sign_score_victim"])
def test_pgd_leaves_model_mode_and_parameter_grads_alone(request, victim: str) -> None:
    model, images, labels = first_images(request.getfixturevalue(victim), 16)
    modes, grads = snapshot(model)
    with seeded(0):
        PGD(model, eps=0.05, steps=2, eot_samples=2)(images, labels)
    after_modes, after_grads = snapshot(model)
    assert after_modes == modes
    for after, before in zip(after_grads, grads):
        assert (after is None and before is None) or torch.equal(after, before)


@pytest.mark.parametrize("steps", [0, -1])
def test_pgd_rejects_fewer_than_one_step(relu_victim, steps: int) -> None:
    with pytest.raises(ValueError, match="steps"):
        PGD(relu_victim.model, eps=0.1, steps=steps)


@pytest.mark.parametrize("eps", [-0.1, float("nan"), float("inf")])
def test_pgd_rejects_invalid_eps(relu_victim, eps: float) -> None:
    with pytest.raises(ValueError, match="eps"):
        PGD(relu_victim.model, eps=eps)
