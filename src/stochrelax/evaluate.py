"""Evaluation of a (stochastic) classifier on Fashion-MNIST: clean, and under attack.

A stochastic network is evaluated as the predictive distribution it defines,
p(y | x) ≈ (1/K) Σ_k softmax(f(x, ξ_k)): accuracy is that of its arg-max and the
loss is its negative log-likelihood. K = 1 is the thesis setting (one noisy pass).

Under attack (:func:`robustness_sweep`, :func:`attack_run`), every model-based attack
on a stochastic network runs twice — following one noise draw per gradient, and with
Expectation over Transformation over K draws — and each result is judged both by the
averaged predictor and by single noisy passes (mean ± std over draws), so that neither
obfuscated gradients nor one lucky forward pass overstate robustness. The probes and
warnings of :mod:`stochrelax.checks` come with every table.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from tqdm import tqdm

from stochrelax.attacks import ATTACKS, make_attack
from stochrelax.checks import GradientHealth, RobustnessRow, diagnose, gradient_health, randomized_fraction
from stochrelax.data import FashionMNIST, batches
from stochrelax.models import evaluating, is_stochastic, predictive_log_prob, sample_logits
from stochrelax.rng import seeded
from stochrelax.runs import Run, read_attack_table, run_lock, write_attack_table

__all__ = ["Evaluation", "evaluate_model", "evaluate_run"]


@dataclass(frozen=True)
class Evaluation:
    """Accuracy and mean NLL of the K-sample predictive distribution."""

    accuracy: float
    nll: float
    samples: int  # K noise draws averaged per prediction (1 for a model without active noise)
    examples: int

    def as_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def evaluate_model(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, samples: int = 1,
                   batch_size: int = 1000) -> Evaluation:
    """Evaluates ``model`` in eval mode (its previous mode is restored) on uint8 images.

    Args:
        model: any classifier taking [0, 1] pixels; noise layers stay active.
        images: (N, 1, 28, 28) uint8, on the device to evaluate on.
        labels: (N,) int64 on the same device.
        samples: K, softmax samples averaged per prediction.
        batch_size: examples per forward pass (before the K-fold repetition).
    """
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    nll_sum = torch.zeros((), dtype=torch.float64, device=images.device)
    correct = torch.zeros((), dtype=torch.int64, device=images.device)
    with evaluating(model):
        for batch_images, batch_labels in batches(images, labels, batch_size, shuffle=False):
            log_prob = predictive_log_prob(sample_logits(model, batch_images, samples))  # (B, classes)
            nll_sum += F.nll_loss(log_prob, batch_labels, reduction="sum").double()
            correct += (log_prob.argmax(dim=1) == batch_labels).sum()
    examples = labels.shape[0]
    effective_samples = samples if is_stochastic(model) else 1
    return Evaluation(correct.item() / examples, nll_sum.item() / examples, effective_samples, examples)


def evaluate_run(run: Run, data: FashionMNIST, samples: int = 1, device: torch.device | str = "cpu",
                 seed: int = 0) -> Evaluation:
    """Evaluates a finished run on the test split of ``data``.

    Args:
        run: a run read by :func:`stochrelax.runs.load_run`; its model is moved to ``device``.
        data: Fashion-MNIST (its ``limit`` already applied if wanted).
        samples: K, softmax samples averaged per prediction.
        device: where to evaluate.
        seed: seed of the noise draws, so that repeated evaluations agree.
    """
    model = run.model.to(device)
    with seeded(seed, device):
        return evaluate_model(model, data.test_images.to(device), data.test_labels.to(device), samples,
                              run.config.train.eval_batch_size)


# --- robustness under attack -------------------------------------------------------------

THESIS_ATTACKS = ("fgsm", "ifgsm-ll", "missing")
DEFAULT_BUDGETS: dict[str, tuple[float, ...]] = {
    "eps": (0.0, 0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3),  # L∞ in pixels (thesis Figs. 5.3, 5.4)
    "p": (0.0, 0.1, 0.2, 0.3, 0.4, 0.5),  # missing-feature ratio (thesis Fig. 5.5)
}


@dataclass(frozen=True)
class AttackResult:
    """One row of the robustness table."""

    attack: str
    budget_name: str  # "eps" (L∞, pixels) or "p" (missing-feature ratio)
    budget: float
    eot_samples: int  # noise draws per attack gradient (1: single draw)
    prediction_samples: int  # K softmax samples of the averaged predictor judging the result
    accuracy: float  # of the averaged predictor
    accuracy_single_draw: float  # one noisy pass (the thesis' setting), mean over the K draws
    accuracy_single_draw_std: float  # spread of that accuracy across the K draws
    success_rate: float  # targeted: reached the target; untargeted: clean-correct inputs now wrong
    mean_linf: float
    mean_l2: float
    seconds: float  # generating the adversarial examples
    examples: int

    def as_dict(self) -> dict:
        return asdict(self)


def _predict(model: torch.nn.Module, images: torch.Tensor, samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted classes of the averaged predictor (B,) and of each single draw (K, B)."""
    logits = sample_logits(model, images, samples)  # (K, B, classes)
    return predictive_log_prob(logits).argmax(dim=1), logits.argmax(dim=2)


def attack_model(model: torch.nn.Module, attack_name: str, budget: float, images: torch.Tensor,
                 labels: torch.Tensor, *, eot_samples: int = 1, prediction_samples: int = 16,
                 batch_size: int = 500, settings: dict | None = None) -> AttackResult:
    """Attacks ``model`` on every image and measures accuracy, success rate and perturbation size.

    The model is put in eval mode for the duration (noise stays on) and restored after.

    Args:
        model: classifier on [0, 1] pixels.
        attack_name: a key of :data:`stochrelax.attacks.ATTACKS`.
        budget: eps or p, whichever the attack takes.
        images: (N, C, H, W) uint8 images as stored (attacked as [0, 1] pixels).
        labels: (N,).
        eot_samples: noise draws per gradient (or per score query) of the attack.
        prediction_samples: K draws of the averaged predictor judging the adversarial images.
        batch_size: images attacked at once.
        settings: further keyword arguments of the attack (e.g. ``{"steps": 40}``).
    """
    info = ATTACKS[attack_name]
    options = {info.budget_name: budget, **(settings or {})}
    if info.eot_argument is not None:
        options[info.eot_argument] = eot_samples
    samples = prediction_samples if is_stochastic(model) else 1
    correct = clean_correct = successes = 0
    single_draw_correct = torch.zeros(samples, device=images.device)
    linf = l2 = seconds = 0.0
    with evaluating(model):
        attack = make_attack(attack_name, model, **options)
        for batch_images, batch_labels in batches(images, labels, batch_size, shuffle=False):
            with torch.no_grad():
                clean_prediction, _ = _predict(model, batch_images, samples)
            start = time.perf_counter()
            targets = attack.targets(batch_images, batch_labels) if hasattr(attack, "targets") else None
            if budget == 0:  # every attack returns the clean input at zero budget
                adversarial = batch_images
            elif targets is not None:
                adversarial = attack.toward(batch_images, targets)
            else:
                adversarial = attack(batch_images, batch_labels)
            seconds += time.perf_counter() - start
            with torch.no_grad():
                prediction, draws = _predict(model, adversarial, samples)
            correct += (prediction == batch_labels).sum().item()
            clean_correct += (clean_prediction == batch_labels).sum().item()
            single_draw_correct += (draws == batch_labels).sum(dim=1)
            if targets is not None:
                successes += (prediction == targets).sum().item()
            else:
                successes += ((clean_prediction == batch_labels) & (prediction != batch_labels)).sum().item()
            perturbation = (adversarial - batch_images).flatten(1)  # (B, C·H·W)
            linf += perturbation.abs().amax(dim=1).sum().item()
            l2 += perturbation.norm(dim=1).sum().item()
    examples = labels.shape[0]
    single = single_draw_correct / examples
    success_rate = successes / (examples if targets is not None else max(clean_correct, 1))
    return AttackResult(attack_name, info.budget_name, float(budget), eot_samples if info.eot_argument else 1,
                        samples, correct / examples, single.mean().item(),
                        single.std().item() if samples > 1 else 0.0, success_rate, linf / examples, l2 / examples,
                        seconds, examples)


@dataclass
class RobustnessReport:
    """Attack results of one model, with the probes behind the gradient-masking warnings."""

    rows: list[AttackResult]
    clean_accuracy: float
    randomized_fraction: float
    gradient_health: GradientHealth
    convergence: tuple[float, float] | None  # PGD accuracy: reference, then 2× steps and EOT samples
    convergence_eps: float | None  # where the convergence probe ran
    warnings: list[str]

    def as_dict(self) -> dict:
        return {"clean_accuracy": self.clean_accuracy, "randomized_fraction": self.randomized_fraction,
                "gradient_health": asdict(self.gradient_health),
                "convergence": list(self.convergence) if self.convergence else None,
                "convergence_eps": self.convergence_eps,
                "warnings": self.warnings, "rows": [row.as_dict() for row in self.rows]}


def attack_plan(attacks: Sequence[str], budgets: dict[str, Sequence[float]], eot_samples: int,
                stochastic: bool) -> list[tuple[str, float, int]]:
    """(attack, budget, EOT samples) to run: stochastic models get every model-based attack
    twice, with one draw and with ``eot_samples`` draws, so the gap is visible."""
    unknown = [name for name in attacks if name not in ATTACKS]
    if unknown:
        raise ValueError(f"unknown attack(s) {', '.join(unknown)}; valid: {', '.join(ATTACKS)}")
    plan = []
    for name in attacks:
        info = ATTACKS[name]
        eot_levels = (1, eot_samples) if stochastic and info.eot_argument and eot_samples > 1 else (1,)
        plan += [(name, budget, eot) for budget in budgets[info.budget_name] for eot in eot_levels]
    return plan


def _to_rows(results: Sequence[AttackResult]) -> list[RobustnessRow]:
    return [RobustnessRow(r.attack, r.budget, r.eot_samples, r.accuracy, r.examples, ATTACKS[r.attack].gradient_based)
            for r in results]


def probe_budget(rows: Sequence[AttackResult], clean_accuracy: float, default: float = 0.03) -> float:
    """The eps at which the gradient attacks leave about half the clean accuracy: where a
    stronger attack can still make a difference (0 % or 100 % accuracy tells nothing)."""
    candidates = [row for row in rows if row.budget_name == "eps" and row.budget > 0
                  and ATTACKS[row.attack].gradient_based]
    if not candidates:
        return default
    return min(candidates, key=lambda row: abs(row.accuracy - clean_accuracy / 2)).budget


def convergence_probe(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float,
                      eot_samples: int, prediction_samples: int) -> tuple[float, float]:
    """PGD-10 accuracy with ``eot_samples`` draws, and PGD-20 with twice the draws."""
    def pgd(steps: int, draws: int) -> float:
        return attack_model(model, "pgd", eps, images, labels, eot_samples=draws,
                            prediction_samples=prediction_samples, settings={"steps": steps}).accuracy

    return pgd(10, eot_samples), pgd(20, 2 * eot_samples)


def robustness_sweep(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                     attacks: Sequence[str] = THESIS_ATTACKS, budgets: dict[str, Sequence[float]] | None = None,
                     eot_samples: int = 16, prediction_samples: int = 16, batch_size: int = 500,
                     settings: dict[str, dict] | None = None, probe_examples: int = 200,
                     check_convergence: bool = True, previous_rows: Sequence[AttackResult] = (),
                     progress: bool = False) -> RobustnessReport:
    """Runs every attack at every budget (single draw and EOT for stochastic models) and diagnoses the result.

    Args:
        model: classifier on [0, 1] pixels (eval mode is used; its mode is restored).
        images: (N, C, H, W) uint8 test images as stored.
        labels: (N,).
        attacks: names from :data:`stochrelax.attacks.ATTACKS`.
        budgets: grids by budget name (default :data:`DEFAULT_BUDGETS`).
        eot_samples: noise draws per gradient of the EOT variant.
        prediction_samples: K draws of the averaged predictor judging each result.
        batch_size: images attacked at once.
        settings: per-attack keyword arguments, e.g. ``{"pgd": {"steps": 40}}``.
        probe_examples: inputs used by the randomness, gradient and convergence probes.
        check_convergence: run the PGD convergence probe (two PGD runs on the probe inputs).
        previous_rows: results of earlier sweeps to keep; a new row replaces an old one of the
            same attack, budget and sample counts, and the warnings consider all rows.
        progress: show a progress bar over the attack runs.
    """
    budgets = {**DEFAULT_BUDGETS, **(budgets or {})}
    settings = settings or {}
    stochastic = is_stochastic(model)
    samples = prediction_samples if stochastic else 1
    plan = attack_plan(attacks, budgets, eot_samples, stochastic)
    rows = []
    for name, budget, eot in tqdm(plan, desc="attacks", disable=not progress):
        rows.append(attack_model(model, name, budget, images, labels, eot_samples=eot, prediction_samples=samples,
                                 batch_size=batch_size, settings=settings.get(name)))
    probe_images, probe_labels = images[:probe_examples], labels[:probe_examples]
    with evaluating(model):
        clean = evaluate_model(model, images, labels, samples, batch_size)
        probe_pixels = probe_images.float() / 255
        randomized = randomized_fraction(model, probe_pixels)
        health = gradient_health(model, probe_pixels, probe_labels)
    convergence = convergence_eps = None
    if check_convergence:
        convergence_eps = probe_budget(rows, clean.accuracy)
        convergence = convergence_probe(model, probe_images, probe_labels, convergence_eps,
                                        eot_samples if stochastic else 1, samples)
    rows = merge_rows(previous_rows, rows)
    warnings = diagnose(_to_rows(rows), randomized, health, convergence)
    return RobustnessReport(rows, clean.accuracy, randomized, health, convergence, convergence_eps, warnings)


def merge_rows(old: Sequence[AttackResult], new: Sequence[AttackResult]) -> list[AttackResult]:
    """``old`` rows not measured again, then ``new``; sorted by attack (registry order), budget and EOT samples."""
    def key(row: AttackResult) -> tuple:
        return row.attack, row.budget_name, row.budget, row.eot_samples, row.prediction_samples

    merged = {key(row): row for row in old}
    merged.update((key(row), row) for row in new)
    order = list(ATTACKS)
    return sorted(merged.values(), key=lambda row: (order.index(row.attack), row.budget, row.eot_samples))


def attack_run(run: Run, data: FashionMNIST, *, attacks: Sequence[str] = THESIS_ATTACKS,
               budgets: dict[str, Sequence[float]] | None = None, eot_samples: int = 16,
               prediction_samples: int = 16, batch_size: int = 500, settings: dict[str, dict] | None = None,
               device: torch.device | str = "cpu", seed: int = 0, check_convergence: bool = True,
               progress: bool = False) -> RobustnessReport:
    """Attacks a finished run on the test split of ``data`` and writes ``attacks.json`` / ``attacks.csv``.

    Rows of earlier invocations are kept unless measured again. See :func:`robustness_sweep`
    for the arguments; ``seed`` fixes the noise draws, random starts and masks. The run
    directory is locked meanwhile (:func:`stochrelax.runs.run_lock`), so that two attacks on
    one run never merge into the same table at once.

    Raises:
        RunDirError: if another process is writing the run.
    """
    with run_lock(run.path):
        return _attack_locked(run, data, attacks, budgets, eot_samples, prediction_samples, batch_size, settings,
                              device, seed, check_convergence, progress)


def _attack_locked(run: Run, data: FashionMNIST, attacks: Sequence[str], budgets: dict[str, Sequence[float]] | None,
                   eot_samples: int, prediction_samples: int, batch_size: int, settings: dict[str, dict] | None,
                   device: torch.device | str, seed: int, check_convergence: bool, progress: bool) -> RobustnessReport:
    previous = read_attack_table(run.path)
    previous_rows = [AttackResult(**row) for row in previous["rows"]] if previous else []
    model = run.model.to(device)
    images, labels = data.test_images.to(device), data.test_labels.to(device)
    start = time.perf_counter()
    with seeded(seed, device):
        report = robustness_sweep(model, images, labels, attacks, budgets, eot_samples, prediction_samples,
                                  batch_size, settings, check_convergence=check_convergence,
                                  previous_rows=previous_rows, progress=progress)
    record = {**report.as_dict(), "seconds": time.perf_counter() - start, "seed": seed, "device": str(device),
              "test_examples": int(labels.shape[0])}
    write_attack_table(run.path, record)
    return report
