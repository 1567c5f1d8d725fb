"""Training strategies: what the training steps minimise the loss on (thesis 5.2, 5.3).

Every step of :mod:`stochrelax.training.loop` minimises the predictive negative log-likelihood
L(x, y) of a batch. A :class:`TrainingStrategy` decides which examples (x, y) those are,
and so which expected loss training minimises (``train.adversarial.method``, picked
from :data:`ADVERSARIAL_TRAINING`):

- ``None``, :class:`CleanTraining`: the training set as it is, E[L(x, y)];
- ``fgsm_mixture``, :class:`FGSMMixture` (thesis 5.3): the clean set together with an
  FGSM(eps) copy x̃ of it, ½·E[L(x, y)] + ½·E[L(x̃, y)] — the mixture of Goodfellow et al.
  2015 (https://arxiv.org/abs/1412.6572) with α = ½, its FGSM examples rebuilt from the
  current model every ``regenerate_every`` epochs instead of every step. The thesis
  does not say where the first copy comes from; an untrained network's FGSM examples are
  just sign noise, so epoch 1 trains on clean data and the copy is built at the start of
  epochs 2, 2 + regenerate_every, …;
- ``pgd``, :class:`PGDTraining` (Madry et al. 2018, https://arxiv.org/abs/1706.06083):
  E[max_{‖δ‖∞ ≤ eps} L(x + δ, y)], every batch replaced by its PGD adversarial examples.

Adversarial examples are generated in eval mode (BatchNorm running statistics, noise on,
one noise draw), so the attack does not update BatchNorm statistics.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable

import torch

from stochrelax.attacks import FGSM, PGD
from stochrelax.attacks.core import project_linf
from stochrelax.data.fashion_mnist import batches
from stochrelax.nn.prediction import evaluating
from stochrelax.rundir.config import AdversarialConfig, TrainConfig

__all__ = ["TrainingStrategy", "CleanTraining", "FGSMMixture", "PGDTraining", "ADVERSARIAL_TRAINING"]


class TrainingStrategy(ABC):
    """Turns the training set into each epoch's examples, and each batch into the pixels a step trains on."""

    @abstractmethod
    def epoch_data(self, model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                   epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The images (uint8 as stored or float pixels) and labels of epoch ``epoch`` (from 1)."""

    @abstractmethod
    def perturb(self, model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The pixels actually trained on for one batch."""

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors a resumed run needs to continue this strategy identically; none for a stateless one."""
        return {}

    def load_state_dict(self, tensors: dict[str, torch.Tensor], device: torch.device) -> None:
        """Restores :meth:`state_dict` onto ``device``."""


class CleanTraining(TrainingStrategy):
    """No adversarial examples: every epoch sees the training set as it is."""

    def epoch_data(self, model, images, labels, epoch):
        return images, labels

    def perturb(self, model, images, labels):
        return images


class FGSMMixture(TrainingStrategy):
    """Thesis 5.3: clean set ∪ FGSM(eps) set, rebuilt from the current model every ``regenerate_every`` epochs.

    Epoch 1 is clean (there is no trained model to attack yet); the FGSM set is built at
    the start of epochs 2, 2 + regenerate_every, … . Mixed epochs have twice as many
    examples as the clean set.

    The set is kept as the sign of its perturbation (int8, a quarter of the float pixels):
    an FGSM image is exactly ``project(x + eps · sign)``, so it is rebuilt bit for bit.
    """

    def __init__(self, eps: float, regenerate_every: int, batch_size: int = 1000) -> None:
        self.eps, self.regenerate_every, self.batch_size = eps, regenerate_every, batch_size
        self.perturbation_sign: torch.Tensor | None = None  # (N, 1, 28, 28) int8 in {-1, 0, 1}

    def epoch_data(self, model, images, labels, epoch):
        if epoch == 1:
            return images, labels
        clean = images.to(torch.float32) / 255.0
        if self.perturbation_sign is None or (epoch - 2) % self.regenerate_every == 0:
            with evaluating(model):
                attack = FGSM(model, self.eps)
                adversarial = torch.cat([attack(x, y) for x, y in batches(images, labels, self.batch_size,
                                                                             shuffle=False)])
            self.perturbation_sign = (adversarial - clean).sign().to(torch.int8)
        adversarial = project_linf(clean + self.eps * self.perturbation_sign.to(torch.float32), clean, self.eps)
        return torch.cat([clean, adversarial]), torch.cat([labels, labels])

    def perturb(self, model, images, labels):
        return images

    def state_dict(self):
        return {} if self.perturbation_sign is None else {"perturbation_sign": self.perturbation_sign}

    def load_state_dict(self, tensors, device):
        sign = tensors.get("perturbation_sign")
        self.perturbation_sign = None if sign is None else sign.to(device)


class PGDTraining(TrainingStrategy):
    """Madry et al. 2018: every batch is replaced by its PGD adversarial examples (random start)."""

    def __init__(self, eps: float, steps: int, step_size: float | None = None) -> None:
        self.eps, self.steps, self.step_size = eps, steps, step_size

    def epoch_data(self, model, images, labels, epoch):
        return images, labels

    def perturb(self, model, images, labels):
        with evaluating(model):
            return PGD(model, self.eps, self.steps, self.step_size)(images, labels)


# train.adversarial.method -> the strategy, built from the adversarial and training settings
ADVERSARIAL_TRAINING: dict[str | None, Callable[[AdversarialConfig, TrainConfig], TrainingStrategy]] = {
    None: lambda config, train: CleanTraining(),
    "fgsm_mixture": lambda config, train: FGSMMixture(config.eps, config.regenerate_every, train.eval_batch_size),
    "pgd": lambda config, train: PGDTraining(config.eps, config.pgd_steps, config.pgd_step_size),
}
