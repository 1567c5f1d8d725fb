"""Training strategies on small trained thesis networks: the FGSM mixture's epoch data, PGD training's batches."""

from __future__ import annotations

import pytest
import torch

from stochrelax.attacks import FGSM
from stochrelax.nn.prediction import evaluating
from stochrelax.training.strategies import FGSMMixture, PGDTraining

pytestmark = pytest.mark.slow


def test_fgsm_mixture_adds_an_fgsm_copy_rebuilt_every_few_epochs(relu_victim):
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
    victim = request.getfixturevalue(victim_name)
    model = victim.model.train()
    try:
        perturbed = PGDTraining(eps=0.1, steps=3).perturb(model, victim.images[:16], victim.labels[:16])
        assert model.training
    finally:
        model.eval()
    difference = (perturbed - victim.images[:16]).abs()
    assert 0 < difference.max().item() <= 0.1 + 1e-6 and perturbed.min() >= 0 and perturbed.max() <= 1
