"""One row of a robustness table: an attack run in batches and judged on fixed evaluation draws.

A per-attack row (the thesis' protocol, Figs. 5.3–5.5, :func:`attack_model`) is one
registered attack at one budget; :func:`attack_budgets` measures an attack's budgets together,
sharing what FGSM and iterative FGSM can share between them. A model-based attack on a stochastic network is measured
twice, with one noise draw per gradient and with Expectation over Transformation over K
draws (Athalye et al. 2018). Sign units are differentiated through
``AttackSettings.proxy`` (by default ``own``: the gradient estimator the network was
trained with; :func:`through_proxy`).

Every row, the worst case's too (:mod:`stochrelax.evaluation.worst_case`), is judged by the averaged
predictor p(y | x) ≈ (1/K) Σ_k softmax(f(x, ξ_k)) on **fixed evaluation draws**
(:class:`FixedDrawJudge`): the same noise for the same image position whichever attack
produced the image, so that attacks are compared on equal terms and the clean accuracy
beside a row is that of the same images and draws.
"""

from __future__ import annotations

import itertools
import time
from typing import Any, Callable, Sequence

import torch

from stochrelax.attacks import ATTACKS, Attack, make_attack
from stochrelax.attacks.proxies import Proxy, ProxyGradients, has_sign_units
from stochrelax.evaluation.table import AttackResult, AttackSettings
from stochrelax.models.allconv import precision_of
from stochrelax.nn.layers import drawing_from
from stochrelax.nn.prediction import draws_per_pass, evaluating, is_stochastic, predictive_log_prob, sample_logits
from stochrelax.nn.rng import seeded

__all__ = ["FixedDrawJudge", "as_pixels", "in_batches", "judged_row", "through_proxy", "attack_model", "attack_budgets"]


NOISE_BANK_BYTES = 2 * 2**30
"""Most memory the judge's recorded evaluation draws may take; beyond it they are drawn again at each judgement."""


class FixedDrawJudge:
    """Judges images by the averaged predictor over K noise draws that are fixed per image position.

    Batch ``b`` of the N positions is always predicted from the generator state ``seed + b``, so
    an image at position i meets the same noise whichever attack produced it: comparisons
    between attacks, and the per-example worst case, are free of evaluation noise.

    The first judgement records every unit's draws (K × N × the unit's shape; at most
    :data:`NOISE_BANK_BYTES`) and later ones replay them: no noise is drawn again, and a
    subset of the positions (the images an attack has not broken yet) is judged on its own
    draws without the rest. Replayed and fresh draws are the same numbers.

    Args:
        model: the classifier (in the mode the caller chose).
        labels: (N,) true classes.
        samples: K draws of the averaged predictor (1 for a deterministic model).
        batch_size: positions per batch.
        seed: base seed of the draws.
    """

    def __init__(self, model: torch.nn.Module, labels: torch.Tensor, samples: int, batch_size: int,
                 seed: int) -> None:
        self.model, self.labels, self.batch_size, self.seed = model, labels, batch_size, seed
        self.samples = samples if is_stochastic(model) else 1
        self._clean: tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]] | None = None  # images, predictions
        self._bank: dict[torch.nn.Module, torch.Tensor] | None = None  # unit -> (K, N, P) draws, P per image
        self._recorded: set[int] = set()  # the batches whose draws the bank holds
        self._bank_fits = True

    def clean(self, images: torch.Tensor) -> torch.Tensor:
        """:meth:`__call__`'s (N,) for the clean images, judged once and shared by every row (a row at
        budget 0, whose images are these, is not judged again)."""
        if self._clean is None or self._clean[0] is not images:
            self._clean = images, self.predict(images)
        return self._clean[1][0] == self.labels

    def _batches(self, positions: torch.Tensor) -> list[tuple[int, torch.Tensor]]:
        """(batch index, which of ``positions`` lie in it) for every batch holding any of them."""
        batch_of = positions // self.batch_size
        return [(int(batch), (batch_of == batch).nonzero().squeeze(1)) for batch in batch_of.unique()]

    def _drawn(self, images: torch.Tensor, batch: int) -> torch.Tensor:
        """(K, B, classes) scores of batch ``batch`` (its images in ``images``) on freshly drawn fixed draws,
        recorded into the bank while it fits."""
        drawn: dict[torch.nn.Module, list[torch.Tensor]] = {}

        def record(unit: torch.nn.Module, pre_activation: torch.Tensor) -> torch.Tensor:
            sample = unit.draw(pre_activation)
            drawn.setdefault(unit, []).append(sample)
            return sample

        with seeded(self.seed + batch, images.device), drawing_from(self.model, record):
            logits = sample_logits(self.model, images, self.samples)  # (K, B, classes)
        if self._bank_fits:
            self._keep(drawn, batch, len(images))
        return logits

    def _keep(self, drawn: dict[torch.nn.Module, list[torch.Tensor]], batch: int, count: int) -> None:
        """Stores one batch's draws (per unit, one (k·B, ...) tensor per forward pass) at its positions."""
        if self._bank is None:
            size = sum(passes[0][0].numel() * passes[0].element_size() for passes in drawn.values())
            self._bank_fits = size * self.samples * len(self.labels) <= NOISE_BANK_BYTES
            if not self._bank_fits:
                return
            self._bank = {unit: passes[0].new_empty((self.samples, len(self.labels), passes[0][0].numel()))
                          for unit, passes in drawn.items()}
        start = batch * self.batch_size
        for unit, passes in drawn.items():
            rows = torch.cat([_in_memory_order(draws) for draws in passes])  # (K·B, P)
            self._bank[unit][:, start:start + count] = rows.view(self.samples, count, -1)
        self._recorded.add(batch)

    def _replayed(self, images: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """(K, M, classes) scores of ``images`` at ``positions`` on the recorded draws, in passes of whole draws."""
        logits = []
        for first, count in zip(itertools.accumulate([0, *draws_per_pass(self.samples, len(images))]),
                                draws_per_pass(self.samples, len(images))):
            def replay(unit: torch.nn.Module, pre_activation: torch.Tensor) -> torch.Tensor:
                draws = self._bank[unit][first:first + count].index_select(1, positions)  # (k, M, P)
                return _like(draws.flatten(0, 1), pre_activation)

            with drawing_from(self.model, replay):
                logits.append(self.model(images.repeat(count, *([1] * (images.dim() - 1)))))  # (k·M, classes)
        return torch.cat(logits).view(self.samples, len(images), -1)  # (K, M, classes)

    @torch.inference_mode()
    def predict(self, images: torch.Tensor, positions: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Classes predicted by the averaged predictor, (M,), and by each single draw, (K, M).

        Args:
            images: (M, C, H, W): all N images in position order, or those at ``positions``.
            positions: (M,) positions of ``images`` among the N (default: all, in order).
        """
        if positions is None and self._clean is not None and self._clean[0] is images:
            return self._clean[1]
        positions = torch.arange(len(self.labels), device=images.device) if positions is None else positions
        averaged, single = positions.new_empty(len(images)), positions.new_empty((self.samples, len(images)))
        for batch, members in self._batches(positions):
            if batch in self._recorded:
                logits = self._replayed(images[members], positions[members])
            else:
                start = batch * self.batch_size
                whole = images.new_zeros((min(self.batch_size, len(self.labels) - start), *images.shape[1:]))
                whole[positions[members] - start] = images[members]  # a row's result depends on its image only
                logits = self._drawn(whole, batch)[:, positions[members] - start]  # (K, m, classes)
            averaged[members], single[:, members] = predictive_log_prob(logits).argmax(dim=1), logits.argmax(dim=2)
        return averaged, single

    def __call__(self, images: torch.Tensor, positions: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Whether each image is classified correctly, (M,), and by each single draw, (K, M)."""
        averaged, single = self.predict(images, positions)
        labels = self.labels if positions is None else self.labels[positions]
        return averaged == labels, single == labels


def _channels_last(tensor: torch.Tensor) -> bool:
    return tensor.dim() == 4 and tensor.is_contiguous(memory_format=torch.channels_last)


def _in_memory_order(tensor: torch.Tensor) -> torch.Tensor:
    """(R, P) view of a dense (R, ...) tensor, each row's elements in the order they lie in memory."""
    return (tensor.permute(0, 2, 3, 1) if _channels_last(tensor) else tensor).reshape(len(tensor), -1)


def _like(rows: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """The (R, P) rows of :func:`_in_memory_order` back in the shape and memory layout of ``reference``."""
    if _channels_last(reference):
        batch, channels, height, width = reference.shape
        return rows.view(batch, height, width, channels).permute(0, 3, 1, 2)
    return rows.view(reference.shape)


def as_pixels(images: torch.Tensor) -> torch.Tensor:
    """Float pixels in [0, 1] from uint8 images as stored, or from pixels already."""
    return images.float() / 255 if images.dtype == torch.uint8 else images.float()


def in_batches(attack: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], images: torch.Tensor,
               labels: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``attack(images, labels)`` over batches of ``batch_size``, concatenated (a copy of no images for none)."""
    return torch.cat([attack(images[start:start + batch_size], labels[start:start + batch_size])
                      for start in range(0, len(labels), batch_size)]) if len(labels) else images.clone()


def judged_row(attack: str, budget_name: str, budget: float, eot_samples: int, judge: FixedDrawJudge,
               clean: torch.Tensor, adversarial: torch.Tensor, images: torch.Tensor, seconds: float, *,
               targets: torch.Tensor | None = None, **measured_with: Any) -> AttackResult:
    """A row from one judgement of the adversarial images.

    Its success rate is the share of ``targets`` reached over all images for a targeted attack
    (``targets`` given), else the share of the clean-correct images misclassified.
    """
    predicted, single_predicted = judge.predict(adversarial)  # (N,), (K, N)
    correct, single = predicted == judge.labels, single_predicted == judge.labels
    if targets is None:
        success, denominator = clean & ~correct, int(clean.sum())
    else:
        success, denominator = predicted == targets, len(judge.labels)
    examples = len(judge.labels)
    single_accuracy = single.float().mean(dim=1)  # (K,)
    perturbation = (adversarial - images).flatten(1)  # (N, C·H·W)
    return AttackResult(
        attack=attack, budget_name=budget_name, budget=float(budget), eot_samples=eot_samples,
        prediction_samples=judge.samples, accuracy=correct.float().mean().item(),
        accuracy_single_draw=single_accuracy.mean().item(),
        accuracy_single_draw_std=single_accuracy.std().item() if judge.samples > 1 else 0.0,
        success_rate=success.sum().item() / max(denominator, 1), mean_linf=perturbation.abs().amax(dim=1).mean().item(),
        mean_l2=perturbation.norm(dim=1).mean().item(), seconds=seconds, examples=examples,
        clean_accuracy=clean.float().mean().item(), correct=correct.cpu(), precision=precision_of(judge.model),
        **measured_with)


def through_proxy(model: torch.nn.Module, proxy: Proxy) -> torch.nn.Module:
    """The model an attack differentiates: through ``proxy`` at sign units, else the model itself."""
    return ProxyGradients(model, proxy) if has_sign_units(model) else model


def attack_model(model: torch.nn.Module, attack_name: str, budget: float, images: torch.Tensor,
                 labels: torch.Tensor, settings: AttackSettings = AttackSettings(), *,
                 eot_samples: int = 1, judge: FixedDrawJudge | None = None) -> AttackResult:
    """Attacks every image with one registered attack and measures accuracy, success rate and perturbation size.

    The model is put in eval mode for the duration (noise stays on) and restored after.

    Args:
        model: classifier on [0, 1] pixels.
        attack_name: a key of :data:`stochrelax.attacks.ATTACKS`.
        budget: eps or p, whichever the attack takes.
        images: (N, C, H, W) uint8 images as stored, or float pixels in [0, 1].
        labels: (N,).
        settings: steps, proxy, prediction draws, batch size and seed (the fixed evaluation draws).
        eot_samples: noise draws per gradient (or per Square query) of this row.
        judge: the fixed evaluation draws of ``model`` on ``labels`` (default: built from ``settings``);
            pass one to share its judgement of the clean images across rows.
    """
    return attack_budgets(model, attack_name, [budget], images, labels, settings, eot_samples=eot_samples,
                          judge=judge)[0]


def attack_budgets(model: torch.nn.Module, attack_name: str, budgets: Sequence[float], images: torch.Tensor,
                   labels: torch.Tensor, settings: AttackSettings = AttackSettings(), *,
                   eot_samples: int = 1, judge: FixedDrawJudge | None = None) -> list[AttackResult]:
    """:func:`attack_model`'s row at each of ``budgets``, in their order.

    An attack that serves several budgets from shared work (:meth:`~stochrelax.attacks.FGSM.each`: one
    gradient; :meth:`~stochrelax.attacks.IterativeFGSM.toward_each`: one trajectory until the
    budgets' projections part) attacks all of them at once from one generator state, each row
    what the attack at that budget alone gives from that state; the rows split the time it took
    in proportion to their steps. Other attacks run budget after budget. A targeted attack's
    targets are chosen once, for every budget.
    """
    info = ATTACKS[attack_name]
    pixels = as_pixels(images)
    with evaluating(model):
        judge = judge or FixedDrawJudge(model, labels, settings.prediction_samples, settings.batch_size, settings.seed)
        clean = judge.clean(pixels)
        proxied = through_proxy(model, Proxy.parse(settings.proxy))
        attacks = [make_attack(attack_name, proxied, **_options(attack_name, budget, settings, eot_samples))
                   for budget in budgets]
        targets = in_batches(attacks[0].targets, pixels, labels, settings.batch_size) if info.targeted else None
        adversarials, seconds = _attacked(attack_name, attacks, budgets, pixels,
                                          labels if targets is None else targets, settings)
        return [judged_row(attack_name, info.budget_name, budget, eot_samples if info.eot_argument else 1, judge,
                           clean, adversarial, pixels, took, targets=targets,
                           proxy=settings.proxy if info.gradient_based else "-",
                           steps=settings.steps(attack_name, budget), seed=settings.seed)
                for budget, adversarial, took in zip(budgets, adversarials, seconds)]


def _options(attack_name: str, budget: float, settings: AttackSettings, eot_samples: int) -> dict[str, Any]:
    """The keyword arguments of a registered attack at ``budget``."""
    info = ATTACKS[attack_name]
    options = {info.budget_name: budget, **settings.attack_options(attack_name, budget)}
    if info.eot_argument is not None:
        options[info.eot_argument] = eot_samples
    return options


def _attacked(attack_name: str, attacks: list[Attack], budgets: Sequence[float], pixels: torch.Tensor,
              aims: torch.Tensor, settings: AttackSettings) -> tuple[list[torch.Tensor], list[float]]:
    """Adversarial images at each budget and the seconds each took (the clean pixels at budget 0).

    ``aims`` are the labels, or a targeted attack's targets (:class:`~stochrelax.attacks.core.TargetedAttack`);
    an attack that shares its budgets' work (:class:`~stochrelax.attacks.core.MultiBudgetAttack`) attacks
    them all at once. Batch ``b`` is attacked from the generator
    state ``base + b``, ``base`` drawn once from the caller's generator, so that what a budget's
    batch draws does not depend on what the batches before it drew at other budgets.
    """
    adversarials, seconds = [pixels] * len(budgets), [0.0] * len(budgets)
    attacked = [index for index, budget in enumerate(budgets) if budget != 0]  # every attack is the identity at 0
    info = ATTACKS[attack_name]
    targeted = info.targeted
    if info.shares_budgets and len(attacked) > 1:
        shared = attacks[0].toward_each if targeted else attacks[0].each
        runs = [(attacked, lambda images, aim: shared(images, aim, [budgets[index] for index in attacked]))]
    else:
        runs = [([index], lambda images, aim, attack=attacks[index]: [(attack.toward if targeted else attack)(
            images, aim)]) for index in attacked]
    base = int(torch.randint(2**62, ()))
    for indices, run in runs:
        start, parts = time.perf_counter(), []  # parts: per batch, the adversarial images of each index
        for first in range(0, len(aims), settings.batch_size):
            with seeded(base + first // settings.batch_size, pixels.device):
                parts.append(run(pixels[first:first + settings.batch_size], aims[first:first + settings.batch_size]))
        took = time.perf_counter() - start
        steps = [settings.steps(attack_name, budgets[index]) or 1 for index in indices]
        for position, index in enumerate(indices):
            adversarials[index] = torch.cat([part[position] for part in parts]) if parts else pixels.clone()
            seconds[index] = took * steps[position] / sum(steps)
    return adversarials, seconds
