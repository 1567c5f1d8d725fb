"""The suite: which rows are measured, at which sizes, and in what order (:func:`run_benchmarks`).

Rows (keys in :data:`ROW_KEYS`):

1. ``train/<variant>`` — training throughput (images/s) of the thesis network, batch 64,
   Adam, one epoch of :func:`stochrelax.training.loop.fit` vs a plain loop over
   ``torch.utils.data.DataLoader`` of a per-sample ``Dataset``
   (:func:`benchmarks.baselines.plain_train_epoch`), for a deterministic ReLU network and
   three stochastic ones (ReLU with additive logistic noise; sign units with logistic
   noise trained straight-through; the same trained with the score function). Target ≥ 2×.
2. ``noise/<variant>`` — stochastic vs deterministic training throughput, both stochrelax
   (the same repetitions as row 1). Target ≥ 0.85×.
3. ``seeds/relu-logistic`` — many seeds of one configuration: the sweep's process pool
   (one seed per worker) vs the same seeds one after another with every core; no target
   (seeds stacked into one network were tried and dropped; a note says so).
4. ``attack/fgsm``, ``attack/pgd-20``, ``attack/ifgsm-ll`` — adversarial examples/s on the
   deterministic network vs ART's FastGradientMethod, ProjectedGradientDescent and
   BasicIterativeMethod (targeted, least-likely targets chosen as ours does), target
   ≥ 1.5×; ``attack/eot-pgd-16`` — PGD-20 with EOT over K = 16 draws on the stochastic
   ReLU network vs the same attack with the expected gradient as a Python loop of K
   forward/backward passes (:class:`benchmarks.baselines.LoopedEOTPGD`), target ≥ 3×.
5. ``predict/mc-32`` — Monte Carlo prediction with K = 32 draws: one batched pass
   (:func:`stochrelax.nn.prediction.sample_logits`) vs K passes in a loop
   (:func:`benchmarks.baselines.looped_predictive_probs`); predictions/s, no target.
6. ``limit/train-gflops`` — achieved training GFLOP/s of stochrelax on the deterministic
   network (3 × the convolutions' forward FLOPs, :func:`benchmarks.limits.count_conv_flops`)
   over the GFLOP/s of a float32 ``torch.mm`` of n × n, measured in the same repetitions.
   Target ≥ 0.35.
7. the speed levers of :mod:`benchmarks.levers` (bfloat16 convolutions, the per-step generator copy).
- ``memory/train-peak-rss`` — peak resident memory of a short ``train_run`` in a child
  process, against a budget of 1.5 GB (ratio = peak / budget, target ≤ 1).

The suite runs with ``torch.get_num_threads()`` as the caller set it and records it.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch
import torch.nn as nn

from benchmarks.baselines import LoopedEOTPGD, art_classifier, looped_predictive_probs, plain_loader, plain_train_epoch
from benchmarks.harness import BenchReport, Row, Workload, compare_row, machine_facts, measure
from benchmarks.levers import LEVER_KEYS, PRECISION_VARIANTS, levers_section, work_per_verdict
from benchmarks.limits import count_conv_flops, matmul_gflop, peak_training_rss
from stochrelax.attacks import FGSM, PGD, IterativeFGSM
from stochrelax.data.fashion_mnist import FashionMNIST, load_fashion_mnist
from stochrelax.models.allconv import ModelConfig, build_model
from stochrelax.nn.estimators import MovingAverageBaseline
from stochrelax.nn.prediction import evaluating, predictive_log_prob, sample_logits
from stochrelax.nn.rng import seeded
from stochrelax.rundir.config import TrainConfig
from stochrelax.study.sweep import process_pool, usable_cpus, worker_threads
from stochrelax.training.loop import fit

__all__ = ["MEMORY_BUDGET_MB", "TRAIN_VARIANTS", "STOCHASTIC_VARIANTS", "ROW_KEYS", "BenchSizes", "QUICK", "FULL",
           "thesis_model", "train_one_seed", "torch_threads", "run_benchmarks"]

MEMORY_BUDGET_MB = 1536.0  # 1.5 GB

# name -> activation config of the thesis network (std 0.05, the configs in configs/)
TRAIN_VARIANTS: dict[str, dict] = {
    "deterministic": {"kind": "relu"},
    "relu-logistic": {"kind": "relu", "noise": "logistic", "std": 0.05},
    "relu-gaussian": {"kind": "relu", "noise": "gaussian", "std": 0.05},
    "sign-ste": {"kind": "sign", "noise": "logistic", "std": 0.05, "estimator": "ste"},
    "sign-score": {"kind": "sign", "noise": "logistic", "std": 0.05, "estimator": "score"},
}
_VARIANT_TITLES = {
    "deterministic": "deterministic ReLU",
    "relu-logistic": "ReLU, additive logistic noise",
    "relu-gaussian": "ReLU, additive Gaussian noise",
    "sign-ste": "sign, logistic noise, STE",
    "sign-score": "sign, logistic noise, score function",
}
STOCHASTIC_VARIANTS = ("relu-logistic", "relu-gaussian", "sign-ste", "sign-score")

ROW_KEYS: tuple[str, ...] = (
    *(f"train/{name}" for name in TRAIN_VARIANTS),
    *(f"noise/{name}" for name in STOCHASTIC_VARIANTS),
    "seeds/relu-logistic",
    "attack/fgsm", "attack/pgd-20", "attack/ifgsm-ll", "attack/eot-pgd-16",
    "predict/mc-32",
    "limit/train-gflops",
    *LEVER_KEYS,
    "memory/train-peak-rss",
)
"""Keys of the rows :func:`run_benchmarks` returns, in order."""


@dataclass(frozen=True)
class BenchSizes:
    """Sizes of one run of the suite: repetitions, images per section, the matrix product, the budgets."""

    repetitions: int
    train_images: int  # per timed epoch
    warmup_images: int  # untimed first epoch
    attack_images: int  # FGSM, PGD-20, iterative FGSM, vs ART
    eot_images: int  # EOT-PGD-16 (16 draws each)
    mc_images: int  # Monte Carlo prediction, K = 32
    matmul_n: int
    matmul_repeats: int
    memory_train_images: int
    eps: float = 0.1
    pgd_steps: int = 20
    eot_samples: int = 16
    mc_samples: int = 32
    batch_size: int = 64


QUICK = BenchSizes(repetitions=2, train_images=512, warmup_images=128, attack_images=64, eot_images=16,
                   mc_images=64, matmul_n=1024, matmul_repeats=4, memory_train_images=256)
FULL = BenchSizes(repetitions=5, train_images=6400, warmup_images=640, attack_images=500, eot_images=100,
                  mc_images=500, matmul_n=2048, matmul_repeats=3, memory_train_images=2000)


def thesis_model(activation: dict, seed: int = 0) -> nn.Module:
    """The thesis network with ``activation``, initialised from ``seed``."""
    with seeded(seed):
        return build_model(ModelConfig.model_validate({"activation": activation}))


def _training_section(data: FashionMNIST, sizes: BenchSizes,
                      log: Callable[[str], None]) -> tuple[list[Row], dict[str, nn.Module]]:
    subset = data.limit(sizes.train_images, 64)  # fit evaluates on 64 test images: negligible
    warm = data.limit(sizes.warmup_images, 64)
    images, labels = subset.train_images, subset.train_labels
    flops = count_conv_flops(thesis_model(TRAIN_VARIANTS["deterministic"]))
    workloads, trained = [], {}
    for name, activation in TRAIN_VARIANTS.items():
        # The plain loop's network is the same code in PyTorch's default (NCHW) layout.
        ours_model = thesis_model(activation)
        plain_model = thesis_model(activation).to(memory_format=torch.contiguous_format)
        trained[name] = ours_model
        seeds = iter(range(1, 10 ** 9))  # a new data order every repetition

        def ours(model=ours_model, seeds=seeds) -> float:
            fit(model, subset, TrainConfig(epochs=1, batch_size=sizes.batch_size, seed=next(seeds)))
            return subset.train_labels.shape[0]

        def ours_warm(model=ours_model) -> None:
            fit(model, warm, TrainConfig(epochs=1, batch_size=sizes.batch_size))

        optimizer = torch.optim.Adam(plain_model.parameters(), lr=1e-3)
        baseline = MovingAverageBaseline(0.9)
        loader = plain_loader(images, labels, sizes.batch_size)
        warm_loader = plain_loader(warm.train_images, warm.train_labels, sizes.batch_size)

        def plain(model=plain_model, loader=loader, optimizer=optimizer, baseline=baseline) -> float:
            plain_train_epoch(model, loader, optimizer, baseline)
            return len(loader.dataset)

        def plain_warm(model=plain_model, loader=warm_loader, optimizer=optimizer, baseline=baseline) -> None:
            plain_train_epoch(model, loader, optimizer, baseline)

        workloads += [Workload(f"ours/{name}", ours, ours_warm), Workload(f"plain/{name}", plain, plain_warm)]
    workloads.append(Workload("matmul", matmul_gflop(sizes.matmul_n, sizes.matmul_repeats)))
    rates = measure(workloads, sizes.repetitions, log)

    detail = f"{sizes.train_images} images, batch {sizes.batch_size}, Adam lr 1e-3, one epoch per repetition"
    rows = [compare_row(f"train/{name}", f"training, {_VARIANT_TITLES[name]}", "images/s", "stochrelax fit",
                        "DataLoader loop", rates[f"ours/{name}"], rates[f"plain/{name}"], 2.0, detail=detail)
            for name in TRAIN_VARIANTS]
    rows += [compare_row(f"noise/{name}", f"noise overhead, {_VARIANT_TITLES[name]}", "images/s", "stochastic",
                         "deterministic", rates[f"ours/{name}"], rates["ours/deterministic"], 0.85,
                         detail="stochrelax fit, the repetitions of the training rows")
             for name in STOCHASTIC_VARIANTS]
    train_gflops = [rate * 3 * flops / 1e9 for rate in rates["ours/deterministic"]]
    rows.append(compare_row("limit/train-gflops", "training at the machine's limit", "GFLOP/s",
                            "deterministic training", f"float32 mm {sizes.matmul_n}²", train_gflops,
                            rates["matmul"], 0.35,
                            detail=f"{flops:,} conv FLOPs per image forward, training = 3× forward"))
    return rows, trained


def train_one_seed(data: FashionMNIST, activation: dict, seed: int, batch_size: int) -> int:
    """One epoch of a fresh network of ``activation`` with ``seed``; returns the images trained on."""
    fit(thesis_model(activation, seed), data, TrainConfig(epochs=1, batch_size=batch_size, seed=seed))
    return data.train_labels.shape[0]


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``threads`` within the block, restored after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _seeds_section(data: FashionMNIST, sizes: BenchSizes, log: Callable[[str], None]) -> list[Row]:
    """Many seeds of one configuration: the sweep's process pool (one seed per worker, the
    cores divided among them) vs the same seeds one after another with every core."""
    cpus = usable_cpus()
    seeds = max(2, cpus)
    subset, warm = data.limit(sizes.train_images, 64), data.limit(sizes.warmup_images, 64)
    activation = TRAIN_VARIANTS["relu-logistic"]

    def sequential(data: FashionMNIST = subset) -> int:
        with torch_threads(cpus):
            return sum(train_one_seed(data, activation, seed, sizes.batch_size) for seed in range(seeds))

    log(f"many seeds: {seeds} seeds on a pool of {seeds} workers vs one after another, {sizes.train_images} images")
    with process_pool(seeds) as pool:
        def pooled(data: FashionMNIST = subset) -> int:
            jobs = [pool.submit(train_one_seed, data, activation, seed, sizes.batch_size) for seed in range(seeds)]
            return sum(job.result() for job in jobs)

        rates = measure([Workload("seeds/pool", pooled, lambda: pooled(warm)),
                         Workload("seeds/sequential", sequential, lambda: sequential(warm))], sizes.repetitions, log)
    return [compare_row("seeds/relu-logistic", f"{seeds} seeds at once, {_VARIANT_TITLES['relu-logistic']}",
                        "images/s", f"pool of {seeds} × {worker_threads(seeds)} thread",
                        f"sequential × {cpus} threads", rates["seeds/pool"], rates["seeds/sequential"], None,
                        detail=f"{seeds} seeds × {sizes.train_images} images, batch {sizes.batch_size}; the pool "
                               "is the sweep's local backend, started before timing")]


def _attack_section(data: FashionMNIST, trained: dict[str, nn.Module], sizes: BenchSizes,
                    log: Callable[[str], None]) -> list[Row]:
    import numpy as np
    from art.attacks.evasion import BasicIterativeMethod, FastGradientMethod, ProjectedGradientDescent

    deterministic = trained["deterministic"].eval()
    stochastic = trained["relu-logistic"].eval()
    images = data.test_images[:sizes.attack_images].float() / 255
    labels = data.test_labels[:sizes.attack_images]
    x, y = images.numpy(), labels.numpy()
    count = labels.shape[0]
    eps, steps = sizes.eps, sizes.pgd_steps
    classifier = art_classifier(deterministic)
    ifgsm = IterativeFGSM(deterministic, eps=eps)
    generator = torch.Generator().manual_seed(0)

    def art_least_likely() -> np.ndarray:
        scores = classifier.predict(x, batch_size=count)
        scores[np.arange(count), y] = np.inf
        return scores.argmin(axis=1)

    art_fgsm = FastGradientMethod(classifier, norm=np.inf, eps=eps, batch_size=count)
    art_pgd = ProjectedGradientDescent(classifier, norm=np.inf, eps=eps, eps_step=2.5 * eps / steps, max_iter=steps,
                                       num_random_init=1, batch_size=count, verbose=False)
    art_bim = BasicIterativeMethod(classifier, eps=eps, eps_step=1 / 255, max_iter=ifgsm.steps, targeted=True,
                                   batch_size=count, verbose=False)

    def done(_) -> float:
        return count

    workloads = [
        Workload("ours/fgsm", lambda: done(FGSM(deterministic, eps)(images, labels))),
        Workload("art/fgsm", lambda: done(art_fgsm.generate(x, y=y))),
        Workload("ours/pgd", lambda: done(PGD(deterministic, eps, steps, generator=generator)(images, labels))),
        Workload("art/pgd", lambda: done(art_pgd.generate(x, y=y))),
        Workload("ours/ifgsm", lambda: done(ifgsm(images, labels))),
        Workload("art/ifgsm", lambda: done(art_bim.generate(x, y=art_least_likely()))),
    ]
    log("attacks vs ART")
    with evaluating(deterministic):
        rates = measure(workloads, sizes.repetitions, log)
    detail = f"{count} test images in one batch (ART batch_size {count}), eps {eps:g}, deterministic ReLU network"
    rows = [
        compare_row("attack/fgsm", "attack, FGSM", "examples/s", "stochrelax", "ART FastGradientMethod",
                    rates["ours/fgsm"], rates["art/fgsm"], 1.5, detail=detail),
        compare_row("attack/pgd-20", f"attack, PGD-{steps}", "examples/s", "stochrelax", "ART PGD",
                    rates["ours/pgd"], rates["art/pgd"], 1.5, detail=detail + ", random start"),
        compare_row("attack/ifgsm-ll", f"attack, least-likely iterative FGSM ({ifgsm.steps} steps)", "examples/s",
                    "stochrelax", "ART BasicIterativeMethod", rates["ours/ifgsm"], rates["art/ifgsm"], 1.5,
                    detail=detail + ", targets chosen on both sides"),
    ]

    eot_images, eot_labels = images[:sizes.eot_images], labels[:sizes.eot_images]
    k = sizes.eot_samples

    def eot(attack_class, attack_steps: int) -> Callable[[], float]:
        def run() -> float:
            attack_class(stochastic, eps, attack_steps, eot_samples=k, generator=generator)(eot_images, eot_labels)
            return eot_labels.shape[0]
        return run

    mc_images = data.test_images[:sizes.mc_images].float() / 255
    mc = sizes.mc_samples

    def batched_prediction() -> float:
        with torch.no_grad():
            predictive_log_prob(sample_logits(stochastic, mc_images, mc))
        return mc_images.shape[0]

    def looped_prediction() -> float:
        looped_predictive_probs(stochastic, mc_images, mc)
        return mc_images.shape[0]

    log("EOT-PGD and Monte Carlo prediction")
    workloads = [Workload("ours/eot", eot(PGD, steps), eot(PGD, 2)),
                 Workload("loop/eot", eot(LoopedEOTPGD, steps), eot(LoopedEOTPGD, 2)),
                 Workload("ours/mc", batched_prediction), Workload("loop/mc", looped_prediction)]
    with evaluating(stochastic):
        rates = measure(workloads, sizes.repetitions, log)
    rows.append(compare_row(f"attack/eot-pgd-{k}", f"attack, EOT-PGD-{steps}, K = {k}", "examples/s",
                            "batched K draws", "loop of K passes", rates["ours/eot"], rates["loop/eot"], 3.0,
                            detail=f"{eot_labels.shape[0]} test images, eps {eps:g}, ReLU with additive "
                                   "logistic noise (std 0.05)"))
    rows.append(compare_row(f"predict/mc-{mc}", f"Monte Carlo prediction, K = {mc}", "predictions/s",
                            "batched sample_logits", "loop of K passes", rates["ours/mc"], rates["loop/mc"], None,
                            detail=f"{mc_images.shape[0]} test images, ReLU with additive logistic noise"))
    return rows


def run_benchmarks(quick: bool = False, progress: bool = False, *, data_dir: str | Path | None = None,
                   sizes: BenchSizes | None = None) -> BenchReport:
    """Runs every benchmark of :data:`ROW_KEYS` in this process (memory in a child) and returns the report.

    Args:
        quick: tiny sizes (:data:`QUICK`, well under a minute on 2 cores) instead of :data:`FULL`.
        progress: print what is being measured to stderr.
        data_dir: Fashion-MNIST directory (default: the usual lookup of :func:`load_fashion_mnist`).
        sizes: overrides the preset sizes.
    """
    started = time.perf_counter()
    sizes = sizes or (QUICK if quick else FULL)

    def log(message: str) -> None:
        if progress:
            print(f"bench [{time.perf_counter() - started:6.1f}s] {message}", file=sys.stderr, flush=True)

    machine = machine_facts()
    data = load_fashion_mnist(data_dir)
    log(f"training: {len(TRAIN_VARIANTS)} networks × (stochrelax, DataLoader loop) and a matrix product, "
        f"{sizes.train_images} images")
    rows, trained = _training_section(data, sizes, log)
    rows += _seeds_section(data, sizes, log)
    rows += _attack_section(data, trained, sizes, log)
    rows += levers_section(data, {name: thesis_model(TRAIN_VARIANTS[name]) for name in PRECISION_VARIANTS}, sizes, log)
    rows.append(work_per_verdict(None if data_dir is None else str(data_dir), "smoke" if quick else "quick",
                                 sizes.repetitions, log))
    log("peak memory of a training run (child process)")
    peak = peak_training_rss(sizes.memory_train_images, TRAIN_VARIANTS["relu-logistic"], data_dir=data_dir)
    rows.append(compare_row("memory/train-peak-rss", "peak memory of a training run", "MB", "train_run",
                            "1.5 GB budget", [peak], [MEMORY_BUDGET_MB], 1.0, "max",
                            detail=f"peak RSS of a child process: import, load Fashion-MNIST, one epoch of "
                                   f"train_run on {sizes.memory_train_images} images (ReLU, logistic noise)"))
    order = {key: index for index, key in enumerate(ROW_KEYS)}
    rows.sort(key=lambda row: order.get(row.key, len(order)))
    notes = ["many seeds at once: seeds stacked into one network with grouped convolutions were tried and dropped "
             "(at most 1.14x for 2 seeds, oneDNN's grouped kernels are slow); seeds run in parallel processes",
             "ART attacks run with batch_size equal to the whole set of images, as ours do (ART's default is 32)"]
    if machine["torch_threads"] and machine["usable_cpus"] and machine["torch_threads"] < machine["usable_cpus"]:
        notes.append(f"torch uses {machine['torch_threads']} of {machine['usable_cpus']} usable CPUs")
    report = BenchReport(rows, notes, machine, quick, asdict(sizes))
    report.seconds = time.perf_counter() - started
    log("done")
    return report
