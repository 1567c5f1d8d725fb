"""Gradient-masking diagnostics, in the spirit of AutoAttack's ``checks.py``.

A robustness number is only as good as the attack behind it. These checks look for the
usual ways an evaluation overstates robustness (Athalye et al. 2018; Croce & Hein 2020)
and return warnings that say what to do. The probes (:func:`randomized_fraction`,
:func:`gradient_health`) take a model and tensors; :func:`diagnose` turns measured
numbers into warnings and is pure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch

from stochrelax.attacks.core import cross_entropy_loss, expected_gradient

__all__ = ["RobustnessRow", "GradientHealth", "randomized_fraction", "gradient_health", "sampling_tolerance",
           "diagnose"]


@dataclass(frozen=True)
class RobustnessRow:
    """What :func:`diagnose` needs to know of one attack run."""

    attack: str
    budget: float
    eot_samples: int
    accuracy: float  # of the averaged predictor
    examples: int
    gradient_based: bool


@dataclass(frozen=True)
class GradientHealth:
    zero_fraction: float  # inputs whose loss gradient is exactly zero everywhere
    non_finite_fraction: float  # inputs whose gradient has a NaN or infinity


@torch.no_grad()
def randomized_fraction(model: torch.nn.Module, images: torch.Tensor, passes: int = 5) -> float:
    """Fraction of inputs whose predicted class changes across ``passes`` forward passes."""
    predictions = torch.stack([model(images).argmax(dim=1) for _ in range(passes)])  # (passes, B)
    return (predictions != predictions[0]).any(dim=0).float().mean().item()


def gradient_health(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> GradientHealth:
    """How many inputs get a zero or non-finite cross-entropy gradient (through BPDA for sign units)."""
    gradient = expected_gradient(model, images, labels, cross_entropy_loss).gradient.flatten(1)  # (B, C·H·W)
    zero = (gradient == 0).all(dim=1).float().mean().item()
    non_finite = (~torch.isfinite(gradient)).any(dim=1).float().mean().item()
    return GradientHealth(zero, non_finite)


def sampling_tolerance(accuracy: float, examples: int) -> float:
    """Two standard errors of an accuracy measured on ``examples`` inputs, plus one example."""
    return 2.0 * math.sqrt(max(accuracy * (1.0 - accuracy), 0.01) / examples) + 1.0 / examples


def _not_monotone(rows: Sequence[RobustnessRow]) -> Iterable[str]:
    series: dict[tuple[str, int], list[RobustnessRow]] = {}
    for row in rows:
        series.setdefault((row.attack, row.eot_samples), []).append(row)
    for (attack, eot_samples), points in series.items():
        points = sorted(points, key=lambda row: row.budget)
        for smaller, larger in zip(points, points[1:]):
            if larger.accuracy > smaller.accuracy + sampling_tolerance(smaller.accuracy, smaller.examples):
                yield (f"{attack} (EOT {eot_samples}): accuracy rises from {smaller.accuracy:.1%} at budget "
                       f"{smaller.budget:g} to {larger.accuracy:.1%} at {larger.budget:g}; a stronger attack should "
                       "never do worse — suspect gradient masking; use more steps, restarts or EOT samples")
                break


def _square_beats_gradients(rows: Sequence[RobustnessRow]) -> Iterable[str]:
    for square in (row for row in rows if row.attack == "square"):
        rivals = [row for row in rows if row.gradient_based and row.budget == square.budget]
        if rivals:
            best = min(rivals, key=lambda row: row.accuracy)
            if square.accuracy < best.accuracy - sampling_tolerance(best.accuracy, best.examples):
                yield (f"gradient-free Square ({square.accuracy:.1%}) beats the best gradient attack "
                       f"{best.attack} ({best.accuracy:.1%}) at eps {square.budget:g}: gradients are masked or "
                       "misleading; trust the lower number, and add EOT samples or steps to the gradient attacks")


def diagnose(rows: Sequence[RobustnessRow], randomized: float, health: GradientHealth,
             convergence: tuple[float, float] | None = None) -> list[str]:
    """Warnings, each saying what looks wrong and what to do.

    Args:
        rows: the attack results of one model.
        randomized: :func:`randomized_fraction` of the model on clean inputs.
        health: :func:`gradient_health` of the model on clean inputs.
        convergence: accuracy under a reference attack and under the same attack with
            twice the steps and EOT samples, or ``None`` if not measured.
    """
    warnings = []
    single_draw = sorted({row.attack for row in rows if row.gradient_based and row.eot_samples == 1})
    if randomized > 0 and single_draw and not any(row.eot_samples > 1 for row in rows if row.gradient_based):
        warnings.append(f"the model is randomized ({randomized:.0%} of predictions change across 5 passes) but "
                        f"{', '.join(single_draw)} used no EOT: these accuracies overstate robustness; "
                        "rerun with --eot 16 or more")
    if health.zero_fraction > 0.1:
        warnings.append(f"the input gradient is exactly zero for {health.zero_fraction:.0%} of inputs: gradient "
                        "attacks cannot move them; trust the Square attack's numbers or attack a smooth proxy")
    if health.non_finite_fraction > 0:
        warnings.append(f"the input gradient is NaN or infinite for {health.non_finite_fraction:.0%} of inputs: "
                        "gradient attacks are unreliable; check the model for numerical problems")
    warnings.extend(_square_beats_gradients(rows))
    warnings.extend(_not_monotone(rows))
    if convergence is not None:
        reference, stronger = convergence
        examples = min((row.examples for row in rows), default=1)
        if stronger < reference - sampling_tolerance(reference, examples):
            warnings.append(f"doubling steps and EOT samples still lowers accuracy ({reference:.1%} -> "
                            f"{stronger:.1%}): the attacks have not converged; raise --eot and the step counts")
    return warnings
