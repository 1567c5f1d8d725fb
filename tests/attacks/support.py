"""Helpers shared by the attack tests: victim slices, accuracies, and the budget and no-side-effect checks."""

from __future__ import annotations

import numpy as np
import torch

from stochrelax.nn.rng import seeded

N = 100  # victim images used per test (the first N of the 200 test images)


def first_images(victim, n: int = N):
    """(model, images, labels) of the first ``n`` victim test images."""
    return victim.model, victim.images[:n], victim.labels[:n]


@torch.no_grad()
def accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    return (model(images).argmax(dim=1) == labels).float().mean().item()


@torch.no_grad()
def mean_accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, draws: int = 8,
                  seed: int = 123) -> float:
    """Accuracy averaged over ``draws`` single-draw predictions, with fixed noise (common random numbers)."""
    with seeded(seed):
        return float(np.mean([(model(images).argmax(dim=1) == labels).float().mean().item() for _ in range(draws)]))


def assert_in_budget(adversarial: torch.Tensor, images: torch.Tensor, eps: float) -> None:
    """Exactly inside [0, 1] and the L∞ ball (bounds computed as the projection computes them)."""
    assert adversarial.shape == images.shape and adversarial.dtype == images.dtype
    assert not adversarial.requires_grad
    assert bool((adversarial >= images - eps).all()) and bool((adversarial <= images + eps).all())
    assert bool((adversarial >= 0).all()) and bool((adversarial <= 1).all())


def snapshot(model: torch.nn.Module):
    """Training flag of every submodule and a copy of every parameter's .grad (or None)."""
    modes = [module.training for module in model.modules()]
    grads = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    return modes, grads


def assert_untouched(model: torch.nn.Module, before) -> None:
    """The model's modes and parameter gradients are as in the ``before`` snapshot."""
    modes, grads = snapshot(model)
    assert modes == before[0], "the attack changed the train/eval mode of some module"
    for after, previous in zip(grads, before[1]):
        assert (after is None) == (previous is None), "the attack created or removed a parameter .grad"
        if after is not None:
            assert torch.equal(after, previous), "the attack changed a parameter .grad"
