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
import torch.nn.functional as F

from stochrelax.attacks.core import LossFn, cross_entropy_loss, expected_gradient

__all__ = ["RobustnessRow", "Finding", "GradientHealth", "randomized_fraction", "gradient_health",
           "gradient_consistency", "sampling_tolerance", "diagnose"]


@dataclass(frozen=True)
class RobustnessRow:
    """What :func:`diagnose` needs to know of one row of a robustness table."""

    attack: str  # a registered attack, or "worst-case"
    budget_name: str  # "eps" or "p"
    budget: float
    eot_samples: int
    accuracy: float  # of the averaged predictor
    clean_accuracy: float  # of the same images on the same draws (NaN where unknown)
    examples: int
    gradient_based: bool
    proxy: str  # how sign units were differentiated
    worst_case: bool  # the per-example worst case over an adaptive ensemble
    iterative: bool = False  # more than one step (PGD, APGD), as opposed to FGSM
    targeted: bool = False
    adaptive_gain: float = 0.0  # worst case: fraction of images only its adaptive members broke


@dataclass(frozen=True)
class Finding:
    """A warning and the rows it concerns (indices into :func:`diagnose`'s rows; empty: the whole model)."""

    message: str
    rows: tuple[int, ...] = ()


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


def gradient_consistency(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, eot_samples: int,
                         loss_fn: LossFn = cross_entropy_loss) -> float:
    """Median over images of the cosine between two independent EOT estimates of the input gradient.

    An EOT attack (Athalye et al. 2018) follows the mean loss gradient over ``eot_samples``
    noise draws, which helps only if that mean points somewhere reproducible. Two
    independent estimates at the same input agree (cosine near 1) when the noise averages
    out, and are nearly orthogonal when each is mostly noise: the attack is then blind and
    its accuracy overstates robustness. A median below ~0.5 means the gradient is mostly
    noise: raise ``eot_samples`` or attack a smooth surrogate. For example, at EOT 8 a
    thesis ReLU network with logistic noise of std 0.05 scores ~0.98, and the same network
    with sign units ~0, still ~0 at EOT 64: their straight-through proxy 2p(a) is a spike of
    width ~0.05, so which units pass any gradient at all changes with the signs sampled upstream.

    A deterministic model scores 1 (both estimates are the same gradient) unless its
    gradient is zero. An image with a zero estimate has cosine 0, uninformative (see
    :func:`gradient_health`); a NaN gradient makes the result NaN.

    Args:
        model: classifier on [0, 1] pixels, in the mode the attack will use.
        images: (B, C, H, W) inputs.
        labels: (B,) labels passed to ``loss_fn``.
        eot_samples: noise draws per estimate, as in the attack to be checked.
        loss_fn: the attack's per-example loss.
    """
    estimates = [expected_gradient(model, images, labels, loss_fn, eot_samples).gradient.flatten(1)  # (B, C·H·W)
                 for _ in range(2)]
    # The cosine is scale-free: rows divided by their largest |entry| keep the norms of tiny gradients
    # (saturated cross-entropy) from underflowing, and zero rows stay zero.
    first, second = (estimate / estimate.abs().amax(dim=1, keepdim=True).clamp(min=torch.finfo(estimate.dtype).tiny)
                     for estimate in estimates)
    return F.cosine_similarity(first, second, dim=1, eps=1e-12).quantile(0.5).item()


def sampling_tolerance(accuracy: float, examples: int) -> float:
    """Two standard errors of an accuracy measured on ``examples`` inputs, plus one example."""
    return 2.0 * math.sqrt(max(accuracy * (1.0 - accuracy), 0.01) / examples) + 1.0 / examples


FLAT_CURVE_MIN_EPS = 0.05  # the flat-curve check looks at series that reach at least this L∞ budget
ADAPTIVE_GAP = 0.05  # the worst case beating a default attack by more than this (plus sampling error) warns
CONSISTENCY_THRESHOLD = 0.5  # median cosine of two EOT gradients below which they are mostly noise


def _series(rows: Sequence[RobustnessRow]) -> dict[tuple, list[int]]:
    """Row indices of each attack curve (attack, budget kind, EOT draws, proxy), by increasing budget."""
    series: dict[tuple, list[int]] = {}
    for index, row in enumerate(rows):
        series.setdefault((row.attack, row.budget_name, row.eot_samples, row.proxy), []).append(index)
    return {key: sorted(indices, key=lambda i: rows[i].budget) for key, indices in series.items()}


def _not_monotone(rows: Sequence[RobustnessRow]) -> Iterable[Finding]:
    for (attack, _, eot_samples, _), indices in _series(rows).items():
        for smaller, larger in zip(indices, indices[1:]):
            low, high = rows[smaller], rows[larger]
            if high.accuracy > low.accuracy + sampling_tolerance(low.accuracy, low.examples):
                yield Finding(f"{attack} (EOT {eot_samples}): accuracy rises from {low.accuracy:.1%} at budget "
                              f"{low.budget:g} to {high.accuracy:.1%} at {high.budget:g}; a stronger attack should "
                              "never do worse — suspect gradient masking; run --attack worst-case", (larger,))
                break


def _flat_curves(rows: Sequence[RobustnessRow]) -> Iterable[Finding]:
    """A gradient attack whose accuracy at its largest eps (≥ 0.05) is within sampling error of clean accuracy."""
    for (attack, budget_name, eot_samples, proxy), indices in _series(rows).items():
        largest = rows[indices[-1]]
        if (budget_name != "eps" or not largest.gradient_based or largest.worst_case
                or largest.budget < FLAT_CURVE_MIN_EPS or math.isnan(largest.clean_accuracy)):
            continue
        if largest.accuracy >= largest.clean_accuracy - sampling_tolerance(largest.clean_accuracy, largest.examples):
            yield Finding(f"{attack} (EOT {eot_samples}, proxy {proxy}) leaves {largest.accuracy:.1%} at eps "
                          f"{largest.budget:g} against {largest.clean_accuracy:.1%} clean: a curve this flat means "
                          "the attack is blind (masked gradients or an uninformative proxy), not that the model is "
                          "robust; run --attack worst-case and trust its number", tuple(indices))


def _adaptive_beats_default(rows: Sequence[RobustnessRow]) -> Iterable[Finding]:
    """Attacks designed against the defence beat the default ones by more than :data:`ADAPTIVE_GAP` + sampling error.

    Two comparisons at each eps of the worst case: what its adaptive members (other proxies,
    surrogates, transfer) broke beyond its attacks through the network's own estimator; and the
    worst case against every untargeted iterative gradient row (PGD, APGD) — one-step FGSM
    falling short of a multi-step attack is no sign of masking.
    """
    for worst_index, worst in enumerate(rows):
        if not worst.worst_case:
            continue
        own_rows = tuple(i for i, row in enumerate(rows) if row.gradient_based and not row.worst_case
                         and row.proxy == "own" and row.budget_name == "eps" and row.budget == worst.budget)
        baseline = worst.accuracy + worst.adaptive_gain
        if worst.adaptive_gain > ADAPTIVE_GAP + sampling_tolerance(baseline, worst.examples):
            yield Finding(f"at eps {worst.budget:g} attacks designed against the defence (smooth proxies, surrogates, "
                          f"transfer) break {worst.adaptive_gain:.1%} of the images that attacks through the "
                          f"network's own gradient estimator leave standing ({baseline:.1%} -> {worst.accuracy:.1%}): "
                          "the trained estimator's gradients mislead attacks; report the worst case",
                          (worst_index, *own_rows))
        for index, row in enumerate(rows):
            if (row.worst_case or not row.gradient_based or not row.iterative or row.targeted
                    or row.budget_name != "eps" or row.budget != worst.budget):
                continue
            if row.accuracy - worst.accuracy > ADAPTIVE_GAP + sampling_tolerance(row.accuracy, row.examples):
                yield Finding(f"the adaptive worst case leaves {worst.accuracy:.1%} at eps {worst.budget:g}, "
                              f"{(row.accuracy - worst.accuracy) * 100:.0f} points below {row.attack} (EOT "
                              f"{row.eot_samples}, proxy {row.proxy}) at {row.accuracy:.1%}: that attack overstates "
                              "robustness; report the worst case", (index,))


def _square_beats_gradients(rows: Sequence[RobustnessRow]) -> Iterable[Finding]:
    for square_index, square in enumerate(rows):
        if square.attack != "square":
            continue
        rivals = [row for row in rows if row.gradient_based and not row.worst_case and row.budget == square.budget]
        if rivals:
            best = min(rivals, key=lambda row: row.accuracy)
            if square.accuracy < best.accuracy - sampling_tolerance(best.accuracy, best.examples):
                yield Finding(f"gradient-free Square ({square.accuracy:.1%}) beats the best gradient attack "
                              f"{best.attack} ({best.accuracy:.1%}) at eps {square.budget:g}: gradients are masked or "
                              "misleading; trust the lower number, and run --attack worst-case", (square_index,))


def diagnose(rows: Sequence[RobustnessRow], randomized: float, health: GradientHealth,
             consistency: float | None = None, convergence: tuple[float, float] | None = None) -> list[Finding]:
    """Warnings, each saying what looks wrong and what to do, with the rows they concern.

    Args:
        rows: the attack results of one model.
        randomized: :func:`randomized_fraction` of the model on clean inputs.
        health: :func:`gradient_health` of the model on clean inputs.
        consistency: :func:`gradient_consistency` of the gradient the per-attack rows follow,
            or ``None`` if not measured (a deterministic model).
        convergence: accuracy under a reference attack and under the same attack with
            twice the steps and EOT samples, or ``None`` if not measured.
    """
    findings = []
    gradient_rows = tuple(i for i, row in enumerate(rows) if row.gradient_based and not row.worst_case)
    single_draw = tuple(i for i in gradient_rows if rows[i].eot_samples == 1)
    if randomized > 0 and single_draw and not any(rows[i].eot_samples > 1 for i in gradient_rows):
        names = ", ".join(sorted({rows[i].attack for i in single_draw}))
        findings.append(Finding(f"the model is randomized ({randomized:.0%} of predictions change across 5 passes) "
                                f"but {names} used no EOT: these accuracies overstate robustness; rerun with --eot 16 "
                                "or more", single_draw))
    if consistency is not None and consistency < CONSISTENCY_THRESHOLD:
        findings.append(Finding(f"two independent EOT estimates of the input gradient agree with median cosine "
                                f"{consistency:.2f}: the gradients are mostly noise and the proxy is uninformative, "
                                "so more EOT draws or steps will not help; trust --attack worst-case, which attacks "
                                "through smooth proxies and surrogates", gradient_rows))
    if health.zero_fraction > 0.1:
        findings.append(Finding(f"the input gradient is exactly zero for {health.zero_fraction:.0%} of inputs: "
                                "gradient attacks cannot move them; trust --attack worst-case (smooth proxies, "
                                "surrogates and Square)", gradient_rows))
    if health.non_finite_fraction > 0:
        findings.append(Finding(f"the input gradient is NaN or infinite for {health.non_finite_fraction:.0%} of "
                                "inputs: gradient attacks are unreliable; check the model for numerical problems",
                                gradient_rows))
    findings.extend(_square_beats_gradients(rows))
    findings.extend(_not_monotone(rows))
    findings.extend(_flat_curves(rows))
    findings.extend(_adaptive_beats_default(rows))
    if convergence is not None:
        reference, stronger = convergence
        examples = min((row.examples for row in rows), default=1)
        if stronger < reference - sampling_tolerance(reference, examples):
            findings.append(Finding(f"doubling steps and EOT samples still lowers PGD's accuracy ({reference:.1%} -> "
                                    f"{stronger:.1%}): the attacks have not converged; trust --attack worst-case",
                                    tuple(i for i in gradient_rows if rows[i].attack == "pgd")))
    return findings
