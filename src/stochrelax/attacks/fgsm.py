"""FGSM and the targeted iterative FGSM of the thesis (eqs. 4.5, 4.6).

Both can attack several budgets at once (:meth:`FGSM.each`, :meth:`IterativeFGSM.toward_each`),
each budget's images exactly what the attack with that budget alone returns from the same
generator state, for less work: neither attack's step depends on eps until the projection
onto the eps-ball changes an iterate.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Sequence

import torch

from stochrelax.attacks.core import (check_eps, check_images, cross_entropy_loss, expected_gradient, project_linf,
                                     targeted_cross_entropy_loss)
from stochrelax.nn.prediction import predictive_log_prob, sample_logits
from stochrelax.nn.rng import generator_states, replaying

__all__ = ["FGSM", "IterativeFGSM", "kurakin_steps"]


class FGSM:
    """Fast Gradient Sign Method, untargeted: one step of size eps along the gradient sign.

    Goodfellow, Shlens, Szegedy 2015, "Explaining and harnessing adversarial examples",
    https://arxiv.org/abs/1412.6572; thesis eq. 4.6:
    x_adv = clip_[0,1](x + eps · sign(∇x E_ξ CE(f(x, ξ), y))).

    Threat model: white-box L∞, ``eps`` in [0, 1] pixel units; sign units are
    differentiated through their straight-through proxy (BPDA); stochastic models are
    attacked with the mean gradient of ``eot_samples`` noise draws (EOT).

    Args:
        model: classifier taking (B, C, H, W) pixels in [0, 1]; its mode is left as it is.
        eps: L∞ budget (default 0.1).
        eot_samples: noise draws averaged per gradient (default 1: plain FGSM).

    Shapes: images (B, C, H, W) in [0, 1], labels (B,) → adversarial images (B, C, H, W).

    Example:
        >>> adversarial = FGSM(model, eps=0.05)(images, labels)
    """


    def __init__(self, model: torch.nn.Module, eps: float = 0.1, eot_samples: int = 1) -> None:
        self.model, self.eps, self.eot_samples = model, check_eps(eps), eot_samples

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.each(images, labels, [self.eps])[0]

    def each(self, images: torch.Tensor, labels: torch.Tensor, budgets: Sequence[float]) -> list[torch.Tensor]:
        """Adversarial images at every eps of ``budgets``, from one gradient: the step's direction does not
        depend on eps, so each is what FGSM with that eps returns from the same generator state."""
        check_images(images, labels)
        gradient = expected_gradient(self.model, images, labels, cross_entropy_loss, self.eot_samples).gradient
        return [project_linf(images + eps * gradient.sign(), images, eps).detach() for eps in map(check_eps, budgets)]

    def __repr__(self) -> str:
        return f"FGSM(eps={self.eps:g}, eot_samples={self.eot_samples})"


def kurakin_steps(eps: float) -> int:
    """Iterations of Kurakin et al.: min(eps·255 + 4, 1.25·eps·255), at least 1."""
    return max(1, int(min(eps * 255 + 4, 1.25 * eps * 255)))


class IterativeFGSM:
    """Iterative FGSM towards a target class, by default the least-likely one.

    Kurakin, Goodfellow, Bengio 2016, "Adversarial examples in the physical world",
    https://arxiv.org/abs/1607.02533; thesis eq. 4.5. Each step descends the
    cross-entropy to the target, x ← Π(x − α · sign(∇x E_ξ CE(f(x, ξ), t))), where Π
    projects onto the eps-ball around the clean image and onto [0, 1] (the thesis'
    one-sided clip does not keep the eps-ball).

    The least-likely target is t = argmin_{c ≠ y} p(c | x) on the clean input, with p the
    predictive distribution over ``eot_samples`` draws. A given target class equal to an
    example's true label is refused: that would not be an attack.

    Threat model: white-box L∞ targeted; BPDA through sign units; EOT for stochastic models.

    Args:
        model: classifier on [0, 1] pixels; its mode is left as it is.
        eps: L∞ budget (default 0.1).
        step_size: α (default 1/255, Kurakin et al.).
        steps: iterations (default :func:`kurakin_steps` of eps).
        target: ``"least_likely"`` (default), one class index for every example, or a (B,) tensor.
        eot_samples: noise draws averaged per gradient (default 1).

    Shapes: images (B, C, H, W) in [0, 1], labels (B,) → adversarial images (B, C, H, W).

    Example:
        >>> adversarial = IterativeFGSM(model, eps=0.05)(images, labels)  # towards each least-likely class
    """


    def __init__(self, model: torch.nn.Module, eps: float = 0.1, step_size: float = 1 / 255,
                 steps: int | None = None, target: str | int | torch.Tensor = "least_likely",
                 eot_samples: int = 1) -> None:
        if isinstance(target, str) and target != "least_likely":
            raise ValueError(f"target must be 'least_likely', a class index or a tensor of classes, got {target!r}")
        if steps is not None and steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if not step_size > 0:
            raise ValueError(f"step_size must be > 0, got {step_size}")
        self.model, self.eps, self.step_size = model, check_eps(eps), float(step_size)
        self._fixed_steps = None if steps is None else int(steps)
        self.steps = self.steps_for(self.eps)
        self.target, self.eot_samples = target, eot_samples

    def steps_for(self, eps: float) -> int:
        """Iterations at budget ``eps``: the given ``steps``, else :func:`kurakin_steps`."""
        return kurakin_steps(eps) if self._fixed_steps is None else self._fixed_steps

    @torch.no_grad()
    def targets(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The target class of each example, (B,)."""
        if isinstance(self.target, str):
            log_prob = predictive_log_prob(sample_logits(self.model, images, self.eot_samples))  # (B, classes)
            return log_prob.scatter(1, labels[:, None], float("inf")).argmin(dim=1)
        targets = torch.as_tensor(self.target, device=labels.device).expand_as(labels).long()
        same = int((targets == labels).sum())
        if same:
            raise ValueError(f"target class equals the true label for {same} of {len(labels)} images; "
                             "a targeted attack needs a different class")
        return targets

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_images(images, labels)
        return self.toward(images, self.targets(images, labels))

    def toward(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Adversarial images pulled towards the given (B,) target classes."""
        return self.toward_each(images, targets, [self.eps])[0]

    def toward_each(self, images: torch.Tensor, targets: torch.Tensor,
                    budgets: Sequence[float]) -> list[torch.Tensor]:
        """Adversarial images at every eps of ``budgets``, each what :meth:`toward` with that eps returns
        from the same generator state, for fewer gradients.

        The step α·sign(∇) does not depend on eps, so the budgets follow one trajectory until their
        projections of an iterate differ (for α = 1/255, after about eps·255 steps); there it
        branches. Every branch takes step k's gradient from the generator state of step k (the
        first draws it, the others replay it), and the generator ends where the longest budget's
        run alone leaves it.
        """
        budgets = [check_eps(eps) for eps in budgets]
        steps = [self.steps_for(eps) for eps in budgets]
        adversarial: list[torch.Tensor | None] = [None] * len(budgets)
        trajectories = [(images.clone(), list(range(len(budgets))))]  # (iterate, indices of the budgets on it)
        for step in range(max(steps, default=0)):
            ongoing = [(point, [index for index in members if steps[index] > step]) for point, members in trajectories]
            ongoing = [(point, members) for point, members in ongoing if members]
            states = generator_states(images.device) if len(ongoing) > 1 else None  # for the branches to replay
            trajectories = []
            for branch, (point, members) in enumerate(ongoing):
                with nullcontext() if branch == 0 else replaying(states, images.device):
                    gradient = expected_gradient(self.model, point, targets, targeted_cross_entropy_loss,
                                                 self.eot_samples).gradient
                moved = point + self.step_size * gradient.sign()
                trajectories += _projections(moved, images, {index: budgets[index] for index in members})
            for point, members in trajectories:
                for index in members:
                    if steps[index] == step + 1:
                        adversarial[index] = point.detach()
        return adversarial

    def __repr__(self) -> str:
        return (f"IterativeFGSM(eps={self.eps:g}, step_size={self.step_size:g}, steps={self.steps}, "
                f"target={self.target!r}, eot_samples={self.eot_samples})")


def _projections(moved: torch.Tensor, images: torch.Tensor,
                 budgets: dict[int, float]) -> list[tuple[torch.Tensor, list[int]]]:
    """``moved`` projected onto each budget's ball, one entry per distinct projection with the
    indices of the budgets that give it."""
    distinct: list[tuple[torch.Tensor, list[int]]] = []
    for index, eps in budgets.items():
        point = project_linf(moved, images, eps)
        same = next((members for projected, members in distinct if torch.equal(projected, point)), None)
        if same is None:
            distinct.append((point, [index]))
        else:
            same.append(index)
    return distinct
