"""The one atomic write: all or nothing, no temporary file left, the mode open() would give."""

from __future__ import annotations

import os

import pytest

from stochrelax.base.files import write_atomically, write_text_atomically


def test_a_write_replaces_the_file_with_the_mode_open_would_give(tmp_path):
    path = tmp_path / "record.json"
    path.write_text("old")
    write_text_atomically(path, "new")
    mask = os.umask(0)
    os.umask(mask)
    assert path.read_text() == "new" and path.stat().st_mode & 0o777 == 0o666 & ~mask
    assert [child.name for child in tmp_path.iterdir()] == ["record.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path):
    path = tmp_path / "record.json"
    path.write_text("old")

    def half_then_full_disk(temporary):
        temporary.write_text("ne")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left on device"):
        write_atomically(path, half_then_full_disk)
    assert path.read_text() == "old" and [child.name for child in tmp_path.iterdir()] == ["record.json"]
