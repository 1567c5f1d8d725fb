"""End to end: the thesis study's projected wall time from the measured rates, and the smoke study's real one."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from benchmarks.harness import Row
from stochrelax.attacks.fgsm import kurakin_steps
from stochrelax.evaluation.table import DEFAULT_BUDGETS
from stochrelax.rundir.config import RunConfig

__all__ = ["iterative_fgsm_gradients", "project_thesis_study", "time_smoke_reproduce"]


def iterative_fgsm_gradients(budgets: Sequence[float]) -> int:
    """Gradients iterative FGSM takes for ``budgets`` attacked together (``IterativeFGSM.toward_each``):
    the largest budget's steps, and for each smaller eps the steps after its trajectory parts from
    the larger ones' — at the first iterate outside its ball, number ⌊255·eps⌋ + 1, when a pixel is
    pushed the same way at every step (the usual case; otherwise it parts later and costs less).
    """
    largest = max(budgets, default=0.0)
    shared = kurakin_steps(largest) if largest > 0 else 0
    return shared + sum(max(0, kurakin_steps(eps) - (math.floor(255 * eps) + 1)) for eps in budgets if 0 < eps < largest)


def project_thesis_study(rows: Sequence[Row], runs: Sequence[RunConfig], cores: int) -> tuple[float, str]:
    """Projected wall time (seconds) of the ``thesis`` preset for one seed of ``runs`` on ``cores`` cores.

    Training: 100 epochs × 60,000 images at the measured throughput of the matching
    network (ReLU deterministic / logistic noise, sign STE / score; FGSM-mixture epochs see
    twice the images, PGD-10 training costs 11 passes per image). Attacks: the thesis
    budgets on 1,000 images, attacked together — one FGSM gradient for every eps and 95
    iterative-FGSM gradients for the 260 steps of its budgets (:func:`iterative_fgsm_gradients`) — at the measured
    PGD cost per gradient step, ×17 for a stochastic run (noise in the units or on the input:
    single-draw plus EOT-16). Not counted: the worst case and the certification of runs with
    input noise. One run per core, perfectly packed: a lower bound for the sweep.
    """
    rate = {row.key.split("/", 1)[1]: row.ours for row in rows if row.key.startswith("train/")}
    pgd = next(row for row in rows if row.key == "attack/pgd-20")
    seconds_per_gradient_step = 1.0 / (pgd.ours * 20)  # per image
    total, gradients = 0.0, iterative_fgsm_gradients(DEFAULT_BUDGETS["eps"])
    for config in runs:
        activation = config.model.activation
        variant = ("deterministic" if activation.noise is None and activation.kind == "relu" else
                   "relu-logistic" if activation.kind == "relu" else
                   "sign-score" if activation.estimator == "score" else "sign-ste")
        images = 100 * 60_000 * {None: 1.0, "fgsm_mixture": 1.99, "pgd": 11.0}[config.train.adversarial.method]
        total += images / rate[variant]
        total += 1000 * (1 + gradients) * seconds_per_gradient_step * (17 if config.model.stochastic else 1)
    return total / cores, (f"{len(runs)} runs x 100 epochs on 60,000 images, thesis attack budgets on 1,000 images, "
                           f"{cores} cores")


def time_smoke_reproduce(out_dir: str | Path, data_dir: str | Path | None = None) -> float:
    """Wall seconds of ``stochrelax reproduce --preset smoke --seeds 1`` in a child process."""
    command = [sys.executable, "-m", "stochrelax.cli", "reproduce", "--preset", "smoke", "--seeds", "1",
               "--out", str(out_dir), "--no-progress"] + (["--data-dir", str(data_dir)] if data_dir else [])
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started
