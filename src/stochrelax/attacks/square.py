"""Square Attack, the score-based black-box L∞ attack of AutoAttack (Andriushchenko et al. 2020)."""

from __future__ import annotations

import math

import torch

from stochrelax.attacks.core import check_eps, check_images, project_linf
from stochrelax.nn.layers import drawing_from
from stochrelax.nn.prediction import is_stochastic, predictive_log_prob, sample_logits

__all__ = ["Square", "square_fraction"]

# Fraction of the 10,000-query schedule after which p is halved again (Andriushchenko et al. 2020).
_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def square_fraction(p_init: float, query: int, queries: int) -> float:
    """p, the fraction of pixels a square covers, at search step ``query`` of ``queries``.

    The schedule of the paper for 10,000 queries, rescaled to ``queries`` as in
    AutoAttack: p_init, halved after steps 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000.
    """
    rescaled = int(query / queries * 10000)
    return p_init / 2 ** sum(rescaled > halving for halving in _HALVINGS)


class Square:
    """Random search over squares of ±eps: the L∞ Square Attack, untargeted.

    Andriushchenko, Croce, Flammarion, Hein 2020, "Square Attack: a query-efficient
    black-box adversarial attack via random search", https://arxiv.org/abs/1912.00986
    (Algorithm 1 with the L∞ sampling of Algorithm 2). Starts from vertical stripes (each
    column of each channel at ±eps), then each step proposes, per example, a square of
    side s = max(round(√(p·H·W)), 1) at a uniformly random position whose pixels are set
    to clean ± eps (one sign per channel), and keeps it if it lowers the margin
    log p(y | x) − max_{i≠y} log p(i | x). p follows :func:`square_fraction`. Examples stop
    querying once misclassified (margin ≤ 0). As in the paper's reference code, a
    proposal that would leave the point unchanged has its signs flipped, so that no
    query is wasted.

    Gradient-free: the model is only queried, under ``torch.no_grad``. For a deterministic
    model the margin is that of the logits (log-softmax only shifts them): one margin per
    step, ``queries`` in all. For a stochastic model p is the predictive distribution of
    ``eot_samples`` noise draws, so a margin is a random estimate. Comparing a candidate's
    fresh estimate with the stored estimate that won the current point its place is biased
    towards rejecting (that estimate was chosen for being low: the winner's curse);
    comparing two independent fresh estimates accepts worsenings and turns the search into
    a random walk. So each step measures the current point and the candidate on *the same
    noise draws* (common random numbers): their difference is the square's effect. Two
    margins per step, 1 + 2·(queries − 1) in all. An example stops at its first margin ≤ 0,
    which for a stochastic model may be a lucky draw; the evaluation judges the result afresh.

    Threat model: black-box (scores only) L∞ untargeted.

    Args:
        model: classifier on [0, 1] pixels; its mode is left as it is.
        eps: L∞ budget (default 0.1).
        queries: search steps per example, the stripe initialisation included (default 5000, as AutoAttack);
            one margin evaluation each, two for a stochastic model.
        p_init: initial fraction of pixels per square, in (0, 1] (default 0.8, AutoAttack's).
        eot_samples: noise draws per query of a stochastic model (default 1).
        generator: source of stripes, squares and signs, a CPU generator (default: torch's global generator).

    Shapes: images (B, C, H, W) in [0, 1], labels (B,) → adversarial images (B, C, H, W).

    Example:
        >>> adversarial = Square(model, eps=0.1, queries=1000)(images, labels)
    """


    def __init__(self, model: torch.nn.Module, eps: float = 0.1, queries: int = 5000, p_init: float = 0.8,
                 eot_samples: int = 1, generator: torch.Generator | None = None) -> None:
        if queries < 1:
            raise ValueError(f"queries must be >= 1, got {queries}")
        if not 0.0 < p_init <= 1.0:
            raise ValueError(f"p_init must be in (0, 1], got {p_init}")
        if eot_samples < 1:
            raise ValueError(f"eot_samples must be >= 1, got {eot_samples}")
        self.model, self.eps, self.queries = model, check_eps(eps), int(queries)
        self.p_init, self.eot_samples, self.generator = float(p_init), eot_samples, generator

    @torch.no_grad()
    def margin(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """log p(y | x) − max_{i≠y} log p(i | x), (B,); ≤ 0 when misclassified."""
        log_prob = predictive_log_prob(sample_logits(self.model, images, self.eot_samples))  # (B, classes)
        true = log_prob.gather(1, labels[:, None]).squeeze(1)  # (B,)
        best_other = log_prob.scatter(1, labels[:, None], -math.inf).amax(dim=1)  # (B,)
        return true - best_other

    def _signs(self, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """Independent uniform ±1 of ``shape``, with the dtype and device of ``like``."""
        return (2 * torch.randint(0, 2, shape, generator=self.generator) - 1).to(like)

    def _squares(self, count: int, side: int, height: int, width: int, device: torch.device) -> torch.Tensor:
        """(count, 1, H, W) masks of one side × side square each, at uniformly random positions."""
        top = torch.randint(0, height - side + 1, (count, 1), generator=self.generator).to(device)
        left = torch.randint(0, width - side + 1, (count, 1), generator=self.generator).to(device)
        rows, columns = torch.arange(height, device=device), torch.arange(width, device=device)
        in_rows = (rows >= top) & (rows < top + side)  # (count, H)
        in_columns = (columns >= left) & (columns < left + side)  # (count, W)
        return in_rows[:, None, :, None] & in_columns[:, None, None, :]  # (count, 1, H, W)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        check_images(images, labels)
        batch, channels, height, width = images.shape
        stripes = self._signs((batch, channels, 1, width), images)  # (B, C, 1, W), broadcast over rows
        best = project_linf(images + self.eps * stripes, images, self.eps)
        best_margin = self.margin(best, labels)  # (B,)
        paired = is_stochastic(self.model)  # noisy margins: measure current point and candidate on common draws
        for query in range(self.queries - 1):
            active = (best_margin > 0).nonzero().squeeze(1)  # indices of the examples still correctly classified
            if not len(active):
                break
            clean, current = images[active], best[active]  # (n, C, H, W) each, n = len(active)
            p = square_fraction(self.p_init, query, self.queries)
            side = min(max(round(math.sqrt(p * height * width)), 1), height, width)
            in_square = self._squares(len(active), side, height, width, images.device)  # (n, 1, H, W)
            signs = self._signs((len(active), channels, 1, 1), images)  # (n, C, 1, 1): one per square and channel
            candidate = project_linf(torch.where(in_square, clean + self.eps * signs, current), clean, self.eps)
            unchanged = (candidate == current).flatten(1).all(dim=1)  # (n, C·H·W) → (n,)
            signs = torch.where(unchanged[:, None, None, None], -signs, signs)  # mask viewed as (n, 1, 1, 1)
            candidate = project_linf(torch.where(in_square, clean + self.eps * signs, current), clean, self.eps)
            if paired:
                current_margin, margin = self._paired_margins(current, candidate, labels[active])  # (n,) each
            else:
                current_margin, margin = best_margin[active], self.margin(candidate, labels[active])  # (n,) each
            improved = margin < current_margin  # (n,)
            best[active[improved]] = candidate[improved]
            best_margin[active] = torch.where(improved, margin, current_margin)
        return best

    def _paired_margins(self, current: torch.Tensor, candidate: torch.Tensor,
                        labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Margins of the current points and the candidates, both from the same noise draws (common random
        numbers): their difference is the square's effect, not the luck of two independent draws. The
        draws of the first are recorded and given again to the second, which draws nothing."""
        recorded: dict[torch.nn.Module, list[torch.Tensor]] = {}  # per noise layer, its draws in pass order

        def record(layer: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
            recorded.setdefault(layer, []).append(layer.draw(inputs))
            return recorded[layer][-1]

        with drawing_from(self.model, record):
            current_margin = self.margin(current, labels)
        with drawing_from(self.model, lambda layer, inputs: recorded[layer].pop(0)):
            return current_margin, self.margin(candidate, labels)

    def __repr__(self) -> str:
        return (f"Square(eps={self.eps:g}, queries={self.queries}, p_init={self.p_init:g}, "
                f"eot_samples={self.eot_samples})")
