"""Tests of :mod:`stochrelax.training.loop` (and :func:`stochrelax.evaluation.clean.evaluate_model`) on real Fashion-MNIST.

Runs are one epoch on a few thousand images: enough for a deterministic ReLU network
to be far above chance, and for the stochastic configs to show a finite loss.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file

from stochrelax.evaluation.clean import evaluate_model, evaluate_run
from stochrelax.models.allconv import build_model
from stochrelax.rundir import checkpoints, layout as runs, records
from stochrelax.rundir.config import RunConfig, TrainConfig, load_config, parse_config
from stochrelax.training.loop import EpochMetrics, TrainingDiverged, fit, train_run
from stochrelax.training.scalars import tensorboard_available

pytestmark = pytest.mark.slow

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
METRIC_KEYS = {"epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "train_seconds", "eval_seconds"}


def shipped(name: str, **train_overrides) -> RunConfig:
    return load_config(CONFIG_DIR / f"{name}.yaml", {"train": {"epochs": 1, **train_overrides}})


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(run_dir / runs.WEIGHTS_FILE)


# --- end to end: deterministic ReLU ------------------------------------------------------------

@pytest.fixture(scope="module")
def relu_run(fashion_mnist, tmp_path_factory):
    """relu_deterministic, 1 epoch on the first 6000 training and 1000 test images."""
    config = load_config(CONFIG_DIR / "relu_deterministic.yaml",
                         {"train": {"epochs": 1}, "data": {"train_limit": 6000, "test_limit": 1000}})
    run_dir = tmp_path_factory.mktemp("train") / "relu"
    reported: list[EpochMetrics] = []
    summary = train_run(config, fashion_mnist, run_dir, progress=False, on_epoch=reported.append)
    return config, run_dir, summary, reported


def test_one_epoch_of_relu_network_is_far_above_chance(relu_run):
    _, _, summary, _ = relu_run
    assert summary["test_accuracy"] > 0.6
    assert summary["train_accuracy"] > 0.3
    assert (summary["epochs"], summary["train_examples"], summary["test_examples"]) == (1, 6000, 1000)


def test_run_directory_holds_exactly_the_documented_files(relu_run):
    _, run_dir, _, _ = relu_run
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(
        [runs.CONFIG_FILE, runs.METRICS_FILE, runs.TRAINING_STATS_FILE, runs.WEIGHTS_FILE, runs.SUMMARY_FILE,
         runs.EVENTS_FILE, runs.RUN_FILE, runs.LOCK_FILE,
         *([runs.TENSORBOARD_DIR] if tensorboard_available() else [])])
    assert (run_dir / runs.LOCK_FILE).read_text() == "", "the lock is released with the pid cleared"


def test_run_directory_records_config_metrics_and_summary(relu_run):
    config, run_dir, summary, reported = relu_run
    metrics = records.read_metrics(run_dir)
    assert len(metrics) == 1 and set(metrics[0]) == METRIC_KEYS
    assert [metrics[0]] == [m.as_dict() for m in reported]
    assert metrics[0]["epoch"] == 1
    assert metrics[0]["test_accuracy"] == summary["test_accuracy"]
    correct = runs.unpack_correct(summary["test_correct"], summary["test_examples"])
    assert correct.mean() == summary["test_accuracy"]
    run = runs.load_run(run_dir)
    assert run.config == config
    assert run.summary == summary


def test_evaluate_run_reproduces_the_summary_of_a_deterministic_run(relu_run, fashion_mnist):
    _, run_dir, summary, _ = relu_run
    result = evaluate_run(runs.load_run(run_dir), fashion_mnist.limit(test_limit=1000), samples=1)
    assert result.examples == 1000
    assert result.accuracy == summary["test_accuracy"]
    assert (result.correct.numpy() == runs.unpack_correct(summary["test_correct"], 1000)).all()
    assert result.nll == pytest.approx(summary["test_loss"], rel=1e-6)


@pytest.mark.parametrize("training", [True, False], ids=["from_train_mode", "from_eval_mode"])
def test_evaluate_model_matches_cross_entropy_and_argmax(relu_run, fashion_mnist, training):
    _, run_dir, _, _ = relu_run
    model = runs.load_run(run_dir).model
    images, labels = fashion_mnist.test_images[:1000], fashion_mnist.test_labels[:1000]
    with torch.no_grad():
        logits = model.eval()(images.float() / 255)
    expected_nll = F.cross_entropy(logits, labels).item()
    expected_accuracy = (logits.argmax(dim=1) == labels).sum().item() / 1000
    model.train(training)
    result = evaluate_model(model, images, labels, samples=1, batch_size=300)
    assert result.accuracy == expected_accuracy
    assert result.nll == pytest.approx(expected_nll, rel=1e-5)
    assert (result.samples, result.examples) == (1, 1000)
    assert all(module.training is training for module in model.modules())


def test_evaluate_model_rejects_zero_samples(fashion_mnist):
    model = build_model(parse_config({}).model)
    with pytest.raises(ValueError, match="samples must be >= 1"):
        evaluate_model(model, fashion_mnist.test_images[:10], fashion_mnist.test_labels[:10], samples=0)


# --- stochastic configs ------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["relu_logistic_additive", "sign_logistic_ste", "sign_logistic_score"])
def test_stochastic_config_trains_with_two_noise_samples_and_finite_loss(name, fashion_mnist, tmp_path):
    config = shipped(name, train_samples=2, eval_samples=2)
    summary = train_run(config, fashion_mnist.limit(2000, 500), tmp_path / name, progress=False)
    (metrics,) = records.read_metrics(tmp_path / name)
    assert math.isfinite(metrics["train_loss"]) and metrics["train_loss"] > 0
    assert math.isfinite(metrics["test_loss"]) and metrics["test_loss"] > 0
    assert 0.0 <= summary["test_accuracy"] <= 1.0
    assert summary["train_examples"] == 2000
    assert all(torch.isfinite(tensor.float()).all() for tensor in weights(tmp_path / name).values())


# --- seeding -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def seeded_runs(fashion_mnist, tmp_path_factory):
    """Weights and metrics of the stochastic ReLU network trained with seeds 0, 0 and 1."""
    data = fashion_mnist.limit(512, 128)
    results = []
    for index, seed in enumerate((0, 0, 1)):
        run_dir = tmp_path_factory.mktemp("seeds") / f"run{index}"
        train_run(shipped("relu_logistic_additive", seed=seed), data, run_dir, progress=False)
        metrics = [{k: v for k, v in m.items() if not k.endswith("seconds")} for m in records.read_metrics(run_dir)]
        results.append((weights(run_dir), metrics, records.read_training_stats(run_dir)))
    return results


def test_same_seed_gives_identical_weights_metrics_and_statistics(seeded_runs):
    (first, first_metrics, first_stats), (second, second_metrics, second_stats), _ = seeded_runs
    assert list(first) == list(second)
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert first_metrics == second_metrics and first_stats == second_stats


def test_different_seed_gives_different_weights(seeded_runs):
    (first, _, _), _, (other, _, _) = seeded_runs
    assert not torch.equal(first["blocks.block1.conv.weight"], other["blocks.block1.conv.weight"])


def test_train_run_leaves_the_callers_random_state_unchanged(fashion_mnist, tmp_path):
    torch.manual_seed(1234)
    before = torch.random.get_rng_state()
    train_run(shipped("relu_logistic_additive"), fashion_mnist.limit(128, 64), tmp_path / "run", progress=False)
    assert torch.equal(torch.random.get_rng_state(), before)


def test_train_run_refuses_an_existing_directory_before_training(fashion_mnist, tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(runs.RunDirError, match="already exists"):
        train_run(shipped("relu_deterministic"), fashion_mnist, tmp_path, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


# --- fit ---------------------------------------------------------------------------------------

def test_fit_reports_every_epoch_in_order(fashion_mnist):
    model = build_model(parse_config({}).model)
    reported: list[EpochMetrics] = []
    history = fit(model, fashion_mnist.limit(256, 64), TrainConfig(epochs=2, batch_size=64),
                  on_epoch=reported.append)
    assert [m.epoch for m in history] == [1, 2]
    assert reported == history
    assert all(math.isfinite(m.train_loss) and 0 <= m.test_accuracy <= 1 for m in history)


def test_fit_raises_training_diverged_on_a_non_finite_loss(fashion_mnist):
    model = build_model(parse_config({}).model)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(math.nan)
    reported: list[EpochMetrics] = []
    with pytest.raises(TrainingDiverged, match=r"non-finite training loss at epoch 1, batch 1 \(first in "
                                               r"blocks.block1.conv\); lower train.lr"):
        fit(model, fashion_mnist.limit(64, 32), TrainConfig(epochs=2, batch_size=32), on_epoch=reported.append)
    assert reported == []


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in model.named_parameters()}


def test_an_infinite_weight_is_traced_to_its_layer_and_the_step_is_not_applied(fashion_mnist):
    model = build_model(parse_config({}).model)
    with torch.no_grad():
        model.blocks.block4.conv.weight[0, 0, 0, 0] = math.inf
    before = _weights(model)
    with pytest.raises(TrainingDiverged) as raised:
        fit(model, fashion_mnist.limit(128, 32), TrainConfig(epochs=1, batch_size=64))
    assert raised.value.as_dict() | {"message": None} == {"epoch": 1, "batch": 1, "quantity": "loss",
                                                         "layer": "blocks.block4.conv", "message": None}
    after = _weights(model)
    assert all(torch.equal(before[name], after[name]) for name in before), "the failing step changed the weights"


def test_a_layer_turning_non_finite_in_a_later_batch_is_named_with_epoch_and_batch(fashion_mnist):
    model = build_model(parse_config({"model": {"activation": {"kind": "relu", "noise": "logistic",
                                                                "std": 0.1}}}).model)
    calls = []

    def nan_from_the_third_call(module, inputs, output):  # also in the re-run that traces the failure
        calls.append(1)
        return output * math.nan if len(calls) >= 3 else output

    model.blocks.block5.norm.register_forward_hook(nan_from_the_third_call)
    with pytest.raises(TrainingDiverged) as raised:
        fit(model, fashion_mnist.limit(320, 32), TrainConfig(epochs=1, batch_size=64))
    assert (raised.value.epoch, raised.value.batch, raised.value.layer) == (1, 3, "blocks.block5.norm")


def test_a_non_finite_gradient_with_a_finite_loss_is_traced_to_its_parameter(fashion_mnist):
    model = build_model(parse_config({}).model)
    model.blocks.block7.conv.weight.register_hook(lambda gradient: gradient * math.inf)
    before = _weights(model)
    with pytest.raises(TrainingDiverged, match="non-finite training gradient at epoch 1, batch 1") as raised:
        fit(model, fashion_mnist.limit(128, 32), TrainConfig(epochs=1, batch_size=64))
    assert raised.value.layer == "blocks.block7.conv"
    assert all(torch.equal(before[name], value) for name, value in _weights(model).items())


def test_a_non_finite_score_function_log_probability_is_traced_to_its_unit(fashion_mnist):
    model = build_model(parse_config({"model": {"activation": {"kind": "sign", "noise": "logistic", "std": 0.5,
                                                                "estimator": "score"}}}).model)

    def minus_infinity(module, inputs, output):
        module.last_log_prob = module.last_log_prob - math.inf

    model.blocks.block2.act.register_forward_hook(minus_infinity)
    with pytest.raises(TrainingDiverged) as raised:
        fit(model, fashion_mnist.limit(128, 32), TrainConfig(epochs=1, batch_size=64))
    assert (raised.value.quantity, raised.value.layer) == ("log-probability", "blocks.block2.act")


# --- adversarial training ----------------------------------------------------------------------

def test_pgd_adversarial_training_buys_robustness(fashion_mnist, tmp_path):
    """PGD training (2 epochs on 4000 images, PGD-3 at eps 0.1) resists FGSM at eps 0.07 far better
    than clean training (measured: 67% vs 25% accuracy on 300 test images)."""
    from stochrelax.evaluation.rows import attack_model

    accuracies = {}
    for method in (None, "pgd"):
        config = parse_config({"train": {"epochs": 2, "adversarial": {"method": method, "eps": 0.1, "pgd_steps": 3}},
                               "data": {"train_limit": 4000, "test_limit": 300}})
        train_run(config, fashion_mnist, tmp_path / str(method))
        model = runs.load_run(tmp_path / str(method)).model
        test = fashion_mnist.limit(test_limit=300)
        accuracies[method] = attack_model(model, "fgsm", 0.07, test.test_images, test.test_labels).accuracy
    assert accuracies["pgd"] > accuracies[None] + 0.25, accuracies


# --- checkpoints and resumption --------------------------------------------------------------

class Interrupted(Exception):
    """Stands for a kill: raised from on_epoch after the epoch's metrics were written."""


def interrupt_at(epoch: int):
    def on_epoch(metrics: EpochMetrics) -> None:
        if metrics.epoch == epoch:
            raise Interrupted
    return on_epoch


def tiny(name: str, **train) -> RunConfig:
    return load_config(CONFIG_DIR / f"{name}.yaml", {"train": {"epochs": 3, **train},
                                                     "data": {"train_limit": 512, "test_limit": 200}})


RESUMABLE = {  # each exercises a different piece of state: noise RNG, score baseline, stored FGSM set, precision
    "relu_logistic_additive": tiny("relu_logistic_additive"),
    "sign_logistic_ste_bfloat16": tiny("sign_logistic_ste", precision="bfloat16"),
    "sign_logistic_score": tiny("sign_logistic_score"),
    "relu_adversarial_fgsm": load_config(CONFIG_DIR / "relu_adversarial_fgsm.yaml",
                                         {"train": {"epochs": 3, "adversarial": {"regenerate_every": 2}},
                                          "data": {"train_limit": 512, "test_limit": 200}}),
}


@pytest.mark.parametrize("name", list(RESUMABLE))
def test_a_resumed_run_ends_bit_identical_to_an_uninterrupted_one(name, fashion_mnist, tmp_path):
    config = RESUMABLE[name]
    whole = train_run(config, fashion_mnist, tmp_path / "whole")
    with pytest.raises(Interrupted):  # killed after epoch 3's metrics, before its checkpoint
        train_run(config, fashion_mnist, tmp_path / "resumed", on_epoch=interrupt_at(3))
    assert json.loads((tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()[-1])["epoch"] == 3
    resumed = train_run(config, fashion_mnist, tmp_path / "resumed", resume=True)
    assert weights(tmp_path / "whole").keys() == weights(tmp_path / "resumed").keys()
    for key, value in weights(tmp_path / "whole").items():
        assert torch.equal(value, weights(tmp_path / "resumed")[key]), key
    assert [m["epoch"] for m in records.read_metrics(tmp_path / "resumed")] == [1, 2, 3]
    assert [m["train_loss"] for m in records.read_metrics(tmp_path / "resumed")] == \
        [m["train_loss"] for m in records.read_metrics(tmp_path / "whole")]
    assert [s["epoch"] for s in records.read_training_stats(tmp_path / "resumed")] == [1, 2, 3]
    assert records.read_events(tmp_path / "resumed") == [{"event": "start", "epoch": 1}, {"event": "resume", "epoch": 3}]
    assert (resumed["test_accuracy"], resumed["resumptions"], whole["resumptions"]) == \
        (whole["test_accuracy"], 1, 0)
    assert not (tmp_path / "resumed" / runs.CHECKPOINT_FILE).exists()


def test_resume_drops_a_line_cut_short_and_restarts_without_a_checkpoint(fashion_mnist, tmp_path):
    config = tiny("relu_deterministic", epochs=1)
    with pytest.raises(Interrupted):
        train_run(config, fashion_mnist, tmp_path / "run", on_epoch=interrupt_at(1))
    assert not (tmp_path / "run" / runs.CHECKPOINT_FILE).exists()  # killed before the first checkpoint
    with open(tmp_path / "run" / runs.METRICS_FILE, "a") as stream:
        stream.write('{"epoch": 2, "train_lo')
    summary = train_run(config, fashion_mnist, tmp_path / "run", resume=True)
    assert [m["epoch"] for m in records.read_metrics(tmp_path / "run")] == [1]
    assert summary["resumptions"] == 0 and [e["event"] for e in records.read_events(tmp_path / "run")] == ["start"] * 2


def test_resume_leaves_a_finished_run_untouched(fashion_mnist, tmp_path):
    config = tiny("relu_deterministic", epochs=1)
    summary = train_run(config, fashion_mnist, tmp_path / "run")
    before = {path: path.read_bytes() for path in (tmp_path / "run").rglob("*") if path.is_file()}
    assert train_run(config, fashion_mnist, tmp_path / "run", resume=True) == summary
    assert {path: path.read_bytes() for path in (tmp_path / "run").rglob("*") if path.is_file()} == before


def test_resume_refuses_a_run_started_with_another_config(fashion_mnist, tmp_path):
    with pytest.raises(Interrupted):
        train_run(tiny("relu_deterministic"), fashion_mnist, tmp_path / "run", on_epoch=interrupt_at(1))
    with pytest.raises(runs.RunDirError, match="different config"):
        train_run(tiny("relu_deterministic", lr=0.01), fashion_mnist, tmp_path / "run", resume=True)


def test_resume_reports_a_damaged_checkpoint_in_one_line(fashion_mnist, tmp_path):
    config = tiny("relu_deterministic")
    with pytest.raises(Interrupted):
        train_run(config, fashion_mnist, tmp_path / "run", on_epoch=interrupt_at(2))
    checkpoint = tmp_path / "run" / runs.CHECKPOINT_FILE
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    with pytest.raises(runs.RunDirError, match="is damaged.*delete it") as error:
        train_run(config, fashion_mnist, tmp_path / "run", resume=True)
    assert "\n" not in str(error.value)


def test_a_full_disk_keeps_the_last_checkpoint_records_the_failure_and_says_how_to_resume(fashion_mnist, tmp_path,
                                                                                        monkeypatch):
    config = tiny("relu_deterministic")
    real_save_file, calls = runs.save_file, []

    def full_at_the_second_checkpoint(tensors, path, metadata=None):
        calls.append(path)
        if len(calls) == 2:
            raise SafetensorError("No space left on device")
        real_save_file(tensors, path, metadata=metadata)

    monkeypatch.setattr(runs, "save_file", full_at_the_second_checkpoint)
    run_dir = tmp_path / "run"
    with pytest.raises(runs.RunDirError) as error:
        train_run(config, fashion_mnist, run_dir)
    assert str(error.value) == (f"cannot write {run_dir / runs.CHECKPOINT_FILE} (No space left on device); free some "
                                f"space or fix the permissions; then continue with `stochrelax train --resume "
                                f"{run_dir}`")
    assert checkpoints.load_checkpoint(run_dir)[1]["epoch"] == 1  # the last checkpoint stands
    failure = records.read_failure(run_dir)
    assert (failure["epoch"], failure["quantity"]) == (2, "write")  # epoch 2's checkpoint could not be written
    monkeypatch.setattr(runs, "save_file", real_save_file)
    resumed = train_run(config, fashion_mnist, run_dir, resume=True)
    assert resumed["epochs"] == 3 and [m["epoch"] for m in records.read_metrics(run_dir)] == [1, 2, 3]


def test_resume_of_a_finished_run_verifies_its_weights(fashion_mnist, tmp_path):
    config = tiny("relu_deterministic", epochs=1)
    train_run(config, fashion_mnist, tmp_path / "run")
    weights_file = tmp_path / "run" / runs.WEIGHTS_FILE
    raw = bytearray(weights_file.read_bytes())
    raw[-10] ^= 0x01
    weights_file.write_bytes(bytes(raw))
    with pytest.raises(runs.RunDirError, match="does not match the checksum in summary.json"):
        train_run(config, fashion_mnist, tmp_path / "run", resume=True)


def _start_training(arguments: list[str], data_dir: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "stochrelax.cli", "train", *arguments, "--no-progress",
                             "--device", "cpu", "--data-dir", str(data_dir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


def _wait_for_event(run_dir: Path, count: int, process: subprocess.Popen, timeout: float = 120.0) -> None:
    """Until the run's events.jsonl has ``count`` lines: the process has (re)started training."""
    deadline = time.monotonic() + timeout
    while not ((run_dir / runs.EVENTS_FILE).is_file() and
               len((run_dir / runs.EVENTS_FILE).read_text().splitlines()) >= count):
        assert process.poll() is None, f"training exited early: {process.stderr.read()}"
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.02)


@pytest.mark.slow
def test_a_run_sigkilled_three_times_at_random_points_resumes_bit_identical(real_data_dir, tmp_path):
    """`stochrelax train` killed with SIGKILL three times, each at a random moment of its training
    (mid-epoch, mid-evaluation or mid-checkpoint alike), then `train --resume` to the end."""
    config = tmp_path / "run.yaml"
    config.write_text("model: {activation: {kind: relu, noise: logistic, std: 0.1}}\n"
                      "train: {epochs: 8, batch_size: 64, seed: 5}\n"
                      "data: {train_limit: 1024, test_limit: 256}\n")
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    reference = _start_training([str(config), "--out", str(whole)], real_data_dir)
    assert reference.wait() == 0, reference.stderr.read()

    delays = random.Random(20261125).sample([0.05 * step for step in range(1, 21)], 3)  # 0.05 … 1.0 s
    for attempt, delay in enumerate(delays, start=1):
        arguments = [str(config), "--out", str(killed)] if attempt == 1 else ["--resume", str(killed)]
        process = _start_training(arguments, real_data_dir)
        _wait_for_event(killed, attempt, process)
        time.sleep(delay)
        assert process.poll() is None, f"training finished within {delay:.2f}s: make the run longer"
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert not runs.is_finished(killed)
    resumed = _start_training(["--resume", str(killed)], real_data_dir)
    assert resumed.wait() == 0, resumed.stderr.read()

    assert weights(killed).keys() == weights(whole).keys()
    for key, value in weights(whole).items():
        assert torch.equal(value, weights(killed)[key]), f"{key} differs after kills at {delays}"
    without_time = [{k: v for k, v in m.items() if not k.endswith("seconds")} for m in records.read_metrics(whole)]
    assert [{k: v for k, v in m.items() if not k.endswith("seconds")} for m in records.read_metrics(killed)] == \
        without_time
    assert len(records.read_events(killed)) == 4


def test_a_diverging_run_is_marked_failed_with_where_and_keeps_its_last_checkpoint(fashion_mnist, tmp_path,
                                                                                   monkeypatch):
    config = tiny("relu_deterministic", epochs=3)
    with pytest.raises(Interrupted):  # epoch 1 checkpointed, epoch 2 recorded but not checkpointed
        train_run(config, fashion_mnist, tmp_path / "run", on_epoch=interrupt_at(2))
    checkpoint_before = (tmp_path / "run" / runs.CHECKPOINT_FILE).read_bytes()

    def build_poisoned_model(model_config):  # block2's convolution outputs NaN from now on
        model = build_model(model_config)
        model.blocks.block2.conv.register_forward_hook(lambda module, inputs, output: output * math.nan)
        return model

    monkeypatch.setattr("stochrelax.training.loop.build_model", build_poisoned_model)
    with pytest.raises(TrainingDiverged, match=r"non-finite training loss at epoch 2, batch 1 "
                                               r"\(first in blocks.block2.conv\)"):
        train_run(config, fashion_mnist, tmp_path / "run", resume=True)
    failure = records.read_failure(tmp_path / "run")
    assert failure == {"event": "failed", "epoch": 2, "batch": 1, "quantity": "loss", "layer": "blocks.block2.conv",
                       "message": failure["message"]}
    assert (tmp_path / "run" / runs.CHECKPOINT_FILE).read_bytes() == checkpoint_before
    assert not runs.is_finished(tmp_path / "run")
    monkeypatch.undo()
    train_run(config, fashion_mnist, tmp_path / "run", resume=True)  # a later resumption finishes the run
    assert records.read_failure(tmp_path / "run") is None and runs.is_finished(tmp_path / "run")


def test_a_second_writer_of_a_run_is_refused_and_changes_nothing(fashion_mnist, tmp_path):
    config = tiny("relu_deterministic", epochs=1)
    train_run(config, fashion_mnist, tmp_path / "run")
    before = {path: path.read_bytes() for path in (tmp_path / "run").rglob("*") if path.is_file()}
    with runs.run_lock(tmp_path / "run"):  # another process would hold it the same way (tests/test_runs.py)
        with pytest.raises(runs.RunDirError, match="being written by another stochrelax process"):
            train_run(config, fashion_mnist, tmp_path / "run", overwrite=True)
    assert {path: path.read_bytes() for path in (tmp_path / "run").rglob("*") if path.is_file()} == before


def test_a_full_disk_is_reported_before_training_starts(fashion_mnist, tmp_path, monkeypatch):
    monkeypatch.setattr("shutil.disk_usage", lambda path: shutil._ntuple_diskusage(10 << 30, 10 << 30, 1 << 20))
    with pytest.raises(runs.RunDirError, match="only 1 MB free on its disk"):
        train_run(tiny("relu_deterministic", epochs=1), fashion_mnist, tmp_path / "run",
                  on_epoch=lambda metrics: pytest.fail("training started"))
    assert not any((tmp_path / "run").glob("*.*")), "no run file may be written"
