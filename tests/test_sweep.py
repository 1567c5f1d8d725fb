"""Experiment grids: expansion into named, validated runs, and the shipped thesis study."""

from __future__ import annotations

from pathlib import Path

import pytest

from stochrelax.config import ConfigError
from stochrelax.sweep import expand_grid, load_grid

THESIS_STUDY = Path(__file__).resolve().parents[1] / "configs" / "thesis_study.yaml"


def test_axes_are_crossed_into_named_runs_on_top_of_base_and_group_settings() -> None:
    grid = {"base": {"train": {"epochs": 7}},
            "groups": {"noisy": {"set": {"model.activation.kind": "relu"},
                                 "axes": {"model.activation.noise": ["gaussian", "logistic"],
                                          "model.activation.std": [0.05, 0.1]}},
                       "plain": {"set": {"model": {"batch_norm": False}}}}}
    runs = expand_grid(grid)
    assert [run.name for run in runs] == ["noisy-gaussian-0.05", "noisy-gaussian-0.1", "noisy-logistic-0.05",
                                          "noisy-logistic-0.1", "plain"]
    noisy = runs[3].config
    assert (noisy.model.activation.noise, noisy.model.activation.std, noisy.train.epochs) == ("logistic", 0.1, 7)
    assert runs[4].config.model.batch_norm is False and runs[4].config.model.activation.noise is None


def test_flag_axes_name_runs_by_their_key() -> None:
    runs = expand_grid({"groups": {"relu": {"axes": {"model.batch_norm": [True, False]}}}})
    assert [run.name for run in runs] == ["relu-batch_norm", "relu-no_batch_norm"]


@pytest.mark.parametrize(("grid", "message"), [
    ({"groups": {"g": {"axes": {"model.activation.noise": ["gausian"]}, "set": {"model.activation.std": 0.1}}}},
     "run g-gausian: model.activation.noise"),
    ({"groups": {"g": {"axes": {"model.batch_norm": []}}}}, "non-empty list"),
    ({"groups": {"g": {"sets": {}}}}, "unknown key(s) sets"),
    ({"base": {"train": {"epochs": 0}}, "groups": {"g": {}}}, "base: train.epochs"),
    ({"bases": {}, "groups": {"g": {}}}, "unknown key(s) bases"),
    ({"groups": {}}, "'groups' must map"),
])
def test_malformed_grids_are_one_line_errors(grid: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        expand_grid(grid)
    assert "\n" not in str(caught.value)
    assert message in str(caught.value)


def test_duplicate_run_names_are_refused() -> None:
    grid = {"groups": {"a-relu": {}, "a": {"axes": {"model.activation.kind": ["relu"]}}}}
    with pytest.raises(ConfigError, match="occurs twice"):
        expand_grid(grid)


def test_thesis_study_expresses_the_thesis_grid() -> None:
    runs = {run.name: run.config for run in load_grid(THESIS_STUDY)}
    assert len(runs) == 28
    assert all(config.train.epochs == 100 and config.train.batch_size == 64 for config in runs.values())
    relu_noise = [config.model.activation for name, config in runs.items() if name.startswith("relu_noise-")]
    assert {(a.noise, a.mode, a.std) for a in relu_noise} == {
        (noise, mode, std) for noise in ("gaussian", "logistic", "uniform")
        for mode in ("additive", "multiplicative") for std in (0.025, 0.05, 0.1)}
    sign_noise = [config.model.activation for name, config in runs.items() if name.startswith("sign_noise-")]
    assert {(a.noise, a.estimator) for a in sign_noise} == {
        (noise, estimator) for noise in ("gaussian", "logistic") for estimator in ("ste", "score")}
    assert runs["sign_deterministic-no_batch_norm"].model.activation.estimator == "classic_ste"
    fgsm = runs["relu_adversarial_fgsm"].train.adversarial
    assert (fgsm.method, fgsm.eps, fgsm.regenerate_every) == ("fgsm_mixture", 0.07, 20)
    assert runs["relu_adversarial_pgd"].train.adversarial.method == "pgd"


def test_missing_grid_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="grid file not found"):
        load_grid(tmp_path / "nope.yaml")
