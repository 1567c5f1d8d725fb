"""What the machine allows: FLOPs of the network, a large matrix product, peak memory of a run.

The ``limit`` row divides the GFLOP/s that training achieves (:func:`count_conv_flops`)
by those of a float32 matrix product (:func:`matmul_gflop`); the ``memory`` row sets the
peak resident memory of a training run in a fresh process (:func:`peak_training_rss`)
against a budget.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from stochrelax.nn.prediction import evaluating
from stochrelax.nn.rng import seeded

__all__ = ["count_conv_flops", "matmul_gflop", "peak_training_rss"]


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
from stochrelax.rundir.config import parse_config
from stochrelax.data.fashion_mnist import load_fashion_mnist
from stochrelax.training.loop import train_run
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


def peak_training_rss(train_limit: int, activation: dict, test_limit: int = 1000,
                      data_dir: str | Path | None = None, threads: int | None = None) -> float:
    """Peak resident memory (MB) of a fresh process that runs one epoch of ``train_run``.

    A child ``sys.executable -c ...`` imports stochrelax, loads all of Fashion-MNIST and
    trains a network of ``activation`` for one epoch on ``train_limit`` images into a
    temporary run directory (stats recorder, checkpoint and evaluation included), then
    reports its own peak: ``VmHWM`` of ``/proc/self/status`` (``ru_maxrss`` where there
    is no /proc).

    Not ``ru_maxrss``, neither the child's nor the parent's ``RUSAGE_CHILDREN``: Linux
    carries ``ru_maxrss`` across fork and execve, so a child of a large process (this
    benchmark holds about 1 GB by then) reports at least the parent's size — measured
    997 MB for a run whose own peak is about 600 MB. ``VmHWM`` belongs to the address
    space that execve creates fresh.
    """
    code = _MEMORY_CHILD.format(threads=threads or torch.get_num_threads(),
                                data_dir=None if data_dir is None else str(data_dir), activation=activation,
                                train_limit=int(train_limit), test_limit=int(test_limit))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"memory benchmark child failed (exit {result.returncode}): "
                           f"{result.stderr.strip().splitlines()[-1:] or ''}")
    report = json.loads(result.stdout.strip().splitlines()[-1])
    peak_kb = report["hwm_kb"] if report["hwm_kb"] is not None else report["maxrss_kb"]
    return peak_kb / 1024.0  # Linux reports kilobytes
