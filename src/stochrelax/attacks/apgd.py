"""Auto-PGD, the step-size-free L∞ attack of AutoAttack (Croce & Hein 2020)."""

from __future__ import annotations

import torch

from stochrelax.attacks.core import (LOSSES, BestIterate, check_eps, check_images, expected_gradient, project_linf,
                                     random_start)
from stochrelax.nn.prediction import predictive_log_prob

__all__ = ["APGD", "apgd_checkpoints"]


def apgd_checkpoints(steps: int) -> list[int]:
    """Iterations after which APGD may halve its step, for a run of ``steps`` iterations.

    The paper's p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06), in
    AutoAttack's integer form: the first window has max(⌊0.22·steps⌋, 1) iterations and
    each next one max(⌊0.03·steps⌋, 1) fewer, down to max(⌊0.06·steps⌋, 1). For 100
    steps: [22, 41, 57, 70, 80, 87, 93, 99].
    """
    window = max(int(0.22 * steps), 1)
    shortest, shrink = max(int(0.06 * steps), 1), max(int(0.03 * steps), 1)
    checkpoints, iteration = [], window
    while iteration <= steps:
        checkpoints.append(iteration)
        window = max(window - shrink, shortest)
        iteration += window
    return checkpoints


class APGD:
    """Auto-PGD: L∞ gradient ascent with momentum and a step size that adapts per example.

    Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble of
    diverse parameter-free attacks", https://arxiv.org/abs/2003.01690 (Algorithm 1; the
    APGD-CE and APGD-DLR of AutoAttack). From a random start in the eps-ball, with step
    η = 2·eps and z = Π(x_k + η · sign(∇)),
    x_{k+1} = Π(x_k + α(z − x_k) + (1 − α)(x_k − x_{k−1})), α = 1 on the first step and
    0.75 after. At each checkpoint (:func:`apgd_checkpoints`) an example halves its step
    and restarts from its highest-loss point if fewer than a fraction ``rho`` of the
    steps since the last checkpoint increased its loss, or if its step was not halved at
    the last checkpoint and its best loss has not improved since. Π projects onto the
    eps-ball around the clean image ∩ [0, 1].

    Returns, per example, the last iterate found misclassified (as AutoAttack does), else
    the highest-loss iterate. Every example is attacked, including those misclassified
    clean. For a stochastic model, losses and gradients are means over ``eot_samples``
    noise draws (AutoAttack's ``eot_iter``) and an iterate counts as misclassified when
    the predictive distribution of those draws puts another class first.

    Threat model: white-box L∞ untargeted; BPDA through sign units; EOT for stochastic models.

    Args:
        model: classifier on [0, 1] pixels; its mode is left as it is.
        eps: L∞ budget (default 0.1).
        loss: ``"ce"`` (cross-entropy, default) or ``"dlr"`` (difference of logits ratio; needs ≥ 3 classes).
        steps: iterations, one gradient each (default 100, as AutoAttack).
        eot_samples: noise draws averaged per gradient (default 1).
        rho: fraction of loss increases below which the step is halved (default 0.75).
        generator: source of the random start (default: torch's global generator).

    Shapes: images (B, C, H, W) in [0, 1], labels (B,) → adversarial images (B, C, H, W).

    Example:
        >>> adversarial = APGD(model, eps=0.1, loss="dlr", eot_samples=20)(images, labels)
    """


    def __init__(self, model: torch.nn.Module, eps: float = 0.1, loss: str = "ce", steps: int = 100,
                 eot_samples: int = 1, rho: float = 0.75, generator: torch.Generator | None = None) -> None:
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; valid: {', '.join(LOSSES)}")
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        if eot_samples < 1:
            raise ValueError(f"eot_samples must be >= 1, got {eot_samples}")
        if not 0.0 < rho <= 1.0:
            raise ValueError(f"rho must be in (0, 1], got {rho}")
        self.model, self.eps, self.loss, self.steps = model, check_eps(eps), loss, int(steps)
        self.eot_samples, self.rho, self.generator = eot_samples, float(rho), generator
        self.checkpoints = apgd_checkpoints(self.steps)

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Per-example loss to maximise, (B,)."""
        if self.loss == "dlr" and logits.shape[1] < 3:
            raise ValueError(f"the DLR loss needs at least 3 classes, the model has {logits.shape[1]}")
        return LOSSES[self.loss](logits, labels)

    def _evaluate(self, points: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Gradient (B, C, H, W), loss (B,) and whether misclassified (B,) at ``points``."""
        estimate = expected_gradient(self.model, points, labels, self._loss, self.eot_samples)
        misclassified = predictive_log_prob(estimate.logits).argmax(dim=1) != labels
        return estimate.gradient, estimate.loss, misclassified

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_images(images, labels)
        per_example = (-1,) + (1,) * (images.dim() - 1)  # views a (B,) tensor as (B, 1, 1, 1)
        current = random_start(images, self.eps, self.generator)
        gradient, loss, misclassified = self._evaluate(current, labels)
        previous, best, best_gradient = current, BestIterate(current, loss, misclassified), gradient
        step = torch.full(images.shape[:1], 2.0 * self.eps, dtype=images.dtype, device=images.device)  # (B,)
        losses = [loss]  # loss of every iterate since the last checkpoint, each (B,)
        halved_last_check = torch.ones_like(misclassified)
        best_loss_last_check = best.loss
        for iteration in range(1, self.steps + 1):
            alpha = 1.0 if iteration == 1 else 0.75  # weight of the new step against the last one
            ascent = project_linf(current + step.view(per_example) * gradient.sign(), images, self.eps)
            previous, current = current, project_linf(
                current + alpha * (ascent - current) + (1.0 - alpha) * (current - previous), images, self.eps)
            gradient, loss, misclassified = self._evaluate(current, labels)
            improved = best.update(current, loss, misclassified)  # (B,)
            best_gradient = torch.where(improved.view(per_example), gradient, best_gradient)
            losses.append(loss)
            if iteration in self.checkpoints:
                window = torch.stack(losses)  # (iterations since the last checkpoint + 1, B)
                increases = (window[1:] > window[:-1]).sum(dim=0)  # (B,)
                oscillating = increases < self.rho * (len(losses) - 1)
                stalled = ~halved_last_check & (best.loss <= best_loss_last_check)
                halve = oscillating | stalled
                step = torch.where(halve, step / 2.0, step)
                current = torch.where(halve.view(per_example), best.point, current)
                gradient = torch.where(halve.view(per_example), best_gradient, gradient)
                losses = [torch.where(halve, best.loss, loss)]
                halved_last_check, best_loss_last_check = halve, best.loss
        return best.result()

    def __repr__(self) -> str:
        return (f"APGD(eps={self.eps:g}, loss={self.loss!r}, steps={self.steps}, "
                f"eot_samples={self.eot_samples}, rho={self.rho:g})")
