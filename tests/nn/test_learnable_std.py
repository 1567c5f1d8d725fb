"""A learnable noise std (Parametric Noise Injection, He, Rakin & Fan 2019): configuration, positivity,
gradients w.r.t. the log-std checked against closed forms, saving and loading, and its logging.

Expected outputs come from ``torch.distributions`` / closed-form CDFs with a tensor std, as in
``tests/test_estimators.py``, independent of :mod:`stochrelax.nn.noise`; the expected ReLU output
E[relu(a − ξ)] = ∫_{−∞}^{a} F(t) dt is integrated numerically from those CDFs.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from stochrelax.cli import main
from stochrelax.models.allconv import build_model
from stochrelax.nn.estimators import score_function_surrogate
from stochrelax.nn.layers import StochasticActivation, learned_stds
from stochrelax.nn.noise import NOISES
from stochrelax.nn.rng import seeded
from stochrelax.report import plots
from stochrelax.report.page import _run_figures
from stochrelax.rundir import layout as runs, records
from stochrelax.rundir.config import ConfigError, load_config, parse_config
from stochrelax.training.loop import noise_std_metrics, train_run
from stochrelax.training.scalars import _scalars
from tests.synthetic_runs import epoch_metrics

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
LEARNABLE = {"kind": "relu", "noise": "gaussian", "std": 0.25, "learnable_std": {"granularity": "channel"}}
UNITS = [("relu", "additive", None), ("relu", "multiplicative", None), ("sign", "additive", "ste"),
         ("sign", "additive", "score")]


def reference_cdf(noise: str, std: torch.Tensor):
    """P(ξ ≤ x) for zero-mean noise of a tensor std, differentiable in it."""
    if noise == "gaussian":
        return lambda x: torch.distributions.Normal(torch.zeros_like(std), std).cdf(x)
    if noise == "logistic":
        return lambda x: torch.sigmoid(x / (std * math.sqrt(3.0) / math.pi))
    return lambda x: ((x + std * math.sqrt(3.0)) / (2 * std * math.sqrt(3.0))).clamp(0.0, 1.0)


def expected_relu(cdf, upper: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """∫_{upper − 12 std}^{upper} F(t) dt by the trapezoidal rule (20,001 points), elementwise in ``upper``."""
    fraction = torch.linspace(0.0, 1.0, 20_001, dtype=torch.float64).unsqueeze(1)  # (T, 1)
    t = upper - 12.0 * std + 12.0 * std * fraction  # (T, C)
    return torch.trapezoid(cdf(t), t, dim=0)


def learnable_unit(kind: str, noise: str, mode: str, estimator: str | None, std: float, channels: int
                   ) -> StochasticActivation:
    return StochasticActivation(kind, noise, mode, std=std, estimator=estimator, learnable_std="channel",
                                channels=channels).double()


# --- configuration -------------------------------------------------------------------------------


def config_error(activation: dict) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config({"model": {"activation": activation}})
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_learnable_std_without_its_initial_value_is_refused_in_one_line() -> None:
    message = config_error({"kind": "relu", "noise": "gaussian", "learnable_std": {}})
    assert "learnable std" in message and "std" in message and "initial value" in message
    assert "noise distribution" in config_error({"kind": "relu", "learnable_std": {"granularity": "layer"}})


def test_an_unknown_granularity_is_refused_with_the_valid_ones() -> None:
    message = config_error({**LEARNABLE, "learnable_std": {"granularity": "block"}})
    assert "learnable_std.granularity" in message and "'layer'" in message and "'channel'" in message
    with pytest.raises(ValueError, match="valid: layer, channel"):
        StochasticActivation("relu", "gaussian", std=0.1, learnable_std="block")


def test_the_model_gets_one_log_std_per_layer_or_channel_initialised_at_std() -> None:
    for granularity, shapes in (("layer", [()] * 6), ("channel", [(6,), (12,), (24,), (48,), (96,), (50,)])):
        model = build_model(parse_config({"model": {"activation": {
            **LEARNABLE, "learnable_std": {"granularity": granularity}}}}).model)
        names = [name for name, _ in model.named_parameters() if name.endswith("log_std")]
        assert len(names) == 6
        stds = learned_stds(model)
        assert [tuple(std.shape) for std in stds.values()] == shapes
        for std in stds.values():
            torch.testing.assert_close(std, torch.full_like(std, 0.25))
    assert not learned_stds(build_model(parse_config({}).model))


def test_extra_repr_shows_the_learnable_std() -> None:
    unit = StochasticActivation("relu", "logistic", std=0.25, learnable_std="layer")
    assert repr(unit) == "StochasticActivation(relu, noise=logistic(mean=0, std=learnable per layer: 0.25), " \
                         "mode=additive)"
    with torch.no_grad():
        unit = StochasticActivation("relu", "logistic", std=0.25, learnable_std="channel", channels=3)
        unit.log_std.copy_(torch.tensor([0.1, 0.2, 0.4]).log())
    assert "std=learnable per channel: 0.1..0.4" in repr(unit)


# --- positivity and reparameterisation -----------------------------------------------------------


def test_the_std_stays_positive_whatever_the_optimizer_does() -> None:
    unit = StochasticActivation("sign", "gaussian", std=0.25, learnable_std="layer")
    optimizer = torch.optim.SGD(unit.parameters(), lr=3.0)
    for _ in range(3):  # each step moves log s by −3, far past where s itself would turn negative
        optimizer.zero_grad()
        unit.log_std.sum().backward()
        optimizer.step()
    torch.testing.assert_close(unit.noise.std, torch.tensor(0.25 * math.exp(-9.0)))
    assert unit.noise.std.item() > 0
    pre_activation = torch.randn(4, 8, requires_grad=True)
    unit(pre_activation).sum().backward()
    assert torch.isfinite(pre_activation.grad).all() and torch.isfinite(unit.log_std.grad).all()


@pytest.mark.parametrize("noise", list(NOISES))
@pytest.mark.parametrize("mode", ["additive", "multiplicative"])
def test_at_its_initial_value_the_learnable_unit_draws_what_the_fixed_one_draws(noise: str, mode: str) -> None:
    """ξ = mean + std·ε consumes the generator as the fixed unit does and gives the same values, up to rounding."""
    pre_activation = torch.randn(16, 3, 5, 5).to(memory_format=torch.channels_last)
    fixed = StochasticActivation("relu", noise, mode, std=0.3)
    learnable = StochasticActivation("relu", noise, mode, std=0.3, learnable_std="channel", channels=3)
    with seeded(5):
        expected = fixed(pre_activation)
    with seeded(5):
        output = learnable(pre_activation)
    torch.testing.assert_close(output, expected, rtol=1e-5, atol=1e-6)
    assert output.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("noise", list(NOISES))
@pytest.mark.parametrize("kind,mode,estimator", UNITS)
@pytest.mark.parametrize("granularity,shape", [("layer", (8, 3, 5, 5)), ("channel", (8, 3, 5, 5)), ("channel", (64, 3))])
def test_the_loss_reaches_the_log_std_of_every_unit(noise, kind, mode, estimator, granularity, shape) -> None:
    unit = StochasticActivation(kind, noise, mode, std=0.5, estimator=estimator, learnable_std=granularity, channels=3)
    with seeded(0):
        pre_activation = (torch.randn(shape) + 0.5).requires_grad_()  # most ReLU units active
        output = unit(pre_activation)
    loss = (output * torch.linspace(-1.0, 1.0, output.numel()).view_as(output)).sum(dim=tuple(range(1, len(shape))))
    score_function_surrogate(loss, unit.last_log_prob).backward()
    assert unit.log_std.grad.shape == unit.log_std.shape
    assert torch.isfinite(unit.log_std.grad).all() and (unit.log_std.grad != 0).all()
    assert torch.isfinite(pre_activation.grad).all()


# --- the gradient w.r.t. the log-std against the closed-form expected output --------------------

PRE_ACTIVATIONS = torch.tensor([-0.9, -0.3, 0.1, 0.6, 1.2], dtype=torch.float64)  # one per channel
STDS = torch.tensor([0.4, 0.7, 1.0, 0.8, 0.5], dtype=torch.float64)


def exact_log_std_gradient(expected_output) -> torch.Tensor:
    """d/d log s of Σ_c E[y_c], with E given as a function of the per-channel std s, by autograd."""
    log_std = STDS.log().requires_grad_()
    expected_output(log_std.exp()).sum().backward()
    return log_std.grad


def batch_estimates(unit: StochasticActivation, batches: int, batch_size: int) -> torch.Tensor:
    """``batches`` independent estimates of d/d log s E[Σ_c y_c], each the mean over ``batch_size`` draws
    (the surrogate averages over the batch)."""
    estimates = []
    for _ in range(batches):
        unit.zero_grad()
        loss = unit(PRE_ACTIVATIONS.expand(batch_size, -1)).sum(dim=1)  # (N,)
        score_function_surrogate(loss, unit.last_log_prob).backward()
        estimates.append(unit.log_std.grad.clone())
    return torch.stack(estimates)


def z_scores(estimates: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    standard_error = estimates.std(dim=0) / math.sqrt(estimates.shape[0])
    return (estimates.mean(dim=0) - exact) / standard_error.clamp(min=1e-12)


def learnable_sign_unit(noise: str, estimator: str) -> StochasticActivation:
    unit = learnable_unit("sign", noise, "additive", estimator, 1.0, len(STDS))
    with torch.no_grad():
        unit.log_std.copy_(STDS.log())
    return unit


@pytest.mark.parametrize("noise", list(NOISES))
def test_ste_gradient_of_the_log_std_is_the_derivative_of_the_expected_output(noise: str) -> None:
    """For one layer the straight-through backward is d/d log s of E[y] = 2F(a/s) − 1 exactly, whatever the draw."""
    exact = exact_log_std_gradient(lambda std: 2.0 * reference_cdf(noise, std)(PRE_ACTIVATIONS) - 1.0)
    with seeded(0):
        estimates = batch_estimates(learnable_sign_unit(noise, "ste"), batches=3, batch_size=7)
    for estimate in estimates:
        torch.testing.assert_close(estimate, exact, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("noise", list(NOISES))
def test_score_gradient_of_the_log_std_is_unbiased(noise: str) -> None:
    """E[L·d/d log s log p(y | a)] = d/d log s E[L], with log p from the log-CDF at a tensor std."""
    exact = exact_log_std_gradient(lambda std: 2.0 * reference_cdf(noise, std)(PRE_ACTIVATIONS) - 1.0)
    with seeded(1):
        estimates = batch_estimates(learnable_sign_unit(noise, "score"), batches=32, batch_size=2000)
    scores = z_scores(estimates, exact)
    # 5 channels, each mean of 32 independent estimates within 4 standard errors.
    assert scores.abs().max() < 4.0, scores


@pytest.mark.parametrize("noise", list(NOISES))
@pytest.mark.parametrize("mode", ["additive", "multiplicative"])
def test_relu_pathwise_gradient_of_the_log_std_is_unbiased(noise: str, mode: str) -> None:
    """d/d log s of E[relu(a − ξ)] = ∫_{−∞}^{a} F(t) dt, and of E[relu(a·ξ)] = |a|·E[(sign(a)·ξ)⁺] with ξ of mean 1."""
    pre_activations = PRE_ACTIVATIONS.abs() + 0.2 if mode == "multiplicative" else PRE_ACTIVATIONS
    closed_forms = {  # E[relu(a ∘ ξ)] as a function of s, per mode; E[ξ⁺] = ∫_{−∞}^{1} F₀(t) dt for ξ = 1 + ξ₀
        "additive": lambda std: expected_relu(reference_cdf(noise, std), pre_activations, std),
        "multiplicative": lambda std: pre_activations * expected_relu(reference_cdf(noise, std), torch.ones_like(std),
                                                                      std),
    }
    exact = exact_log_std_gradient(closed_forms[mode])
    unit = learnable_unit("relu", noise, mode, None, 1.0, len(STDS))
    with torch.no_grad():
        unit.log_std.copy_(STDS.log())
    estimates = []
    with seeded(2):
        for _ in range(32):
            unit.zero_grad()
            unit(pre_activations.expand(2000, -1)).sum().backward()
            estimates.append(unit.log_std.grad / 2000)
    scores = z_scores(torch.stack(estimates), exact)
    assert scores.abs().max() < 4.0, scores


# --- saving, loading and logging -----------------------------------------------------------------


def test_a_saved_learnable_run_reloads_and_evaluates_identically(tmp_path) -> None:
    config = parse_config({"model": {"activation": LEARNABLE}})
    with seeded(0):
        model = build_model(config.model)
        with torch.no_grad():
            for unit in learned_stds(model):
                model.get_submodule(unit).log_std.uniform_(-3.0, -1.0)
    run_dir = tmp_path / "run"
    runs.create_run_dir(run_dir)
    runs.write_config(run_dir, config)
    records.append_metrics(run_dir, epoch_metrics(1, test_accuracy=0.5))
    runs.save_weights(run_dir, model)
    runs.write_summary(run_dir, {"test_accuracy": 0.5, "epochs": 1})
    loaded = runs.load_run(run_dir).model
    for name, std in learned_stds(model).items():
        torch.testing.assert_close(learned_stds(loaded)[name], std, rtol=0, atol=0)
    images = torch.rand(8, 1, 28, 28)
    with seeded(3):
        expected = model.eval()(images)
    with seeded(3):
        torch.testing.assert_close(loaded.eval()(images), expected, rtol=0, atol=0)


def test_noise_std_metrics_give_the_mean_per_unit_and_the_range_per_channel() -> None:
    unit = StochasticActivation("relu", "gaussian", std=0.25, learnable_std="channel", channels=3)
    with torch.no_grad():
        unit.log_std.copy_(torch.tensor([0.1, 0.2, 0.6]).log())
    model = torch.nn.Sequential(unit, StochasticActivation("relu", "gaussian", std=0.5, learnable_std="layer"),
                                StochasticActivation("relu", "gaussian", std=0.5))
    metrics = noise_std_metrics(model)
    assert metrics == {"noise_std": {"0": pytest.approx(0.3), "1": pytest.approx(0.5)},
                       "noise_std_min": {"0": pytest.approx(0.1)}, "noise_std_max": {"0": pytest.approx(0.6)}}
    assert noise_std_metrics(torch.nn.Sequential(StochasticActivation("relu", "gaussian", std=0.5))) == {}
    assert _scalars({"epoch": 2, "test_accuracy": 0.5, **metrics}) == {
        "accuracy/test": 0.5, "noise_std/mean/0": pytest.approx(0.3), "noise_std/mean/1": pytest.approx(0.5),
        "noise_std/min/0": pytest.approx(0.1), "noise_std/max/0": pytest.approx(0.6)}


@pytest.fixture(scope="module")
def learnable_run(fashion_mnist, tmp_path_factory) -> Path:
    """Two epochs of a per-channel learnable std on 256 training and 64 test images."""
    config = parse_config({"model": {"activation": LEARNABLE},
                           "train": {"epochs": 2}, "data": {"train_limit": 256, "test_limit": 64}})
    run_dir = tmp_path_factory.mktemp("learnable") / "run"
    train_run(config, fashion_mnist, run_dir)
    return run_dir


@pytest.mark.slow
def test_training_records_the_learned_std_of_every_epoch(learnable_run) -> None:
    metrics = records.read_metrics(learnable_run)
    assert [sorted(record["noise_std"]) for record in metrics] == [sorted(f"blocks.block{i}.act"
                                                                          for i in (1, 2, 4, 5, 7, 9))] * 2
    final = learned_stds(runs.load_run(learnable_run).model)
    for name, std in final.items():
        assert metrics[-1]["noise_std"][name] == pytest.approx(std.mean().item())
        assert metrics[-1]["noise_std_min"][name] <= metrics[-1]["noise_std"][name] <= metrics[-1]["noise_std_max"][name]
    assert metrics[0]["noise_std"] != metrics[1]["noise_std"]  # trained, not frozen


@pytest.mark.slow
def test_the_report_draws_the_learned_std_of_a_learnable_run_only(learnable_run, fashion_mnist, tmp_path) -> None:
    figure = plots.learned_noise_std(learnable_run)
    (ax,) = figure.axes
    assert len(ax.lines) == 7 and len(ax.collections) == 6  # six layers and the initial std; six channel bands
    assert [figure.key for figure in _run_figures(runs.load_run(learnable_run), fashion_mnist, 10)
            if figure.key.endswith("learned_noise_std")] == ["run_learned_noise_std"]
    fixed = tmp_path / "fixed"
    runs.create_run_dir(fixed)
    runs.write_config(fixed, parse_config({}))
    records.append_metrics(fixed, epoch_metrics(1, test_accuracy=0.5))
    with pytest.raises(plots.MissingData, match="learnable_std"):
        plots.learned_noise_std(fixed)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["relu_gaussian_learnable", "relu_gaussian_learnable_pgd"])
def test_the_example_configs_train_a_tiny_learnable_run_from_the_command_line(name, real_data_dir, tmp_path) -> None:
    out = tmp_path / name
    status = main(["train", str(CONFIG_DIR / f"{name}.yaml"), "--out", str(out), "--data-dir", str(real_data_dir),
                   "--device", "cpu", "--no-progress", "--epochs", "1", "--train-limit", "200", "--test-limit", "100"])
    assert status == 0
    (record,) = records.read_metrics(out)
    assert len(record["noise_std"]) == 6 and all(0 < std < 1 for std in record["noise_std"].values())
    assert load_config(out / runs.CONFIG_FILE).model.activation.learnable_std.granularity == "layer"
