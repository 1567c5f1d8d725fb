"""Experiment grids: expansion into named, validated runs, safe run names, the shipped thesis study, presets."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from stochrelax.cli import main
from stochrelax.evaluation.table import AttackSettings
from stochrelax.rundir.config import ConfigError
from stochrelax.study.grid import PRESETS, Preset, expand_grid, load_grid

THESIS_STUDY = Path(__file__).resolve().parents[2] / "configs" / "thesis_study.yaml"


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
    assert len(runs) == 33
    assert all(config.train.epochs == 100 and config.train.batch_size == 64 for config in runs.values())
    beyond = {name for name, config in runs.items() if config.model.beyond_thesis}
    assert beyond == {"relu_learnable", "relu_learnable_pgd", "relu_input_noise-0.12", "relu_input_noise-0.25",
                      "relu_input_noise-0.5"}
    assert {runs[f"relu_input_noise-{std}"].model.input_noise.std for std in ("0.12", "0.25", "0.5")} == {0.12, 0.25, 0.5}
    pni = runs["relu_learnable_pgd"]
    assert (pni.model.activation.learnable_std.granularity, pni.model.activation.std) == ("layer", 0.25)
    assert (pni.train.adversarial.method, pni.train.adversarial.eps) == ("pgd", 0.1)
    assert runs["relu_learnable"].train.adversarial.method is None
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


# --- run names are directory names inside the study directory ---------------------------------

SAFE_NAME_RULE = "use 1 to 200 letters, digits, '.', '_', '-', '=' or '+', not starting with '.'"
UNSAFE_GROUP_NAMES = ["../../x", "/tmp/abs", "a/b", "..", ".", ".hidden", "", "a b", "a\\b", "a\nb", "x" * 201]
UNSAFE_AXIS_VALUES = ["../x", "/etc", "a/b", "..", ".x", "", "has space", "tab\there"]


def unsafe_group_grid(name: str) -> dict:
    return {"groups": {name: {"set": {"model.activation.kind": "relu"}}}}


def unsafe_axis_grid(value: str) -> dict:
    return {"groups": {"g": {"axes": {"model.batch_norm": [True], "model.architecture": ["thesis_allconv", value]}}}}


@pytest.mark.parametrize("name", UNSAFE_GROUP_NAMES)
def test_a_group_name_that_is_not_a_safe_directory_name_is_refused(name: str) -> None:
    with pytest.raises(ConfigError) as caught:
        expand_grid(unsafe_group_grid(name))
    assert str(caught.value) == f"grid: group {name!r} cannot be used in a run directory's name; {SAFE_NAME_RULE}"


@pytest.mark.parametrize("value", UNSAFE_AXIS_VALUES)
def test_an_axis_value_that_is_not_a_safe_directory_name_is_refused(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        expand_grid(unsafe_axis_grid(value))
    assert str(caught.value) == (f"grid: group g: axis 'model.architecture' value {value!r} cannot be used in a run "
                                 f"directory's name; {SAFE_NAME_RULE}")


def test_an_axis_of_lists_is_refused_as_names_of_runs() -> None:
    with pytest.raises(ConfigError, match=r"axis 'train.betas' value \[0.9, 0.99\] cannot be used"):
        expand_grid({"groups": {"g": {"axes": {"train.betas": [[0.9, 0.99]]}}}})


def test_a_run_name_longer_than_a_directory_name_may_be_is_refused() -> None:
    grid = {"groups": {"g" * 150: {"axes": {"model.activation.std": [0.05], "model.activation.noise": ["x" * 60]}}}}
    with pytest.raises(ConfigError, match=r"run 'g{150}-0\.05-x{60}' cannot be used in a run directory's name"):
        expand_grid(grid)


def test_names_made_of_the_allowed_characters_are_kept() -> None:
    grid = {"groups": {"Lr=1e-3+bn_v2.1": {"set": {"model.activation.noise": "gaussian"},
                                           "axes": {"model.activation.std": [0.05, 1e-05], "train.seed": [-0]}}}}
    assert [run.name for run in expand_grid(grid)] == ["Lr=1e-3+bn_v2.1-0.05-0", "Lr=1e-3+bn_v2.1-1e-05-0"]


@pytest.mark.parametrize("grid", [unsafe_group_grid("../../x"), unsafe_axis_grid("../x")], ids=["group", "axis"])
def test_load_grid_refuses_unsafe_names_from_a_file(grid: dict, tmp_path: Path) -> None:
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: group .*'\.\./.*x' cannot be used"):
        load_grid(path)


@pytest.mark.parametrize("text", ["groups: {g: {set: &a {model: *a}}}", "base: &a {train: {x: *a}}\ngroups: {g: {}}"],
                         ids=["set", "base"])
def test_a_mapping_that_contains_itself_is_refused(text: str, tmp_path: Path) -> None:
    path = tmp_path / "grid.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"^a mapping contains itself \(a YAML alias to a mapping around it\)"):
        load_grid(path)


@pytest.mark.parametrize("name", ["../../x", "ABSOLUTE", "a/b", ".."])
def test_sweep_command_refuses_unsafe_names_and_writes_nothing(name: str, tmp_path: Path, capsys) -> None:
    name = str(tmp_path.parent / f"{tmp_path.name}-abs") if name == "ABSOLUTE" else name
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump(unsafe_group_grid(name)))
    study = tmp_path / "a" / "b" / "study"
    status = main(["sweep", str(grid), "--out", str(study), "--preset", "smoke", "--device", "cpu", "--no-progress"])
    assert status == 2
    expected = f"stochrelax: error: {grid}: group {name!r} cannot be used in a run directory's name; {SAFE_NAME_RULE}"
    assert capsys.readouterr().err.splitlines() == [expected]
    assert sorted(tmp_path.rglob("*")) == [grid]  # no study directory, nothing next to it
    assert not Path(f"{tmp_path.parent / tmp_path.name}-abs-seed0").exists()


TINY = Preset(epochs=2, train_limit=500, test_limit=200, attack_limit=40, attack=AttackSettings(
    eps=(0.05,), p=(0.3,), eot_samples=2, prediction_samples=2, check_convergence=False))
TINY_GRID = {"base": {"train": {"epochs": 100}},
             "groups": {"relu": {"set": {"model.activation.kind": "relu"}},
                        "noisy": {"set": {"model.activation": {"kind": "relu", "noise": "logistic", "std": 0.05}}}}}


def test_presets_set_epochs_data_and_seed_and_keep_the_rest() -> None:
    config = expand_grid(TINY_GRID)[1].config
    applied = TINY.apply(config, seed=3)
    assert (applied.train.epochs, applied.train.seed, applied.data.train_limit, applied.data.test_limit) == \
        (2, 3, 500, 200)
    assert applied.model == config.model and applied.train.lr == config.train.lr
    thesis = PRESETS["thesis"].apply(config, seed=0)
    assert (thesis.train.epochs, thesis.data.train_limit, thesis.data.test_limit) == (100, None, None)
    standard = PRESETS["standard"].apply(config, seed=0)
    assert (standard.train.epochs, standard.data.train_limit, standard.data.test_limit) == (10, None, None)


def test_presets_declare_what_their_verdicts_can_tell() -> None:
    """smoke only checks the pipeline; claims about absolute accuracy need a preset that converges."""
    assert [name for name, preset in PRESETS.items() if preset.pipeline_check] == ["smoke"]
    assert [name for name, preset in PRESETS.items() if preset.converged] == ["standard", "thesis"]
    assert Preset.from_dict(dataclasses.asdict(PRESETS["standard"])) == PRESETS["standard"]
