"""Training (thesis 5.2): Adam on the negative log-likelihood of the predictive distribution.

Deterministic networks minimise cross-entropy. Stochastic networks minimise
−log (1/K) Σ_k softmax(f(x, ξ_k))[y] over K noise draws (K = 1 in the thesis, where
it equals cross-entropy of one noisy pass), computed with log-sum-exp. Sign units
trained with the score-function estimator add (L − b)·∇ log p(y) with a moving-
average baseline b (:mod:`stochrelax.nn.estimators`).

Adversarial training (``train.adversarial.method``) is a
:class:`~stochrelax.training.strategies.TrainingStrategy` that may change the data of
each epoch and each batch: clean training, the thesis' FGSM mixture or PGD training
(:mod:`stochrelax.training.strategies`, whose names this module re-exports).

:func:`fit` is the loop over tensors; :func:`train_run` wraps it with a run
directory, seeding and data loading. After every epoch :func:`train_run` writes a
:class:`Checkpoint` — weights, Adam state, the random generators (torch CPU and CUDA, Python, NumPy, data order),
the score-function baseline, the histogram ranges and the FGSM-mixture set — so that an
interrupted run resumes (``train_run(..., resume=True)``) exactly where it stopped: on
the CPU the resumed run ends with the same weights, bit for bit, as an uninterrupted one. ``fit(..., recorder=...)`` also records per-layer
distributions of activations and gradients of the training steps (thesis 5.1,
:class:`stochrelax.training.statistics.TrainingStatsRecorder`); :func:`train_run` always does, into
``training_stats.jsonl``. Adversarial-example generation and evaluation are not recorded.
"""

from __future__ import annotations

import math
import platform
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from tqdm import tqdm

from stochrelax.base.version import __version__
from stochrelax.data.fashion_mnist import FashionMNIST, batches
from stochrelax.evaluation.clean import evaluate_model
from stochrelax.models.allconv import build_model, computing_in
from stochrelax.nn.estimators import MovingAverageBaseline, score_function_surrogate
from stochrelax.nn.layers import learned_stds
from stochrelax.nn.prediction import predictive_log_prob, sample_logits, sample_logits_and_log_prob
from stochrelax.nn.rng import generator_states, host_generator_states, replaying, seeded, set_host_generator_states
from stochrelax.rundir import checkpoints, layout as runs, records
from stochrelax.rundir.config import RunConfig, TrainConfig
from stochrelax.training.scalars import ScalarLog
from stochrelax.training.statistics import NullRecorder, TrainingStatsRecorder, histogram_epochs
from stochrelax.training.strategies import (ADVERSARIAL_TRAINING, CleanTraining, FGSMMixture, PGDTraining,
                                            TrainingStrategy)

__all__ = ["EpochMetrics", "noise_std_metrics", "TrainingDiverged", "Checkpoint", "TrainingStrategy", "CleanTraining", "FGSMMixture",
           "PGDTraining", "ADVERSARIAL_TRAINING", "fit", "train_run"]

CHECKPOINT_FORMAT = 2  # 2: Python's and NumPy's generator states


class TrainingDiverged(RuntimeError):
    """A loss, score-function log-probability or gradient of a training step became NaN or infinite.

    The step is not applied, so the weights and the last checkpoint stay finite.

    Attributes:
        epoch: the epoch of the step (1-based).
        batch: the batch of the step within its epoch (1-based).
        quantity: ``"loss"``, ``"log-probability"`` or ``"gradient"``.
        layer: the first module, in the order of the forward pass, where a non-finite value
            appears (e.g. ``"blocks.block4.norm"``), or ``None`` if none could be found.
    """

    def __init__(self, epoch: int, batch: int, quantity: str, layer: str | None) -> None:
        where = f"first in {layer}" if layer else "no layer output is non-finite"
        super().__init__(f"non-finite training {quantity} at epoch {epoch}, batch {batch} ({where}); "
                         "lower train.lr or the noise std")
        self.epoch, self.batch, self.quantity, self.layer = epoch, batch, quantity, layer

    def as_dict(self) -> dict:
        return {"epoch": self.epoch, "batch": self.batch, "quantity": self.quantity, "layer": self.layer,
                "message": str(self)}


def _first_non_finite_output(model: torch.nn.Module, forward: Callable[[], object]) -> str | None:
    """The first leaf module, in execution order, whose output has a NaN or an infinity in ``forward()``."""
    found: list[str] = []

    def watch(name: str):
        def hook(module, inputs, output) -> None:
            if not found and isinstance(output, torch.Tensor) and not torch.isfinite(output).all():
                found.append(name)
        return hook

    leaves = [(name, module) for name, module in model.named_modules() if name and not any(module.children())]
    handles = [module.register_forward_hook(watch(name)) for name, module in leaves]
    try:
        with torch.no_grad():
            forward()
    finally:
        for handle in handles:
            handle.remove()
    return found[0] if found else None


def _locate_non_finite(model: torch.nn.Module, rerun: Callable[[], object], loss: torch.Tensor,
                       unit_log_prob: torch.Tensor | None) -> tuple[str, str | None]:
    """What became non-finite in a training step, and the first layer where it did.

    A non-finite loss is traced by re-running the step's forward pass (same noise) with a
    hook on every leaf module; a non-finite log-probability by the score-function units'
    own log-probabilities; a non-finite gradient by the first parameter, in definition
    (= forward) order, whose gradient is non-finite.
    """
    if not torch.isfinite(loss).all():
        return "loss", _first_non_finite_output(model, rerun)
    if unit_log_prob is not None and not torch.isfinite(unit_log_prob).all():
        units = [name for name, module in model.named_modules()
                 if getattr(module, "last_log_prob", None) is not None and not torch.isfinite(module.last_log_prob).all()]
        return "log-probability", units[0] if units else None
    names = [name for name, parameter in model.named_parameters()
             if parameter.grad is not None and not torch.isfinite(parameter.grad).all()]
    return "gradient", names[0].rsplit(".", 1)[0] if names else None


@dataclass(frozen=True)
class EpochMetrics:
    epoch: int
    train_loss: float  # mean predictive NLL over the epoch's batches, noise on
    train_accuracy: float
    test_loss: float
    test_accuracy: float
    train_seconds: float
    eval_seconds: float
    test_correct: torch.Tensor | None = field(default=None, repr=False, compare=False)  # (N,) bool, per test image
    learned_std: dict = field(default_factory=dict, compare=False)  # noise_std_metrics after the epoch; {} if fixed

    def as_dict(self) -> dict:
        """The numbers ``metrics.jsonl`` records (the per-image results go to ``summary.json`` only), with the
        learned noise stds' keys when the model has any."""
        numbers = {item.name: getattr(self, item.name) for item in fields(self)
                   if item.name not in ("test_correct", "learned_std")}
        return {**numbers, **self.learned_std}

    def summary_line(self, epochs: int) -> str:
        return (f"epoch {self.epoch}/{epochs}  train loss {self.train_loss:.4f} acc {self.train_accuracy:.2%}  "
                f"test loss {self.test_loss:.4f} acc {self.test_accuracy:.2%}  "
                f"{self.train_seconds:.1f}s (+{self.eval_seconds:.1f}s eval)")


def noise_std_metrics(model: torch.nn.Module) -> dict[str, dict[str, float]]:
    """The learned noise stds for ``metrics.jsonl``, kept small: ``noise_std`` maps each unit with a learnable
    std to its mean std; units with one per channel add their smallest and largest in ``noise_std_min`` and
    ``noise_std_max``. Empty for a model without learnable stds.

    PNI (He et al. 2019) reports the scale shrinking towards 0 under clean training and staying
    non-zero under adversarial training, which these numbers follow epoch by epoch.
    """
    stds = learned_stds(model)
    per_channel = {name: std for name, std in stds.items() if std.dim()}
    metrics = {"noise_std": {name: std.mean().item() for name, std in stds.items()},
               "noise_std_min": {name: std.min().item() for name, std in per_channel.items()},
               "noise_std_max": {name: std.max().item() for name, std in per_channel.items()}}
    return {key: values for key, values in metrics.items() if values}


@dataclass
class Checkpoint:
    """The state of training after ``epoch``: tensors (safetensors-able) and JSON-able metadata."""

    epoch: int
    tensors: dict[str, torch.Tensor] = field(repr=False)
    metadata: dict = field(repr=False)


class _TrainingState:
    """A training run's mutable parts besides the model, the steps that change them, and their (de)serialisation."""

    def __init__(self, model: torch.nn.Module, config: TrainConfig, recorder: TrainingStatsRecorder) -> None:
        self.model, self.config, self.recorder = model, config, recorder
        self.device = next(model.parameters()).device
        self.optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=config.betas,
                                          foreach=True)  # the same numbers as the per-tensor loop, 1.4x faster
        self.order = torch.Generator().manual_seed(config.seed)  # data order, independent of the noise
        self.baseline = MovingAverageBaseline(config.score_baseline_decay)
        self.strategy: TrainingStrategy = ADVERSARIAL_TRAINING[config.adversarial.method](config.adversarial, config)

    def train_epoch(self, images: torch.Tensor, labels: torch.Tensor, epoch: int,
                    progress: bool) -> tuple[float, float]:
        """One epoch of steps on ``images`` (the strategy's epoch data); returns the mean loss and accuracy."""
        self.model.train()
        loss_sum = torch.zeros((), dtype=torch.float64, device=images.device)
        correct = torch.zeros((), dtype=torch.int64, device=images.device)
        steps = math.ceil(images.shape[0] / self.config.batch_size)
        batch_stream = batches(images, labels, self.config.batch_size, shuffle=True, generator=self.order)
        for step, (batch_images, batch_labels) in enumerate(tqdm(batch_stream, total=steps, leave=False,
                                                                 desc=f"epoch {epoch}/{self.config.epochs}",
                                                                 disable=not progress), start=1):
            loss, log_prob = self._step(batch_images, batch_labels, epoch, step)
            loss_sum += loss.detach().sum().double()
            correct += (log_prob.detach().argmax(dim=1) == batch_labels).sum()
        examples = images.shape[0]
        return loss_sum.item() / examples, correct.item() / examples

    def _step(self, images: torch.Tensor, labels: torch.Tensor, epoch: int,
              step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One Adam step on a batch as the strategy perturbs it; returns its per-example loss (B,) and
        predictive log-probabilities (B, classes)."""
        model, recorder, samples = self.model, self.recorder, self.config.train_samples
        with recorder.paused():
            images = self.strategy.perturb(model, images, labels)
        noise_state = generator_states(images.device)  # to re-run this forward pass if it turns out non-finite

        def forward() -> torch.Tensor:
            return sample_logits(model, images, samples, rows_per_pass=None)  # (K, B, classes)

        logits, unit_log_prob = sample_logits_and_log_prob(model, images, samples, rows_per_pass=None)
        log_prob = predictive_log_prob(logits)  # (B, classes)
        loss = F.nll_loss(log_prob, labels, reduction="none")  # (B,)
        if unit_log_prob is not None:
            unit_log_prob = unit_log_prob.sum(dim=0)  # (K, B) -> (B,): log p of all K draws
        objective = score_function_surrogate(loss, unit_log_prob, self.baseline.value)
        self.optimizer.zero_grad(set_to_none=True)
        objective.backward()
        gradients = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
        finite = torch.stack([torch.isfinite(objective)] + [torch.isfinite(g).all() for g in gradients]).all()
        if not finite.item():
            def rerun() -> torch.Tensor:
                with recorder.paused(), replaying(noise_state, images.device):
                    return forward()

            raise TrainingDiverged(epoch, step, *_locate_non_finite(model, rerun, loss, unit_log_prob))
        recorder.record_gradients()
        self.optimizer.step()
        if unit_log_prob is not None:
            self.baseline.update(loss.mean().item())
        return loss, log_prob

    def checkpoint(self, epoch: int) -> Checkpoint:
        tensors = {f"model/{name}": value for name, value in self.model.state_dict().items()}
        for index, state in self.optimizer.state_dict()["state"].items():
            tensors.update({f"optimizer/{index}/{key}": value for key, value in state.items()})
        tensors["rng/torch"] = torch.get_rng_state()
        tensors["rng/order"] = self.order.get_state()
        if self.device.type == "cuda":
            tensors["rng/cuda"] = torch.cuda.get_rng_state(self.device)
        tensors.update({f"strategy/{key}": value for key, value in self.strategy.state_dict().items()})
        tensors = {key: value.detach().clone() for key, value in tensors.items()}
        metadata = {"format": CHECKPOINT_FORMAT, "epoch": epoch, "baseline": self.baseline.state_dict(),
                    "recorder": self.recorder.state_dict(), "host_rng": host_generator_states()}
        return Checkpoint(epoch, tensors, metadata)

    def restore(self, checkpoint: Checkpoint) -> None:
        def section(prefix: str) -> dict[str, torch.Tensor]:
            return {key[len(prefix):]: value for key, value in checkpoint.tensors.items() if key.startswith(prefix)}

        self.model.load_state_dict(section("model/"))
        optimizer_state = self.optimizer.state_dict()
        optimizer_state["state"] = {}
        for key, value in section("optimizer/").items():
            index, name = key.split("/")
            optimizer_state["state"].setdefault(int(index), {})[name] = value
        self.optimizer.load_state_dict(optimizer_state)
        torch.set_rng_state(checkpoint.tensors["rng/torch"])
        self.order.set_state(checkpoint.tensors["rng/order"])
        if self.device.type == "cuda" and "rng/cuda" in checkpoint.tensors:
            torch.cuda.set_rng_state(checkpoint.tensors["rng/cuda"], self.device)
        self.strategy.load_state_dict(section("strategy/"), self.device)
        set_host_generator_states(checkpoint.metadata["host_rng"])
        self.baseline.load_state_dict(checkpoint.metadata["baseline"])
        self.recorder.load_state_dict(checkpoint.metadata["recorder"])


def fit(model: torch.nn.Module, data: FashionMNIST, config: TrainConfig, *,
        on_epoch: Callable[[EpochMetrics], None] | None = None, progress: bool = False,
        recorder: TrainingStatsRecorder | None = None, resume_from: Checkpoint | None = None,
        on_checkpoint: Callable[[Checkpoint], None] | None = None) -> list[EpochMetrics]:
    """Trains ``model`` in place with Adam; evaluates on the test split after every epoch.

    With a ``recorder``, its hooks are attached to ``model`` for the duration of the call
    and each epoch's training steps (not the adversarial examples' generation, not the
    evaluation) are summarised into ``recorder.history`` before ``on_epoch`` is called.

    The data order comes from its own generator seeded with ``config.seed``; noise
    and initialisation use torch's global generator (seed it with
    :func:`stochrelax.nn.rng.seeded`). The model's device is taken from its parameters.

    Args:
        resume_from: a checkpoint of an earlier call with the same model and config:
            training continues after its epoch, with every state it holds restored
            (including torch's global random generator).
        on_checkpoint: called after ``on_epoch`` with the state after each epoch.

    Returns:
        The metrics of the epochs trained by this call.

    Raises:
        TrainingDiverged: when a step's loss, log-probability or gradient is not finite (the
            step is not applied).
    """
    recorder = recorder if recorder is not None else NullRecorder()
    state = _TrainingState(model, config, recorder)
    device = state.device
    train_images, train_labels = data.train_images.to(device), data.train_labels.to(device)
    test_images, test_labels = data.test_images.to(device), data.test_labels.to(device)
    first_epoch = 1
    if resume_from is not None:
        state.restore(resume_from)
        first_epoch = resume_from.epoch + 1
    history = []
    with recorder.attach(model), computing_in(model, config.precision):
        for epoch in range(first_epoch, config.epochs + 1):
            start = time.perf_counter()
            epoch_images, epoch_labels = state.strategy.epoch_data(model, train_images, train_labels, epoch)
            recorder.begin_epoch(epoch)
            train_loss, train_accuracy = state.train_epoch(epoch_images, epoch_labels, epoch, progress)
            recorder.end_epoch()
            trained = time.perf_counter()
            test = evaluate_model(model, test_images, test_labels, config.eval_samples, config.eval_batch_size)
            metrics = EpochMetrics(epoch, train_loss, train_accuracy, test.nll, test.accuracy,
                                   trained - start, time.perf_counter() - trained, test.correct,
                                   noise_std_metrics(model))
            history.append(metrics)
            if on_epoch is not None:
                on_epoch(metrics)
            if on_checkpoint is not None:
                on_checkpoint(state.checkpoint(epoch))
    state.optimizer.zero_grad(set_to_none=True)
    return history


def _read_checkpoint(run_dir: Path) -> Checkpoint | None:
    stored = checkpoints.load_checkpoint(run_dir)
    if stored is None:
        return None
    tensors, metadata = stored
    if metadata.get("format") != CHECKPOINT_FORMAT:
        raise runs.RunDirError(f"{run_dir / runs.CHECKPOINT_FILE} has format {metadata.get('format')}, this "
                               f"version reads {CHECKPOINT_FORMAT}; delete it to restart the run from epoch 1")
    return Checkpoint(metadata["epoch"], tensors, metadata)


def train_run(config: RunConfig, data: FashionMNIST, run_dir: str | Path, *, device: torch.device | str = "cpu",
              overwrite: bool = False, resume: bool = False, progress: bool = False,
              on_epoch: Callable[[EpochMetrics], None] | None = None) -> dict:
    """Trains the configured network and writes a run directory (see :mod:`stochrelax.rundir.layout`).

    Besides the metrics, every epoch appends its activation and gradient statistics
    (:mod:`stochrelax.training.statistics`, histograms on the epochs of :func:`~stochrelax.training.statistics.histogram_epochs`)
    to ``training_stats.jsonl`` and replaces the run's checkpoint.

    Args:
        config: the resolved run config; ``config.data`` limits are applied to ``data``.
        data: the full Fashion-MNIST.
        run_dir: output directory; must not exist unless ``overwrite`` or ``resume``.
        device: where to train.
        overwrite: replace an existing run directory.
        resume: continue the run in ``run_dir`` if there is one (started with the same
            config): a finished run is left as it is, an unfinished one continues after
            its last checkpoint; records of later epochs are dropped first.
        progress: show a progress bar per epoch.
        on_epoch: called with each epoch's metrics after they are written.

    Returns:
        The summary written to ``summary.json``.

    The run directory is checked for writability and free space before anything is
    trained, and locked for the whole call (:func:`stochrelax.rundir.layout.run_lock`). A step that
    turns non-finite stops the run: a ``"failed"`` event naming the epoch, batch and first
    layer is appended to ``events.jsonl`` and :class:`TrainingDiverged` is raised; the last
    checkpoint stays.

    Raises:
        RunDirError: if ``run_dir`` holds another run (or, when resuming, one with another
            config), another process is writing it, or it cannot be written.
        TrainingDiverged: see above.
    """
    device = torch.device(device)
    data = data.limit(config.data.train_limit, config.data.test_limit)
    run_dir = Path(run_dir)
    resuming = resume and (run_dir / runs.CONFIG_FILE).is_file()
    if not resuming:
        runs.check_run_dir(run_dir, overwrite)  # before anything is created
    runs.check_writable(run_dir)
    with runs.run_lock(run_dir):
        return _train_locked(config, data, run_dir, device, overwrite, resuming, progress, on_epoch)


def _record_write_failure(run_dir: Path, message: str) -> None:
    """A ``failed`` event for a write that failed, if the disk still takes one line; its epoch is the
    last one with metrics on disk, whose checkpoint may not have been written."""
    try:
        records.append_event(run_dir, "failed", len(records.read_metrics(run_dir)), batch=None, quantity="write",
                          layer=None, message=message)
    except runs.RunDirError:
        pass  # the disk is full: the error itself still reaches the user


def _train_locked(config: RunConfig, data: FashionMNIST, run_dir: Path, device: torch.device, overwrite: bool,
                  resuming: bool, progress: bool, on_epoch: Callable[[EpochMetrics], None] | None) -> dict:
    """:func:`train_run` once it holds the run directory's lock."""
    checkpoint = None
    if resuming:
        runs.check_same_config(run_dir, config)
        if runs.is_finished(run_dir):
            runs.verify_weights(run_dir)
            return runs.read_summary(run_dir)
        checkpoint = _read_checkpoint(run_dir)
        records.truncate_records(run_dir, checkpoint.epoch if checkpoint else 0)
    else:
        runs.create_run_dir(run_dir, overwrite)
        runs.write_config(run_dir, config)
    first_epoch = checkpoint.epoch + 1 if checkpoint else 1
    records.append_event(run_dir, "resume" if checkpoint else "start", first_epoch)
    scalars = ScalarLog(run_dir, first_epoch)

    recorder = TrainingStatsRecorder(histogram_epochs(config.train.epochs))
    last_test_correct: dict[int, torch.Tensor] = {}  # epoch -> per-image results, for the summary

    def record(metrics: EpochMetrics) -> None:
        records.append_metrics(run_dir, metrics.as_dict())
        scalars.write(metrics.as_dict())
        last_test_correct.clear()
        last_test_correct[metrics.epoch] = metrics.test_correct
        stats = recorder.history[-1]
        assert stats["epoch"] == metrics.epoch
        records.append_training_stats(run_dir, stats)
        if on_epoch is not None:
            on_epoch(metrics)

    def save(state: Checkpoint) -> None:
        checkpoints.save_checkpoint(run_dir, state.tensors, state.metadata)

    with seeded(config.train.seed, device):
        model = build_model(config.model).to(device)
        try:
            fit(model, data, config.train, on_epoch=record, progress=progress, recorder=recorder,
                resume_from=checkpoint, on_checkpoint=save)
        except TrainingDiverged as error:
            details = error.as_dict()
            records.append_event(run_dir, "failed", details.pop("epoch"), **details)
            raise
        except runs.RunDirError as error:  # a write failed (full disk, permissions): the last checkpoint stands
            _record_write_failure(run_dir, str(error))
            raise runs.RunDirError(f"{error}; then continue with `stochrelax train --resume {run_dir}`") from None
        finally:
            scalars.close()
    weights_sha256 = runs.save_weights(run_dir, model)
    history = records.read_metrics(run_dir)  # every epoch, also those before a resumption
    final = history[-1]
    summary = {
        "test_accuracy": final["test_accuracy"],
        "test_loss": final["test_loss"],
        **({"test_correct": runs.pack_correct(last_test_correct[final["epoch"]])}
           if final["epoch"] in last_test_correct else {}),
        "train_accuracy": final["train_accuracy"],
        "epochs": len(history),
        "seconds_per_epoch": sum(m["train_seconds"] for m in history) / len(history),
        "total_seconds": sum(m["train_seconds"] + m["eval_seconds"] for m in history),
        "resumptions": sum(event["event"] == "resume" for event in records.read_events(run_dir)),
        "train_examples": int(data.train_labels.shape[0]),
        "test_examples": int(data.test_labels.shape[0]),
        "parameters": sum(p.numel() for p in model.parameters()),
        "weights_sha256": weights_sha256,
        "device": str(device),
        "data_source": str(data.source),
        "versions": {"stochrelax": __version__, "torch": torch.__version__,
                     "python": platform.python_version()},
    }
    runs.write_summary(run_dir, summary)
    checkpoints.remove_checkpoint(run_dir)
    return summary
