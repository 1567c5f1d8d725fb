"""Tests of :mod:`stochrelax.rundir.layout`: creating run directories safely and reading finished runs back.

A run directory is stochrelax-run.json + config.yaml + metrics.jsonl + model.safetensors +
summary.json; weights are safetensors (never pickle), files are written atomically, one
process writes a run at a time, and anything that cannot be read back raises
:class:`~stochrelax.rundir.layout.RunDirError` naming the path, in one line.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from stochrelax.models.allconv import build_model
from stochrelax.nn.rng import seeded
from stochrelax.rundir import checkpoints, layout as runs, records
from stochrelax.rundir.config import RunConfig, parse_config
from tests.synthetic_runs import epoch_metrics

SUMMARY = {"test_accuracy": 0.875, "epochs": 2, "versions": {"torch": torch.__version__}}


def trained_looking_model(config: RunConfig, seed: int = 0) -> torch.nn.Module:
    """A seeded thesis model whose BatchNorm buffers differ from their initial values."""
    with seeded(seed):
        model = build_model(config.model)
        model(torch.rand(8, 1, 28, 28))  # training mode: updates running statistics
    return model


def write_finished_run(run_dir: Path, config: RunConfig, model: torch.nn.Module) -> Path:
    runs.create_run_dir(run_dir)
    runs.write_config(run_dir, config)
    records.append_metrics(run_dir, epoch_metrics(1, test_accuracy=0.875))
    runs.save_weights(run_dir, model)
    runs.write_summary(run_dir, SUMMARY)
    return run_dir


@pytest.fixture(scope="module")
def config() -> RunConfig:
    return parse_config({"model": {"activation": {"kind": "relu", "noise": "logistic", "std": 0.05}}})


@pytest.fixture(scope="module")
def model(config) -> torch.nn.Module:
    return trained_looking_model(config)


@pytest.fixture
def finished_run(tmp_path, config, model) -> Path:
    return write_finished_run(tmp_path / "run", config, model)


# --- create_run_dir ----------------------------------------------------------------------------

def test_create_run_dir_creates_missing_parent_directories(tmp_path):
    path = runs.create_run_dir(tmp_path / "a" / "b" / "run")
    assert path == tmp_path / "a" / "b" / "run"
    assert [p.name for p in path.iterdir()] == [runs.RUN_FILE]


def test_create_run_dir_records_the_layout_version(tmp_path):
    path = runs.create_run_dir(tmp_path / "run")
    assert json.loads((path / runs.RUN_FILE).read_text()) == {"layout": runs.LAYOUT_VERSION} == {"layout": 1}


def test_create_run_dir_accepts_an_existing_empty_directory(tmp_path):
    (tmp_path / "run").mkdir()
    assert runs.create_run_dir(tmp_path / "run").is_dir()


@pytest.mark.parametrize("as_file", [False, True], ids=["non_empty_dir", "file"])
def test_create_run_dir_refuses_an_existing_path_without_overwrite(tmp_path, as_file):
    path = tmp_path / "run"
    if as_file:
        path.write_text("data")
    else:
        path.mkdir()
        (path / runs.CONFIG_FILE).write_text("model: {}\n")
    message = "is a file, not a directory; choose another --out" if as_file else "pass --overwrite to replace it"
    with pytest.raises(runs.RunDirError, match=message) as caught:
        runs.create_run_dir(path)
    assert str(path) in str(caught.value)
    assert path.exists() and (path.is_file() or (path / runs.CONFIG_FILE).is_file())


def test_create_run_dir_with_overwrite_replaces_a_run_directory_and_its_leftovers(finished_run):
    (finished_run / f".{runs.WEIGHTS_FILE}.a1b2c3").write_bytes(b"half a file")  # a crash's temporary file
    runs.create_run_dir(finished_run, overwrite=True)
    assert [p.name for p in finished_run.iterdir()] == [runs.RUN_FILE]


@pytest.mark.parametrize("contents, message", [
    ({"chapter1.tex": "my thesis"}, "not a stochrelax run directory"),  # no run marker
    ({runs.CONFIG_FILE: "model: {}\n", "chapter1.tex": "my thesis"}, "not a stochrelax run directory"),
    ({runs.RUN_FILE: '{"layout": 1}', runs.CONFIG_FILE: "model: {}\n", "chapter1.tex": "my thesis"},
     "holds files a run does not write (chapter1.tex); refusing to delete them"),
    ({runs.RUN_FILE: '{"layout": 1}', "plots/loss.png": "png"}, "holds files a run does not write (plots)"),
])
def test_overwrite_deletes_only_a_marked_run_directory_holding_nothing_but_run_files(tmp_path, contents, message):
    path = tmp_path / "thesis"
    for name, text in contents.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    before = sorted(str(p.relative_to(path)) for p in path.rglob("*"))
    with pytest.raises(runs.RunDirError, match=re.escape(message)) as caught:
        runs.create_run_dir(path, overwrite=True)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)
    assert sorted(str(p.relative_to(path)) for p in path.rglob("*")) == before


def test_overwrite_never_deletes_a_file_given_as_the_run_directory(tmp_path):
    path = tmp_path / "thesis.tex"
    path.write_text("my thesis")
    with pytest.raises(runs.RunDirError, match="is a file, not a directory"):
        runs.create_run_dir(path, overwrite=True)
    assert path.read_text() == "my thesis"


# --- writing and reading back ------------------------------------------------------------------

def test_load_run_returns_exactly_the_saved_weights(finished_run, model):
    loaded = runs.load_run(finished_run).model.state_dict()
    saved = model.state_dict()
    assert list(loaded) == list(saved)
    for name, tensor in saved.items():
        assert loaded[name].dtype == tensor.dtype, name
        assert torch.equal(loaded[name], tensor), name
    assert saved["blocks.block1.norm.num_batches_tracked"].item() == 1  # buffers were saved too


def test_load_run_returns_config_summary_and_path(finished_run, config):
    run = runs.load_run(finished_run)
    assert run.path == finished_run
    assert run.config == config
    assert run.summary == SUMMARY


def test_load_run_gives_a_model_that_predicts_like_the_saved_one(finished_run, model):
    images = torch.rand(4, 1, 28, 28)
    loaded = runs.load_run(finished_run).model.eval()
    model.eval()
    try:
        with seeded(3):
            expected = model(images)
        with seeded(3):
            actual = loaded(images)
    finally:
        model.train()
    assert torch.equal(actual, expected)


def test_weights_file_is_safetensors_not_pickle(finished_run, model):
    path = finished_run / runs.WEIGHTS_FILE
    raw = path.read_bytes()
    assert not raw.startswith(b"\x80")  # pickle protocol 2+
    assert not raw.startswith(b"PK")  # torch.save's zip container
    (header_size,) = struct.unpack("<Q", raw[:8])  # safetensors: u64 header size, then a JSON header
    header = json.loads(raw[8:8 + header_size])
    assert set(header) - {"__metadata__"} == set(model.state_dict())
    assert set(load_file(path)) == set(model.state_dict())


def test_writes_leave_no_temporary_files(finished_run):
    runs.write_config(finished_run, parse_config({}))
    runs.write_summary(finished_run, {"again": True})
    assert sorted(p.name for p in finished_run.iterdir()) == sorted(
        [runs.RUN_FILE, runs.CONFIG_FILE, runs.METRICS_FILE, runs.WEIGHTS_FILE, runs.SUMMARY_FILE])


def test_failed_weights_write_keeps_the_previous_file_and_leaves_no_temporary(finished_run, model):
    tied = torch.nn.Module()
    tied.first = tied.second = torch.nn.Linear(2, 2)  # shared tensors: safetensors refuses to save them
    before = (finished_run / runs.WEIGHTS_FILE).read_bytes()
    with pytest.raises(RuntimeError, match="share memory"):
        runs.save_weights(finished_run, tied)
    assert (finished_run / runs.WEIGHTS_FILE).read_bytes() == before
    assert not [p.name for p in finished_run.iterdir() if p.name.startswith(".")]


def _training_stats(epoch: int) -> dict:
    summary = {"mean": 0.1, "std": 1.0, "min": -2.0, "max": 3.0, "histogram": None}
    return {"epoch": epoch, "layers": {"block1": {"activation": summary, "gradient": {**summary, "mean": None}}}}


def test_read_metrics_returns_the_lines_in_order(tmp_path):
    lines = [epoch_metrics(epoch) for epoch in (1, 2, 3)]
    for line in lines:
        records.append_metrics(tmp_path, line)
    assert (tmp_path / runs.METRICS_FILE).read_text().count("\n") == 3
    assert records.read_metrics(tmp_path) == lines


def test_read_metrics_of_a_run_without_metrics_is_empty(tmp_path):
    assert records.read_metrics(tmp_path) == []


# --- errors when reading -----------------------------------------------------------------------

@pytest.mark.parametrize("missing", [runs.SUMMARY_FILE, runs.WEIGHTS_FILE])
def test_load_run_refuses_an_unfinished_run(finished_run, missing):
    (finished_run / missing).unlink()
    with pytest.raises(runs.RunDirError, match="unfinished run") as caught:
        runs.load_run(finished_run)
    assert str(finished_run) in str(caught.value)


@pytest.mark.parametrize("contents", ["missing", "empty", "other_files"])
def test_load_run_refuses_a_directory_that_is_not_a_run(tmp_path, contents):
    path = tmp_path / "somewhere"
    if contents != "missing":
        path.mkdir()
    if contents == "other_files":
        (path / "notes.txt").write_text("hello")
    with pytest.raises(runs.RunDirError, match="not a stochrelax run directory") as caught:
        runs.load_run(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("saved_batch_norm", [True, False])
def test_load_run_refuses_weights_of_a_different_architecture(tmp_path, saved_batch_norm):
    saved = parse_config({"model": {"batch_norm": saved_batch_norm}})
    claimed = parse_config({"model": {"batch_norm": not saved_batch_norm}})
    run_dir = write_finished_run(tmp_path / "run", saved, trained_looking_model(saved))
    runs.write_config(run_dir, claimed)
    with pytest.raises(runs.RunDirError, match=f"does not match {runs.CONFIG_FILE}") as caught:
        runs.load_run(run_dir)
    message = str(caught.value)
    assert str(run_dir / runs.WEIGHTS_FILE) in message
    assert "\n" not in message


def data_start(raw: bytes) -> int:
    """Where the tensor bytes of a safetensors file begin: after the u64 header size and the header."""
    (header_size,) = struct.unpack("<Q", raw[:8])
    return 8 + header_size


WEIGHT_DAMAGE = {
    "empty": lambda raw: b"",
    "garbage": lambda raw: b"not safetensors at all",
    "truncated": lambda raw: raw[:len(raw) - 100],
    "corrupted_header": lambda raw: raw[:8] + b"X" + raw[9:],
}


@pytest.mark.parametrize("damage", [*WEIGHT_DAMAGE, "pickle"])
def test_load_run_reports_a_damaged_weights_file_in_one_line(finished_run, model, damage):
    path = finished_run / runs.WEIGHTS_FILE
    if damage == "pickle":
        torch.save(model.state_dict(), path)
    else:
        path.write_bytes(WEIGHT_DAMAGE[damage](path.read_bytes()))
    with pytest.raises(runs.RunDirError, match="is damaged .*; train the run again$") as caught:
        runs.load_run(finished_run)
    assert str(caught.value).startswith(f"{path} is damaged (")
    assert "\n" not in str(caught.value)


# --- weights checksum --------------------------------------------------------------------------

def test_save_weights_returns_the_sha256_of_the_written_file(tmp_path, model):
    digest = runs.save_weights(tmp_path, model)
    assert digest == hashlib.sha256((tmp_path / runs.WEIGHTS_FILE).read_bytes()).hexdigest()


def test_load_run_accepts_weights_that_match_the_summary_checksum(finished_run, model):
    summary = {**SUMMARY, "weights_sha256": runs.save_weights(finished_run, model)}
    runs.write_summary(finished_run, summary)
    assert runs.load_run(finished_run).summary == summary


@pytest.mark.parametrize("change", ["flipped_byte", "other_weights"])
def test_load_run_refuses_weights_that_do_not_match_the_summary_checksum(finished_run, config, model, change):
    runs.write_summary(finished_run, {**SUMMARY, "weights_sha256": runs.save_weights(finished_run, model)})
    path = finished_run / runs.WEIGHTS_FILE
    if change == "flipped_byte":  # still a loadable safetensors file of the right architecture
        raw = bytearray(path.read_bytes())
        raw[data_start(raw) + 5] ^= 0x01
        path.write_bytes(raw)
    else:
        runs.save_weights(finished_run, trained_looking_model(config, seed=1))
    with pytest.raises(runs.RunDirError) as caught:
        runs.load_run(finished_run)
    assert str(caught.value) == (f"{path} does not match the checksum in summary.json (modified or damaged); "
                                 f"train the run again with `stochrelax train {finished_run / runs.CONFIG_FILE} "
                                 f"--out {finished_run} --overwrite`")


# --- run-directory layout ----------------------------------------------------------------------

LAYOUT_READERS = {
    "load_run": runs.load_run,
    "check_same_config": lambda run_dir: runs.check_same_config(run_dir, parse_config({})),
    "load_checkpoint": checkpoints.load_checkpoint,
}


@pytest.mark.parametrize("reader", list(LAYOUT_READERS))
def test_readers_refuse_a_run_directory_of_another_layout(finished_run, reader):
    (finished_run / runs.RUN_FILE).write_text(json.dumps({"layout": 2}))
    with pytest.raises(runs.RunDirError) as caught:
        LAYOUT_READERS[reader](finished_run)
    assert str(caught.value) == (f"{finished_run} was written with run-directory layout 2; this stochrelax reads "
                                 "layout 1: use the stochrelax version that wrote it, or train it again with "
                                 "--overwrite")


@pytest.mark.parametrize("reader", list(LAYOUT_READERS))
def test_readers_refuse_a_run_directory_written_before_layouts(finished_run, reader):
    (finished_run / runs.RUN_FILE).unlink()
    with pytest.raises(runs.RunDirError) as caught:
        LAYOUT_READERS[reader](finished_run)
    assert str(caught.value) == (f"{finished_run} has no stochrelax-run.json: it was written by an older "
                                 f"stochrelax; train it again into a new directory (`stochrelax train "
                                 f"{finished_run / runs.CONFIG_FILE} --out NEW_DIR`)")


@pytest.mark.parametrize("contents", [b"", b"{\"layout\": ", b"[1]", b"{}", b"\xff\xfe"],
                         ids=["empty", "cut_short", "not_an_object", "no_layout", "not_utf8"])
def test_check_layout_reports_an_unreadable_layout_file_in_one_line(finished_run, contents):
    (finished_run / runs.RUN_FILE).write_bytes(contents)
    with pytest.raises(runs.RunDirError, match="is damaged .*; train the run again with --overwrite$") as caught:
        runs.check_layout(finished_run)
    assert str(caught.value).startswith(f"{finished_run / runs.RUN_FILE} is damaged (")
    assert "\n" not in str(caught.value)


def test_check_layout_accepts_a_new_run_directory(tmp_path):
    runs.check_layout(runs.create_run_dir(tmp_path / "run"))


@pytest.mark.parametrize("bookkeeping", [[runs.LOCK_FILE], [runs.RUN_FILE], [runs.LOCK_FILE, runs.RUN_FILE]])
def test_a_directory_holding_only_a_lock_and_layout_file_counts_as_empty(tmp_path, bookkeeping):
    path = tmp_path / "run"
    path.mkdir()
    for name in bookkeeping:
        (path / name).write_text("")
    assert runs.check_run_dir(path) is False
    assert runs.check_run_dir(path, overwrite=True) is False
    runs.create_run_dir(path)
    runs.check_layout(path)


# --- checkpoints -------------------------------------------------------------------------------

CHECKPOINT_TENSORS = {
    "weight": torch.linspace(-1, 1, 12).reshape(3, 4),
    "half": torch.arange(6, dtype=torch.bfloat16),
    "counts": torch.tensor([0, 2**40, -5]),
    "mask": torch.tensor([True, False, True]),
    "scalar": torch.tensor(7.5),
    "empty": torch.zeros(0, 3),
    "images": torch.arange(64, dtype=torch.uint8).reshape(4, 4, 4),
}


def test_checkpoint_round_trip_returns_the_saved_tensors_and_metadata(tmp_path):
    runs.create_run_dir(tmp_path)
    checkpoints.save_checkpoint(tmp_path, {**CHECKPOINT_TENSORS, "strided": torch.arange(12.0).reshape(3, 4).t()},
                         {"epoch": 3, "format": 1, "rng": [1, 2, 3]})
    tensors, metadata = checkpoints.load_checkpoint(tmp_path)
    assert metadata == {"epoch": 3, "format": 1, "rng": [1, 2, 3]}
    expected = {**CHECKPOINT_TENSORS, "strided": torch.arange(12.0).reshape(3, 4).t()}
    assert tensors.keys() == expected.keys()
    for name, tensor in expected.items():
        assert tensors[name].dtype == tensor.dtype and torch.equal(tensors[name], tensor), name


def test_load_checkpoint_of_a_run_without_one_is_none(tmp_path):
    assert checkpoints.load_checkpoint(runs.create_run_dir(tmp_path)) is None


def saved_checkpoint(run_dir: Path) -> Path:
    runs.create_run_dir(run_dir)
    checkpoints.save_checkpoint(run_dir, CHECKPOINT_TENSORS, {"epoch": 3})
    return run_dir / runs.CHECKPOINT_FILE


def flip_data_byte(raw: bytes) -> bytes:
    flipped = bytearray(raw)
    flipped[data_start(raw) + 3] ^= 0x10
    return bytes(flipped)


def change_epoch(raw: bytes) -> bytes:
    assert raw.count(b'\\"epoch\\": 3') == 1  # the state is a JSON string inside the JSON header
    return raw.replace(b'\\"epoch\\": 3', b'\\"epoch\\": 7')


CHECKPOINT_DAMAGE = {
    "flipped_data_byte": (flip_data_byte, "checksum mismatch"),
    "changed_state": (change_epoch, "checksum mismatch"),
    "truncated": (lambda raw: raw[:len(raw) - 20], "Error while deserializing header"),
    "header_cut": (lambda raw: raw[:30], "Error while deserializing header"),
}


@pytest.mark.parametrize("damage", list(CHECKPOINT_DAMAGE))
def test_load_checkpoint_reports_a_damaged_checkpoint_in_one_line(tmp_path, damage):
    path = saved_checkpoint(tmp_path)
    change, problem = CHECKPOINT_DAMAGE[damage]
    path.write_bytes(change(path.read_bytes()))
    with pytest.raises(runs.RunDirError) as caught:
        checkpoints.load_checkpoint(tmp_path)
    message = str(caught.value)
    assert message.startswith(f"{path} is damaged ({problem}")
    assert message.endswith("; delete it to restart the run from epoch 1") and "\n" not in message


def test_load_checkpoint_refuses_a_checkpoint_without_checksum(tmp_path):
    runs.create_run_dir(tmp_path)
    save_file(CHECKPOINT_TENSORS, tmp_path / runs.CHECKPOINT_FILE, metadata={"state": json.dumps({"epoch": 3})})
    with pytest.raises(runs.RunDirError) as caught:
        checkpoints.load_checkpoint(tmp_path)
    assert str(caught.value) == (f"{tmp_path / runs.CHECKPOINT_FILE} is damaged (checksum missing); "
                                 "delete it to restart the run from epoch 1")


def test_failed_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    saved_checkpoint(tmp_path)

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runs, "save_file", disk_full)
    with pytest.raises(runs.RunDirError, match=f"cannot write {re.escape(str(tmp_path / runs.CHECKPOINT_FILE))} "
                                               r"\(No space left on device\); free some space"):
        checkpoints.save_checkpoint(tmp_path, {"weight": torch.ones(2)}, {"epoch": 4})
    tensors, metadata = checkpoints.load_checkpoint(tmp_path)
    assert metadata == {"epoch": 3}
    assert tensors.keys() == CHECKPOINT_TENSORS.keys() and torch.equal(tensors["weight"], CHECKPOINT_TENSORS["weight"])
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(f".{runs.CHECKPOINT_FILE}.")]


# --- one writer per run ------------------------------------------------------------------------

TAKE_LOCK = """import sys, time
from stochrelax.rundir import layout as runs
with runs.run_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def lock_in_subprocess(run_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", TAKE_LOCK, str(run_dir), "0"], check=False, capture_output=True,
                          text=True, timeout=120)


def test_run_lock_refuses_a_second_process_while_held(tmp_path):
    with runs.run_lock(tmp_path / "run") as run_dir:
        assert run_dir == tmp_path / "run"
        assert (run_dir / runs.LOCK_FILE).read_text().strip() == str(os.getpid())
        other = lock_in_subprocess(run_dir)
    assert other.returncode != 0 and "locked" not in other.stdout
    assert other.stderr.strip().splitlines()[-1] == (
        f"stochrelax.rundir.layout.RunDirError: {run_dir} is being written by another stochrelax process (pid {os.getpid()}); "
        "wait for it to finish or stop it")


def test_run_lock_is_released_on_exit_and_clears_the_pid(tmp_path):
    with runs.run_lock(tmp_path):
        pass
    assert (tmp_path / runs.LOCK_FILE).read_bytes() == b""
    other = lock_in_subprocess(tmp_path)
    assert other.returncode == 0, other.stderr
    assert other.stdout == "locked\n"


def test_run_lock_refuses_a_second_lock_within_the_same_process(tmp_path):
    with runs.run_lock(tmp_path), \
            pytest.raises(runs.RunDirError, match=f"another stochrelax process \\(pid {os.getpid()}\\)"), \
            runs.run_lock(tmp_path):
        pass
    with runs.run_lock(tmp_path):  # the failed attempt did not release or break the first
        pass


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", TAKE_LOCK, str(tmp_path), "600"], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(runs.RunDirError, match=f"pid {holder.pid}"), runs.run_lock(tmp_path):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
        holder.stdout.close()
    assert holder.returncode == -signal.SIGKILL
    assert (tmp_path / runs.LOCK_FILE).exists()  # the file stays; the lock went with the process
    with runs.run_lock(tmp_path):
        pass


def test_replacing_a_run_keeps_the_lock_in_force(finished_run):
    with runs.run_lock(finished_run):
        runs.create_run_dir(finished_run, overwrite=True)
        assert sorted(p.name for p in finished_run.iterdir()) == sorted([runs.LOCK_FILE, runs.RUN_FILE])
        assert "is being written by another stochrelax process" in lock_in_subprocess(finished_run).stderr


# --- writability before work -------------------------------------------------------------------

def test_check_writable_creates_the_directory_and_leaves_it_empty(tmp_path):
    runs.check_writable(tmp_path / "a" / "run", needed_bytes=1)
    assert (tmp_path / "a" / "run").is_dir() and not any((tmp_path / "a" / "run").iterdir())


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_check_writable_refuses_a_read_only_directory(tmp_path):
    path = tmp_path / "run"
    path.mkdir(mode=0o500)
    try:
        with pytest.raises(runs.RunDirError) as caught:
            runs.check_writable(path)
    finally:
        path.chmod(0o700)
    assert str(caught.value) == (f"cannot write to {path} (Permission denied); choose another --out or fix its "
                                 "permissions")


def test_check_writable_refuses_a_path_below_a_file(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    path = tmp_path / "notes.txt" / "run"
    with pytest.raises(runs.RunDirError) as caught:
        runs.check_writable(path)
    assert str(caught.value) == (f"cannot write to {path} (Not a directory); choose another --out or fix its "
                                 "permissions")


def test_check_writable_refuses_a_nearly_full_disk(tmp_path, monkeypatch):
    real = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real._replace(free=12 * 2**20 + 5))
    with pytest.raises(runs.RunDirError) as caught:
        runs.check_writable(tmp_path / "run")
    assert str(caught.value) == (f"{tmp_path / 'run'}: only 12 MB free on its disk, a run needs about 64 MB; "
                                 "free some space or choose another --out")
    runs.check_writable(tmp_path / "run", needed_bytes=12 * 2**20)


# --- .jsonl records ----------------------------------------------------------------------------

JSONL_READERS = {runs.METRICS_FILE: (records.read_metrics, epoch_metrics),
                 runs.TRAINING_STATS_FILE: (records.read_training_stats, _training_stats),
                 runs.EVENTS_FILE: (records.read_events, lambda epoch: {"event": "start", "epoch": epoch})}


@pytest.mark.parametrize("name", list(JSONL_READERS))
def test_readers_drop_a_last_line_cut_short(tmp_path, name):
    read, record = JSONL_READERS[name]
    (tmp_path / name).write_text("".join((*(json.dumps(record(epoch)) + "\n" for epoch in (1, 2)),
                                        json.dumps(record(3))[:-9])))
    assert read(tmp_path) == [record(1), record(2)]


@pytest.mark.parametrize("name", list(JSONL_READERS))
def test_readers_refuse_a_damaged_line_before_the_last(tmp_path, name):
    read, record = JSONL_READERS[name]
    (tmp_path / name).write_text("".join((json.dumps(record(1)) + "\n", '{"epoch": 2, "tr\n',
                                        json.dumps(record(3)) + "\n")))
    with pytest.raises(runs.RunDirError) as caught:
        read(tmp_path)
    assert str(caught.value) == f"{tmp_path / name} line 2 is not JSON; the file is damaged"


@pytest.mark.parametrize("name", list(JSONL_READERS))
def test_readers_refuse_a_line_whose_key_a_flipped_bit_renamed(tmp_path, name):
    read, record = JSONL_READERS[name]
    renamed = json.dumps(record(2)).replace('"epoch"', '"dpoch"')
    (tmp_path / name).write_text("".join((json.dumps(record(1)) + "\n", renamed + "\n")))
    with pytest.raises(runs.RunDirError) as caught:
        read(tmp_path)
    assert str(caught.value) == f"{tmp_path / name} line 2 is damaged: epoch: Field required"


@pytest.mark.parametrize(("damage", "problem"), [
    (lambda record: record.pop("test_accuracy"), "test_accuracy: Field required"),
    (lambda record: record.update(train_seconds="2.0 s"), "train_seconds: Input should be a valid number"),
])
def test_read_metrics_refuses_a_record_without_a_number_its_readers_need(tmp_path, damage, problem):
    record = epoch_metrics(1)
    damage(record)
    (tmp_path / runs.METRICS_FILE).write_text(json.dumps(record) + "\n")
    with pytest.raises(runs.RunDirError, match=f"line 1 is damaged: {problem}"):
        records.read_metrics(tmp_path)


def test_training_stats_need_every_summary_of_every_layer(tmp_path):
    record = _training_stats(1)
    del record["layers"]["block1"]["gradient"]["std"]
    (tmp_path / runs.TRAINING_STATS_FILE).write_text(json.dumps(record) + "\n")
    with pytest.raises(runs.RunDirError, match="line 1 is damaged: layers.block1.gradient.std: Field required"):
        records.read_training_stats(tmp_path)


def test_a_damaged_last_line_followed_by_a_newline_is_refused(tmp_path):
    (tmp_path / runs.METRICS_FILE).write_text(json.dumps(epoch_metrics(1)) + '\n{"epoch": 2, "tr\n')
    with pytest.raises(runs.RunDirError, match="line 2 is not JSON"):
        records.read_metrics(tmp_path)


def test_truncate_records_keeps_checkpointed_epochs_and_drops_lines_cut_short(tmp_path):
    for epoch in (1, 2, 3):
        records.append_metrics(tmp_path, epoch_metrics(epoch))
        records.append_training_stats(tmp_path, _training_stats(epoch))
    records.append_event(tmp_path, "start", 1)
    for name in (runs.METRICS_FILE, runs.EVENTS_FILE):
        with open(tmp_path / name, "a") as stream:
            stream.write('{"ep')
    records.truncate_records(tmp_path, last_epoch=2)
    records.append_event(tmp_path, "resume", 3)
    records.append_metrics(tmp_path, epoch_metrics(3))
    assert records.read_metrics(tmp_path) == [epoch_metrics(1), epoch_metrics(2), epoch_metrics(3)]
    assert [stats["epoch"] for stats in records.read_training_stats(tmp_path)] == [1, 2]
    assert records.read_events(tmp_path) == [{"event": "start", "epoch": 1}, {"event": "resume", "epoch": 3}]


@pytest.mark.parametrize("count", [0, 1, 8, 13, 1000])
def test_per_image_results_round_trip_through_their_hex_form(count):
    correct = torch.rand(count, generator=torch.Generator().manual_seed(count)) < 0.7
    text = runs.pack_correct(correct)
    assert len(text) == 2 * ((count + 7) // 8)
    assert (runs.unpack_correct(text, count) == correct.numpy()).all()


def test_per_image_results_of_the_wrong_length_are_refused():
    with pytest.raises(ValueError, match="2 bytes of per-image results for 20 images"):
        runs.unpack_correct("ffff", 20)


def test_group_by_seed_joins_configs_that_differ_only_in_seed():
    configs = {
        "a": parse_config({"train": {"seed": 0}}),
        "b": parse_config({"model": {"activation": {"noise": "logistic", "std": 0.05}}}),
        "c": parse_config({"train": {"seed": 3}}),
        "d": parse_config({"train": {"seed": 3, "lr": 0.01}}),
    }
    assert runs.group_by_seed(configs) == [["a", "c"], ["b"], ["d"]]


def test_run_files_are_readable_by_others_as_the_umask_allows(tmp_path):
    runs.create_run_dir(tmp_path / "run")
    runs.write_summary(tmp_path / "run", SUMMARY)
    mask = os.umask(0)
    os.umask(mask)
    for name in (runs.RUN_FILE, runs.SUMMARY_FILE):
        assert (tmp_path / "run" / name).stat().st_mode & 0o777 == 0o666 & ~mask, name


@pytest.mark.parametrize(("row", "problem"), [
    ({"attack": "fgsm", "budget_name": "eps", "budgdt": 0.1, "eot_samples": 1, "accuracy": 0.5}, "row 1: no budget"),
    ({"attack": "fgsm", "budget_name": "eps", "budget": "0.1", "eot_samples": 1, "accuracy": 0.5},
     "row 1: budget of the wrong type"),
    (["fgsm"], "row 1: a JSON list, not an object"),
])
def test_an_attack_row_without_what_readers_need_is_a_damaged_table(tmp_path, row, problem):
    run_dir = runs.create_run_dir(tmp_path / "run")
    (run_dir / runs.ATTACKS_JSON).write_text(json.dumps({"rows": [row]}))
    with pytest.raises(runs.RunDirError, match=re.escape(f"attacks.json is damaged ({problem}); move it away")):
        runs.read_attack_table(run_dir)
