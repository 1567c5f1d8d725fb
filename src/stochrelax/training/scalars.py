"""Each epoch's numbers as TensorBoard scalars, beside ``metrics.jsonl``, so that a researcher's usual
viewer works (``tensorboard --logdir runs``).

Written only when the ``tensorboard`` package is installed (``pip install 'stochrelax[tensorboard]'``);
``metrics.jsonl`` stays the source of truth that everything in stochrelax reads. The events go to
``RUN/tensorboard/``, one step per epoch; a resumed run purges the events of epochs after its
checkpoint, as it drops their lines from ``metrics.jsonl``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from stochrelax.rundir.layout import TENSORBOARD_DIR

__all__ = ["TAGS", "MAP_TAGS", "tensorboard_available", "ScalarLog"]

TAGS = {"train_loss": "loss/train", "test_loss": "loss/test", "train_accuracy": "accuracy/train",
        "test_accuracy": "accuracy/test", "train_seconds": "seconds/train", "eval_seconds": "seconds/eval"}
"""Tag of each metric; TensorBoard groups tags by their prefix. Other numbers are logged under ``other/NAME``."""

MAP_TAGS = {"noise_std": "noise_std/mean", "noise_std_min": "noise_std/min", "noise_std_max": "noise_std/max"}
"""Tag prefix of each metric that maps names to numbers, the learned noise stds per layer
(:func:`stochrelax.training.loop.noise_std_metrics`): each name's number is logged under ``PREFIX/NAME``.
Other maps go under ``other/METRIC/NAME``."""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    """Tag → value of every number of an epoch's record, and of every number in its name → number maps."""
    scalars = {}
    for name, value in metrics.items():
        if isinstance(value, dict):
            prefix = MAP_TAGS.get(name, f"other/{name}")
            scalars.update({f"{prefix}/{key}": item for key, item in value.items() if _is_number(item)})
        elif name != "epoch" and _is_number(value):
            scalars[TAGS.get(name, f"other/{name}")] = value
    return scalars


def tensorboard_available() -> bool:
    """Whether the ``tensorboard`` package, which ``torch.utils.tensorboard`` needs, is installed."""
    return importlib.util.find_spec("tensorboard") is not None


class ScalarLog:
    """The TensorBoard scalars of one run; does nothing without ``tensorboard``.

    Args:
        run_dir: the run directory.
        first_epoch: the first epoch this training writes; events of it and later epochs that an
            interrupted training left are discarded.
    """

    def __init__(self, run_dir: str | Path, first_epoch: int) -> None:
        self._writer = None
        if tensorboard_available():
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(Path(run_dir) / TENSORBOARD_DIR), purge_step=first_epoch)

    def write(self, metrics: dict[str, Any]) -> None:
        """Logs the numbers of one epoch's ``metrics.jsonl`` record at step ``metrics["epoch"]``."""
        if self._writer is None:
            return
        for tag, value in _scalars(metrics).items():
            self._writer.add_scalar(tag, value, metrics["epoch"])
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
