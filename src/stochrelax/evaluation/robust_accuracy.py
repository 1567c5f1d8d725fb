"""The robust accuracy of any classifier in one call: the adaptive worst case, its adversarial images, the warnings.

:func:`evaluate_robustness` is the front door for a researcher's own model, as AutoAttack's
``run_standard_evaluation`` is for theirs (Croce & Hein 2020, https://arxiv.org/abs/2003.01690). An
image counts as robust at eps only if it survives every attack of the adaptive ensemble of
:mod:`stochrelax.evaluation.worst_case` — FGSM, PGD with EOT through every proxy of sign units,
smooth surrogates, APGD-CE and APGD-DLR, Square — each judged on fixed draws of the model's noise,
and the gradient-masking checks of :mod:`stochrelax.evaluation.checks` say, in words, when the
number should not be trusted.

It works on any ``nn.Module`` on [0, 1] inputs: with stochrelax's noise layers inside (the
proxies then differentiate its sign units), or with none. A model whose own randomness survives
eval mode is found by two forward passes that disagree (or declared with ``randomized=True``) and
wrapped in :class:`~stochrelax.nn.prediction.Randomized`, so that attacks average their gradients
over its draws (EOT) and predictions over K draws; its own draws, unlike stochrelax's layers', are
not replayed, so an image judged twice meets fresh noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from stochrelax.evaluation.checks import randomized_fraction
from stochrelax.evaluation.robustness import RobustnessReport, robustness_sweep
from stochrelax.evaluation.rows import as_pixels
from stochrelax.evaluation.table import DEFAULT_PROXIES, WORST_CASE, AttackSettings
from stochrelax.nn.prediction import Randomized, evaluating, is_stochastic
from stochrelax.nn.rng import seeded

__all__ = ["RobustnessEvaluation", "evaluate_robustness"]

RANDOMNESS_PROBE = 64  # inputs of the two forward passes that tell whether a model is randomized


@dataclass(frozen=True)
class RobustnessEvaluation:
    """What :func:`evaluate_robustness` found, per eps and per image."""

    eps: tuple[float, ...]  # increasing
    clean_correct: torch.Tensor  # (N,) bool: right on the clean image
    robust: dict[float, torch.Tensor]  # eps -> (N,) bool: right under every attack of the ensemble
    adversarial: dict[float, torch.Tensor]  # eps -> (N, C, H, W): the image that broke it, else the clean one
    broken_by: dict[float, tuple[dict[str, Any], ...]]  # eps -> each ensemble member, in order: images it broke
    warnings: tuple[str, ...]  # the checks' findings, each saying what to do
    randomized: bool  # whether the model was evaluated as a randomized predictor (EOT, K draws)
    report: RobustnessReport  # every row and probe, as ``stochrelax attack`` records them

    @property
    def clean_accuracy(self) -> float:
        return self.clean_correct.float().mean().item()

    def robust_accuracy(self) -> dict[float, float]:
        """eps → the fraction of images robust at it."""
        return {eps: mask.float().mean().item() for eps, mask in self.robust.items()}

    def rows(self) -> list[dict[str, Any]]:
        """One record per eps: the clean and robust accuracy, and the images each ensemble member broke."""
        return [{"eps": eps, "clean_accuracy": self.clean_accuracy, "robust_accuracy": accuracy,
                 **{f"broke:{member['attack']}/{member['proxy']}": member["broke"] for member in self.broken_by[eps]}}
                for eps, accuracy in self.robust_accuracy().items()]

    def to_frame(self) -> Any:
        """:meth:`rows` as a ``pandas.DataFrame`` (pandas is not a dependency of stochrelax)."""
        try:
            import pandas
        except ImportError:
            raise ImportError("to_frame needs pandas: pip install pandas (or use .rows() or .table())") from None
        return pandas.DataFrame(self.rows())

    def table(self) -> str:
        """:meth:`rows` as a Markdown table, then the warnings."""
        rows = self.rows()
        header = list(dict.fromkeys(key for row in rows for key in row))
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(_cell(row.get(key, "")) for key in header) + " |" for row in rows]
        return "\n".join(lines + [f"\nwarning: {warning}" for warning in self.warnings]) + "\n"


def _cell(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _check_inputs(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: Sequence[float]) -> None:
    """Raises ValueError, in one line, for inputs the evaluation cannot take."""
    if images.dim() != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
    if labels.shape != images.shape[:1]:
        raise ValueError(f"labels must be (N,) = ({images.shape[0]},), got shape {tuple(labels.shape)}")
    if images.is_floating_point() and (images.min() < 0 or images.max() > 1):
        raise ValueError(f"images must be pixels in [0, 1] (or uint8), got values in "
                         f"[{images.min().item():.3g}, {images.max().item():.3g}]")
    if not eps or any(not 0 <= budget <= 1 for budget in eps):
        raise ValueError(f"eps must be one or more L∞ budgets in [0, 1] pixels, got {list(eps)}")
    device = next((parameter.device for parameter in model.parameters()), images.device)
    if images.device != device or labels.device != device:
        raise ValueError(f"images and labels must be on the model's device {device}, got {images.device} and "
                         f"{labels.device}")


def evaluate_robustness(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                        eps: Sequence[float] = (0.03, 0.07, 0.1), *, eot: int = 8, prediction_samples: int = 16,
                        proxies: Sequence[str] = DEFAULT_PROXIES, steps: int = 50, apgd_steps: int = 100,
                        square_queries: int = 1000, batch_size: int = 500, randomized: bool | None = None,
                        seed: int = 0, progress: bool = False) -> RobustnessEvaluation:
    """Evaluates ``model`` against the adaptive worst case at every eps (see the module docstring).

    Threat model: L∞ perturbations of at most eps in [0, 1] pixel space, white box (gradients
    through the model, its sign units through every proxy) and black box (Square), untargeted.

    Args:
        model: a classifier of [0, 1] images, returning class scores (N, classes). Evaluated in eval
            mode; its mode, and the caller's random generators, are restored.
        images: (N, C, H, W) float pixels in [0, 1], or uint8, on the model's device.
        labels: (N,) true classes.
        eps: L∞ budgets in pixels.
        eot: noise draws per gradient or query of a randomized model (Expectation over Transformation).
        prediction_samples: K draws of the averaged predictor that judges every image of a randomized model.
        proxies: how the worst case differentiates sign units (:class:`~stochrelax.attacks.proxies.Proxy`);
            ignored for a model without them.
        steps: iterations of the worst case's PGD members.
        apgd_steps: iterations of APGD-CE and APGD-DLR.
        square_queries: queries of Square.
        batch_size: images attacked at once.
        randomized: whether the model draws noise of its own in eval mode; None: found out (a model of
            stochrelax's noise layers is randomized exactly when they draw noise).
        seed: noise draws, random starts and the fixed evaluation draws.
        progress: a progress bar over (eps, ensemble member).

    Returns:
        The per-image robust masks and adversarial images per eps, what each member broke, and the warnings.

    Raises:
        ValueError: in one line, for images, labels or eps the evaluation cannot take, or settings out of range.
    """
    _check_inputs(model, images, labels, eps)
    settings = AttackSettings(attacks=(WORST_CASE,), eps=tuple(sorted(eps)), p=(), eot_samples=eot,
                              prediction_samples=prediction_samples, batch_size=batch_size, apgd_steps=apgd_steps,
                              square_queries=square_queries, proxies=tuple(proxies), worst_case_steps=steps,
                              probe_examples=min(200, len(labels)), check_convergence=False, seed=seed,
                              fold_batch_norm=False)
    with seeded(seed, images.device):
        if randomized is None:
            with evaluating(model), torch.no_grad():
                probe = as_pixels(images[:RANDOMNESS_PROBE])
                randomized = is_stochastic(model) or randomized_fraction(model, probe) > 0
        attacked = Randomized(model) if randomized and not is_stochastic(model) else model
        report = robustness_sweep(attacked, images, labels, settings, progress=progress)
    worst = [row for row in report.rows if row.attack == WORST_CASE]
    return RobustnessEvaluation(eps=settings.eps, clean_correct=report.clean_correct, robust=report.robust,
                                adversarial=report.adversarial, broken_by={row.budget: row.members for row in worst},
                                warnings=tuple(report.warnings), randomized=randomized, report=report)
