"""The adaptive per-example worst case: the robust accuracy every table and verdict reports.

An image counts as robust at eps only if it survives every attack of an adaptive ensemble —
FGSM with the model's own proxy (the default attack), PGD with EOT through every proxy of
:mod:`stochrelax.attacks.proxies`, PGD on the smooth surrogate of every proxy, APGD-CE and
APGD-DLR through the proxy that broke most, PGD crafted on a second network (transfer, when
one is given) and the gradient-free Square attack. As in AutoAttack (Croce & Hein 2020,
https://arxiv.org/abs/2003.01690) only images that still stand are attacked by the next
member, and budgets are attacked in increasing order: an image broken at a smaller eps is
broken at every larger one (the L∞ balls nest), and its adversarial image is kept. Images
are judged on the fixed evaluation draws of :class:`stochrelax.evaluation.rows.FixedDrawJudge`,
so that members are compared on equal terms; after each member only the images it attacked
are judged again, each on its own draws.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, Iterator, NamedTuple, Sequence

import torch
from tqdm import tqdm

from stochrelax.attacks import PGD, make_attack
from stochrelax.attacks.core import Attack
from stochrelax.attacks.proxies import Proxy, has_sign_units, smooth_surrogate
from stochrelax.evaluation.rows import FixedDrawJudge, as_pixels, in_batches, judged_row, through_proxy
from stochrelax.evaluation.table import WORST_CASE, AttackResult, AttackSettings
from stochrelax.nn.prediction import evaluating, is_stochastic

__all__ = ["WorstCase", "worst_case"]


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

    yield _Member("fgsm", named(own), lambda eps: make_attack("fgsm", through_proxy(model, own), eps=eps,
                                                              eot_samples=eot))
    for proxy in sorted(proxies, key=lambda proxy: proxy != own):  # the network's own estimator first
        yield _Member("pgd", named(proxy), pgd(through_proxy(model, proxy), eot))
    if is_stochastic(model) or has_sign_units(model):
        for proxy in proxies:
            yield _Member("surrogate-pgd", named(proxy), pgd(smooth_surrogate(model, proxy), 1), adaptive=True)
    for loss in ("ce", "dlr"):
        yield _Member(f"apgd-{loss}", best_proxy, lambda eps, loss=loss: make_attack(
            f"apgd-{loss}", through_proxy(model, Proxy.parse(best_proxy())), eps=eps, steps=settings.apgd_steps,
            eot_samples=eot))
    if transfer_source is not None:
        source_eot = settings.eot_samples if is_stochastic(transfer_source) else 1
        yield _Member("transfer-pgd", named(own), pgd(through_proxy(transfer_source, own), source_eot),
                      adaptive=True)
    yield _Member("square", lambda: "-", lambda eps: make_attack(
        "square", model, eps=eps, queries=settings.square_queries, eot_samples=eot))


class WorstCase(NamedTuple):
    """The worst case at each budget: its table rows, and per image what it found."""

    rows: list[AttackResult]  # one ``worst-case`` row per budget, in increasing order
    clean: torch.Tensor  # (N,) bool: right on the clean image, on the fixed evaluation draws
    robust: dict[float, torch.Tensor]  # eps -> (N,) bool: right under every member at eps (and below)
    adversarial: dict[float, torch.Tensor]  # eps -> (N, C, H, W) pixels: what broke the image, else the clean one


def worst_case(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: Sequence[float],
               settings: AttackSettings = AttackSettings(), transfer_source: torch.nn.Module | None = None,
               progress: bool = False, judge: FixedDrawJudge | None = None) -> WorstCase:
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
        One ``worst-case`` row per budget, whose ``members`` list, in order, how many images each
        ensemble member broke and in how many seconds; and per budget which images stand and the
        adversarial images (an image broken at a smaller budget stays broken by the same image).
    """
    pixels = as_pixels(images)
    breaks: dict[str, int] = {}  # images broken by each proxy's PGD so far: APGD follows the best

    def best_proxy() -> str:
        return max(breaks, key=breaks.get) if breaks else "own"

    rows, robust, found = [], {}, {}
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
                trial = in_batches(member.make(budget), pixels[index], labels[index], settings.batch_size)
                member_seconds = time.perf_counter() - start
                seconds += member_seconds
                correct, _ = judge(trial, index)  # only the images still standing, each on its own draws
                broken = torch.zeros_like(standing)
                broken[index[~correct]] = True
                adversarial[index[~correct]], standing = trial[~correct], standing & ~broken
                if member.name == "pgd":
                    breaks[proxy] = breaks.get(proxy, 0) + int(broken.sum())
                log.append({"attack": member.name, "proxy": proxy, "adaptive": member.is_adaptive(proxy),
                            "broke": int(broken.sum()), "seconds": round(member_seconds, 3)})
            rows.append(judged_row(WORST_CASE, "eps", budget, settings.eot_samples if is_stochastic(model) else 1,
                                   judge, clean, adversarial, pixels, seconds,
                                   proxy=",".join(settings.proxies) if has_sign_units(model) else "-",
                                   steps=settings.worst_case_steps, seed=settings.seed, members=tuple(log)))
            robust[budget], found[budget] = standing.clone(), adversarial.clone()
        bar.close()
    return WorstCase(rows=rows, clean=clean, robust=robust, adversarial=found)
