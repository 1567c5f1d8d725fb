"""Robustness of a (stochastic) classifier: the attack table of a run, with its gradient-masking checks.

Two kinds of number, side by side in one table (``attacks.json`` / ``attacks.csv`` of a run,
:mod:`stochrelax.evaluation.table`):

- **Per-attack rows** (the thesis' protocol, :func:`stochrelax.evaluation.rows.attack_model`):
  one attack at one budget; a model-based attack on a stochastic network with one noise
  draw per gradient and with Expectation over Transformation (:func:`attack_plan`).
- **The worst case** (``worst-case``, :func:`stochrelax.evaluation.worst_case.worst_case`): an image
  counts as robust at eps only if it survives every attack of an adaptive ensemble.

Every number is judged on the same fixed evaluation draws
(:class:`stochrelax.evaluation.rows.FixedDrawJudge`). :func:`robustness_sweep` measures a
model's rows and probes its gradients; :func:`attack_run` writes the table of a run.

Warnings from :mod:`stochrelax.evaluation.checks` are attached to the rows they concern and kept
with them: a later ``attack`` invocation never erases them.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from typing import NamedTuple, Sequence

import torch
from tqdm import tqdm

from stochrelax.attacks import ATTACKS
from stochrelax.attacks.proxies import Proxy, has_sign_units
from stochrelax.data.fashion_mnist import FashionMNIST
from stochrelax.evaluation.checks import (GradientHealth, RobustnessRow, diagnose, gradient_consistency,
                                          gradient_health, randomized_fraction)
from stochrelax.evaluation.rows import FixedDrawJudge, as_pixels, attack_budgets, attack_model, through_proxy
from stochrelax.evaluation.table import WORST_CASE, AttackResult, AttackSettings, merge_rows
from stochrelax.evaluation.worst_case import WorstCase, worst_case
from stochrelax.models.allconv import computing_in, fold_batch_norm
from stochrelax.nn.prediction import evaluating, is_stochastic
from stochrelax.nn.rng import seeded
from stochrelax.rundir.layout import ATTACKS_JSON, Run, RunDirError, read_attack_table, run_lock, write_attack_table

__all__ = ["RobustnessReport", "attack_plan", "robustness_sweep", "attack_run"]


@dataclass
class RobustnessReport:
    """Attack results of one model, with the probes behind the gradient-masking warnings."""

    rows: list[AttackResult]
    clean_accuracy: float  # on the attacked images and the fixed evaluation draws
    randomized_fraction: float
    gradient_health: GradientHealth
    gradient_consistency: dict[str, float] = field(default_factory=dict)  # proxy -> median cosine of two EOT gradients
    convergence: tuple[float, float] | None = None  # PGD accuracy: reference, then 2× steps and EOT samples
    convergence_eps: float | None = None  # where the convergence probe ran
    warnings: list[str] = field(default_factory=list)  # every row's, and the model's, without repetition
    # per image, not in attacks.json: right on the clean image (N,), and with the worst case, per eps, right
    # under every attack (N,) and the adversarial images (N, C, H, W)
    clean_correct: torch.Tensor | None = None
    robust: dict[float, torch.Tensor] = field(default_factory=dict)
    adversarial: dict[float, torch.Tensor] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"clean_accuracy": self.clean_accuracy, "randomized_fraction": self.randomized_fraction,
                "gradient_health": asdict(self.gradient_health), "gradient_consistency": self.gradient_consistency,
                "convergence": list(self.convergence) if self.convergence else None,
                "convergence_eps": self.convergence_eps,
                "warnings": self.warnings, "rows": [row.as_dict() for row in self.rows]}


def attack_plan(settings: AttackSettings, stochastic: bool) -> list[tuple[str, float, int]]:
    """(attack, budget, EOT samples) of every row to measure. Stochastic models get every model-based
    attack twice, with one draw and with ``settings.eot_samples`` draws, so the gap is visible; the
    worst case has one row per eps, with EOT."""
    plan = []
    for name in settings.attacks:
        if name == WORST_CASE:
            draws = settings.eot_samples if stochastic else 1
            plan += [(name, budget, draws) for budget in sorted(settings.eps)]
            continue
        info = ATTACKS[name]
        with_eot = stochastic and info.eot_argument is not None and settings.eot_samples > 1
        eot_levels = (1, settings.eot_samples) if with_eot else (1,)
        plan += [(name, budget, eot) for budget in settings.budgets(info.budget_name) for eot in eot_levels]
    return plan


def _to_checked(rows: Sequence[AttackResult]) -> list[RobustnessRow]:
    def checked(row: AttackResult) -> RobustnessRow:
        worst = row.attack == WORST_CASE
        adaptive_gain = sum(member["broke"] for member in row.members if member.get("adaptive")) / row.examples
        return RobustnessRow(row.attack, row.budget_name, row.budget, row.eot_samples, row.accuracy,
                             row.clean_accuracy, row.examples, worst or ATTACKS[row.attack].gradient_based, row.proxy,
                             worst, iterative=(row.steps or 0) > 1,
                             targeted=not worst and ATTACKS[row.attack].targeted, adaptive_gain=adaptive_gain)

    return [checked(row) for row in rows]


def probe_budget(rows: Sequence[AttackResult], clean_accuracy: float, default: float = 0.03) -> float:
    """The eps at which the gradient attacks leave about half the clean accuracy: where a
    stronger attack can still make a difference (0 % or 100 % accuracy tells nothing)."""
    candidates = [row for row in rows if row.budget_name == "eps" and row.budget > 0 and row.attack in ATTACKS
                  and ATTACKS[row.attack].gradient_based]
    if not candidates:
        return default
    return min(candidates, key=lambda row: abs(row.accuracy - clean_accuracy / 2)).budget


def convergence_probe(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float,
                      settings: AttackSettings) -> tuple[float, float]:
    """PGD-10 accuracy with the settings' EOT draws, and PGD-20 with twice the draws."""
    eot = settings.eot_samples if is_stochastic(model) else 1

    def pgd(steps: int, draws: int) -> float:
        return attack_model(model, "pgd", eps, images, labels, replace(settings, pgd_steps=steps),
                            eot_samples=draws).accuracy

    return pgd(10, eot), pgd(20, 2 * eot)


class _Measurements(NamedTuple):
    """The rows and probes of :func:`robustness_sweep`, before they are merged and diagnosed."""

    rows: list[AttackResult]
    clean: float
    randomized: float
    health: GradientHealth
    consistency: dict[str, float]
    convergence: tuple[float, float] | None
    convergence_eps: float | None
    clean_correct: torch.Tensor  # (N,) bool
    worst: WorstCase | None  # None: the worst case was not asked for


def _per_attack_rows(model: torch.nn.Module, plan: Sequence[tuple[str, float, int]], pixels: torch.Tensor,
                     labels: torch.Tensor, settings: AttackSettings, judge: FixedDrawJudge,
                     progress: bool) -> list[AttackResult]:
    """The rows of ``plan``, in its order; each attack's budgets at one EOT level are attacked together
    (:func:`~stochrelax.evaluation.rows.attack_budgets`: FGSM and iterative FGSM share their work)."""
    groups: dict[tuple[str, int], list[int]] = {}  # (attack, EOT samples) -> positions in the plan
    for position, (name, _, eot) in enumerate(plan):
        groups.setdefault((name, eot), []).append(position)
    rows: list[AttackResult | None] = [None] * len(plan)
    for (name, eot), positions in tqdm(groups.items(), desc="attacks", disable=not progress):
        budgets = [plan[position][1] for position in positions]
        for position, row in zip(positions, attack_budgets(model, name, budgets, pixels, labels, settings,
                                                           eot_samples=eot, judge=judge)):
            rows[position] = row
    return rows


def _measure(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, settings: AttackSettings,
             transfer_source: torch.nn.Module | None, progress: bool) -> _Measurements:
    """Attacks ``model`` and runs the probes (see :func:`robustness_sweep`)."""
    stochastic = is_stochastic(model)
    plan = [entry for entry in attack_plan(settings, stochastic) if entry[0] != WORST_CASE]
    pixels = as_pixels(images)
    with evaluating(model):
        judge = FixedDrawJudge(model, labels, settings.prediction_samples, settings.batch_size, settings.seed)
        rows = _per_attack_rows(model, plan, pixels, labels, settings, judge, progress)
        worst = None
        if WORST_CASE in settings.attacks:
            worst = worst_case(model, pixels, labels, settings.eps, settings, transfer_source, progress, judge)
            rows += worst.rows
        clean_correct = judge.clean(pixels)
        clean = clean_correct.float().mean().item()
        probe_images, probe_labels = images[:settings.probe_examples], labels[:settings.probe_examples]
        probe_pixels = as_pixels(probe_images)
        randomized = randomized_fraction(model, probe_pixels)
        health = gradient_health(through_proxy(model, Proxy.parse(settings.proxy)), probe_pixels, probe_labels)
        consistency = {}
        if stochastic:
            proxies = dict.fromkeys((settings.proxy, *settings.proxies)) if has_sign_units(model) else ["own"]
            consistency = {text: gradient_consistency(through_proxy(model, Proxy.parse(text)), probe_pixels,
                                                      probe_labels, settings.eot_samples) for text in proxies}
    convergence = convergence_eps = None
    if settings.check_convergence:
        convergence_eps = probe_budget(rows, clean)
        convergence = convergence_probe(model, probe_images, probe_labels, convergence_eps, settings)
    return _Measurements(rows=rows, clean=clean, randomized=randomized, health=health, consistency=consistency,
                         convergence=convergence, convergence_eps=convergence_eps, clean_correct=clean_correct,
                         worst=worst)


def robustness_sweep(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                     settings: AttackSettings = AttackSettings(), *, transfer_source: torch.nn.Module | None = None,
                     previous_rows: Sequence[AttackResult] = (), progress: bool = False) -> RobustnessReport:
    """Measures every row of :func:`attack_plan` and diagnoses the result.

    Args:
        model: classifier on [0, 1] pixels, attacked in eval mode (with ``settings.fold_batch_norm``, as a
            copy with its BatchNorm folded, :func:`~stochrelax.models.allconv.fold_batch_norm`); it is not changed.
        images: (N, C, H, W) uint8 test images as stored.
        labels: (N,).
        settings: what to attack with, and how.
        transfer_source: a second, independently trained network for the worst case's transfer attack.
        previous_rows: results of earlier sweeps to keep; a new row replaces an old one measured with
            the same settings (:attr:`AttackResult.key`); old rows keep their warnings.
        progress: show progress bars.
    """
    if settings.fold_batch_norm:  # attacks see the model in eval mode only, where BatchNorm is a fixed affine map
        model = fold_batch_norm(model)
        transfer_source = None if transfer_source is None else fold_batch_norm(transfer_source)
    with computing_in(model, settings.precision), (nullcontext() if transfer_source is None else
                                                   computing_in(transfer_source, settings.precision)):
        measured = _measure(model, images, labels, settings, transfer_source, progress)
    rows = merge_rows(previous_rows, measured.rows)
    findings = diagnose(_to_checked(rows), measured.randomized, measured.health,
                        measured.consistency.get(settings.proxy), measured.convergence)
    concerning = [list(row.warnings) for row in rows]
    for finding in findings:
        for index in finding.rows:
            concerning[index].append(finding.message)
    rows = [replace(row, warnings=tuple(dict.fromkeys(messages))) for row, messages in zip(rows, concerning)]
    model_wide = [finding.message for finding in findings if not finding.rows]
    warnings = list(dict.fromkeys(model_wide + [message for row in rows for message in row.warnings]))
    worst = measured.worst
    return RobustnessReport(rows=rows, clean_accuracy=measured.clean, randomized_fraction=measured.randomized,
                            gradient_health=measured.health, gradient_consistency=measured.consistency,
                            convergence=measured.convergence, convergence_eps=measured.convergence_eps,
                            warnings=warnings, clean_correct=measured.clean_correct,
                            robust=worst.robust if worst else {}, adversarial=worst.adversarial if worst else {})


def attack_run(run: Run, data: FashionMNIST, settings: AttackSettings = AttackSettings(), *,
               transfer_source: Run | None = None, device: torch.device | str = "cpu",
               progress: bool = False) -> RobustnessReport:
    """Attacks a finished run on the test split of ``data`` and writes ``attacks.json`` / ``attacks.csv``.

    Rows of earlier invocations are kept unless measured again with the same settings. The run
    directory is locked meanwhile (:func:`stochrelax.rundir.layout.run_lock`), so that two attacks on
    one run never merge into the same table at once.

    Raises:
        RunDirError: if another process is writing the run.
    """
    with run_lock(run.path):
        previous = read_attack_table(run.path)
        try:
            previous_rows = [AttackResult.from_dict(row) for row in previous["rows"]] if previous else []
        except (TypeError, ValueError, AttributeError) as error:
            raise RunDirError(f"{run.path / ATTACKS_JSON} is damaged (a row: {error}); move it away and attack the "
                              "run again") from None
        model = run.model.to(device)
        source = transfer_source.model.to(device) if transfer_source is not None else None
        images, labels = data.test_images.to(device), data.test_labels.to(device)
        start = time.perf_counter()
        with seeded(settings.seed, device):
            report = robustness_sweep(model, images, labels, settings, transfer_source=source,
                                      previous_rows=previous_rows, progress=progress)
        record = {**report.as_dict(), "seconds": time.perf_counter() - start, "seed": settings.seed,
                  "device": str(device), "test_examples": int(labels.shape[0]),
                  "transfer_source": str(transfer_source.path) if transfer_source is not None else None,
                  "settings": {**asdict(settings)}}
        write_attack_table(run.path, record)
        return report
