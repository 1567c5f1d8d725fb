"""FGSM and the targeted iterative FGSM (Kurakin et al.) against independent computations and ART."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stochrelax.attacks import FGSM, IterativeFGSM
from stochrelax.attacks.fgsm import kurakin_steps
from stochrelax.nn.prediction import ROWS_PER_PASS
from stochrelax.nn.rng import seeded
from tests.attacks.support import accuracy, assert_in_budget, first_images, mean_accuracy


def _plain_gradient(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    leaf = images.clone().requires_grad_(True)
    (gradient,) = torch.autograd.grad(F.cross_entropy(model(leaf), labels, reduction="sum"), leaf)
    return gradient


@pytest.fixture(scope="module")
def art_classifier(relu_victim):
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(model=copy.deepcopy(relu_victim.model),  # ART writes .grad into the model it wraps
                             loss=torch.nn.CrossEntropyLoss(), input_shape=(1, 28, 28),
                             nb_classes=10, clip_values=(0.0, 1.0))


# --------------------------------------------------------------------------------------------
# FGSM


@pytest.mark.parametrize("eps", [0.03, 0.1])
def test_fgsm_is_the_closed_form_step(relu_victim, eps: float) -> None:
    model, images, labels = first_images(relu_victim)
    expected = (images + eps * _plain_gradient(model, images, labels).sign()).clamp(0, 1)
    adversarial = FGSM(model, eps=eps)(images, labels)
    assert torch.equal(adversarial, expected)
    assert_in_budget(adversarial, images, eps)


@pytest.mark.parametrize("eps", [0.03, 0.1])
def test_fgsm_matches_art_fast_gradient_method(relu_victim, art_classifier, eps: float) -> None:
    from art.attacks.evasion import FastGradientMethod

    model, images, labels = first_images(relu_victim)
    ours = FGSM(model, eps=eps)(images, labels)
    art = torch.from_numpy(FastGradientMethod(art_classifier, norm=np.inf, eps=eps)
                           .generate(images.numpy(), y=labels.numpy()))
    # Measured: identical images and accuracies (0.50 at eps 0.03, 0.23 at eps 0.1 on 100 images).
    assert abs(accuracy(model, ours, labels) - accuracy(model, art, labels)) <= 0.01
    assert (ours - art).abs().max().item() <= 1e-6
    assert accuracy(model, ours, labels) < accuracy(model, images, labels)


def test_fgsm_accuracy_falls_with_eps_and_never_exceeds_clean(relu_victim) -> None:
    model, images, labels = first_images(relu_victim)
    clean = accuracy(model, images, labels)
    epsilons = [0.0, 0.02, 0.05, 0.1, 0.2]
    adversarial = {eps: FGSM(model, eps=eps)(images, labels) for eps in epsilons}
    accuracies = [accuracy(model, adversarial[eps], labels) for eps in epsilons]
    # Measured: 0.68, 0.54, 0.41, 0.23, 0.11.
    assert torch.equal(adversarial[0.0], images) and accuracies[0] == clean
    assert all(a <= clean for a in accuracies)
    assert all(later <= earlier for earlier, later in zip(accuracies, accuracies[1:])), accuracies
    assert accuracies[-1] < clean - 0.3
    for eps in epsilons:
        assert_in_budget(adversarial[eps], images, eps)


def test_eot_fgsm_is_at_least_as_strong_as_single_draw_fgsm(stochastic_victim) -> None:
    model, images, labels = first_images(stochastic_victim)
    eps = 0.1
    with seeded(0):
        single = FGSM(model, eps=eps)(images, labels)
        eot = FGSM(model, eps=eps, eot_samples=16)(images, labels)
    clean_accuracy = mean_accuracy(model, images, labels)
    single_accuracy, eot_accuracy = mean_accuracy(model, single, labels), mean_accuracy(model, eot, labels)
    # Each accuracy is a mean over 8 × 100 stochastic predictions: standard error ≤ sqrt(0.25/800) ≈ 1.8 pp,
    # less with the common noise draws used here. Measured ≈ 0.65 clean, 0.41 single, 0.32 EOT.
    tolerance = 0.03
    assert eot_accuracy <= single_accuracy + tolerance, (clean_accuracy, single_accuracy, eot_accuracy)
    assert eot_accuracy < clean_accuracy - 0.15
    assert_in_budget(eot, images, eps)


def _eot_gradient_sign(model: torch.nn.Module, images: torch.Tensor, classes: torch.Tensor, draws: int) -> torch.Tensor:
    """sign ∇x Σ_k CE(f(x, ξ_k), c): K noise draws batched as the attacks draw them, in passes of
    as many whole draws as fit in ROWS_PER_PASS rows, each pass differentiated on its own."""
    per_pass = max(1, ROWS_PER_PASS // images.shape[0])
    gradient = torch.zeros_like(images)
    for start in range(0, draws, per_pass):
        count = min(per_pass, draws - start)
        leaf = images.repeat(count, 1, 1, 1).requires_grad_(True)
        loss = F.cross_entropy(model(leaf), classes.repeat(count), reduction="sum")
        gradient += torch.autograd.grad(loss, leaf)[0].view(count, *images.shape).sum(dim=0)
    return gradient.sign()


def test_eot_fgsm_is_the_closed_form_step_along_the_mean_gradient(stochastic_victim) -> None:
    model, images, labels = first_images(stochastic_victim, 20)
    eps, draws = 0.05, 16
    with seeded(4):
        expected = (images + eps * _eot_gradient_sign(model, images, labels, draws)).clamp(0, 1)
    with seeded(4):
        adversarial = FGSM(model, eps=eps, eot_samples=draws)(images, labels)
    assert torch.equal(adversarial, expected)


def test_eot_iterative_fgsm_follows_the_mean_gradient_to_the_target(stochastic_victim) -> None:
    model, images, labels = first_images(stochastic_victim, 10)
    eps, step, steps, draws = 0.05, 0.01, 3, 4
    with seeded(6):
        with torch.no_grad():  # the target first, from K draws of the clean images, as the attack does
            logits = model(images.repeat(draws, 1, 1, 1)).view(draws, len(images), -1)
        targets = _least_likely(torch.softmax(logits.double(), dim=-1).mean(dim=0), labels)
        expected = images.clone()
        for _ in range(steps):  # thesis eq. 4.5: descend the cross-entropy to the target, then project
            candidate = expected - step * _eot_gradient_sign(model, expected, targets, draws)
            expected = torch.min(torch.max(candidate, images - eps), images + eps).clamp(0, 1)
    with seeded(6):
        attack = IterativeFGSM(model, eps=eps, step_size=step, steps=steps, eot_samples=draws)
        adversarial = attack(images, labels)
    assert torch.equal(adversarial, expected)


def test_fgsm_inside_no_grad_and_leaves_the_model_alone(relu_victim) -> None:
    model, images, labels = first_images(relu_victim, 20)
    modes = [m.training for m in model.modules()]
    grads = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    outside = FGSM(model, eps=0.05)(images, labels)
    with torch.no_grad():
        inside = FGSM(model, eps=0.05)(images, labels)
    assert torch.equal(inside, outside) and not torch.equal(inside, images)
    assert [m.training for m in model.modules()] == modes
    for p, g in zip(model.parameters(), grads):
        assert (p.grad is None and g is None) or torch.equal(p.grad, g)


@pytest.mark.parametrize("eps", [-0.01, float("nan"), float("inf")])
def test_fgsm_rejects_invalid_eps(relu_victim, eps: float) -> None:
    with pytest.raises(ValueError, match="eps"):
        FGSM(relu_victim.model, eps=eps)


def test_fgsm_rejects_images_outside_pixel_range(relu_victim) -> None:
    model, images, labels = first_images(relu_victim, 4)
    with pytest.raises(ValueError):
        FGSM(model, eps=0.1)(images * 255, labels)


# --------------------------------------------------------------------------------------------
# Iterative FGSM (least-likely class)


@pytest.mark.parametrize("eps,steps", [(0.01, 3), (0.05, 15), (0.1, 29), (0.3, 80)])
def test_kurakin_step_count(eps: float, steps: int) -> None:
    # By hand: min(eps·255 + 4, 1.25·eps·255) = min(6.55, 3.19), min(16.75, 15.94), min(29.5, 31.9), min(80.5, 95.6).
    assert kurakin_steps(eps) == steps
    assert IterativeFGSM(torch.nn.Identity(), eps=eps).steps == steps


def test_iterative_fgsm_defaults_are_kurakins(relu_victim) -> None:
    model, images, labels = first_images(relu_victim, 20)
    attack = IterativeFGSM(model, eps=0.05)
    assert attack.step_size == pytest.approx(1 / 255) and attack.steps == 15 and attack.target == "least_likely"
    explicit = IterativeFGSM(model, eps=0.05, step_size=1 / 255, steps=15)
    assert torch.equal(attack(images, labels), explicit(images, labels))
    # The defaults matter: a different count gives a different result.
    assert not torch.equal(attack(images, labels), IterativeFGSM(model, eps=0.05, steps=5)(images, labels))


def _least_likely(probabilities: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """argmin over c ≠ y of p(c | x), by masking the true class with +inf."""
    masked = probabilities.clone()
    masked[torch.arange(len(labels)), labels] = float("inf")
    # No ties among the candidates, so argmin is unambiguous.
    smallest = masked.sort(dim=1).values
    assert bool((smallest[:, 0] < smallest[:, 1]).all())
    return masked.argmin(dim=1)


def test_least_likely_target_on_a_deterministic_model(relu_victim) -> None:
    model, images, labels = first_images(relu_victim)
    with torch.no_grad():
        probabilities = torch.softmax(model(images).double(), dim=1)
    targets = IterativeFGSM(model, eps=0.1).targets(images, labels)
    assert torch.equal(targets, _least_likely(probabilities, labels))
    assert not (targets == labels).any()
    # When the given label is itself the least likely class, the target is the next least likely one.
    ranked = probabilities.argsort(dim=1)
    worst = ranked[:, 0]
    assert torch.equal(IterativeFGSM(model, eps=0.1).targets(images, worst), ranked[:, 1])


def test_least_likely_target_uses_the_predictive_distribution_of_a_stochastic_model(stochastic_victim) -> None:
    model, images, labels = first_images(stochastic_victim, 50)
    draws = 8
    per_pass = max(1, ROWS_PER_PASS // len(images))
    with seeded(5), torch.no_grad():  # the same noise as the attack's passes of whole draws of the batch
        logits = torch.cat([model(images.repeat(min(per_pass, draws - start), 1, 1, 1))
                            for start in range(0, draws, per_pass)]).view(draws, len(images), -1)
    probabilities = torch.softmax(logits.double(), dim=-1).mean(dim=0)  # p(c | x) = mean over draws
    with seeded(5):
        targets = IterativeFGSM(model, eps=0.1, eot_samples=draws).targets(images, labels)
    assert torch.equal(targets, _least_likely(probabilities, labels))


def test_iterative_fgsm_reaches_the_least_likely_class(relu_victim) -> None:
    model, images, labels = first_images(relu_victim)
    eps = 0.2
    attack = IterativeFGSM(model, eps=eps)
    targets = attack.targets(images, labels)
    adversarial = attack(images, labels)
    with torch.no_grad():
        reached = (model(adversarial).argmax(dim=1) == targets).float().mean().item()
        before = (model(images).argmax(dim=1) == targets).float().mean().item()
    assert before == 0.0
    assert reached > 0.8, f"reached the target on {reached:.0%} (measured 96%)"
    assert_in_budget(adversarial, images, eps)


def test_iterative_fgsm_towards_a_given_target(relu_victim) -> None:
    model, images, labels = first_images(relu_victim)
    keep = labels != 3
    images, labels = images[keep][:30], labels[keep][:30]
    adversarial = IterativeFGSM(model, eps=0.2, target=3)(images, labels)
    with torch.no_grad():
        assert (model(adversarial).argmax(dim=1) == 3).float().mean().item() > 0.8
    assert_in_budget(adversarial, images, 0.2)


def test_a_target_equal_to_the_true_label_is_refused_with_the_count(relu_victim) -> None:
    model, images, labels = first_images(relu_victim, 40)
    count = int((labels == 3).sum())
    assert count > 0
    with pytest.raises(ValueError, match=rf"\b{count} of 40\b"):
        IterativeFGSM(model, eps=0.1, target=3)(images, labels)
    per_image = (labels + 1) % 10
    per_image[:2] = labels[:2]
    with pytest.raises(ValueError, match=r"\b2 of 40\b"):
        IterativeFGSM(model, eps=0.1, target=per_image)(images, labels)


@pytest.mark.parametrize("target", ["most_likely", "least-likely", ""])
def test_an_unknown_target_string_is_refused(relu_victim, target: str) -> None:
    with pytest.raises(ValueError, match="target"):
        IterativeFGSM(relu_victim.model, eps=0.1, target=target)


@pytest.mark.parametrize("eps", [0.0, 0.01, 0.05, 0.3])
def test_budget_is_respected_exactly(relu_victim, eps: float) -> None:
    model, images, labels = first_images(relu_victim, 20)
    for attack in (FGSM(model, eps=eps), IterativeFGSM(model, eps=eps, step_size=0.02, steps=6)):
        adversarial = attack(images, labels)
        assert_in_budget(adversarial, images, eps)
        if eps == 0.0:
            assert torch.equal(adversarial, images)


# --------------------------------------------------------------------------------------------
# Several budgets at once


def _forward_passes(model: torch.nn.Module):
    """A list that grows by one at every forward pass of ``model``, and the hook's handle."""
    passes: list[int] = []
    return passes, model.register_forward_hook(lambda module, inputs, output: passes.append(len(inputs[0])))


def test_fgsm_each_budget_is_fgsm_alone_from_the_same_generator_state(stochastic_victim) -> None:
    model, images, labels = first_images(stochastic_victim, 30)
    budgets = [0.1, 0.0, 0.03, 0.1]
    with seeded(3):
        each = FGSM(model, eot_samples=3).each(images, labels, budgets)
        after = torch.get_rng_state()
    for eps, adversarial in zip(budgets, each):
        with seeded(3):
            assert torch.equal(adversarial, FGSM(model, eps=eps, eot_samples=3)(images, labels))
            assert torch.equal(torch.get_rng_state(), after)


def test_iterative_fgsm_each_budget_is_the_attack_alone_for_fewer_gradients(stochastic_victim) -> None:
    model, images, labels = first_images(stochastic_victim, 30)
    budgets, draws = [0.03, 0.1, 0.0, 0.07, 0.03], 2
    with seeded(5):
        targets = IterativeFGSM(model, eot_samples=draws).targets(images, labels)
    passes, hook = _forward_passes(model)
    try:
        with seeded(9):
            each = IterativeFGSM(model, eot_samples=draws).toward_each(images, targets, budgets)
            after = torch.get_rng_state()
        shared = len(passes)
        alone_passes = []
        for eps, adversarial in zip(budgets, each):
            passes.clear()
            with seeded(9):
                alone = IterativeFGSM(model, eps=eps, eot_samples=draws).toward(images, targets)
                state = torch.get_rng_state()
            alone_passes.append(len(passes))
            assert torch.equal(adversarial, alone), f"eps {eps}"
            assert_in_budget(adversarial, images, eps)
            if eps == max(budgets):  # the generator ends where the longest run alone leaves it
                assert torch.equal(state, after)
    finally:
        hook.remove()
    assert [kurakin_steps(eps) for eps in budgets] == [9, 29, 1, 21, 9] == alone_passes
    # One trajectory until an iterate leaves a smaller ball: the 8th for eps 0.03 (7/255 < 0.03 < 8/255),
    # the 18th for eps 0.07; from there a branch needs its own gradients, (9 − 8) and (21 − 18). Eps 0 and
    # the repeated 0.03 need none: 29 + 1 + 3 passes instead of the 69 of the five runs alone.
    assert shared == 29 + 1 + 3
