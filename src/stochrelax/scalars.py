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

from stochrelax.runs import TENSORBOARD_DIR

__all__ = ["TAGS", "tensorboard_available", "ScalarLog"]

TAGS = {"train_loss": "loss/train", "test_loss": "loss/test", "train_accuracy": "accuracy/train",
        "test_accuracy": "accuracy/test", "train_seconds": "seconds/train", "eval_seconds": "seconds/eval"}
"""Tag of each metric; TensorBoard groups tags by their prefix. Other numbers are logged under ``other/NAME``."""


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
        for name, value in metrics.items():
            if name != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self._writer.add_scalar(TAGS.get(name, f"other/{name}"), value, metrics["epoch"])
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
