"""FGSM and the targeted iterative FGSM of the thesis (eqs. 4.5, 4.6)."""

from __future__ import annotations


import torch

from stochrelax.attacks.core import (check_eps, check_images, cross_entropy_loss, expected_gradient,
                                     project_linf, targeted_cross_entropy_loss)
from stochrelax.models import predictive_log_prob, sample_logits

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
        check_images(images, labels)
        gradient = expected_gradient(self.model, images, labels, cross_entropy_loss, self.eot_samples).gradient
        return project_linf(images + self.eps * gradient.sign(), images, self.eps).detach()

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
        self.steps = kurakin_steps(self.eps) if steps is None else int(steps)
        self.target, self.eot_samples = target, eot_samples

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
        adversarial = images.clone()
        for _ in range(self.steps):
            gradient = expected_gradient(self.model, adversarial, targets, targeted_cross_entropy_loss,
                                         self.eot_samples).gradient
            adversarial = project_linf(adversarial + self.step_size * gradient.sign(), images, self.eps)
        return adversarial.detach()

    def __repr__(self) -> str:
        return (f"IterativeFGSM(eps={self.eps:g}, step_size={self.step_size:g}, steps={self.steps}, "
                f"target={self.target!r}, eot_samples={self.eot_samples})")
