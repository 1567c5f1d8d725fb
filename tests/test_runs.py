"""Tests of :mod:`stochrelax.runs`: creating run directories safely and reading finished runs back.

A run directory is config.yaml + metrics.jsonl + model.safetensors + summary.json;
weights are safetensors (never pickle), files are written atomically, and anything
that cannot be read back raises :class:`~stochrelax.runs.RunDirError` naming the path.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from stochrelax import runs
from stochrelax.config import RunConfig, parse_config
from stochrelax.models import build_model
from stochrelax.rng import seeded

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
    runs.append_metrics(run_dir, {"epoch": 1, "test_accuracy": 0.875})
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
    assert path.is_dir() and not any(path.iterdir())


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
    with pytest.raises(runs.RunDirError, match="--overwrite") as caught:
        runs.create_run_dir(path)
    assert str(path) in str(caught.value)
    assert path.exists() and (path.is_file() or (path / runs.CONFIG_FILE).is_file())


def test_create_run_dir_with_overwrite_replaces_a_run_directory(finished_run):
    runs.create_run_dir(finished_run, overwrite=True)
    assert finished_run.is_dir() and not any(finished_run.iterdir())


@pytest.mark.parametrize("as_file", [False, True], ids=["directory", "file"])
def test_create_run_dir_never_deletes_something_that_is_not_a_run(tmp_path, as_file):
    path = tmp_path / "thesis"
    if as_file:
        path.write_text("my thesis")
        keep = path
    else:
        path.mkdir()
        keep = path / "chapter1.tex"
        keep.write_text("my thesis")
    with pytest.raises(runs.RunDirError, match="not a stochrelax run directory") as caught:
        runs.create_run_dir(path, overwrite=True)
    assert str(path) in str(caught.value)
    assert keep.read_text() == "my thesis"


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
        [runs.CONFIG_FILE, runs.METRICS_FILE, runs.WEIGHTS_FILE, runs.SUMMARY_FILE])


def test_failed_weights_write_keeps_the_previous_file_and_leaves_no_temporary(finished_run, model):
    tied = torch.nn.Module()
    tied.first = tied.second = torch.nn.Linear(2, 2)  # shared tensors: safetensors refuses to save them
    before = (finished_run / runs.WEIGHTS_FILE).read_bytes()
    with pytest.raises(RuntimeError, match="share memory"):
        runs.save_weights(finished_run, tied)
    assert (finished_run / runs.WEIGHTS_FILE).read_bytes() == before
    assert not [p.name for p in finished_run.iterdir() if p.name.startswith(".")]


def test_read_metrics_returns_the_lines_in_order(tmp_path):
    lines = [{"epoch": epoch, "train_loss": 1.0 / epoch, "test_accuracy": 0.5 + epoch / 10} for epoch in (1, 2, 3)]
    for line in lines:
        runs.append_metrics(tmp_path, line)
    assert (tmp_path / runs.METRICS_FILE).read_text().count("\n") == 3
    assert runs.read_metrics(tmp_path) == lines


def test_read_metrics_of_a_run_without_metrics_is_empty(tmp_path):
    assert runs.read_metrics(tmp_path) == []


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


@pytest.mark.parametrize("contents", [b"", b"not safetensors at all", "pickle"], ids=["empty", "garbage", "pickle"])
def test_load_run_refuses_a_corrupt_weights_file(finished_run, model, contents):
    path = finished_run / runs.WEIGHTS_FILE
    if contents == "pickle":
        torch.save(model.state_dict(), path)
    else:
        path.write_bytes(contents)
    with pytest.raises(runs.RunDirError) as caught:
        runs.load_run(finished_run)
    assert str(path) in str(caught.value)
