"""A network as a stochastic predictor: noise draws batched into passes, the predictive distribution,
evaluation mode that keeps the noise on, and what a network's noise layers are doing.

A stochastic network defines a predictive distribution p(y | x) = E_ξ softmax(f(x, ξ)), estimated
with K noise draws by :func:`predictive_log_prob`. Everything here works on any ``nn.Module``: it
looks only for the noise layers of :mod:`stochrelax.nn.layers`.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn as nn

from stochrelax.nn.layers import NOISE_LAYERS, GaussianInputNoise, StochasticActivation

__all__ = ["Randomized", "is_stochastic", "input_noise_std", "collect_log_prob", "ROWS_PER_PASS", "draws_per_pass",
           "sample_logits", "sample_logits_and_log_prob", "predictive_log_prob", "evaluating"]

def _activations(model: nn.Module) -> Iterator[StochasticActivation]:
    return (m for m in model.modules() if isinstance(m, StochasticActivation))


class Randomized(nn.Module):
    """``model``, declared to draw noise of its own in eval mode (a noise layer that is not stochrelax's),
    so that :func:`is_stochastic` says so: predictions then average K draws, and attacks their gradients
    over draws (EOT). A network of stochrelax's noise layers needs no declaration."""

    is_stochastic = True

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.model(inputs)


def is_stochastic(model: nn.Module) -> bool:
    """Whether any noise layer of ``model`` (a unit or the input noise) currently draws noise, or ``model``
    holds a :class:`Randomized` one."""
    return any(layer.is_stochastic for layer in model.modules() if isinstance(layer, (*NOISE_LAYERS, Randomized)))


def input_noise_std(model: nn.Module) -> float | None:
    """σ of the Gaussian input noise that ``model`` currently adds, or ``None`` if it adds none
    (no :class:`~stochrelax.nn.layers.GaussianInputNoise`, or its noise switched off).

    Raises:
        ValueError: if ``model`` has more than one input-noise layer drawing noise: its input noise
            is then not one N(0, σ²I), the distribution randomized smoothing certifies for.
    """
    stds = [layer.std for layer in model.modules() if isinstance(layer, GaussianInputNoise) and layer.is_stochastic]
    if len(stds) > 1:
        raise ValueError(f"the model has {len(stds)} Gaussian input-noise layers (stds {stds}); expected one")
    return stds[0] if stds else None


def collect_log_prob(model: nn.Module) -> torch.Tensor | None:
    """Σ log p(y | a) over the score-function units of the last forward pass, per example (every
    pass overwrites it: :func:`sample_logits_and_log_prob` collects it after each).

    Returns:
        (B,) for the batch of that pass, or ``None`` if the model has no such units.
    """
    log_probs = [layer.last_log_prob for layer in _activations(model) if layer.last_log_prob is not None]
    return torch.stack(log_probs).sum(dim=0) if log_probs else None


ROWS_PER_PASS = 256
"""Rows per batched forward pass of K noise draws: on a CPU one pass of K·B rows falls out of
the caches — 32 draws of 500 images ran 3.4× slower in one pass than in passes of 256 rows.
The one chunking policy of stochrelax: predictions, EOT gradients and the report's figures."""


def draws_per_pass(draws: int, batch: int, rows_per_pass: int | None = ROWS_PER_PASS) -> list[int]:
    """How many of ``draws`` noise draws of a ``batch`` each forward pass takes: as many whole draws
    as fit in ``rows_per_pass`` rows, at least one; ``None``: all in one pass."""
    per_pass = draws if rows_per_pass is None else max(1, rows_per_pass // max(batch, 1))
    return [min(per_pass, draws - start) for start in range(0, draws, per_pass)]


def sample_logits(model: nn.Module, images: torch.Tensor, samples: int,
                  rows_per_pass: int | None = ROWS_PER_PASS) -> torch.Tensor:
    """Class scores under ``samples`` independent noise draws, batched over draws.

    Each forward pass takes as many whole draws of the batch as fit in ``rows_per_pass``
    rows (at least one); ``None`` makes it one pass of K·B rows.

    Returns:
        (K, B, classes); K = 1 for a model without active noise, whatever ``samples`` is.
    """
    return sample_logits_and_log_prob(model, images, samples, rows_per_pass)[0]


def sample_logits_and_log_prob(model: nn.Module, images: torch.Tensor, samples: int,
                               rows_per_pass: int | None = ROWS_PER_PASS) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`sample_logits`, and the score-function units' Σ log p(y | a) of every draw, collected after
    each forward pass (a unit keeps only its last pass's): what the score-function estimator needs,
    however the draws are split into passes.

    Returns:
        (K, B, classes) class scores; (K, B) log-probabilities, or ``None`` without score-function units.
    """
    draws = samples if is_stochastic(model) else 1
    batch = images.shape[0]
    logits, log_probs = [], []
    for count in draws_per_pass(draws, batch, rows_per_pass):
        logits.append(model(images.repeat(count, *([1] * (images.dim() - 1)))))  # (k·B, classes)
        log_probs.append(collect_log_prob(model))  # (k·B,) or None
    log_prob = None if log_probs[0] is None else torch.cat(log_probs).view(draws, batch)  # (K, B)
    return torch.cat(logits).view(draws, batch, -1), log_prob  # (K, B, classes)


def predictive_log_prob(logits: torch.Tensor) -> torch.Tensor:
    """log of the predictive distribution, log (1/K) Σ_k softmax(z_k), by log-sum-exp.

    Args:
        logits: (K, B, classes) class scores of K noise draws.

    Returns:
        (B, classes) log-probabilities.
    """
    return torch.logsumexp(torch.log_softmax(logits, dim=-1), dim=0) - math.log(logits.shape[0])


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """``model.eval()`` within the block; every submodule's previous mode is restored on exit.

    Noise stays on: a stochastic network is a stochastic predictor in evaluation too.
    """
    previous = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in previous:
            module.training = training
