"""Clean evaluation of a (stochastic) classifier on Fashion-MNIST.

A stochastic network is evaluated as the predictive distribution it defines,
p(y | x) ≈ (1/K) Σ_k softmax(f(x, ξ_k)): accuracy is that of its arg-max and the
loss is its negative log-likelihood. K = 1 is the thesis setting (one noisy pass).
Evaluation under attack is :mod:`stochrelax.evaluation.robustness`; training imports only this.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from stochrelax.data.fashion_mnist import FashionMNIST, batches
from stochrelax.nn.prediction import evaluating, is_stochastic, predictive_log_prob, sample_logits
from stochrelax.nn.rng import seeded
from stochrelax.rundir.layout import Run

__all__ = ["Evaluation", "evaluate_model", "evaluate_run"]


@dataclass(frozen=True)
class Evaluation:
    """Accuracy and mean NLL of the K-sample predictive distribution."""

    accuracy: float
    nll: float
    samples: int  # K noise draws averaged per prediction (1 for a model without active noise)
    examples: int
    correct: torch.Tensor = field(repr=False)  # (N,) bool: each image classified correctly

    def as_dict(self) -> dict:
        return {"accuracy": self.accuracy, "nll": self.nll, "samples": self.samples, "examples": self.examples}


@torch.inference_mode()
def evaluate_model(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, samples: int = 1,
                   batch_size: int = 1000) -> Evaluation:
    """Evaluates ``model`` in eval mode (its previous mode is restored) on uint8 images.

    Args:
        model: any classifier taking [0, 1] pixels; noise layers stay active.
        images: (N, 1, 28, 28) uint8, on the device to evaluate on.
        labels: (N,) int64 on the same device.
        samples: K, softmax samples averaged per prediction.
        batch_size: examples per forward pass (before the K-fold repetition).
    """
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    nll_sum = torch.zeros((), dtype=torch.float64, device=images.device)
    correct = []
    with evaluating(model):
        for batch_images, batch_labels in batches(images, labels, batch_size, shuffle=False):
            log_prob = predictive_log_prob(sample_logits(model, batch_images, samples))  # (B, classes)
            nll_sum += F.nll_loss(log_prob, batch_labels, reduction="sum").double()
            correct.append(log_prob.argmax(dim=1) == batch_labels)
    correct = torch.cat(correct) if correct else torch.zeros(0, dtype=torch.bool, device=images.device)
    examples = labels.shape[0]
    effective_samples = samples if is_stochastic(model) else 1
    return Evaluation(correct.sum().item() / examples, nll_sum.item() / examples, effective_samples, examples,
                      correct)


def evaluate_run(run: Run, data: FashionMNIST, samples: int = 1, device: torch.device | str = "cpu",
                 seed: int = 0) -> Evaluation:
    """Evaluates a finished run on the test split of ``data``.

    Args:
        run: a run read by :func:`stochrelax.rundir.layout.load_run`; its model is moved to ``device``.
        data: Fashion-MNIST (its ``limit`` already applied if wanted).
        samples: K, softmax samples averaged per prediction.
        device: where to evaluate.
        seed: seed of the noise draws, so that repeated evaluations agree.
    """
    model = run.model.to(device)
    with seeded(seed, device):
        return evaluate_model(model, data.test_images.to(device), data.test_labels.to(device), samples,
                              run.config.train.eval_batch_size)
