"""Epoch checkpoints: the state of an unfinished run after its last finished epoch (weights,
optimizer, random-number generators, …; :mod:`stochrelax.training.loop`), from which ``train --resume``
and ``sweep`` continue. One safetensors file, replaced atomically after each epoch, carrying a
sha256 of its contents that is checked on reading; removed when the run finishes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from stochrelax.rundir.layout import CHECKPOINT_FILE, RunDirError, check_layout, error_reason, write_run_file

__all__ = ["save_checkpoint", "load_checkpoint", "remove_checkpoint"]


def _checkpoint_sha256(tensors: dict[str, torch.Tensor], state: str) -> str:
    """A digest of a checkpoint's contents: its state (JSON) and each tensor's name, dtype, shape and bytes.

    Computed from the contents rather than the file, so it is stored inside the file it checks.
    """
    digest = hashlib.sha256(json.dumps(state).encode())
    for name in sorted(tensors):
        tensor = tensors[name].detach().contiguous().cpu()
        digest.update(json.dumps([name, str(tensor.dtype), list(tensor.shape)]).encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def save_checkpoint(run_dir: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
    """Atomically replaces the run's checkpoint: tensors in safetensors, ``metadata`` as JSON inside it,
    with a sha256 of both that :func:`load_checkpoint` checks."""
    tensors = {name: tensor.detach().contiguous().cpu() for name, tensor in tensors.items()}
    state = json.dumps(metadata)
    write_run_file(Path(run_dir) / CHECKPOINT_FILE, tensors=tensors,
                      metadata={"state": state, "sha256": _checkpoint_sha256(tensors, state)})


def load_checkpoint(run_dir: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """The tensors and metadata of the run's checkpoint, or ``None`` if it has none.

    Raises:
        RunDirError: if the run directory has another layout (:func:`check_layout`), or the
            checkpoint cannot be read or does not match its checksum.
    """
    check_layout(run_dir)
    path = Path(run_dir) / CHECKPOINT_FILE
    if not path.is_file():
        return None
    try:
        with safe_open(path, framework="pt") as stream:
            stored = stream.metadata() or {}
            tensors = {name: stream.get_tensor(name) for name in stream.keys()}
    except (SafetensorError, OSError) as error:
        raise _damaged_checkpoint(path, error_reason(error)) from None
    state = stored.get("state", "")
    if stored.get("sha256") != _checkpoint_sha256(tensors, state):
        raise _damaged_checkpoint(path, "checksum missing" if "sha256" not in stored else "checksum mismatch")
    return tensors, json.loads(state)


def _damaged_checkpoint(path: Path, problem: str) -> RunDirError:
    return RunDirError(f"{path} is damaged ({problem}); delete it to restart the run from epoch 1")


def remove_checkpoint(run_dir: str | Path) -> None:
    (Path(run_dir) / CHECKPOINT_FILE).unlink(missing_ok=True)
