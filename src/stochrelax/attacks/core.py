"""Pieces every attack composes: losses, the EOT gradient, projection and random start.

Threat model: L∞ perturbations of images in [0, 1] pixel space (the model normalises
internally), so ``eps`` is in pixel units (thesis range 0…0.3).

Expectation over Transformation (Athalye, Carlini, Wagner 2018, "Obfuscated gradients
give a false sense of security", https://arxiv.org/abs/1802.00420): for a stochastic
network the attacker follows ∇x E_ξ[L(f(x, ξ), y)], estimated by the mean over K
independent noise draws. The K draws run as one batched forward/backward pass of
K·B rows (split into chunks only when that exceeds ``max_rows``), not a Python loop.

Sign units have zero gradient almost everywhere; :func:`expected_gradient`
differentiates through their straight-through proxy (BPDA), whatever estimator
trained them (:func:`stochrelax.nn.layers.straight_through_gradients`).

Attacks never switch the model between train and eval mode and never touch its
parameter gradients: the caller chooses the mode (evaluation uses eval mode).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, Sequence, runtime_checkable

import torch
import torch.nn.functional as F

from stochrelax.nn.layers import straight_through_gradients
from stochrelax.nn.prediction import ROWS_PER_PASS, draws_per_pass

__all__ = ["Attack", "MultiBudgetAttack", "TargetedAttack", "TargetedMultiBudgetAttack", "LossFn", "LOSSES", "GradientEstimate", "BestIterate", "cross_entropy_loss", "dlr_loss",
           "targeted_cross_entropy_loss", "expected_gradient", "project_linf",
           "random_start", "check_eps", "check_images"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits (N, C), labels (N,)) -> loss to maximise (N,)


@runtime_checkable
class Attack(Protocol):
    """An attack maps clean images and their labels to adversarial images of the same shape."""

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class MultiBudgetAttack(Attack, Protocol):
    """An attack that serves several budgets from shared work (``AttackInfo.shares_budgets``): each
    result is what the attack at that budget alone gives from the same generator state."""

    def each(self, images: torch.Tensor, labels: torch.Tensor, budgets: Sequence[float]) -> list[torch.Tensor]: ...


@runtime_checkable
class TargetedAttack(Attack, Protocol):
    """An attack that pulls toward target classes it chooses itself (``AttackInfo.targeted``)."""

    def targets(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor: ...

    def toward(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class TargetedMultiBudgetAttack(TargetedAttack, Protocol):
    """A targeted attack that serves several budgets from shared work."""

    def toward_each(self, images: torch.Tensor, targets: torch.Tensor,
                    budgets: Sequence[float]) -> list[torch.Tensor]: ...


def cross_entropy_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-example cross-entropy; maximising it pushes away from ``labels``."""
    return F.cross_entropy(logits, labels, reduction="none")


def targeted_cross_entropy_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Negative cross-entropy to ``targets``; maximising it pulls towards the target class."""
    return -F.cross_entropy(logits, targets, reduction="none")


def dlr_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Difference of Logits Ratio (Croce & Hein 2020, eq. 4): −(z_y − max_{i≠y} z_i) / (z_π1 − z_π3).

    Invariant to shifting and rescaling the logits, so it does not saturate like
    cross-entropy on overconfident models. Needs at least 3 classes.
    """
    if logits.shape[1] < 3:
        raise ValueError(f"the DLR loss needs at least 3 classes, got {logits.shape[1]}")
    sorted_logits, _ = logits.sort(dim=1, descending=True)  # (N, C)
    true_logit = logits.gather(1, labels[:, None]).squeeze(1)  # (N,)
    top_is_true = sorted_logits[:, 0] == true_logit
    best_other = torch.where(top_is_true, sorted_logits[:, 1], sorted_logits[:, 0])
    return -(true_logit - best_other) / (sorted_logits[:, 0] - sorted_logits[:, 2] + 1e-12)


LOSSES: dict[str, LossFn] = {"ce": cross_entropy_loss, "dlr": dlr_loss}


@dataclass(frozen=True)
class GradientEstimate:
    """∇x of the expected loss at one point, with the values seen on the way."""

    gradient: torch.Tensor  # (B, C, H, W), mean over the K draws
    loss: torch.Tensor  # (B,), mean over the K draws
    logits: torch.Tensor  # (K, B, classes), detached


def expected_gradient(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, loss_fn: LossFn,
                      eot_samples: int = 1, max_rows: int = ROWS_PER_PASS) -> GradientEstimate:
    """EOT gradient ∇x (1/K) Σ_k L(f(x, ξ_k), y) with K = ``eot_samples`` noise draws.

    Args:
        model: classifier on [0, 1] pixels; its parameters' ``.grad`` are left untouched.
        images: (B, C, H, W) points at which to differentiate.
        labels: (B,) labels (or targets) passed to ``loss_fn``.
        loss_fn: per-example loss to maximise.
        eot_samples: K; 1 is a plain gradient. The K draws are computed even for a
            deterministic model (this function cannot know what randomness a model hides).
        max_rows: most rows per forward pass (at least one draw of the batch); K·B rows are
            split over passes above it, which keeps them in the CPU caches (K = 16 draws of 500
            images: 2.8× faster in passes of 256 rows than in one pass).
    """
    if eot_samples < 1:
        raise ValueError(f"eot_samples must be >= 1, got {eot_samples}")
    gradients, losses, logits = [], [], []
    with torch.enable_grad(), straight_through_gradients(model):
        for draws in draws_per_pass(eot_samples, images.shape[0], max_rows):
            repeated = images.detach().repeat(draws, 1, 1, 1).requires_grad_(True)  # (k·B, C, H, W)
            chunk_logits = model(repeated)  # (k·B, classes)
            chunk_loss = loss_fn(chunk_logits, labels.repeat(draws))  # (k·B,)
            (gradient,) = torch.autograd.grad(chunk_loss.sum(), repeated)
            gradients.append(gradient.view(draws, *images.shape).sum(dim=0))
            losses.append(chunk_loss.detach().view(draws, -1).sum(dim=0))
            logits.append(chunk_logits.detach().view(draws, images.shape[0], -1))
    return GradientEstimate(sum(gradients) / eot_samples, sum(losses) / eot_samples, torch.cat(logits))


class BestIterate:
    """Per example, the point an iterative attack returns: the last iterate found misclassified,
    else the highest-loss one — AutoAttack's choice for APGD (Croce & Hein 2020), so that an
    attack never returns a worse point than one it visited.

    Args:
        point: (B, C, H, W) the first iterate.
        loss: (B,) its loss.
        misclassified: (B,) whether it is misclassified.
    """

    def __init__(self, point: torch.Tensor, loss: torch.Tensor, misclassified: torch.Tensor) -> None:
        self._per_example = (-1,) + (1,) * (point.dim() - 1)  # views a (B,) tensor as (B, 1, 1, 1)
        self.point, self.loss = point, loss  # the highest-loss iterate and its loss
        self.misclassified_point, self.found = point, misclassified

    def update(self, point: torch.Tensor, loss: torch.Tensor, misclassified: torch.Tensor) -> torch.Tensor:
        """Records the next iterate; returns where its loss is the highest so far, (B,)."""
        self.misclassified_point = torch.where(misclassified.view(self._per_example), point, self.misclassified_point)
        self.found = self.found | misclassified
        improved = loss > self.loss
        self.point = torch.where(improved.view(self._per_example), point, self.point)
        self.loss = torch.where(improved, loss, self.loss)
        return improved

    def result(self) -> torch.Tensor:
        """(B, C, H, W): the last misclassified iterate where there is one, else the highest-loss one."""
        return torch.where(self.found.view(self._per_example), self.misclassified_point, self.point).detach()


def project_linf(candidate: torch.Tensor, images: torch.Tensor, eps: float) -> torch.Tensor:
    """Nearest point to ``candidate`` in the L∞ ball of radius ``eps`` around ``images`` ∩ [0, 1]."""
    return torch.minimum(torch.maximum(candidate, images - eps), images + eps).clamp(0.0, 1.0)


def random_start(images: torch.Tensor, eps: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """A uniform random point of the eps-ball around ``images``, clipped to [0, 1] (Madry et al. 2018)."""
    noise = torch.rand(images.shape, generator=generator, dtype=images.dtype).to(images.device)
    return (images + (2.0 * noise - 1.0) * eps).clamp(0.0, 1.0)


def check_eps(eps: float) -> float:
    """Returns ``eps`` as a float if it is a finite budget ≥ 0, else raises ValueError."""
    eps = float(eps)
    if not (eps >= 0.0 and eps != float("inf")):
        raise ValueError(f"eps must be a finite L-inf budget >= 0 in pixel units, got {eps}")
    return eps


def check_images(images: torch.Tensor, labels: torch.Tensor) -> None:
    """Raises ValueError unless ``images`` is a (B, C, H, W) batch in [0, 1] with (B,) labels."""
    if images.dim() != 4 or labels.shape != images.shape[:1]:
        raise ValueError(f"expected images (B, C, H, W) and labels (B,), got {tuple(images.shape)} "
                         f"and {tuple(labels.shape)}")
    if images.numel() and not (images.min() >= 0 and images.max() <= 1):  # also false for NaN
        raise ValueError("images must be in [0, 1] pixel space, without NaN (normalisation belongs inside the model)")
