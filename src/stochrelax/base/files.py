"""Writing a file so that a reader never sees half of it: the one atomic write of stochrelax.

The contents go to a temporary file beside the target (``.NAME.random``), are flushed to
disk (``fsync``) and renamed over the target, so a crash, a kill or a full disk leaves either
the old file or the new one, never a mix; a failed write removes its temporary file. The new
file gets the mode ``open()`` would give it (``0666`` less the umask; ``mkstemp`` alone gives
``0600``). Run directories (:mod:`stochrelax.rundir.layout`), the dataset cache
(:mod:`stochrelax.data.idx_files`) and a sweep's record (:mod:`stochrelax.study.sweep`) all write through it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

__all__ = ["write_atomically", "write_text_atomically"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()


def write_atomically(path: str | Path, write: Callable[[Path], None]) -> None:
    """Replaces ``path`` with what ``write`` puts into the temporary file it is given, all or nothing.

    Raises:
        OSError: and whatever ``write`` raises; ``path`` is then as it was.
    """
    path = Path(path)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(descriptor)
    try:
        os.chmod(temporary, _FILE_MODE)
        write(Path(temporary))
        with open(temporary, "rb") as stream:
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_text_atomically(path: str | Path, text: str) -> None:
    """:func:`write_atomically` of a text."""
    write_atomically(path, lambda temporary: temporary.write_text(text))
