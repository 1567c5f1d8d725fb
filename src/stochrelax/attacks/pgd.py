"""Projected gradient descent, untargeted (Madry et al. 2018)."""

from __future__ import annotations

import torch

from stochrelax.attacks.core import (BestIterate, GradientEstimate, check_eps, check_images, cross_entropy_loss,
                                     expected_gradient, project_linf, random_start)
from stochrelax.nn.prediction import predictive_log_prob

__all__ = ["PGD"]


def _misclassified(estimate: GradientEstimate, labels: torch.Tensor) -> torch.Tensor:
    """Whether the predictive distribution of the estimate's draws puts another class first, (B,)."""
    return predictive_log_prob(estimate.logits).argmax(dim=1) != labels


class PGD:
    """L∞ projected gradient ascent on the cross-entropy from a random start.

    Madry, Makelov, Schmidt, Tsipras, Vladu 2018, "Towards deep learning models resistant
    to adversarial attacks", https://arxiv.org/abs/1706.06083:
    x_0 ~ U(B_eps(x)), x_{t+1} = Π_{B_eps(x) ∩ [0,1]}(x_t + α · sign(∇x E_ξ CE(f(x_t, ξ), y))).

    Returns, per example, the last iterate found misclassified, else the highest-loss
    iterate, among x_0 … x_T, T = ``steps`` (as AutoAttack returns APGD's, Croce & Hein
    2020, https://arxiv.org/abs/2003.01690). For a stochastic model the loss of an iterate
    is the mean over its ``eot_samples`` noise draws, and it counts as misclassified when
    the predictive distribution of those draws puts another class first. Every iterate
    is evaluated, x_T included: T + 1 EOT estimates, the gradient at x_T unused.

    Threat model: white-box L∞ untargeted; BPDA through sign units; EOT for stochastic models.

    Args:
        model: classifier on [0, 1] pixels; its mode is left as it is.
        eps: L∞ budget (default 0.1).
        steps: iterations (default 20).
        step_size: α (default 2.5 · eps / steps, Madry et al.).
        random_start: start uniformly in the eps-ball (default True).
        eot_samples: noise draws averaged per gradient (default 1).
        generator: source of the random start (default: torch's global generator).

    Shapes: images (B, C, H, W) in [0, 1], labels (B,) → adversarial images (B, C, H, W).

    Example:
        >>> adversarial = PGD(model, eps=0.1, steps=40, eot_samples=16)(images, labels)
    """


    def __init__(self, model: torch.nn.Module, eps: float = 0.1, steps: int = 20, step_size: float | None = None,
                 random_start: bool = True, eot_samples: int = 1, generator: torch.Generator | None = None) -> None:
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.model, self.eps, self.steps = model, check_eps(eps), int(steps)
        self.step_size = 2.5 * self.eps / self.steps if step_size is None else float(step_size)
        self.random_start, self.eot_samples, self.generator = random_start, eot_samples, generator

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_images(images, labels)
        current = random_start(images, self.eps, self.generator) if self.random_start else images.clone()
        estimate = self.estimate(current, labels)
        best = BestIterate(current, estimate.loss, _misclassified(estimate, labels))
        for _ in range(self.steps):
            current = project_linf(current + self.step_size * estimate.gradient.sign(), images, self.eps)
            estimate = self.estimate(current, labels)
            best.update(current, estimate.loss, _misclassified(estimate, labels))
        return best.result()

    def estimate(self, images: torch.Tensor, labels: torch.Tensor) -> GradientEstimate:
        """The EOT estimate of ∇x CE at ``images`` with its K draws' loss and logits (:func:`expected_gradient`)."""
        return expected_gradient(self.model, images, labels, cross_entropy_loss, self.eot_samples)

    def __repr__(self) -> str:
        return (f"PGD(eps={self.eps:g}, steps={self.steps}, step_size={self.step_size:g}, "
                f"random_start={self.random_start}, eot_samples={self.eot_samples})")
