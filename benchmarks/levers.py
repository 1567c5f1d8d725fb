"""Speed levers, each against today's path in the same run, alternating repetitions.

Rows (keys in :data:`LEVER_KEYS`):

- ``precision/train-<variant>`` — one epoch of :func:`stochrelax.training.loop.fit` with the
  convolutions in bfloat16 (``train.precision``) vs float32, images/s.
- ``precision/attack-pgd`` and ``precision/attack-eot-pgd`` — PGD on the trained
  deterministic network, and EOT-PGD on the stochastic ReLU network, with the convolutions in
  bfloat16 (:func:`stochrelax.models.allconv.computing_in`) vs float32, examples/s.
- ``fold/attack-pgd`` — PGD on the deterministic network with its BatchNorm folded into the
  convolutions (:func:`stochrelax.models.allconv.fold_batch_norm`, what attacks use) vs as trained, examples/s.
- ``work/job`` — work per verdict: one stochastic configuration's whole sweep job (training and
  every attack of the preset; ``quick`` in the full suite, ``smoke`` in the quick one) as it runs
  now vs as it ran before the second speed round (BatchNorm not folded), jobs/s.
- ``rng/step-copy`` — what a training step spends on copying the generator states that let
  a non-finite step be replayed (:func:`stochrelax.nn.rng.generator_states`): copies/s over
  training steps/s, so the ratio is how many copies one step's time would pay for.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from typing import Callable

import torch
import torch.nn as nn

from benchmarks.harness import Row, Workload, compare_row, measure
from stochrelax.attacks import PGD
from stochrelax.data.fashion_mnist import FashionMNIST
from stochrelax.models.allconv import computing_in, fold_batch_norm
from stochrelax.nn.prediction import evaluating
from stochrelax.nn.rng import generator_states
from stochrelax.rundir.config import TrainConfig
from stochrelax.study.grid import PRESETS, STUDY_GRID, Preset, load_grid
from stochrelax.study.jobs import plan_jobs, run_job
from stochrelax.training.loop import fit

__all__ = ["PRECISION_VARIANTS", "LEVER_KEYS", "levers_section", "work_per_verdict"]

PRECISION_VARIANTS = ("deterministic", "relu-logistic", "sign-ste")
"""Training variants (:data:`benchmarks.suite.TRAIN_VARIANTS`) timed in both precisions."""

LEVER_KEYS: tuple[str, ...] = (*(f"precision/train-{name}" for name in PRECISION_VARIANTS),
                               "precision/attack-pgd", "precision/attack-eot-pgd", "fold/attack-pgd", "rng/step-copy",
                               "work/job")


def _training(name: str, model: nn.Module, data: FashionMNIST, warm: FashionMNIST, batch_size: int,
              precision: str) -> Workload:
    seeds = iter(range(1, 10 ** 9))  # a new data order every repetition

    def run() -> float:
        fit(model, data, TrainConfig(epochs=1, batch_size=batch_size, seed=next(seeds), precision=precision))
        return data.train_labels.shape[0]

    def warmup() -> None:
        fit(model, warm, TrainConfig(epochs=1, batch_size=batch_size, precision=precision))

    return Workload(f"train/{name}/{precision}", run, warmup)


def _attack(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, precision: str, eps: float,
            steps: int, eot_samples: int) -> Callable[[], float]:
    def run() -> float:
        with computing_in(model, precision):
            PGD(model, eps, steps=steps, eot_samples=eot_samples)(images, labels)
        return labels.shape[0]

    return run


def levers_section(data: FashionMNIST, models: dict[str, nn.Module], sizes, log: Callable[[str], None]) -> list[Row]:
    """The lever rows; ``models`` are freshly built networks by training variant (trained here as they are timed)."""
    subset = data.limit(sizes.train_images, 64)
    warm = data.limit(sizes.warmup_images, 64)
    workloads = [_training(name, models[name], subset, warm, sizes.batch_size, precision)
                 for name in PRECISION_VARIANTS for precision in ("float32", "bfloat16")]
    log(f"levers: training in float32 and bfloat16, {len(PRECISION_VARIANTS)} networks, {sizes.train_images} images")
    rates = measure(workloads, sizes.repetitions, log)
    detail = f"{sizes.train_images} images, batch {sizes.batch_size}, one epoch of fit per repetition"
    rows = [compare_row(f"precision/train-{name}", f"training in bfloat16, {name}", "images/s", "bfloat16",
                        "float32", rates[f"train/{name}/bfloat16"], rates[f"train/{name}/float32"], None,
                        detail=detail) for name in PRECISION_VARIANTS]

    images = data.test_images[:sizes.attack_images].float() / 255
    labels = data.test_labels[:sizes.attack_images]
    eot_images, eot_labels = images[:sizes.eot_images], labels[:sizes.eot_images]
    deterministic, stochastic = models["deterministic"], models["relu-logistic"]
    attack_workloads = [
        Workload(f"pgd/{precision}", _attack(deterministic, images, labels, precision, sizes.eps, sizes.pgd_steps, 1))
        for precision in ("float32", "bfloat16")]
    attack_workloads += [
        Workload(f"eot/{precision}", _attack(stochastic, eot_images, eot_labels, precision, sizes.eps,
                                              sizes.pgd_steps, sizes.eot_samples))
        for precision in ("float32", "bfloat16")]
    folded = fold_batch_norm(deterministic)
    attack_workloads += [Workload(f"fold/{name}", _attack(network, images, labels, "float32", sizes.eps,
                                                           sizes.pgd_steps, 1))
                         for name, network in (("folded", folded), ("as-trained", deterministic))]
    log("levers: PGD and EOT-PGD in float32 and bfloat16, PGD with BatchNorm folded")
    with evaluating(deterministic), evaluating(stochastic):
        attack_rates = measure(attack_workloads, sizes.repetitions, log)
    rows.append(compare_row("precision/attack-pgd", f"PGD-{sizes.pgd_steps} in bfloat16, deterministic ReLU",
                            "examples/s", "bfloat16", "float32", attack_rates["pgd/bfloat16"],
                            attack_rates["pgd/float32"], None, detail=f"{labels.shape[0]} test images"))
    rows.append(compare_row("precision/attack-eot-pgd", f"EOT-PGD-{sizes.pgd_steps}, K = {sizes.eot_samples}, in "
                            "bfloat16, ReLU with logistic noise",
                            "examples/s", "bfloat16", "float32", attack_rates["eot/bfloat16"],
                            attack_rates["eot/float32"], None, detail=f"{eot_labels.shape[0]} test images"))

    rows.append(compare_row("fold/attack-pgd", f"PGD-{sizes.pgd_steps} with BatchNorm folded, deterministic ReLU",
                            "examples/s", "folded", "as trained", attack_rates["fold/folded"],
                            attack_rates["fold/as-trained"], None, detail=f"{labels.shape[0]} test images, float32"))

    def copies() -> float:
        count = 10_000
        for _ in range(count):
            generator_states("cpu")
        return count

    steps_per_second = [rate / sizes.batch_size for rate in rates["train/relu-logistic/float32"]]
    copy_rates = measure([Workload("copies", copies)], len(steps_per_second), log)["copies"]
    rows.append(compare_row("rng/step-copy", "generator-state copy per training step (replaying a failed step)",
                            "per s", "copies", "training steps", copy_rates, steps_per_second, None,
                            detail="ratio: how many copies one float32 training step of the logistic ReLU network "
                                   "takes as long as; the copy is kept"))
    return rows


def work_per_verdict(data_dir: str | None, preset_name: str, repetitions: int, log: Callable[[str], None]) -> Row:
    """The ``work/job`` row: a fresh job of the logistic ReLU configuration per repetition, in a temporary directory."""
    planned = [run for run in load_grid(STUDY_GRID) if run.name == "relu_noise-logistic-additive-0.05"]
    preset = PRESETS[preset_name]
    variants = {"now": preset, "before": replace(preset, attack=replace(preset.attack, fold_batch_norm=False))}

    def job(settings: Preset) -> Callable[[], float]:
        def run() -> float:
            with tempfile.TemporaryDirectory() as study:
                [planned_job] = plan_jobs(planned, 1, settings, study)
                run_job(planned_job, settings, data_dir)
            return 1.0

        return run

    log(f"levers: one {preset_name} job of {planned[0].name}, now and before the second speed round")
    rates = measure([Workload(name, job(settings), lambda: None) for name, settings in variants.items()],
                    repetitions, log)
    return compare_row("work/job", f"work per verdict: one {preset_name} job of {planned[0].name}", "jobs/s", "now",
                       "BatchNorm not folded", rates["now"], rates["before"], None,
                       detail="training and every attack of the preset, one thread")
