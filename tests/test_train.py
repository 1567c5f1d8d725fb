"""Tests of :mod:`stochrelax.train` (and :func:`stochrelax.evaluate.evaluate_model`) on real Fashion-MNIST.

Runs are one epoch on a few thousand images: enough for a deterministic ReLU network
to be far above chance, and for the stochastic configs to show a finite loss.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from stochrelax import runs
from stochrelax.config import RunConfig, TrainConfig, load_config, parse_config
from stochrelax.evaluate import evaluate_model, evaluate_run
from stochrelax.attacks import FGSM
from stochrelax.models import build_model, evaluating
from stochrelax.train import EpochMetrics, TrainingDiverged, fit, train_run

pytestmark = pytest.mark.slow

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
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
         runs.EVENTS_FILE])


def test_run_directory_records_config_metrics_and_summary(relu_run):
    config, run_dir, summary, reported = relu_run
    metrics = runs.read_metrics(run_dir)
    assert len(metrics) == 1 and set(metrics[0]) == METRIC_KEYS
    assert [metrics[0]] == [m.as_dict() for m in reported]
    assert metrics[0]["epoch"] == 1
    assert metrics[0]["test_accuracy"] == summary["test_accuracy"]
    run = runs.load_run(run_dir)
    assert run.config == config
    assert run.summary == summary


def test_evaluate_run_reproduces_the_summary_of_a_deterministic_run(relu_run, fashion_mnist):
    _, run_dir, summary, _ = relu_run
    result = evaluate_run(runs.load_run(run_dir), fashion_mnist.limit(test_limit=1000), samples=1)
    assert result.examples == 1000
    assert result.accuracy == summary["test_accuracy"]
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
    (metrics,) = runs.read_metrics(tmp_path / name)
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
        results.append((weights(run_dir), runs.read_metrics(run_dir)[0]))
    return results


def test_same_seed_gives_identical_weights_and_losses(seeded_runs):
    (first, first_metrics), (second, second_metrics), _ = seeded_runs
    assert list(first) == list(second)
    assert all(torch.equal(first[name], second[name]) for name in first)
    for key in ("train_loss", "train_accuracy", "test_loss", "test_accuracy"):
        assert first_metrics[key] == second_metrics[key]


def test_different_seed_gives_different_weights(seeded_runs):
    (first, _), _, (other, _) = seeded_runs
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
    with pytest.raises(TrainingDiverged, match=r"training loss became nan in epoch 1; lower train.lr"):
        fit(model, fashion_mnist.limit(64, 32), TrainConfig(epochs=2, batch_size=32), on_epoch=reported.append)
    assert reported == []


# --- adversarial training ----------------------------------------------------------------------

def test_fgsm_mixture_adds_an_fgsm_copy_rebuilt_every_few_epochs(relu_victim):
    from stochrelax.train import FGSMMixture

    images = (relu_victim.images[:50] * 255).round().to(torch.uint8)
    labels = relu_victim.labels[:50]
    strategy = FGSMMixture(eps=0.07, regenerate_every=2)
    assert strategy.epoch_data(relu_victim.model, images, labels, epoch=1) == (images, labels)  # clean warm-up
    first_images, first_labels = strategy.epoch_data(relu_victim.model, images, labels, epoch=2)
    clean, adversarial = first_images[:50], first_images[50:]
    assert first_images.shape == (100, 1, 28, 28) and torch.equal(first_labels, torch.cat([labels, labels]))
    assert torch.equal(clean, images.float() / 255)
    assert (adversarial - clean).abs().max().item() == pytest.approx(0.07, abs=1e-6)
    with evaluating(relu_victim.model):  # kept as a perturbation sign, the set is still exactly FGSM's
        assert torch.equal(adversarial, FGSM(relu_victim.model, 0.07)(clean, labels))
    assert torch.equal(strategy.epoch_data(relu_victim.model, images, labels, epoch=3)[0][50:], adversarial)
    rebuilt = strategy.epoch_data(relu_victim.model, images, labels, epoch=4)[0][50:]  # 4 = 2 + 2: rebuilt
    assert rebuilt is not adversarial and torch.equal(rebuilt, adversarial)


@pytest.mark.parametrize("victim_name", ["relu_victim", "stochastic_victim", "sign_score_victim"])
def test_pgd_training_perturbs_each_batch_inside_the_ball_and_keeps_the_mode(victim_name, request):
    from stochrelax.train import PGDTraining

    victim = request.getfixturevalue(victim_name)
    model = victim.model.train()
    try:
        perturbed = PGDTraining(eps=0.1, steps=3).perturb(model, victim.images[:16], victim.labels[:16])
        assert model.training
    finally:
        model.eval()
    difference = (perturbed - victim.images[:16]).abs()
    assert 0 < difference.max().item() <= 0.1 + 1e-6 and perturbed.min() >= 0 and perturbed.max() <= 1


def test_pgd_adversarial_training_buys_robustness(fashion_mnist, tmp_path):
    """PGD training (2 epochs on 4000 images, PGD-3 at eps 0.1) resists FGSM at eps 0.07 far better
    than clean training (measured: 67% vs 25% accuracy on 300 test images)."""
    from stochrelax.evaluate import attack_model

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


RESUMABLE = {  # each exercises a different piece of state: noise RNG, score baseline, stored FGSM set
    "relu_logistic_additive": tiny("relu_logistic_additive"),
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
    assert [m["epoch"] for m in runs.read_metrics(tmp_path / "resumed")] == [1, 2, 3]
    assert [m["train_loss"] for m in runs.read_metrics(tmp_path / "resumed")] == \
        [m["train_loss"] for m in runs.read_metrics(tmp_path / "whole")]
    assert [s["epoch"] for s in runs.read_training_stats(tmp_path / "resumed")] == [1, 2, 3]
    assert runs.read_events(tmp_path / "resumed") == [{"event": "start", "epoch": 1}, {"event": "resume", "epoch": 3}]
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
    assert [m["epoch"] for m in runs.read_metrics(tmp_path / "run")] == [1]
    assert summary["resumptions"] == 0 and [e["event"] for e in runs.read_events(tmp_path / "run")] == ["start"] * 2


def test_resume_leaves_a_finished_run_untouched(fashion_mnist, tmp_path):
    config = tiny("relu_deterministic", epochs=1)
    summary = train_run(config, fashion_mnist, tmp_path / "run")
    before = {path.name: path.read_bytes() for path in (tmp_path / "run").iterdir()}
    assert train_run(config, fashion_mnist, tmp_path / "run", resume=True) == summary
    assert {path.name: path.read_bytes() for path in (tmp_path / "run").iterdir()} == before


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
