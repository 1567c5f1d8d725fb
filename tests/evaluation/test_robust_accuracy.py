"""The front door: evaluate_robustness on tiny models defined here, with stochrelax's layers and without.

What it returns is checked against what it claims, independently of how it was found: an adversarial
image lies in the eps-ball of its clean image and in [0, 1], and a deterministic model gets it wrong;
an image counted robust is one whose adversarial image is the clean one; robustness only shrinks with
eps; and the images each ensemble member broke add up to the robust images lost at that eps.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import stochrelax as sr

EPS = (0.0, 0.02, 0.05)
FAST = {"eot": 2, "prediction_samples": 2, "steps": 3, "apgd_steps": 3, "square_queries": 5, "batch_size": 16}


def tiny_network(noise: str | None, activation: str = "relu", seed: int = 0) -> nn.Module:
    """A two-convolution classifier of 1 × 8 × 8 images with one stochrelax unit (``noise``: logistic or none)."""
    torch.manual_seed(seed)
    unit = sr.StochasticActivation(activation, noise, std=0.3 if noise else None)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), unit,
                         nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))


def tiny_data(count: int = 24, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(count, 1, 8, 8, generator=generator), torch.randint(0, 3, (count,), generator=generator)


class OwnNoise(nn.Module):
    """A user's randomness that stays on in eval mode: Gaussian noise on the input, not a stochrelax layer."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images + 0.5 * torch.randn_like(images)


@pytest.mark.parametrize(("activation", "noise"), [("relu", None), ("relu", "logistic"), ("sign", "logistic")])
def test_what_it_returns_is_what_it_claims(activation, noise):
    model, (images, labels) = tiny_network(noise, activation), tiny_data()
    found = sr.evaluate_robustness(model, images, labels, EPS, **FAST)
    assert found.eps == EPS and found.randomized is (noise is not None)
    standing = found.clean_correct
    for eps in EPS:
        robust, adversarial = found.robust[eps], found.adversarial[eps]
        assert robust.shape == labels.shape and adversarial.shape == images.shape
        assert ((adversarial - images).abs().amax(dim=(1, 2, 3)) <= eps + 1e-6).all()
        assert adversarial.min() >= 0 and adversarial.max() <= 1
        assert torch.equal(adversarial[robust], images[robust])  # nothing broke them
        assert not (robust & ~standing).any()  # robust at eps: robust at every smaller eps, and right when clean
        assert sum(member["broke"] for member in found.broken_by[eps]) == int(standing.sum() - robust.sum())
        assert found.robust_accuracy()[eps] == pytest.approx(robust.float().mean().item())
        standing = robust
    if noise is None:  # a deterministic model gets every image that is not robust wrong
        for eps in EPS:
            with torch.no_grad():
                wrong = model.eval()(found.adversarial[eps]).argmax(dim=1) != labels
            assert torch.equal(wrong[~found.robust[eps]], torch.ones_like(wrong[~found.robust[eps]]))


def test_a_model_without_stochrelax_layers_and_its_own_noise_is_attacked_with_eot():
    plain = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    randomized = nn.Sequential(OwnNoise(), nn.Flatten(), nn.Linear(64, 3))
    images, labels = tiny_data()
    assert sr.evaluate_robustness(plain, images, labels, (0.05,), **FAST).randomized is False
    found = sr.evaluate_robustness(randomized, images, labels, (0.05,), **FAST)
    assert found.randomized is True
    [row] = [row for row in found.report.rows if row.attack == "worst-case"]
    assert row.eot_samples == FAST["eot"] and row.prediction_samples == FAST["prediction_samples"]


def test_the_callers_model_mode_and_random_state_are_left_as_they_were():
    model, (images, labels) = tiny_network("logistic").train(), tiny_data()
    state = torch.random.get_rng_state()
    sr.evaluate_robustness(model, images, labels, (0.05,), **FAST)
    assert model.training and all(module.training for module in model.modules())
    assert torch.equal(torch.random.get_rng_state(), state)


def test_the_same_seed_gives_the_same_evaluation():
    model, (images, labels) = tiny_network("logistic"), tiny_data()
    first, second = (sr.evaluate_robustness(model, images, labels, (0.05,), seed=3, **FAST) for _ in range(2))
    assert torch.equal(first.robust[0.05], second.robust[0.05])
    assert torch.equal(first.adversarial[0.05], second.adversarial[0.05])


def test_its_table_and_rows_name_every_member():
    model, (images, labels) = tiny_network(None), tiny_data()
    found = sr.evaluate_robustness(model, images, labels, (0.05,), **FAST)
    [row] = found.rows()
    assert row["eps"] == 0.05 and row["robust_accuracy"] == found.robust_accuracy()[0.05]
    assert {key for key in row if key.startswith("broke:")} == {f"broke:{member['attack']}/{member['proxy']}"
                                                                for member in found.broken_by[0.05]}
    assert found.table().startswith("| eps | clean_accuracy | robust_accuracy |")


@pytest.mark.parametrize(("images", "labels", "eps", "fragment"), [
    (torch.rand(4, 8, 8), torch.zeros(4, dtype=torch.long), (0.1,), "images must be (N, C, H, W)"),
    (torch.rand(4, 1, 8, 8), torch.zeros(3, dtype=torch.long), (0.1,), "labels must be (N,) = (4,)"),
    (torch.rand(4, 1, 8, 8) * 255, torch.zeros(4, dtype=torch.long), (0.1,), "pixels in [0, 1] (or uint8)"),
    (torch.rand(4, 1, 8, 8), torch.zeros(4, dtype=torch.long), (), "one or more L∞ budgets"),
    (torch.rand(4, 1, 8, 8), torch.zeros(4, dtype=torch.long), (2.0,), "in [0, 1] pixels, got [2.0]"),
])
def test_inputs_it_cannot_take_are_one_line_errors(images, labels, eps, fragment):
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                       .replace("]", r"\]")) as raised:
        sr.evaluate_robustness(tiny_network(None), images, labels, eps, **FAST)
    assert "\n" not in str(raised.value)


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "evaluate_your_model.py"


@pytest.mark.slow
def test_the_example_evaluates_the_model_it_defines(real_data_dir):
    done = subprocess.run([sys.executable, str(EXAMPLE), "--data-dir", str(real_data_dir), "--train-steps", "20",
                           "--images", "32", "--fast"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "| eps | clean_accuracy | robust_accuracy |" in done.stdout
