"""The thesis network and the predictive-distribution helpers."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from stochrelax.models.allconv import (ARCHITECTURES, ModelConfig, build_model, computing_in, fold_batch_norm,
                                       precision_of)
from stochrelax.nn.layers import StochasticActivation, noise_disabled
from stochrelax.nn.prediction import collect_log_prob, evaluating, is_stochastic, predictive_log_prob, sample_logits
from stochrelax.nn.rng import seeded
from stochrelax.rundir.config import parse_config


def thesis_model(**activation) -> nn.Module:
    with seeded(0):
        return build_model(parse_config({"model": {"activation": activation}}).model)


def test_thesis_architecture_matches_figure_5_2() -> None:
    model = thesis_model()
    convolutions = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size[0], c.stride[0]) for c in convolutions] == [
        (6, 3, 1), (12, 3, 1), (12, 2, 2), (24, 3, 1), (48, 3, 1), (48, 2, 2), (96, 3, 1), (96, 2, 2),
        (50, 1, 1), (10, 1, 1)]
    # An activation (with BatchNorm before it) after every convolution but the stride-2 ones and the last.
    blocks = dict(model.blocks.named_children())
    with_activation = [name for name, block in blocks.items() if isinstance(block.act, StochasticActivation)]
    assert with_activation == ["block1", "block2", "block4", "block5", "block7", "block9"]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 6
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)


@pytest.mark.parametrize("activation", [{"kind": "relu"}, {"kind": "sign"}])
def test_channels_last_layout_computes_what_the_default_layout_computes(activation: dict) -> None:
    # float64: in float32 the two layouts' kernels sum in different orders, and BatchNorm's backward
    # amplifies that rounding to about 1% of a gradient — too loose a check to catch a layout bug.
    model = thesis_model(**activation).train().double()
    assert model.blocks.block2.conv.weight.is_contiguous(memory_format=torch.channels_last)
    default_layout = thesis_model(**activation).train().double().to(memory_format=torch.contiguous_format)
    with seeded(1):
        images = torch.rand(16, 1, 28, 28, dtype=torch.float64)
    ours, reference = model(images), default_layout(images)
    torch.testing.assert_close(ours, reference, rtol=1e-10, atol=1e-10)
    ours.square().sum().backward()
    reference.square().sum().backward()
    # A bias before BatchNorm has a zero gradient up to rounding.
    for a, b in zip(model.parameters(), default_layout.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-8, atol=1e-8)


def test_batch_norm_can_be_switched_off() -> None:
    with seeded(0):
        model = build_model(parse_config({"model": {"batch_norm": False}}).model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_first_layer_normalises_pixels() -> None:
    model = thesis_model()
    images = torch.rand(2, 1, 28, 28)
    torch.testing.assert_close(model.normalize(images), (images - 0.5) / 0.5)


def test_forward_features_returns_named_blocks() -> None:
    model = thesis_model().eval()
    images = torch.rand(4, 1, 28, 28)
    features = model.forward_features(images, ["block2", "block8"])
    assert features["block2"].shape == (4, 12, 24, 24)
    assert features["block8"].shape == (4, 96, 1, 1)
    logits = model.forward_features(images, ["block10"])["block10"].flatten(1)
    torch.testing.assert_close(logits, model(images))
    with pytest.raises(KeyError, match="block1, block2"):
        model.forward_features(images, ["block99"])


def test_sample_logits_repeats_only_stochastic_models() -> None:
    images = torch.rand(5, 1, 28, 28)
    stochastic = thesis_model(noise="gaussian", std=0.5).eval()
    logits = sample_logits(stochastic, images, samples=3)
    assert logits.shape == (3, 5, 10)
    assert not torch.allclose(logits[0], logits[1])
    assert sample_logits(thesis_model().eval(), images, samples=3).shape == (1, 5, 10)
    with noise_disabled(stochastic):
        assert not is_stochastic(stochastic)
        assert sample_logits(stochastic, images, samples=3).shape == (1, 5, 10)
    assert is_stochastic(stochastic)


def test_predictive_log_prob_is_the_log_of_the_mean_softmax() -> None:
    logits = torch.randn(4, 6, 10, dtype=torch.float64) * 30  # large scores: naive softmax would underflow
    expected = torch.log(torch.softmax(logits, dim=-1).mean(dim=0))
    torch.testing.assert_close(predictive_log_prob(logits), expected)
    torch.testing.assert_close(predictive_log_prob(logits[:1]), torch.log_softmax(logits[0], dim=-1))
    very_confident = torch.tensor([[[0.0, -2000.0]], [[-2000.0, 0.0]]], dtype=torch.float64)  # (K=2, B=1, 2)
    torch.testing.assert_close(predictive_log_prob(very_confident), torch.full((1, 2), math.log(0.5),
                                                                                dtype=torch.float64))


def test_collect_log_prob_sums_score_units_per_example() -> None:
    model = thesis_model(kind="sign", noise="logistic", std=0.5, estimator="score")
    model(torch.rand(3, 1, 28, 28))
    per_layer = [m.last_log_prob for m in model.modules() if isinstance(m, StochasticActivation)]
    assert len(per_layer) == 6
    torch.testing.assert_close(collect_log_prob(model), torch.stack(per_layer).sum(0))
    assert collect_log_prob(thesis_model()) is None


def test_evaluating_restores_every_submodule_mode() -> None:
    model = thesis_model().train()
    model.blocks.block1.eval()
    with evaluating(model):
        assert not any(m.training for m in model.modules())
    assert model.training and not model.blocks.block1.training and model.blocks.block2.training


def test_architectures_registry_is_what_the_config_accepts() -> None:
    assert set(ARCHITECTURES) == {"thesis_allconv"}
    with pytest.raises(ValueError, match="thesis_allconv"):
        parse_config({"model": {"architecture": "resnet"}})


def test_sample_logits_in_passes_of_few_rows_is_the_same_computation_as_one_pass() -> None:
    """Deterministic: identical for any pass size; stochastic: same shapes and K independent draws."""
    images = torch.rand(10, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    plain = build_model(ModelConfig()).eval()
    one_pass = sample_logits(plain, images, 7, rows_per_pass=None)
    torch.testing.assert_close(sample_logits(plain, images, 7, rows_per_pass=25), one_pass, rtol=0, atol=1e-6)
    noisy = build_model(ModelConfig.model_validate({"activation": {"kind": "relu", "noise": "logistic", "std": 0.5}}))
    for rows_per_pass in (None, 10, 25, 1):  # 1 row: still a whole draw (10 rows) per pass
        logits = sample_logits(noisy.eval(), images, 7, rows_per_pass=rows_per_pass)
        assert logits.shape == (7, 10, 10)
        assert all(not torch.equal(logits[0], logits[k]) for k in range(1, 7))  # every draw its own noise


# --- precision ---------------------------------------------------------------------------------------

def test_bfloat16_runs_the_convolutions_in_bfloat16_and_everything_else_in_float32() -> None:
    with seeded(0):
        model = build_model(ModelConfig(activation={"kind": "relu", "noise": "logistic", "std": 0.05})).eval()
    images = torch.rand(16, 1, 28, 28)
    seen: dict[str, set[torch.dtype]] = {"conv": set(), "norm": set(), "act": set()}
    hooks = [getattr(block, part).register_forward_hook(
        lambda module, inputs, output, part=part: seen[part].add(output.dtype))
        for block in model.blocks for part in seen]
    with seeded(1):
        reference = model(images)
    assert seen == {"conv": {torch.float32}, "norm": {torch.float32}, "act": {torch.float32}}
    seen = {part: set() for part in seen}
    with computing_in(model, "bfloat16"), seeded(1):
        assert precision_of(model) == "bfloat16"
        scores = model(images)
    for hook in hooks:
        hook.remove()
    assert seen["conv"] == {torch.bfloat16} and seen["norm"] == seen["act"] == {torch.float32}
    assert scores.dtype == torch.float32 and precision_of(model) == "float32"  # restored
    # bfloat16 keeps 8 bits of mantissa: the class scores agree to a few percent of their spread
    assert (scores - reference).abs().max() < 0.05 * reference.std()
    with computing_in(model, "float32"), seeded(1):
        assert torch.equal(model(images), reference)  # float32 is the model as it always computed


def test_an_unknown_precision_is_refused_naming_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown precision 'float16'; valid: float32, bfloat16"):
        with computing_in(build_model(ModelConfig()), "float16"):
            pass


@pytest.mark.parametrize("activation", [{"kind": "relu"}, {"kind": "sign", "noise": "logistic", "std": 0.3}])
def test_a_folded_copy_computes_what_the_model_computes_in_eval_mode(activation: dict) -> None:
    with seeded(0):
        model = build_model(ModelConfig(activation=activation))
    with torch.no_grad():  # BatchNorm statistics that are not the identity
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
    images = torch.rand(8, 1, 28, 28)
    folded = fold_batch_norm(model)
    assert model.training and not folded.training  # the model itself is not changed
    assert not any(isinstance(module, nn.BatchNorm2d) for module in folded.modules())
    assert any(isinstance(module, nn.BatchNorm2d) for module in model.modules())
    with evaluating(model), seeded(1):
        expected = model(images)
    with seeded(1):
        scores = folded(images)
    torch.testing.assert_close(scores, expected, rtol=1e-4, atol=1e-4)


# --- Gaussian input noise -----------------------------------------------------------------------

def smoothed_model(std: float = 0.25, **activation) -> nn.Module:
    with seeded(0):
        return build_model(parse_config({"model": {"activation": activation, "input_noise": {"std": std}}}).model)


def test_input_noise_is_added_to_the_pixels_before_normalisation_in_eval_mode() -> None:
    from stochrelax.nn.layers import GaussianInputNoise
    from stochrelax.nn.prediction import input_noise_std

    model = smoothed_model(0.25).eval()
    assert isinstance(model.input_noise, GaussianInputNoise) and input_noise_std(model) == 0.25
    images = torch.rand(3, 1, 28, 28)
    with seeded(1), torch.no_grad():
        noisy = model(images)
    with seeded(1), torch.no_grad(), noise_disabled(model):
        shifted = images + 0.25 * torch.randn(images.shape)
        expected = model(shifted)
    torch.testing.assert_close(noisy, expected)
    with seeded(1), torch.no_grad():
        features = model.forward_features(images, ["block10"])["block10"].flatten(1)
    torch.testing.assert_close(features, noisy)


def test_a_model_with_input_noise_is_stochastic_and_sampled_k_times() -> None:
    from stochrelax.nn.prediction import input_noise_std

    model = smoothed_model().eval()
    assert is_stochastic(model)
    with torch.no_grad():
        logits = sample_logits(model, torch.rand(2, 1, 28, 28), samples=5)
    assert logits.shape == (5, 2, 10) and not torch.equal(logits[0], logits[1])
    with noise_disabled(model):
        assert not is_stochastic(model) and input_noise_std(model) is None
    assert not is_stochastic(thesis_model()) and input_noise_std(thesis_model()) is None


def test_fold_batch_norm_keeps_the_input_noise() -> None:
    model = smoothed_model()
    with seeded(0):
        for _ in range(2):  # training-mode passes give BatchNorm running statistics
            model(torch.rand(16, 1, 28, 28))
    folded = fold_batch_norm(model)
    assert is_stochastic(folded)
    images = torch.rand(4, 1, 28, 28)
    with seeded(2), torch.no_grad(), evaluating(model):
        expected = model(images)
    with seeded(2), torch.no_grad():
        torch.testing.assert_close(folded(images), expected, rtol=1e-4, atol=1e-4)


def test_input_noise_leaves_the_state_dict_unchanged() -> None:
    assert set(smoothed_model().state_dict()) == set(thesis_model().state_dict())


@pytest.mark.parametrize("section", [{"std": 0.0}, {"std": -1.0}, {}, {"std": 0.1, "mean": 0.0}])
def test_input_noise_config_refuses_a_bad_section(section: dict) -> None:
    from stochrelax.rundir.config import ConfigError

    with pytest.raises((ConfigError, ValueError), match="input_noise"):
        parse_config({"model": {"input_noise": section}})


@pytest.mark.parametrize(("model", "stochastic", "beyond_thesis"), [
    ({}, False, False),
    ({"activation": {"kind": "relu", "noise": "logistic", "std": 0.05}}, True, False),
    ({"input_noise": {"std": 0.25}}, True, True),
    ({"activation": {"kind": "relu", "noise": "gaussian", "std": 0.25, "learnable_std": {"granularity": "layer"}}},
     True, True),
])
def test_a_config_says_whether_its_network_draws_noise_and_whether_the_thesis_studied_it(model, stochastic,
                                                                                         beyond_thesis):
    config = ModelConfig(**model)
    assert (config.stochastic, config.beyond_thesis) == (stochastic, beyond_thesis)
    with seeded(0):
        assert is_stochastic(build_model(config)) == stochastic
