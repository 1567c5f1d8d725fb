"""The missing-features attack (thesis 4.3.3) and the attack registry."""

from __future__ import annotations

import math

import pytest
import torch

from stochrelax.attacks import ATTACKS, FGSM, PGD, IterativeFGSM, MissingFeatures, make_attack
from stochrelax.nn.rng import seeded


def _positive_images(seed: int = 0, shape=(200, 1, 28, 28)) -> torch.Tensor:
    """Images with every pixel in [0.05, 1], so that a zero pixel can only come from the attack."""
    return 0.05 + 0.95 * torch.rand(shape, generator=torch.Generator().manual_seed(seed))


LABELS = torch.zeros(200, dtype=torch.long)


@pytest.mark.parametrize("p", [0.05, 0.2, 0.5, 0.9])
@pytest.mark.parametrize("rescale", [False, True])
def test_the_fraction_of_zeroed_pixels_is_p(p: float, rescale: bool) -> None:
    images = _positive_images()
    damaged = MissingFeatures(p=p, rescale=rescale, generator=torch.Generator().manual_seed(1))(images, LABELS)
    n = images.numel()  # 156,800 independent Bernoulli(p) pixels
    zeroed = (damaged == 0).float().mean().item()
    tolerance = 5 * math.sqrt(p * (1 - p) / n)  # 5 binomial standard errors: ≤ 0.0064
    assert abs(zeroed - p) < tolerance, (zeroed, p, tolerance)
    # Independent per image too: every image loses about p of its 784 pixels.
    per_image = (damaged == 0).flatten(1).float().mean(dim=1)
    assert (per_image - p).abs().max().item() < 6 * math.sqrt(p * (1 - p) / 784)


def test_kept_pixels_are_unchanged_without_rescaling() -> None:
    images = _positive_images()
    damaged = MissingFeatures(p=0.3, generator=torch.Generator().manual_seed(2))(images, LABELS)
    kept = damaged != 0
    assert torch.equal(damaged[kept], images[kept])
    assert torch.equal(damaged[~kept], torch.zeros_like(damaged[~kept]))


def test_kept_pixels_are_rescaled_and_clipped_with_rescaling() -> None:
    p = 0.3
    images = _positive_images()
    damaged = MissingFeatures(p=p, rescale=True, generator=torch.Generator().manual_seed(2))(images, LABELS)
    kept = damaged != 0
    assert torch.equal(damaged[kept], (images[kept] / (1 - p)).clamp(0, 1))
    assert bool((damaged >= 0).all()) and bool((damaged <= 1).all())
    # Bright pixels (> 1 − p) hit the clip; dim ones are scaled by 1/(1 − p) ≈ 1.43.
    assert bool((damaged[kept & (images > 1 - p)] == 1).all())
    dim = kept & (images < 0.5)
    torch.testing.assert_close(damaged[dim], images[dim] / (1 - p))
    # The same generator state drops the same pixels with and without rescaling.
    plain = MissingFeatures(p=p, generator=torch.Generator().manual_seed(2))(images, LABELS)
    assert torch.equal(plain != 0, kept)


def test_missing_features_on_victim_images_keeps_them_images(relu_victim) -> None:
    images, labels = relu_victim.images[:100], relu_victim.labels[:100]
    damaged = MissingFeatures(p=0.2, generator=torch.Generator().manual_seed(0))(images, labels)
    assert damaged.shape == images.shape and damaged.dtype == images.dtype
    assert torch.equal(damaged[damaged != 0], images[damaged != 0])
    lit = images != 0  # Fashion-MNIST has a black background: count only the lit pixels
    zeroed = (damaged[lit] == 0).float().mean().item()
    assert abs(zeroed - 0.2) < 5 * math.sqrt(0.2 * 0.8 / int(lit.sum()))


def test_missing_features_is_reproducible_with_a_generator() -> None:
    images = _positive_images(shape=(10, 1, 28, 28))
    first = MissingFeatures(p=0.2, generator=torch.Generator().manual_seed(9))(images, LABELS[:10])
    second = MissingFeatures(p=0.2, generator=torch.Generator().manual_seed(9))(images, LABELS[:10])
    other = MissingFeatures(p=0.2, generator=torch.Generator().manual_seed(10))(images, LABELS[:10])
    assert torch.equal(first, second)
    assert not torch.equal(first, other)


@pytest.mark.parametrize("rescale", [False, True])
def test_p_zero_is_the_identity(rescale: bool) -> None:
    images = torch.rand(10, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    images[0] = 1.0
    images[1] = 0.0
    assert torch.equal(MissingFeatures(p=0.0, rescale=rescale)(images, LABELS[:10]), images)


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5, float("nan")])
def test_p_outside_zero_one_is_refused(p: float) -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        MissingFeatures(p=p)


def test_images_outside_pixel_range_are_refused() -> None:
    with pytest.raises(ValueError):
        MissingFeatures(p=0.1)(torch.full((2, 1, 4, 4), 2.0), LABELS[:2])


# --------------------------------------------------------------------------------------------
# registry


def test_make_attack_missing(relu_victim) -> None:
    attack = make_attack("missing", relu_victim.model, p=0.2)
    assert isinstance(attack, MissingFeatures) and attack.p == 0.2 and ATTACKS["missing"].budget_name == "p"
    images = _positive_images()
    with seeded(0):  # the registry's attack draws its masks from the global generator
        zeroed = (attack(images, LABELS) == 0).float().mean().item()
    assert abs(zeroed - 0.2) < 5 * math.sqrt(0.2 * 0.8 / images.numel())


@pytest.mark.parametrize("name,cls,settings", [("fgsm", FGSM, {"eps": 0.05}),
                                                ("ifgsm-ll", IterativeFGSM, {"eps": 0.05}),
                                                ("pgd", PGD, {"eps": 0.05, "steps": 7})])
def test_make_attack_builds_the_gradient_attacks(relu_victim, name: str, cls: type, settings: dict) -> None:
    attack = make_attack(name, relu_victim.model, **settings)
    assert type(attack) is cls and attack.model is relu_victim.model and attack.eps == 0.05
    assert ATTACKS[name].budget_name == "eps"
    if name == "pgd":
        assert attack.steps == 7


@pytest.mark.parametrize("name", ["FGSM", "missing_features", "", "cw"])
def test_unknown_attack_names_are_refused_with_the_valid_ones(relu_victim, name: str) -> None:
    with pytest.raises(ValueError) as raised:
        make_attack(name, relu_victim.model)
    message = str(raised.value)
    assert repr(name) in message
    for valid in ATTACKS:
        assert valid in message
