"""Robustness of a (stochastic) classifier: the thesis' attack rows, and an adaptive per-example worst case.

Two kinds of number, side by side in one table (``attacks.json`` / ``attacks.csv`` of a run):

- **Per-attack rows** (the thesis' protocol, Figs. 5.3–5.5): one attack at one budget. A
  model-based attack on a stochastic network runs twice, with one noise draw per gradient
  and with Expectation over Transformation over K draws (Athalye et al. 2018). Sign units
  are differentiated through ``AttackSettings.proxy`` (by default ``own``: the gradient
  estimator the network was trained with).
- **The worst case** (``worst-case``, :func:`worst_case`): an image counts as robust at eps
  only if it survives every attack of an adaptive ensemble — FGSM with the model's own
  proxy (the default attack), PGD with EOT through every proxy of
  :mod:`stochrelax.attacks.proxies`, PGD on the smooth surrogate of every proxy, APGD-CE
  and APGD-DLR through the proxy that broke most, PGD crafted on a second network
  (transfer, when one is given) and the gradient-free Square attack. As in AutoAttack
  (Croce & Hein 2020, https://arxiv.org/abs/2003.01690) only images that still stand are
  attacked by the next member, and budgets are attacked in increasing order: an image
  broken at a smaller eps is broken at every larger one (the L∞ balls nest), and its
  adversarial image is kept.

Every number is judged by the averaged predictor p(y | x) ≈ (1/K) Σ_k softmax(f(x, ξ_k))
on **fixed evaluation draws** (:class:`FixedDrawJudge`): the same noise for the same image
position whichever attack produced the image, so that members of the ensemble are compared
on equal terms and the clean accuracy beside a row is that of the same images and draws.
A row records how it was measured: images, prediction draws, EOT draws, steps, proxy, seed.

Warnings from :mod:`stochrelax.checks` are attached to the rows they concern and kept
with them: a later ``attack`` invocation never erases them.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Callable, Iterator, Sequence

import torch
from tqdm import tqdm

from stochrelax.attacks import ATTACKS, PGD, make_attack
from stochrelax.attacks.core import Attack
from stochrelax.attacks.fgsm import kurakin_steps
from stochrelax.attacks.proxies import Proxy, ProxyGradients, has_sign_units, smooth_surrogate
from stochrelax.checks import (GradientHealth, RobustnessRow, diagnose, gradient_consistency, gradient_health,
                               randomized_fraction)
from stochrelax.data import FashionMNIST
from stochrelax.models import evaluating, is_stochastic, predictive_log_prob, sample_logits
from stochrelax.rng import seeded
from stochrelax.runs import (ATTACKS_JSON, Run, RunDirError, pack_correct, read_attack_table, run_lock,
                             write_attack_table)

__all__ = ["THESIS_ATTACKS", "WORST_CASE", "EVALUATIONS", "BUDGET_NAMES", "budget_key", "DEFAULT_BUDGETS", "DEFAULT_PROXIES",
           "AttackSettings", "AttackResult", "FixedDrawJudge", "attack_model", "worst_case", "RobustnessReport",
           "attack_plan", "robustness_sweep", "merge_rows", "attack_run"]

THESIS_ATTACKS = ("fgsm", "ifgsm-ll", "missing")
WORST_CASE = "worst-case"
EVALUATIONS = (*ATTACKS, WORST_CASE)  # what ``AttackSettings.attacks`` may name
BUDGET_NAMES = {**{name: info.budget_name for name, info in ATTACKS.items()}, WORST_CASE: "eps"}  # evaluation -> budget


def budget_key(budget: float) -> float:
    """A budget as a key of tables: rounded, so that 0.1 and 0.1000000001 are one budget."""
    return round(float(budget), 9)


DEFAULT_BUDGETS: dict[str, tuple[float, ...]] = {
    "eps": (0.0, 0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3),  # L∞ in pixels (thesis Figs. 5.3, 5.4)
    "p": (0.0, 0.1, 0.2, 0.3, 0.4, 0.5),  # missing-feature ratio (thesis Fig. 5.5)
}
# Proxies the worst case tries on sign units, best first: tanh(a/τ) at the temperatures that broke most,
# then the trained estimator's own. Accuracy left by PGD at eps 0.1 on 200 images: logistic-noise STE sign
# network (73.5% clean, EOT 8): 15% at τ 0.25, 19% at 0.5, 41% at 1 (40 steps), 36% at 0.1 and 60%
# through its own 2p(a) (20 steps); classic-STE sign network (81%, 20 steps): 8.5%, 7%, 10.5%, 28%, 12.5%.
DEFAULT_PROXIES = ("tanh:0.25", "tanh:0.5", "own")


@dataclass(frozen=True)
class AttackSettings:
    """How a model is attacked: one record from the command line and the presets to the evaluation."""

    attacks: tuple[str, ...] = THESIS_ATTACKS  # per-attack rows and/or "worst-case" (:data:`EVALUATIONS`)
    eps: tuple[float, ...] = DEFAULT_BUDGETS["eps"]  # L∞ budgets, pixels
    p: tuple[float, ...] = DEFAULT_BUDGETS["p"]  # missing-feature ratios
    eot_samples: int = 16  # noise draws per gradient (or Square query) of the EOT variant
    prediction_samples: int = 16  # K draws of the averaged predictor judging every result
    batch_size: int = 500  # images attacked at once
    pgd_steps: int = 20  # iterations of the per-attack PGD rows
    apgd_steps: int = 100  # iterations of APGD, in its rows and in the worst case
    square_queries: int = 1000  # queries of Square, in its rows and in the worst case (AutoAttack: 5000)
    proxy: str = "own"  # proxy of sign units in the per-attack rows
    proxies: tuple[str, ...] = DEFAULT_PROXIES  # proxies the worst case tries on sign units
    worst_case_steps: int = 50  # iterations of the worst case's PGD members
    probe_examples: int = 200  # inputs of the randomness, gradient and convergence probes
    check_convergence: bool = True  # rerun PGD with 2x steps and EOT draws where it matters
    seed: int = 0  # noise draws, random starts, masks and the fixed evaluation draws

    def __post_init__(self) -> None:
        unknown = [name for name in self.attacks if name not in EVALUATIONS]
        if unknown:
            raise ValueError(f"unknown attack(s) {', '.join(unknown)}; valid: {', '.join(EVALUATIONS)}")
        for name in ("eot_samples", "prediction_samples", "batch_size", "pgd_steps", "apgd_steps",
                     "square_queries", "worst_case_steps", "probe_examples"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for text in (self.proxy, *self.proxies):
            Proxy.parse(text)
        if not self.proxies:
            raise ValueError("proxies must name at least one proxy, e.g. own,tanh:0.5")

    def budgets(self, budget_name: str) -> tuple[float, ...]:
        """The budgets of an attack taking ``budget_name`` (``"eps"`` or ``"p"``)."""
        return {"eps": self.eps, "p": self.p}[budget_name]

    def attack_options(self, name: str) -> dict[str, Any]:
        """Keyword arguments of a registered attack besides its budget and EOT draws."""
        return {"pgd": {"steps": self.pgd_steps}, "apgd-ce": {"steps": self.apgd_steps},
                "apgd-dlr": {"steps": self.apgd_steps}, "square": {"queries": self.square_queries}}.get(name, {})


def _steps(name: str, budget: float, settings: AttackSettings) -> int | None:
    """Iterations (queries for Square) an attack ran, as recorded in its row; ``None`` for missing features."""
    counts: dict[str, int | None] = {
        "fgsm": 1, "ifgsm-ll": kurakin_steps(budget), "pgd": settings.pgd_steps, "apgd-ce": settings.apgd_steps,
        "apgd-dlr": settings.apgd_steps, "square": settings.square_queries, "missing": None,
        WORST_CASE: settings.worst_case_steps}
    return counts[name]


@dataclass(frozen=True)
class AttackResult:
    """One row of the robustness table, with how it was measured."""

    attack: str  # a registered attack or "worst-case"
    budget_name: str  # "eps" (L∞, pixels) or "p" (missing-feature ratio)
    budget: float
    eot_samples: int  # noise draws per attack gradient (1: single draw)
    prediction_samples: int  # K softmax samples of the averaged predictor judging the result
    accuracy: float  # of the averaged predictor on the fixed evaluation draws
    accuracy_single_draw: float  # one noisy pass (the thesis' setting), mean over the K draws
    accuracy_single_draw_std: float  # spread of that accuracy across the K draws
    success_rate: float  # targeted: reached the target; untargeted: clean-correct inputs now wrong
    mean_linf: float
    mean_l2: float
    seconds: float  # generating the adversarial examples
    examples: int  # images attacked
    clean_accuracy: float = math.nan  # of the same images on the same draws
    proxy: str = "own"  # how sign units were differentiated ("-" where no gradient is taken)
    steps: int | None = None  # iterations (queries for Square); None where not iterative
    seed: int = 0
    warnings: tuple[str, ...] = ()  # checks that concern this row, kept with it
    members: tuple[dict[str, Any], ...] = ()  # worst case: images each ensemble member broke, in order
    correct: str = ""  # per image, correct under attack: runs.pack_correct bits (attacks.json only; "" in old tables)

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> "AttackResult":
        """A row as stored in ``attacks.json`` (fields an older table lacks take their defaults)."""
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in row.items() if key in known}
        values["warnings"] = tuple(values.get("warnings", ()))
        values["members"] = tuple(values.get("members", ()))
        return cls(**values)

    @property
    def key(self) -> tuple:
        """Everything that decides what a row measures: rows with equal keys replace each other."""
        return (self.attack, self.budget_name, self.budget, self.eot_samples, self.prediction_samples,
                self.examples, self.proxy, self.steps, self.seed)

    def as_dict(self) -> dict[str, Any]:
        row = asdict(self)
        row["warnings"], row["members"] = list(self.warnings), list(self.members)
        return row


class FixedDrawJudge:
    """Judges images by the averaged predictor over K noise draws that are fixed per image position.

    Batch ``b`` of the N positions is always predicted from the generator state ``seed + b``, so
    an image at position i meets the same noise whichever attack produced it: comparisons
    between attacks, and the per-example worst case, are free of evaluation noise.

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
        self._clean: tuple[torch.Tensor, torch.Tensor] | None = None  # the clean images and their judgement

    def clean(self, images: torch.Tensor) -> torch.Tensor:
        """:meth:`__call__`'s (N,) for the clean images, judged once and shared by every row."""
        if self._clean is None or self._clean[0] is not images:
            self._clean = images, self(images)[0]
        return self._clean[1]

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Classes predicted by the averaged predictor, (N,), and by each single draw, (K, N)."""
        averaged, single = [], []
        for index, start in enumerate(range(0, len(self.labels), self.batch_size)):
            with seeded(self.seed + index, images.device):
                batch = images[start:start + self.batch_size]
                logits = sample_logits(self.model, batch, self.samples)  # (K, B, classes)
            averaged.append(predictive_log_prob(logits).argmax(dim=1))
            single.append(logits.argmax(dim=2))
        return torch.cat(averaged), torch.cat(single, dim=1)

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Whether each image is classified correctly, (N,), and by each single draw, (K, N)."""
        averaged, single = self.predict(images)
        return averaged == self.labels, single == self.labels


def _pixels(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 255 if images.dtype == torch.uint8 else images.float()


def _in_batches(attack: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], images: torch.Tensor,
                labels: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([attack(images[start:start + batch_size], labels[start:start + batch_size])
                      for start in range(0, len(labels), batch_size)]) if len(labels) else images.clone()


def _row(attack: str, budget_name: str, budget: float, eot_samples: int, judge: FixedDrawJudge,
         clean: torch.Tensor, adversarial: torch.Tensor, images: torch.Tensor, success: torch.Tensor,
         success_denominator: int, seconds: float, **measured_with: Any) -> AttackResult:
    """A row from the judged clean and adversarial images."""
    correct, single = judge(adversarial)
    examples = len(judge.labels)
    single_accuracy = single.float().mean(dim=1)  # (K,)
    perturbation = (adversarial - images).flatten(1)  # (N, C·H·W)
    return AttackResult(
        attack, budget_name, float(budget), eot_samples, judge.samples, correct.float().mean().item(),
        single_accuracy.mean().item(), single_accuracy.std().item() if judge.samples > 1 else 0.0,
        success.sum().item() / max(success_denominator, 1), perturbation.abs().amax(dim=1).mean().item(),
        perturbation.norm(dim=1).mean().item(), seconds, examples, clean.float().mean().item(),
        correct=pack_correct(correct), **measured_with)


def _against(model: torch.nn.Module, proxy: Proxy) -> torch.nn.Module:
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
    info = ATTACKS[attack_name]
    options = {info.budget_name: budget, **settings.attack_options(attack_name)}
    if info.eot_argument is not None:
        options[info.eot_argument] = eot_samples
    pixels = _pixels(images)
    with evaluating(model):
        judge = judge or FixedDrawJudge(model, labels, settings.prediction_samples, settings.batch_size, settings.seed)
        clean = judge.clean(pixels)
        attack = make_attack(attack_name, _against(model, Proxy.parse(settings.proxy)), **options)
        targeted = hasattr(attack, "targets")
        start = time.perf_counter()
        targets = _in_batches(attack.targets, pixels, labels, settings.batch_size) if targeted else None
        if budget == 0:  # every attack returns the clean input at zero budget
            adversarial = pixels
        elif targeted:
            adversarial = _in_batches(attack.toward, pixels, targets, settings.batch_size)
        else:
            adversarial = _in_batches(attack, pixels, labels, settings.batch_size)
        seconds = time.perf_counter() - start
        if targeted:
            success, denominator = judge.predict(adversarial)[0] == targets, len(labels)
        else:
            correct, _ = judge(adversarial)
            success, denominator = clean & ~correct, int(clean.sum())
        return _row(attack_name, info.budget_name, budget, eot_samples if info.eot_argument else 1, judge, clean,
                    adversarial, pixels, success, denominator, seconds,
                    proxy=settings.proxy if info.gradient_based else "-", steps=_steps(attack_name, budget, settings),
                    seed=settings.seed)


# --- the worst case ------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Member:
    """One attack of the worst-case ensemble."""

    name: str  # e.g. "pgd", "surrogate-pgd", "apgd-dlr", "transfer-pgd", "square"
    proxy: Callable[[], str]  # the proxy it differentiates sign units through when it runs; "-" for none
    make: Callable[[float], Attack]  # eps -> attack on [0, 1] pixels
    adaptive: bool = False  # attacks another model than the one defended (surrogate, transfer)

    def is_adaptive(self, proxy: str) -> bool:
        """Whether this member, run through ``proxy``, is an attack designed against the defence: one a
        default evaluation through the network's own estimator would not have run."""
        return self.adaptive or proxy not in ("own", "-")


def _members(model: torch.nn.Module, settings: AttackSettings, transfer_source: torch.nn.Module | None,
             best_proxy: Callable[[], str]) -> Iterator[_Member]:
    """The ensemble in the order it runs: the default attacks through the network's own estimator first
    (so that what the adaptive members add is measured), then the adaptive ones, Square last."""
    eot, steps = settings.eot_samples if is_stochastic(model) else 1, settings.worst_case_steps
    proxies = [Proxy.parse(text) for text in settings.proxies] if has_sign_units(model) else [Proxy()]
    own = Proxy()

    def pgd(target: torch.nn.Module, draws: int) -> Callable[[float], Attack]:
        return lambda eps: PGD(target, eps, steps=steps, eot_samples=draws)

    def named(proxy: Proxy) -> Callable[[], str]:
        return lambda: str(proxy)

    yield _Member("fgsm", named(own), lambda eps: make_attack("fgsm", _against(model, own), eps=eps, eot_samples=eot))
    for proxy in sorted(proxies, key=lambda proxy: proxy != own):  # the network's own estimator first
        yield _Member("pgd", named(proxy), pgd(_against(model, proxy), eot))
    if is_stochastic(model) or has_sign_units(model):
        for proxy in proxies:
            yield _Member("surrogate-pgd", named(proxy), pgd(smooth_surrogate(model, proxy), 1), adaptive=True)
    for loss in ("ce", "dlr"):
        yield _Member(f"apgd-{loss}", best_proxy, lambda eps, loss=loss: make_attack(
            f"apgd-{loss}", _against(model, Proxy.parse(best_proxy())), eps=eps, steps=settings.apgd_steps,
            eot_samples=eot))
    if transfer_source is not None:
        source_eot = settings.eot_samples if is_stochastic(transfer_source) else 1
        yield _Member("transfer-pgd", named(own), pgd(_against(transfer_source, own), source_eot), adaptive=True)
    yield _Member("square", lambda: "-", lambda eps: make_attack(
        "square", model, eps=eps, queries=settings.square_queries, eot_samples=eot))


def worst_case(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: Sequence[float],
               settings: AttackSettings = AttackSettings(), transfer_source: torch.nn.Module | None = None,
               progress: bool = False, judge: FixedDrawJudge | None = None) -> list[AttackResult]:
    """Per-example worst case over the adaptive ensemble at each budget (see the module docstring).

    Args:
        model: classifier on [0, 1] pixels (eval mode is used; its mode is restored).
        images: (N, C, H, W) uint8 images as stored, or float pixels in [0, 1].
        labels: (N,).
        eps: L∞ budgets; attacked in increasing order.
        settings: EOT and prediction draws, steps, proxies, Square queries, batch size, seed.
        transfer_source: a second, independently trained network to craft transfer examples on (in eval
            mode meanwhile, like ``model``).
        progress: show a progress bar over (budget, member).
        judge: the fixed evaluation draws (default: built from ``settings``).

    Returns:
        One ``worst-case`` row per budget; ``members`` lists, in order, how many images each
        ensemble member broke and in how many seconds.
    """
    pixels = _pixels(images)
    breaks: dict[str, int] = {}  # images broken by each proxy's PGD so far: APGD follows the best

    def best_proxy() -> str:
        return max(breaks, key=breaks.get) if breaks else "own"

    rows = []
    source_mode = evaluating(transfer_source) if transfer_source is not None else nullcontext()
    with evaluating(model), source_mode:
        judge = judge or FixedDrawJudge(model, labels, settings.prediction_samples, settings.batch_size, settings.seed)
        clean = judge.clean(pixels)
        adversarial, standing = pixels.clone(), clean.clone()
        members = list(_members(model, settings, transfer_source, best_proxy))
        bar = tqdm(total=len(eps) * len(members), desc="worst case", disable=not progress)
        for budget in sorted(eps):
            log, seconds = [], 0.0
            for member in members:
                bar.update()
                proxy = member.proxy()
                index = standing.nonzero().squeeze(1)  # images no attack has broken yet
                if budget == 0 or not len(index):
                    log.append({"attack": member.name, "proxy": proxy, "adaptive": member.is_adaptive(proxy),
                                "broke": 0, "seconds": 0.0})
                    continue
                start = time.perf_counter()
                trial = adversarial.clone()
                trial[index] = _in_batches(member.make(budget), pixels[index], labels[index], settings.batch_size)
                member_seconds = time.perf_counter() - start
                seconds += member_seconds
                correct, _ = judge(trial)
                broken = standing & ~correct
                adversarial[broken], standing = trial[broken], standing & correct
                if member.name == "pgd":
                    breaks[proxy] = breaks.get(proxy, 0) + int(broken.sum())
                log.append({"attack": member.name, "proxy": proxy, "adaptive": member.is_adaptive(proxy),
                            "broke": int(broken.sum()), "seconds": round(member_seconds, 3)})
            rows.append(_row(WORST_CASE, "eps", budget, settings.eot_samples if is_stochastic(model) else 1, judge,
                             clean, adversarial, pixels, clean & ~standing, int(clean.sum()), seconds,
                             proxy=",".join(settings.proxies) if has_sign_units(model) else "-",
                             steps=settings.worst_case_steps, seed=settings.seed, members=tuple(log)))
        bar.close()
    return rows


# --- the robustness table of a model -------------------------------------------------------------

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


def robustness_sweep(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                     settings: AttackSettings = AttackSettings(), *, transfer_source: torch.nn.Module | None = None,
                     previous_rows: Sequence[AttackResult] = (), progress: bool = False) -> RobustnessReport:
    """Measures every row of :func:`attack_plan` and diagnoses the result.

    Args:
        model: classifier on [0, 1] pixels (eval mode is used; its mode is restored).
        images: (N, C, H, W) uint8 test images as stored.
        labels: (N,).
        settings: what to attack with, and how.
        transfer_source: a second, independently trained network for the worst case's transfer attack.
        previous_rows: results of earlier sweeps to keep; a new row replaces an old one measured with
            the same settings (:attr:`AttackResult.key`); old rows keep their warnings.
        progress: show progress bars.
    """
    stochastic = is_stochastic(model)
    plan = [entry for entry in attack_plan(settings, stochastic) if entry[0] != WORST_CASE]
    pixels = _pixels(images)
    with evaluating(model):
        judge = FixedDrawJudge(model, labels, settings.prediction_samples, settings.batch_size, settings.seed)
        rows = [attack_model(model, name, budget, pixels, labels, settings, eot_samples=eot, judge=judge)
                for name, budget, eot in tqdm(plan, desc="attacks", disable=not progress)]
        if WORST_CASE in settings.attacks:
            rows += worst_case(model, pixels, labels, settings.eps, settings, transfer_source, progress, judge)
        clean = judge.clean(pixels).float().mean().item()
        probe_images, probe_labels = images[:settings.probe_examples], labels[:settings.probe_examples]
        probe_pixels = _pixels(probe_images)
        randomized = randomized_fraction(model, probe_pixels)
        health = gradient_health(_against(model, Proxy.parse(settings.proxy)), probe_pixels, probe_labels)
        consistency = {}
        if stochastic:
            proxies = dict.fromkeys((settings.proxy, *settings.proxies)) if has_sign_units(model) else ["own"]
            consistency = {text: gradient_consistency(_against(model, Proxy.parse(text)), probe_pixels, probe_labels,
                                                      settings.eot_samples) for text in proxies}
    convergence = convergence_eps = None
    if settings.check_convergence:
        convergence_eps = probe_budget(rows, clean)
        convergence = convergence_probe(model, probe_images, probe_labels, convergence_eps, settings)
    rows = merge_rows(previous_rows, rows)
    findings = diagnose(_to_checked(rows), randomized, health, consistency.get(settings.proxy), convergence)
    concerning = [list(row.warnings) for row in rows]
    for finding in findings:
        for index in finding.rows:
            concerning[index].append(finding.message)
    rows = [replace(row, warnings=tuple(dict.fromkeys(messages))) for row, messages in zip(rows, concerning)]
    model_wide = [finding.message for finding in findings if not finding.rows]
    warnings = list(dict.fromkeys(model_wide + [message for row in rows for message in row.warnings]))
    return RobustnessReport(rows, clean, randomized, health, consistency, convergence, convergence_eps, warnings)


def merge_rows(old: Sequence[AttackResult], new: Sequence[AttackResult]) -> list[AttackResult]:
    """``old`` rows not measured again with the same settings, then ``new``; sorted by attack
    (registry order, the worst case last), budget, EOT samples and the remaining settings."""
    merged = {row.key: row for row in old}
    merged.update((row.key, row) for row in new)
    order = list(EVALUATIONS)
    return sorted(merged.values(), key=lambda row: (order.index(row.attack), row.budget, row.eot_samples,
                                                    row.proxy, row.steps or 0, row.prediction_samples,
                                                    row.examples, row.seed))


def attack_run(run: Run, data: FashionMNIST, settings: AttackSettings = AttackSettings(), *,
               transfer_source: Run | None = None, device: torch.device | str = "cpu",
               progress: bool = False) -> RobustnessReport:
    """Attacks a finished run on the test split of ``data`` and writes ``attacks.json`` / ``attacks.csv``.

    Rows of earlier invocations are kept unless measured again with the same settings. The run
    directory is locked meanwhile (:func:`stochrelax.runs.run_lock`), so that two attacks on
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
