"""The plain alternatives: the usual way to do what stochrelax does, written the usual way.

A per-sample ``Dataset`` behind a ``DataLoader`` and a training loop over it; EOT and
Monte Carlo prediction as Python loops of K forward passes; IBM's
adversarial-robustness-toolbox wrapping the same network. Each computes what stochrelax
computes (``tests/benchmarks/test_baselines.py`` checks it), so that a row's ratio
compares speed, never different work.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, RandomSampler

from stochrelax.attacks import PGD
from stochrelax.attacks.core import GradientEstimate, LossFn, cross_entropy_loss
from stochrelax.nn.estimators import MovingAverageBaseline, score_function_surrogate
from stochrelax.nn.layers import straight_through_gradients
from stochrelax.nn.prediction import collect_log_prob

if TYPE_CHECKING:
    from art.estimators.classification import PyTorchClassifier

__all__ = ["PixelDataset", "plain_loader", "plain_train_epoch", "looped_expected_gradient", "LoopedEOTPGD",
           "looped_predictive_probs", "art_classifier"]


class PixelDataset(Dataset):
    """The usual ``Dataset``: one float32 [0, 1] image (1, 28, 28) and its label per ``__getitem__``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index].to(torch.float32).div_(255.0), int(self.labels[index])


def plain_loader(images: torch.Tensor, labels: torch.Tensor, batch_size: int = 64,
                 order: torch.Generator | None = None) -> DataLoader:
    """``DataLoader(PixelDataset(...), batch_size, shuffle=True)``.

    Written with the ``RandomSampler`` that ``shuffle=True`` builds, so that its order can
    come from ``order`` (the same permutation as :func:`stochrelax.data.fashion_mnist.batches` draws from
    a generator in the same state); the loader's own seed draw comes from a separate
    generator, so neither touches torch's global generator (the networks' noise).
    """
    dataset = PixelDataset(images, labels)
    return DataLoader(dataset, batch_size=batch_size, sampler=RandomSampler(dataset, generator=order),
                      generator=torch.Generator().manual_seed(0))


def plain_train_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                      baseline: MovingAverageBaseline | None = None) -> list[float]:
    """One epoch written the usual way; returns each step's mean loss (``loss.item()``).

    Cross-entropy of one pass; for score-function sign units the usual surrogate
    L + (L − b)·log p(y) with a moving-average baseline b, as :func:`stochrelax.training.loop.fit`
    computes it with one noise draw.
    """
    baseline = baseline if baseline is not None else MovingAverageBaseline()
    model.train()
    losses = []
    for images, labels in loader:
        optimizer.zero_grad()
        logits = model(images)
        loss = F.cross_entropy(logits, labels, reduction="none")
        log_prob = collect_log_prob(model)
        objective = score_function_surrogate(loss, log_prob, baseline.value)
        objective.backward()
        optimizer.step()
        mean_loss = loss.mean().item()
        if log_prob is not None:
            baseline.update(mean_loss)
        losses.append(mean_loss)
    return losses


def looped_expected_gradient(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                             loss_fn: LossFn = cross_entropy_loss, eot_samples: int = 1) -> torch.Tensor:
    """∇x (1/K) Σ_k L(f(x, ξ_k), y) as a Python loop of K forward/backward passes (how libraries do EOT).

    The same estimate as :func:`stochrelax.attacks.core.expected_gradient` (BPDA through
    sign units included), one draw per pass.
    """
    if eot_samples < 1:
        raise ValueError(f"eot_samples must be >= 1, got {eot_samples}")
    total = torch.zeros_like(images)
    with torch.enable_grad(), straight_through_gradients(model):
        leaf = images.detach().clone().requires_grad_(True)
        for _ in range(eot_samples):
            (gradient,) = torch.autograd.grad(loss_fn(model(leaf), labels).sum(), leaf)
            total += gradient
    return total / eot_samples


class LoopedEOTPGD(PGD):
    """:class:`stochrelax.attacks.PGD` (random start, sign step, projection, best iterate), EOT as a loop of passes."""

    def estimate(self, images: torch.Tensor, labels: torch.Tensor) -> GradientEstimate:
        """:func:`looped_expected_gradient`, with the loss and logits its K passes saw."""
        draws = []  # (logits (B, classes), loss (B,)) of each pass

        def recorded_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            loss = cross_entropy_loss(logits, labels)
            draws.append((logits.detach(), loss.detach()))
            return loss

        gradient = looped_expected_gradient(self.model, images, labels, recorded_loss, self.eot_samples)
        logits, losses = zip(*draws)
        return GradientEstimate(gradient, torch.stack(losses).sum(dim=0) / self.eot_samples, torch.stack(logits))


@torch.no_grad()
def looped_predictive_probs(model: nn.Module, images: torch.Tensor, samples: int) -> torch.Tensor:
    """(1/K) Σ_k softmax(f(x, ξ_k)) from K separate forward passes, (B, classes)."""
    total = torch.zeros(())
    for _ in range(samples):
        total = total + torch.softmax(model(images), dim=1)
    return total / samples


def art_classifier(model: nn.Module) -> PyTorchClassifier:
    """ART's ``PyTorchClassifier`` around a copy of ``model`` (ART writes ``.grad`` into the model it wraps)."""
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(model=copy.deepcopy(model), loss=nn.CrossEntropyLoss(), input_shape=(1, 28, 28),
                             nb_classes=10, clip_values=(0.0, 1.0))
