"""Training (thesis 5.2): Adam on the negative log-likelihood of the predictive distribution.

Deterministic networks minimise cross-entropy. Stochastic networks minimise
−log (1/K) Σ_k softmax(f(x, ξ_k))[y] over K noise draws (K = 1 in the thesis, where
it equals cross-entropy of one noisy pass), computed with log-sum-exp. Sign units
trained with the score-function estimator add (L − b)·∇ log p(y) with a moving-
average baseline b (:mod:`stochrelax.estimators`).

Adversarial training (``train.adversarial.method``) is a strategy that may change the
data of each epoch and each batch (:data:`ADVERSARIAL_TRAINING`):

- ``fgsm_mixture`` (thesis 5.3): train on the clean set together with an FGSM(eps) copy
  of it, rebuilt from the current model every ``regenerate_every`` epochs. The thesis
  does not say where the first copy comes from; an untrained network's FGSM examples are
  just sign noise, so epoch 1 trains on clean data and the copy is built at the start of
  epochs 2, 2 + regenerate_every, …;
- ``pgd`` (Madry et al. 2018): replace every batch by PGD adversarial examples.

Adversarial examples are generated in eval mode (BatchNorm running statistics, noise on,
one noise draw), so the attack does not update BatchNorm statistics.

:func:`fit` is the loop over tensors; :func:`train_run` wraps it with a run
directory, seeding and data loading. ``fit(..., recorder=...)`` also records per-layer
distributions of activations and gradients of the training steps (thesis 5.1,
:class:`stochrelax.stats.TrainingStatsRecorder`); :func:`train_run` always does, into
``training_stats.jsonl``. Adversarial-example generation and evaluation are not recorded.
"""

from __future__ import annotations

import math
import platform
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from tqdm import tqdm

import stochrelax
from stochrelax.config import RunConfig, TrainConfig
from stochrelax.data import FashionMNIST, batches
from stochrelax.estimators import MovingAverageBaseline, score_function_surrogate
from stochrelax.evaluate import evaluate_model
from stochrelax.models import build_model, collect_log_prob, evaluating, predictive_log_prob, sample_logits
from stochrelax.rng import seeded
from stochrelax.stats import TrainingStatsRecorder, histogram_epochs
from stochrelax import runs
from stochrelax.attacks import FGSM, PGD

__all__ = ["EpochMetrics", "TrainingDiverged", "CleanTraining", "FGSMMixture", "PGDTraining",
           "ADVERSARIAL_TRAINING", "fit", "train_run"]


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass(frozen=True)
class EpochMetrics:
    epoch: int
    train_loss: float  # mean predictive NLL over the epoch's batches, noise on
    train_accuracy: float
    test_loss: float
    test_accuracy: float
    train_seconds: float
    eval_seconds: float

    def as_dict(self) -> dict:
        return asdict(self)

    def summary_line(self, epochs: int) -> str:
        return (f"epoch {self.epoch}/{epochs}  train loss {self.train_loss:.4f} acc {self.train_accuracy:.2%}  "
                f"test loss {self.test_loss:.4f} acc {self.test_accuracy:.2%}  "
                f"{self.train_seconds:.1f}s (+{self.eval_seconds:.1f}s eval)")


class CleanTraining:
    """No adversarial examples: every epoch sees the training set as it is."""

    def epoch_data(self, model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                   epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The images (uint8 as stored or float pixels) and labels of epoch ``epoch`` (from 1)."""
        return images, labels

    def perturb(self, model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The pixels actually trained on for one batch."""
        return images


class FGSMMixture(CleanTraining):
    """Thesis 5.3: clean set ∪ FGSM(eps) set, rebuilt from the current model every ``regenerate_every`` epochs.

    Epoch 1 is clean (there is no trained model to attack yet); the FGSM set is built at
    the start of epochs 2, 2 + regenerate_every, … . Mixed epochs have twice as many
    examples as the clean set.
    """

    def __init__(self, eps: float, regenerate_every: int, batch_size: int = 1000) -> None:
        self.eps, self.regenerate_every, self.batch_size = eps, regenerate_every, batch_size
        self.adversarial: torch.Tensor | None = None  # (N, 1, 28, 28) float pixels

    def epoch_data(self, model, images, labels, epoch):
        if epoch == 1:
            return images, labels
        if self.adversarial is None or (epoch - 2) % self.regenerate_every == 0:
            with evaluating(model):
                attack = FGSM(model, self.eps)
                self.adversarial = torch.cat([attack(x, y) for x, y in batches(images, labels, self.batch_size,
                                                                                  shuffle=False)])
        clean = images.to(torch.float32) / 255.0
        return torch.cat([clean, self.adversarial]), torch.cat([labels, labels])


class PGDTraining(CleanTraining):
    """Madry et al. 2018: every batch is replaced by its PGD adversarial examples (random start)."""

    def __init__(self, eps: float, steps: int, step_size: float | None = None) -> None:
        self.eps, self.steps, self.step_size = eps, steps, step_size

    def perturb(self, model, images, labels):
        with evaluating(model):
            return PGD(model, self.eps, self.steps, self.step_size)(images, labels)


ADVERSARIAL_TRAINING = {
    None: lambda config, train: CleanTraining(),
    "fgsm_mixture": lambda config, train: FGSMMixture(config.eps, config.regenerate_every, train.eval_batch_size),
    "pgd": lambda config, train: PGDTraining(config.eps, config.pgd_steps, config.pgd_step_size),
}


def _train_epoch(model: torch.nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor,
                 labels: torch.Tensor, config: TrainConfig, order: torch.Generator,
                 baseline: MovingAverageBaseline, strategy: CleanTraining, description: str,
                 progress: bool, recorder: TrainingStatsRecorder | None = None) -> tuple[float, float]:
    model.train()
    loss_sum = torch.zeros((), dtype=torch.float64, device=images.device)
    correct = torch.zeros((), dtype=torch.int64, device=images.device)
    steps = math.ceil(images.shape[0] / config.batch_size)
    for batch_images, batch_labels in tqdm(batches(images, labels, config.batch_size, shuffle=True, generator=order),
                                           total=steps, desc=description, leave=False, disable=not progress):
        with recorder.paused() if recorder is not None else nullcontext():
            batch_images = strategy.perturb(model, batch_images, batch_labels)
        logits = sample_logits(model, batch_images, config.train_samples)  # (K, B, classes)
        draws, batch = logits.shape[:2]
        log_prob = predictive_log_prob(logits)  # (B, classes)
        loss = F.nll_loss(log_prob, batch_labels, reduction="none")  # (B,)
        unit_log_prob = collect_log_prob(model)  # (K·B,) or None
        if unit_log_prob is not None:
            unit_log_prob = unit_log_prob.view(draws, batch).sum(dim=0)  # (B,): log p of all K draws
        objective = score_function_surrogate(loss, unit_log_prob, baseline.value)
        optimizer.zero_grad(set_to_none=True)
        objective.backward()
        if recorder is not None:
            recorder.record_gradients()
        optimizer.step()
        if unit_log_prob is not None:
            baseline.update(loss.mean().item())
        loss_sum += loss.detach().sum().double()
        correct += (log_prob.detach().argmax(dim=1) == batch_labels).sum()
    examples = images.shape[0]
    return loss_sum.item() / examples, correct.item() / examples


def fit(model: torch.nn.Module, data: FashionMNIST, config: TrainConfig, *,
        on_epoch: Callable[[EpochMetrics], None] | None = None, progress: bool = False,
        recorder: TrainingStatsRecorder | None = None) -> list[EpochMetrics]:
    """Trains ``model`` in place with Adam; evaluates on the test split after every epoch.

    With a ``recorder``, its hooks are attached to ``model`` for the duration of the call
    and each epoch's training steps (not the adversarial examples' generation, not the
    evaluation) are summarised into ``recorder.history`` before ``on_epoch`` is called.

    The data order comes from its own generator seeded with ``config.seed``; noise
    and initialisation use torch's global generator (seed it with
    :func:`stochrelax.rng.seeded`). The model's device is taken from its parameters.

    Raises:
        TrainingDiverged: if an epoch's loss is not finite.
    """
    device = next(model.parameters()).device
    train_images, train_labels = data.train_images.to(device), data.train_labels.to(device)
    test_images, test_labels = data.test_images.to(device), data.test_labels.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=config.betas)
    order = torch.Generator().manual_seed(config.seed)
    baseline = MovingAverageBaseline(config.score_baseline_decay)
    strategy = ADVERSARIAL_TRAINING[config.adversarial.method](config.adversarial, config)
    history = []
    with recorder.attach(model) if recorder is not None else nullcontext():
        for epoch in range(1, config.epochs + 1):
            start = time.perf_counter()
            epoch_images, epoch_labels = strategy.epoch_data(model, train_images, train_labels, epoch)
            if recorder is not None:
                recorder.begin_epoch(epoch)
            train_loss, train_accuracy = _train_epoch(model, optimizer, epoch_images, epoch_labels, config, order,
                                                      baseline, strategy, f"epoch {epoch}/{config.epochs}",
                                                      progress, recorder)
            if recorder is not None:
                recorder.end_epoch()
            if not math.isfinite(train_loss):
                raise TrainingDiverged(f"training loss became {train_loss} in epoch {epoch}; "
                                       "lower train.lr or the noise std")
            trained = time.perf_counter()
            test = evaluate_model(model, test_images, test_labels, config.eval_samples, config.eval_batch_size)
            metrics = EpochMetrics(epoch, train_loss, train_accuracy, test.nll, test.accuracy,
                                   trained - start, time.perf_counter() - trained)
            history.append(metrics)
            if on_epoch is not None:
                on_epoch(metrics)
    optimizer.zero_grad(set_to_none=True)
    return history


def train_run(config: RunConfig, data: FashionMNIST, run_dir: str | Path, *, device: torch.device | str = "cpu",
              overwrite: bool = False, progress: bool = False,
              on_epoch: Callable[[EpochMetrics], None] | None = None) -> dict:
    """Trains the configured network and writes a run directory (see :mod:`stochrelax.runs`).

    Besides the metrics, every epoch appends its activation and gradient statistics
    (:mod:`stochrelax.stats`, histograms on the epochs of :func:`~stochrelax.stats.histogram_epochs`)
    to ``training_stats.jsonl``.

    Args:
        config: the resolved run config; ``config.data`` limits are applied to ``data``.
        data: the full Fashion-MNIST.
        run_dir: output directory; must not exist unless ``overwrite``.
        device: where to train.
        overwrite: replace an existing run directory.
        progress: show a progress bar per epoch.
        on_epoch: called with each epoch's metrics after they are written.

    Returns:
        The summary written to ``summary.json``.
    """
    device = torch.device(device)
    data = data.limit(config.data.train_limit, config.data.test_limit)
    run_dir = runs.create_run_dir(run_dir, overwrite)
    runs.write_config(run_dir, config)

    recorder = TrainingStatsRecorder(histogram_epochs(config.train.epochs))

    def record(metrics: EpochMetrics) -> None:
        runs.append_metrics(run_dir, metrics.as_dict())
        stats = recorder.history[-1]
        assert stats["epoch"] == metrics.epoch
        runs.append_training_stats(run_dir, stats)
        if on_epoch is not None:
            on_epoch(metrics)

    start = time.perf_counter()
    with seeded(config.train.seed, device):
        model = build_model(config.model).to(device)
        history = fit(model, data, config.train, on_epoch=record, progress=progress, recorder=recorder)
    runs.save_weights(run_dir, model)
    final = history[-1]
    summary = {
        "test_accuracy": final.test_accuracy,
        "test_loss": final.test_loss,
        "train_accuracy": final.train_accuracy,
        "epochs": len(history),
        "seconds_per_epoch": sum(m.train_seconds for m in history) / len(history),
        "total_seconds": time.perf_counter() - start,
        "train_examples": int(data.train_labels.shape[0]),
        "test_examples": int(data.test_labels.shape[0]),
        "parameters": sum(p.numel() for p in model.parameters()),
        "device": str(device),
        "data_source": str(data.source),
        "versions": {"stochrelax": stochrelax.__version__, "torch": torch.__version__,
                     "python": platform.python_version()},
    }
    runs.write_summary(run_dir, summary)
    return summary
