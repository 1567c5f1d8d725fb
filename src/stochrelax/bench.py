"""Benchmarks: stochrelax against the obvious alternatives, side by side in one process run.

Every row is a ratio of two things measured in the same run on the same machine:
"ours" (stochrelax's public API) and "the alternative" (the plain way to do the same
work: a ``DataLoader`` training loop, IBM's adversarial-robustness-toolbox, a Python
loop over EOT draws or Monte Carlo samples, a large matrix product). A benchmark is not
a test; ``tests/test_bench.py`` checks that each plain path computes the same thing as
ours, never a time.

Method (:func:`measure`): every workload of a section runs once untimed (warm-up: lazy
initialisation, allocator, kernel selection), then ``R`` repetitions of all of them in
turn, forwards on even repetitions and backwards on odd ones, so that ours and its
alternative alternate which goes first and share whatever load the machine has at that
moment. Each row reports the median rate of each side over the repetitions, the median
of the per-repetition ratios ours/alternative and their spread (min, max), the target
and whether the median ratio meets it. Throughput uses ``time.perf_counter``.

Rows (:func:`run_benchmarks`; keys in :data:`ROW_KEYS`):

1. ``train/<variant>`` — training throughput (images/s) of the thesis network, batch 64,
   Adam, one epoch of :func:`stochrelax.train.fit` vs a plain loop over
   ``torch.utils.data.DataLoader`` of a per-sample ``Dataset`` (:func:`plain_train_epoch`),
   for a deterministic ReLU network and three stochastic ones (ReLU with additive
   logistic noise; sign units with logistic noise trained straight-through; the same
   trained with the score function). Target ≥ 2×.
2. ``noise/<variant>`` — stochastic vs deterministic training throughput, both stochrelax
   (the same repetitions as row 1). Target ≥ 0.85×.
3. (many seeds at once: not built; a note says so.)
4. ``attack/fgsm``, ``attack/pgd-20``, ``attack/ifgsm-ll`` — adversarial examples/s on the
   deterministic network vs ART's FastGradientMethod, ProjectedGradientDescent and
   BasicIterativeMethod (targeted, least-likely targets chosen as ours does), target
   ≥ 1.5×; ``attack/eot-pgd-16`` — PGD-20 with EOT over K = 16 draws on the stochastic
   ReLU network vs the same attack with the expected gradient as a Python loop of K
   forward/backward passes (:class:`LoopedEOTPGD`), target ≥ 3×.
5. ``predict/mc-32`` — Monte Carlo prediction with K = 32 draws: one batched pass
   (:func:`stochrelax.models.sample_logits`) vs K passes in a loop
   (:func:`looped_predictive_probs`); predictions/s, no target.
6. ``limit/train-gflops`` — achieved training GFLOP/s of stochrelax on the deterministic
   network (3 × the convolutions' forward FLOPs, :func:`count_conv_flops`) over the
   GFLOP/s of a float32 ``torch.mm`` of n × n, measured in the same repetitions.
   Target ≥ 0.35.
- ``memory/train-peak-rss`` — peak resident memory of a short ``train_run`` in a child
  process, against a budget of 1.5 GB (ratio = peak / budget, target ≤ 1).

The benchmark runs with ``torch.get_num_threads()`` as the caller set it and records it.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, RandomSampler

from stochrelax.attacks import FGSM, PGD, IterativeFGSM
from stochrelax.attacks.core import GradientEstimate, LossFn, cross_entropy_loss
from stochrelax.config import RunConfig, TrainConfig
from stochrelax.data import FashionMNIST, load_fashion_mnist
from stochrelax.estimators import MovingAverageBaseline, score_function_surrogate
from stochrelax.layers import straight_through_gradients
from stochrelax.models import ModelConfig, build_model, collect_log_prob, evaluating, predictive_log_prob, sample_logits
from stochrelax.rng import seeded
from stochrelax.sweep import process_pool, usable_cpus, worker_threads
from stochrelax.train import fit

__all__ = ["Row", "BenchReport", "BenchSizes", "QUICK", "FULL", "ROW_KEYS", "TRAIN_VARIANTS", "Workload",
           "measure", "compare_row", "format_table", "format_report", "machine_facts", "run_benchmarks",
           "PixelDataset", "plain_train_epoch", "looped_expected_gradient", "LoopedEOTPGD",
           "looped_predictive_probs", "count_conv_flops", "matmul_gflop", "peak_training_rss"]

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
    "memory/train-peak-rss",
)
"""Keys of the rows :func:`run_benchmarks` returns, in order."""


# --------------------------------------------------------------------------------------------
# Rows and the report


@dataclass
class Row:
    """One comparison: ours against an alternative, both measured in the same repetitions.

    ``ratio`` is the median of the per-repetition ratios ours/alternative (not the ratio
    of the medians); ``ratio_min``/``ratio_max`` their spread. ``target_direction``
    ``"min"`` means the ratio should be at least ``target``, ``"max"`` at most.
    """

    key: str
    title: str
    unit: str  # of ours and alternative, e.g. "images/s"
    ours_label: str
    alternative_label: str
    ours: float  # median over repetitions
    alternative: float
    ratio: float
    ratio_min: float
    ratio_max: float
    target: float | None
    target_direction: str  # "min" (ratio ≥ target) or "max" (ratio ≤ target)
    met: bool | None  # None when there is no target
    repetitions: int
    ours_samples: list[float] = field(default_factory=list)
    alternative_samples: list[float] = field(default_factory=list)
    detail: str = ""  # sizes and settings of the measurement

    @property
    def target_text(self) -> str:
        if self.target is None:
            return "-"
        return f"{'≥' if self.target_direction == 'min' else '≤'} {self.target:g}×"


def compare_row(key: str, title: str, unit: str, ours_label: str, alternative_label: str,
                ours: Sequence[float], alternative: Sequence[float], target: float | None,
                target_direction: str = "min", detail: str = "") -> Row:
    """A :class:`Row` from per-repetition rates of both sides (same length, same repetitions)."""
    if len(ours) != len(alternative) or not ours:
        raise ValueError(f"{key}: need the same number (>= 1) of repetitions on both sides, "
                         f"got {len(ours)} and {len(alternative)}")
    if target_direction not in ("min", "max"):
        raise ValueError(f"target_direction must be 'min' or 'max', got {target_direction!r}")
    ratios = [a / b for a, b in zip(ours, alternative)]
    ratio = statistics.median(ratios)
    met = None if target is None else (ratio >= target if target_direction == "min" else ratio <= target)
    return Row(key, title, unit, ours_label, alternative_label, statistics.median(ours),
               statistics.median(alternative), ratio, min(ratios), max(ratios), target, target_direction, met,
               len(ratios), [float(v) for v in ours], [float(v) for v in alternative], detail)


@dataclass
class BenchReport:
    """What :func:`run_benchmarks` returns; append rows and notes before writing it."""

    rows: list[Row]
    notes: list[str]
    machine: dict
    quick: bool = False
    sizes: dict = field(default_factory=dict)
    seconds: float = 0.0  # wall time of run_benchmarks

    def to_dict(self) -> dict:
        return {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "quick": self.quick,
                "seconds": self.seconds, "machine": self.machine, "sizes": self.sizes,
                "rows": [asdict(row) for row in self.rows], "notes": list(self.notes)}

    def write_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path


def _number(value: float) -> str:
    if value is None or not math.isfinite(value):
        return str(value)
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def format_table(rows: Iterable[Row]) -> str:
    """A plain-text table: one line per row, the median ratio with its spread, target and verdict."""
    header = ("benchmark", "ours", "alternative", "unit", "ratio", "spread", "target", "met")
    lines = []
    for row in rows:
        met = "-" if row.met is None else ("yes" if row.met else "NO")
        lines.append((f"{row.title}: {row.ours_label} vs {row.alternative_label}", _number(row.ours),
                      _number(row.alternative), row.unit, f"{row.ratio:.2f}×",
                      f"{row.ratio_min:.2f}–{row.ratio_max:.2f}", row.target_text, met))
    widths = [max(len(str(line[i])) for line in [header, *lines]) for i in range(len(header))]
    right = {1, 2, 4}

    def render(cells) -> str:
        return "  ".join(str(c).rjust(w) if i in right else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([render(header), render(["-" * w for w in widths]), *map(render, lines)])


def format_report(report: BenchReport) -> str:
    """The table with a line about the machine above it and the notes below it."""
    machine = report.machine
    head = (f"stochrelax bench{' --quick' if report.quick else ''}: {machine.get('cpu_model')}, "
            f"{machine.get('cpu_count')} cores, torch {machine.get('torch_version')} with "
            f"{machine.get('torch_threads')} thread(s); median of {report.sizes.get('repetitions')} repetitions, "
            f"ratio = ours / alternative per repetition (spread: min–max)")
    notes = [f"- {note}" for note in report.notes]
    return "\n".join([head, "", format_table(report.rows), *([""] + notes if notes else [])])


def machine_facts() -> dict:
    """CPU model, core counts, torch version and threads, Python, platform."""
    cpu_model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu_model": cpu_model, "cpu_count": os.cpu_count(), "usable_cpus": usable_cpus(),
            "torch_version": torch.__version__, "torch_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads(),
            "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
            "python": platform.python_version(), "platform": platform.platform()}


# --------------------------------------------------------------------------------------------
# The harness


@dataclass
class Workload:
    """A piece of work to time: ``run()`` does it and returns how many units it did."""

    name: str
    run: Callable[[], float]
    warmup: Callable[[], object] | None = None  # untimed first call; default: run()


def measure(workloads: Sequence[Workload], repetitions: int,
            log: Callable[[str], None] | None = None) -> dict[str, list[float]]:
    """Rates (units/s) of every workload in each of ``repetitions`` repetitions.

    Each workload is warmed up once, then the repetitions run all workloads in turn,
    in the given order on even repetitions and in reverse on odd ones.
    """
    if repetitions < 1:
        raise ValueError(f"repetitions must be >= 1, got {repetitions}")
    names = [w.name for w in workloads]
    if len(set(names)) != len(names):
        raise ValueError(f"workload names must be unique, got {names}")
    for workload in workloads:
        (workload.warmup or workload.run)()
    rates: dict[str, list[float]] = {w.name: [] for w in workloads}
    for repetition in range(repetitions):
        if log is not None:
            log(f"repetition {repetition + 1}/{repetitions}")
        order = workloads if repetition % 2 == 0 else list(reversed(workloads))
        for workload in order:
            start = time.perf_counter()
            units = workload.run()
            seconds = time.perf_counter() - start
            rates[workload.name].append(units / max(seconds, 1e-9))
    return rates


# --------------------------------------------------------------------------------------------
# The plain alternatives


class PixelDataset(Dataset):
    """The usual ``Dataset``: one float32 [0, 1] image (1, 28, 28) and its label per ``__getitem__``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index].to(torch.float32).div_(255.0), int(self.labels[index])


def plain_loader(images: torch.Tensor, labels: torch.Tensor, batch_size: int = 64,
                 order: torch.Generator | None = None) -> DataLoader:
    """``DataLoader(PixelDataset(...), batch_size, shuffle=True)``.

    Written with the ``RandomSampler`` that ``shuffle=True`` builds, so that its order can
    come from ``order`` (the same permutation as :func:`stochrelax.data.batches` draws from
    a generator in the same state); the loader's own seed draw comes from a separate
    generator, so neither touches torch's global generator (the networks' noise).
    """
    dataset = PixelDataset(images, labels)
    return DataLoader(dataset, batch_size=batch_size, sampler=RandomSampler(dataset, generator=order),
                      generator=torch.Generator().manual_seed(0))


def plain_train_epoch(model: nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer,
                      baseline: MovingAverageBaseline | None = None) -> list[float]:
    """One epoch written the usual way; returns each step's mean loss (``loss.item()``).

    Cross-entropy of one pass; for score-function sign units the usual surrogate
    L + (L − b)·log p(y) with a moving-average baseline b, as :func:`stochrelax.train.fit`
    computes it with one noise draw.
    """
    baseline = baseline if baseline is not None else MovingAverageBaseline()
    model.train()
    losses = []
    for images, labels in loader:
        optimizer.zero_grad()
        logits = model(images)
        loss = F.cross_entropy(logits, labels, reduction="none")
        log_prob = collect_log_prob(model)
        objective = score_function_surrogate(loss, log_prob, baseline.value)
        objective.backward()
        optimizer.step()
        mean_loss = loss.mean().item()
        if log_prob is not None:
            baseline.update(mean_loss)
        losses.append(mean_loss)
    return losses


def looped_expected_gradient(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                             loss_fn: LossFn = cross_entropy_loss, eot_samples: int = 1) -> torch.Tensor:
    """∇x (1/K) Σ_k L(f(x, ξ_k), y) as a Python loop of K forward/backward passes (how libraries do EOT).

    The same estimate as :func:`stochrelax.attacks.core.expected_gradient` (BPDA through
    sign units included), one draw per pass.
    """
    if eot_samples < 1:
        raise ValueError(f"eot_samples must be >= 1, got {eot_samples}")
    total = torch.zeros_like(images)
    with torch.enable_grad(), straight_through_gradients(model):
        leaf = images.detach().clone().requires_grad_(True)
        for _ in range(eot_samples):
            (gradient,) = torch.autograd.grad(loss_fn(model(leaf), labels).sum(), leaf)
            total += gradient
    return total / eot_samples


class LoopedEOTPGD(PGD):
    """:class:`stochrelax.attacks.PGD` (random start, sign step, projection, best iterate), EOT as a loop of passes."""

    def estimate(self, images: torch.Tensor, labels: torch.Tensor) -> GradientEstimate:
        """:func:`looped_expected_gradient`, with the loss and logits its K passes saw."""
        draws = []  # (logits (B, classes), loss (B,)) of each pass

        def recorded_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            loss = cross_entropy_loss(logits, labels)
            draws.append((logits.detach(), loss.detach()))
            return loss

        gradient = looped_expected_gradient(self.model, images, labels, recorded_loss, self.eot_samples)
        logits, losses = zip(*draws)
        return GradientEstimate(gradient, torch.stack(losses).sum(dim=0) / self.eot_samples, torch.stack(logits))


@torch.no_grad()
def looped_predictive_probs(model: nn.Module, images: torch.Tensor, samples: int) -> torch.Tensor:
    """(1/K) Σ_k softmax(f(x, ξ_k)) from K separate forward passes, (B, classes)."""
    total = torch.zeros(())
    for _ in range(samples):
        total = total + torch.softmax(model(images), dim=1)
    return total / samples


# --------------------------------------------------------------------------------------------
# FLOPs, the machine's limit, memory


def count_conv_flops(model: nn.Module, input_shape: tuple[int, ...] = (1, 28, 28)) -> int:
    """Forward FLOPs per image of every Conv2d: 2 · Cin/groups · kh · kw · Cout · Hout · Wout.

    Counted with forward hooks on one image; the model's modes, statistics and the global
    random generator are left as they were. Bias additions, BatchNorm and activations are
    not counted.
    """
    total = 0

    def hook(module: nn.Conv2d, inputs, output: torch.Tensor) -> None:
        nonlocal total
        kh, kw = module.kernel_size
        per_output = 2 * (module.in_channels // module.groups) * kh * kw
        total += per_output * output[0].numel()  # Cout · Hout · Wout of the first (only) image

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    device = next(model.parameters()).device
    try:
        with torch.no_grad(), evaluating(model), seeded(0, device):
            model(torch.zeros((1, *input_shape), device=device))
    finally:
        for handle in handles:
            handle.remove()
    return total


def matmul_gflop(n: int, repeats: int = 1) -> Callable[[], float]:
    """A workload: ``repeats`` float32 ``torch.mm`` of n × n; returns the GFLOP done (2n³ each)."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=generator)
    b = torch.randn(n, n, generator=generator)
    out = torch.empty(n, n)

    def run() -> float:
        for _ in range(repeats):
            torch.mm(a, b, out=out)
        return repeats * 2.0 * n ** 3 / 1e9

    return run


_MEMORY_CHILD = """
import json, resource, sys, tempfile
import torch
torch.set_num_threads({threads})
from stochrelax.config import parse_config
from stochrelax.data import load_fashion_mnist
from stochrelax.train import train_run
data = load_fashion_mnist({data_dir!r})
config = parse_config({{"model": {{"activation": {activation!r}}}, "train": {{"epochs": 1}},
                       "data": {{"train_limit": {train_limit}, "test_limit": {test_limit}}}}})
with tempfile.TemporaryDirectory() as directory:
    train_run(config, data, directory + "/run")
hwm_kb = None
try:
    with open("/proc/self/status") as status:
        hwm_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
except (OSError, StopIteration):
    pass
print(json.dumps({{"hwm_kb": hwm_kb, "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}}))
"""


def peak_training_rss(train_limit: int, test_limit: int = 1000, activation: dict | None = None,
                      data_dir: str | Path | None = None, threads: int | None = None) -> float:
    """Peak resident memory (MB) of a fresh process that runs one epoch of ``train_run``.

    A child ``sys.executable -c ...`` imports stochrelax, loads all of Fashion-MNIST and
    trains for one epoch on ``train_limit`` images into a temporary run directory (stats
    recorder, checkpoint and evaluation included), then reports its own peak: ``VmHWM``
    of ``/proc/self/status`` (``ru_maxrss`` where there is no /proc).

    Not ``ru_maxrss``, neither the child's nor the parent's ``RUSAGE_CHILDREN``: Linux
    carries ``ru_maxrss`` across fork and execve, so a child of a large process (this
    benchmark holds about 1 GB by then) reports at least the parent's size — measured
    997 MB for a run whose own peak is about 600 MB. ``VmHWM`` belongs to the address
    space that execve creates fresh.
    """
    code = _MEMORY_CHILD.format(threads=threads or torch.get_num_threads(),
                                data_dir=None if data_dir is None else str(data_dir),
                                activation=activation or TRAIN_VARIANTS["relu-logistic"],
                                train_limit=int(train_limit), test_limit=int(test_limit))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"memory benchmark child failed (exit {result.returncode}): "
                           f"{result.stderr.strip().splitlines()[-1:] or ''}")
    report = json.loads(result.stdout.strip().splitlines()[-1])
    peak_kb = report["hwm_kb"] if report["hwm_kb"] is not None else report["maxrss_kb"]
    return peak_kb / 1024.0  # Linux reports kilobytes


# --------------------------------------------------------------------------------------------
# Sizes and the suite


@dataclass(frozen=True)
class BenchSizes:
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


def _model(activation: dict, seed: int = 0) -> nn.Module:
    with seeded(seed):
        return build_model(ModelConfig.model_validate({"activation": activation}))


def _training_section(data: FashionMNIST, sizes: BenchSizes, log) -> tuple[list[Row], dict[str, nn.Module]]:
    subset = data.limit(sizes.train_images, 64)  # fit evaluates on 64 test images: negligible
    warm = data.limit(sizes.warmup_images, 64)
    images, labels = subset.train_images, subset.train_labels
    flops = count_conv_flops(_model(TRAIN_VARIANTS["deterministic"]))
    workloads, trained = [], {}
    for name, activation in TRAIN_VARIANTS.items():
        # The plain loop's network is the same code in PyTorch's default (NCHW) layout.
        ours_model, plain_model = _model(activation), _model(activation).to(memory_format=torch.contiguous_format)
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
    fit(_model(activation, seed), data, TrainConfig(epochs=1, batch_size=batch_size, seed=seed))
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


def _seeds_section(data: FashionMNIST, sizes: BenchSizes, log) -> list[Row]:
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


def _art_classifier(model: nn.Module):
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(model=copy.deepcopy(model), loss=nn.CrossEntropyLoss(), input_shape=(1, 28, 28),
                             nb_classes=10, clip_values=(0.0, 1.0))  # ART writes .grad into the model it wraps


def _attack_section(data: FashionMNIST, trained: dict[str, nn.Module], sizes: BenchSizes, log) -> list[Row]:
    import numpy as np
    from art.attacks.evasion import BasicIterativeMethod, FastGradientMethod, ProjectedGradientDescent

    deterministic = trained["deterministic"].eval()
    stochastic = trained["relu-logistic"].eval()
    images = data.test_images[:sizes.attack_images].float() / 255
    labels = data.test_labels[:sizes.attack_images]
    x, y = images.numpy(), labels.numpy()
    count = labels.shape[0]
    eps, steps = sizes.eps, sizes.pgd_steps
    classifier = _art_classifier(deterministic)
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
    log("peak memory of a training run (child process)")
    peak = peak_training_rss(sizes.memory_train_images, data_dir=data_dir)
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


# --------------------------------------------------------------------------------------------
# End to end


def project_thesis_study(rows: Sequence[Row], runs: Sequence[RunConfig], cores: int) -> tuple[float, str]:
    """Projected wall time (seconds) of the ``thesis`` preset for one seed of ``runs`` on ``cores`` cores.

    Training: 100 epochs × 60,000 images at the measured throughput of the matching
    network (ReLU deterministic / logistic noise, sign STE / score; FGSM-mixture epochs see
    twice the images, PGD-10 training costs 11 passes per image). Attacks: the thesis
    budgets on 1,000 images — 10 FGSM steps and 260 iterative-FGSM steps — at the measured
    PGD cost per gradient step, ×17 for a stochastic run (single-draw plus EOT-16). One
    run per core, perfectly packed: a lower bound for the sweep.
    """
    rate = {row.key.split("/", 1)[1]: row.ours for row in rows if row.key.startswith("train/")}
    pgd = next(row for row in rows if row.key == "attack/pgd-20")
    seconds_per_gradient_step = 1.0 / (pgd.ours * 20)  # per image
    total = 0.0
    for config in runs:
        activation = config.model.activation
        variant = ("deterministic" if activation.noise is None and activation.kind == "relu" else
                   "relu-logistic" if activation.kind == "relu" else
                   "sign-score" if activation.estimator == "score" else "sign-ste")
        images = 100 * 60_000 * {None: 1.0, "fgsm_mixture": 1.99, "pgd": 11.0}[config.train.adversarial.method]
        total += images / rate[variant]
        total += 1000 * (10 + 260) * seconds_per_gradient_step * (17 if activation.noise is not None else 1)
    return total / cores, (f"{len(runs)} runs x 100 epochs on 60,000 images, thesis attack budgets on 1,000 images, "
                           f"{cores} cores")


def time_smoke_reproduce(out_dir: str | Path, data_dir: str | Path | None = None) -> float:
    """Wall seconds of ``stochrelax reproduce --preset smoke --seeds 1`` in a child process."""
    command = [sys.executable, "-m", "stochrelax.cli", "reproduce", "--preset", "smoke", "--seeds", "1",
               "--out", str(out_dir), "--no-progress"] + (["--data-dir", str(data_dir)] if data_dir else [])
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started
