"""Tests of :mod:`stochrelax.rundir.config`: the shipped configs, YAML round trips, overrides and errors.

Every rejected config must raise :class:`~stochrelax.rundir.config.ConfigError` with a
one-line message that names the offending (dotted) key and, where there is a fixed
set of choices, lists them.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings, strategies as st

from stochrelax.models.allconv import build_model
from stochrelax.nn.layers import StochasticActivation
from stochrelax.rundir.config import ConfigError, RunConfig, dump_config, load_config, parse_config

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"

# name -> (kind, noise, mode, std, resolved estimator)
SHIPPED = {
    "relu_deterministic": ("relu", None, "additive", None, None),
    "sign_deterministic": ("sign", None, "additive", None, "classic_ste"),
    "relu_logistic_additive": ("relu", "logistic", "additive", 0.05, None),
    "sign_logistic_ste": ("sign", "logistic", "additive", 0.05, "ste"),
    "sign_logistic_score": ("sign", "logistic", "additive", 0.05, "score"),
    "relu_adversarial_fgsm": ("relu", None, "additive", None, None),
    "relu_adversarial_pgd": ("relu", None, "additive", None, None),
    "relu_gaussian_learnable": ("relu", "gaussian", "additive", 0.25, None),  # std: the initial value
    "relu_gaussian_learnable_pgd": ("relu", "gaussian", "additive", 0.25, None),
    "relu_input_noise": ("relu", None, "additive", None, None),  # the noise is on the input
}

# name -> (method, eps) of adversarial training; the others train on clean data
ADVERSARIAL = {"relu_adversarial_fgsm": ("fgsm_mixture", 0.07), "relu_adversarial_pgd": ("pgd", 0.1),
               "relu_gaussian_learnable_pgd": ("pgd", 0.1)}

THESIS_MULTIPLICATIVE_RELU = {"model": {"activation": {"kind": "relu", "noise": "gaussian",
                                                       "mode": "multiplicative", "std": 0.1, "mean": 0.0}}}


def config_error(raw, overrides=None) -> str:
    """The message of the ConfigError that ``parse_config`` must raise; checks it is one line."""
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, overrides)
    message = str(caught.value)
    assert "\n" not in message, f"message is not one line: {message!r}"
    return message


# --- shipped configs ---------------------------------------------------------------------------

GRIDS = {"thesis_study"}  # experiment grids (tests/test_sweep.py), not run configs


def test_every_shipped_config_is_covered_by_these_tests():
    assert {path.stem for path in CONFIG_DIR.glob("*.yaml")} == set(SHIPPED) | GRIDS


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_config_has_the_activation_its_name_says(name):
    kind, noise, mode, std, estimator = SHIPPED[name]
    activation = load_config(CONFIG_DIR / f"{name}.yaml").model.activation
    assert (activation.kind, activation.noise, activation.mode, activation.estimator) == (kind, noise, mode, estimator)
    if std is None:
        assert activation.std is None
    else:
        assert activation.std == pytest.approx(std)
    assert activation.mean is None  # the default: 0 for additive noise


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_config_uses_the_thesis_protocol(name):
    config = load_config(CONFIG_DIR / f"{name}.yaml")
    assert config.model.architecture == "thesis_allconv"
    assert config.model.batch_norm is True
    assert (config.train.batch_size, config.train.lr) == (64, pytest.approx(1e-3))
    assert config.data.train_limit is None and config.data.test_limit is None


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_config_trains_adversarially_only_when_its_name_says(name):
    adversarial = load_config(CONFIG_DIR / f"{name}.yaml").train.adversarial
    method, eps = ADVERSARIAL.get(name, (None, 0.07))
    assert (adversarial.method, adversarial.eps) == (method, pytest.approx(eps))


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_config_adds_input_noise_only_when_its_name_says(name):
    input_noise = load_config(CONFIG_DIR / f"{name}.yaml").model.input_noise
    assert (input_noise is not None) == ("input_noise" in name)
    assert input_noise is None or input_noise.std == 0.25


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_config_learns_its_noise_std_only_when_its_name_says(name):
    learnable_std = load_config(CONFIG_DIR / f"{name}.yaml").model.activation.learnable_std
    assert (learnable_std is not None and learnable_std.granularity) == ("learnable" in name and "layer")


def test_thesis_adversarial_baseline_regenerates_every_20_epochs():
    adversarial = load_config(CONFIG_DIR / "relu_adversarial_fgsm.yaml").train.adversarial
    assert adversarial.regenerate_every == 20


@pytest.mark.parametrize(("raw", "message"), [
    ({"train": {"adversarial": {"method": "trades"}}}, "'fgsm_mixture' or 'pgd'"),
    ({"train": {"adversarial": {"eps": 1.5}}}, "train.adversarial.eps"),
    ({"train": {"adversarial": {"regenerate_every": 0}}}, "train.adversarial.regenerate_every"),
])
def test_invalid_adversarial_training_is_rejected(raw, message):
    assert message in config_error(raw)


@pytest.mark.parametrize(("noise", "expected"), [(None, "classic_ste"), ("logistic", "ste")])
def test_sign_estimator_defaults_to_ste_with_noise_and_classic_ste_without(noise, expected):
    activation = {"kind": "sign", "noise": noise} | ({"std": 0.05} if noise else {})
    assert parse_config({"model": {"activation": activation}}).model.activation.estimator == expected


# --- round trips and the thesis' multiplicative noise ------------------------------------------

ROUND_TRIP_CASES = {name: yaml.safe_load((CONFIG_DIR / f"{name}.yaml").read_text()) for name in sorted(SHIPPED)}
ROUND_TRIP_CASES["multiplicative_mean_0"] = THESIS_MULTIPLICATIVE_RELU
ROUND_TRIP_CASES["limits_and_betas"] = {"train": {"betas": [0.5, 0.9], "seed": 7},
                                        "data": {"train_limit": 100, "test_limit": 10}}


@pytest.mark.parametrize("raw", list(ROUND_TRIP_CASES.values()), ids=list(ROUND_TRIP_CASES))
def test_dumped_config_parses_back_to_an_equal_config(raw):
    config = parse_config(raw)
    assert parse_config(yaml.safe_load(dump_config(config))) == config


def test_dumped_config_writes_every_field_out(tmp_path):
    config = parse_config({})
    text = dump_config(config)
    for field in ("architecture", "input_std", "estimator", "betas", "eval_batch_size", "seed", "test_limit"):
        assert f"{field}:" in text
    (tmp_path / "resolved.yaml").write_text(text)
    assert load_config(tmp_path / "resolved.yaml") == config


def test_relu_with_multiplicative_noise_of_mean_zero_is_expressible():
    config = parse_config(THESIS_MULTIPLICATIVE_RELU)
    activation = config.model.activation
    assert (activation.mode, activation.mean, activation.std) == ("multiplicative", 0.0, pytest.approx(0.1))
    units = [m for m in build_model(config.model).modules() if isinstance(m, StochasticActivation)]
    assert units and all(unit.noise.mean == 0.0 for unit in units)


def test_multiplicative_noise_mean_defaults_to_one_in_the_model():
    raw = {"model": {"activation": {"noise": "gaussian", "mode": "multiplicative", "std": 0.1}}}
    units = [m for m in build_model(parse_config(raw).model).modules() if isinstance(m, StochasticActivation)]
    assert units and all(unit.noise.mean == 1.0 for unit in units)


def test_an_empty_mapping_gives_the_default_config(tmp_path):
    (tmp_path / "defaults.yaml").write_text("# every default\n{}\n")
    assert load_config(tmp_path / "defaults.yaml") == RunConfig()


# --- overrides ---------------------------------------------------------------------------------

def test_override_replaces_only_the_keys_it_names():
    raw = {"train": {"epochs": 10, "lr": 0.01}, "data": {"train_limit": 500}}
    config = parse_config(raw, {"train": {"epochs": 3}})
    assert (config.train.epochs, config.train.lr, config.data.train_limit) == (3, pytest.approx(0.01), 500)


def test_override_does_not_modify_the_callers_mapping():
    raw = {"train": {"epochs": 10}}
    parse_config(raw, {"train": {"epochs": 3}})
    assert raw == {"train": {"epochs": 10}}


def test_load_config_applies_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  epochs: 10\n")
    config = load_config(path, {"train": {"epochs": 1}, "data": {"test_limit": 50}})
    assert (config.train.epochs, config.data.test_limit) == (1, 50)


@pytest.mark.parametrize(("overrides", "key"), [
    ({"train": {"epochs": 0}}, "train.epochs"),
    ({"data": {"train_limit": -5}}, "data.train_limit"),
    ({"train": {"epoch": 3}}, "train.epoch"),
])
def test_overrides_are_validated_like_the_file(overrides, key):
    assert f"config: {key}:" in config_error({"train": {"epochs": 10}}, overrides)


def test_invalid_section_in_the_file_is_rejected_even_when_overridden():
    assert "config: train:" in config_error({"train": 5}, {"train": {"epochs": 3}})


# --- errors ------------------------------------------------------------------------------------

ERROR_CASES = {
    # id: (raw config, dotted key named in the message, fragments the message must contain)
    "unknown_top_level_key": ({"modle": {}}, "modle", ["unknown key", "allowed keys: model, train, data"]),
    "unknown_activation_key": ({"model": {"activation": {"bogus": 1}}}, "model.activation.bogus",
                               ["unknown key", "allowed keys: kind, noise, mode, std, mean, estimator"]),
    "unknown_train_key": ({"train": {"epoch": 3}}, "train.epoch", ["unknown key", "epochs", "batch_size", "seed"]),
    "string_for_int": ({"train": {"epochs": "3"}}, "train.epochs", ["valid integer", "'3'"]),
    "float_for_int": ({"train": {"epochs": 2.5}}, "train.epochs", ["valid integer", "2.5"]),
    "bool_for_int": ({"train": {"batch_size": True}}, "train.batch_size", ["valid integer"]),
    "string_for_bool": ({"model": {"batch_norm": "yes"}}, "model.batch_norm", ["valid boolean"]),
    "string_for_float": ({"train": {"lr": "1e-3"}}, "train.lr", ["valid number", "'1e-3'"]),
    "negative_std": ({"model": {"activation": {"noise": "gaussian", "std": -0.1}}}, "model.activation.std",
                     ["must be > 0", "(got -0.1)"]),
    "unknown_noise": ({"model": {"activation": {"noise": "cauchy", "std": 0.1}}}, "model.activation.noise",
                      ["'gaussian'", "'logistic'", "'uniform'", "'cauchy'"]),
    "unknown_activation": ({"model": {"activation": {"kind": "tanh"}}}, "model.activation.kind",
                           ["'relu'", "'sign'"]),
    "unknown_estimator": ({"model": {"activation": {"kind": "sign", "estimator": "magic"}}},
                          "model.activation.estimator", ["'ste'", "'classic_ste'", "'score'", "'magic'"]),
    "estimator_for_relu": ({"model": {"activation": {"kind": "relu", "noise": "logistic", "std": 0.05,
                                                     "estimator": "ste"}}},
                           "model.activation", ["estimator 'ste'", "relu", "leave estimator unset"]),
    "score_without_noise": ({"model": {"activation": {"kind": "sign", "estimator": "score"}}},
                            "model.activation", ["'score' needs noise"]),
    "sign_multiplicative": ({"model": {"activation": {"kind": "sign", "noise": "logistic", "std": 0.05,
                                                      "mode": "multiplicative"}}},
                            "model.activation", ["degenerate", "does not depend on |a|", "additive"]),
    "std_without_noise": ({"model": {"activation": {"std": 0.05}}}, "model.activation",
                          ["std", "without a noise distribution", "gaussian, logistic, uniform"]),
    "noise_without_std": ({"model": {"activation": {"noise": "gaussian"}}}, "model.activation",
                          ["std must be > 0"]),
    "beta_of_one": ({"train": {"betas": [0.9, 1.0]}}, "train.betas", ["Adam betas", "[0, 1)"]),
    "negative_beta": ({"train": {"betas": [-0.1, 0.999]}}, "train.betas", ["Adam betas", "[0, 1)"]),
    "one_beta": ({"train": {"betas": [0.9]}}, "train.betas.1", ["Field required"]),
    "zero_epochs": ({"train": {"epochs": 0}}, "train.epochs", ["must be >= 1", "(got 0)"]),
    "zero_train_limit": ({"data": {"train_limit": 0}}, "data.train_limit", ["must be >= 1"]),
    "decay_of_one": ({"train": {"score_baseline_decay": 1.0}}, "train.score_baseline_decay", ["must be >= 0 and < 1"]),
    "epochs_as_text": ({"train": {"epochs": "ten"}}, "train.epochs", ["valid integer", "(got 'ten')"]),
    "std_as_list": ({"model": {"activation": {"noise": "gaussian", "std": [1]}}}, "model.activation.std",
                    ["valid number", "(got [1])"]),
    "section_as_list": ({"model": [1, 2]}, "model", ["valid dictionary", "(got [1, 2])"]),
    "non_text_key": ({"train": {1: 2}}, "train.1", ["Keys should be strings"]),
    "key_with_a_line_break": ({"mod\nel": {}}, "'mod\\nel'", ["unknown key", "allowed keys: model, train, data"]),
    "section_not_a_mapping": ({"train": None}, "train", ["valid dictionary"]),
}


@pytest.mark.parametrize(("raw", "key", "fragments"), list(ERROR_CASES.values()), ids=list(ERROR_CASES))
def test_invalid_config_raises_one_line_error_naming_the_key(raw, key, fragments):
    message = config_error(raw)
    assert message.startswith(f"config: {key}: "), message
    for fragment in fragments:
        assert fragment in message


def test_every_offending_key_is_named_in_the_one_line():
    message = config_error({"train": {"epochs": 0, "lr": -1.0}, "data": {"bogus": 1}})
    for key in ("train.epochs", "train.lr", "data.bogus"):
        assert f"{key}:" in message


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


@pytest.mark.parametrize(("raw", "key"), [
    ({"train": {"lr": math.inf}}, "train.lr"),
    ({"model": {"input_mean": math.nan}}, "model.input_mean"),
    ({"model": {"activation": {"noise": "gaussian", "std": math.inf}}}, "model.activation.std"),
])
def test_non_finite_numbers_are_rejected(raw, key):
    assert f"config: {key}:" in config_error(raw)


# --- file errors -------------------------------------------------------------------------------

def test_yaml_syntax_error_says_where_it_is(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model: [unclosed\n  kind: relu\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == (f"{path}: not valid YAML (expected ',' or ']', but got ':' at line 2, column 7); "
                                 "fix the config file")


def test_missing_config_file_raises_config_error_naming_the_path(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="config file not found") as caught:
        load_config(path)
    assert str(caught.value) == f"{path}: config file not found; check the path"


EMPTY = "the config file holds no settings (it is empty or null); write its settings, or {} for every default"
NOT_YAML = "not valid YAML ("

FILE_ERROR_CASES = {
    # id: (file contents, what the message says after "PATH: ")
    "empty": (b"", EMPTY),
    "only_comments": (b"# nothing here\n\n", EMPTY),
    "null_document": (b"~\n", EMPTY),
    "unclosed_bracket": (b"train: {epochs: 3\n", NOT_YAML),
    "bad_indentation": (b"train:\n  epochs: 3\n lr: 0.1\n", NOT_YAML),
    "tab_indentation": (b"train:\n\tepochs: 3\n", NOT_YAML),
    "undefined_alias": (b"train: *missing\n", NOT_YAML),
    "python_tag": (b"train: !!python/object:os.system {}\n", NOT_YAML),
    "nul_character": (b"train: {}\x00\n", NOT_YAML),
    "empty_int_tag": (b"train: {epochs: !!int ''}\n", NOT_YAML),  # IndexError inside PyYAML
    "bad_bool_tag": (b"model: {batch_norm: !!bool maybe}\n", NOT_YAML),  # KeyError inside PyYAML
    "bad_timestamp_tag": (b"train: {seed: !!timestamp soon}\n", NOT_YAML),  # AttributeError inside PyYAML
    "impossible_date": (b"train: {seed: 2001-02-30}\n", NOT_YAML),  # ValueError inside PyYAML
    "huge_integer": (b"train: {epochs: " + b"9" * 5000 + b"}\n", NOT_YAML),  # over Python's 4300 digits
    "deep_nesting": (b"[" * 5000, NOT_YAML),  # RecursionError inside PyYAML
    "binary": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", "not a text file (byte 0 is not UTF-8)"),
    "latin1_text": ("train: {epochs: 3}  # réglé\n".encode("latin-1"), "not a text file (byte 23 is not UTF-8)"),
    "top_level_list": (b"- model\n- train\n", "expected a mapping with sections model, train, data; got list"),
    "top_level_number": (b"3\n", "expected a mapping with sections model, train, data; got int"),
    "top_level_string": (b"just a string\n", "expected a mapping with sections model, train, data; got str"),
    "unknown_key": (b"train: {epochz: 3}\n", "train.epochz: unknown key; allowed keys: epochs,"),
    "epochs_as_text": (b"train: {epochs: ten}\n", "train.epochs: Input should be a valid integer (got 'ten')"),
    "negative_eps": (b"train: {adversarial: {eps: -0.1}}\n", "train.adversarial.eps: must be >= 0 and <= 1"),
}


@pytest.mark.parametrize(("contents", "expected"), list(FILE_ERROR_CASES.values()), ids=list(FILE_ERROR_CASES))
def test_bad_config_file_is_a_one_line_config_error_naming_the_file(tmp_path, contents, expected):
    path = tmp_path / "bad.yaml"
    path.write_bytes(contents)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert len(message.splitlines()) == 1, message
    assert message.startswith(f"{path}: {expected}"), message


def test_a_directory_given_as_config_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    assert str(caught.value) == (f"{tmp_path}: cannot read the config file (Is a directory); "
                                 "check the path and its permissions")


# --- ranges: the message names the field and its allowed range ----------------------------------

RANGES = {
    # dotted key: (allowed range as the message writes it, values at its edges, values outside it)
    "train.adversarial.eps": (">= 0 and <= 1", [0, 1], [-0.01, -1, 1.01, 255]),  # pixel units
    "model.activation.std": ("> 0", [1e-9], [0, 0.0, -0.05]),
    "model.input_std": ("> 0", [1e-9], [0, -1.0]),
    "train.epochs": (">= 1", [1], [0, -3]),
    "train.batch_size": (">= 1", [1], [0, -64]),
    "train.eval_batch_size": (">= 1", [1], [0]),
    "train.lr": ("> 0", [1e-12], [0, 0.0, -1e-3]),
    "train.train_samples": (">= 1", [1], [0]),
    "train.eval_samples": (">= 1 and <= 1024", [1, 1024], [0, 1025, 100_000]),  # more would hang evaluation
    "train.score_baseline_decay": (">= 0 and < 1", [0, 0.999], [-0.1, 1, 1.5]),  # a fraction
    "train.seed": (">= 0 and <= 4294967295", [0, 2**32 - 1], [-1, 2**32, 2**70]),  # what torch and numpy take
    "train.adversarial.regenerate_every": (">= 1", [1], [0]),
    "train.adversarial.pgd_steps": (">= 1", [1], [0]),
    "train.adversarial.pgd_step_size": ("> 0", [1e-9], [0, -0.01]),
    "data.train_limit": (">= 1", [1], [0, -5]),
    "data.test_limit": (">= 1", [1], [0]),
}
NOISY = {"model": {"activation": {"noise": "gaussian", "std": 0.1}}}  # so that a std is not refused as unused


def _nested_value(dotted: str, value) -> dict:
    *sections, field = dotted.split(".")
    raw = {field: value}
    for section in reversed(sections):
        raw = {section: raw}
    return raw


@pytest.mark.parametrize(("key", "allowed", "value"),
                         [(key, allowed, value) for key, (allowed, _, bad) in RANGES.items() for value in bad],
                         ids=[f"{key}={value}" for key, (_, _, bad) in RANGES.items() for value in bad])
def test_out_of_range_value_names_the_field_and_its_allowed_range(key, allowed, value):
    assert config_error(NOISY, _nested_value(key, value)) == f"config: {key}: must be {allowed} (got {value!r})"


@pytest.mark.parametrize(("key", "value"), [(key, value) for key, (_, edges, _) in RANGES.items() for value in edges],
                         ids=[f"{key}={value}" for key, (_, edges, _) in RANGES.items() for value in edges])
def test_values_at_the_edges_of_the_allowed_range_are_accepted(key, value):
    field = parse_config(NOISY, _nested_value(key, value))
    for part in key.split("."):
        field = getattr(field, part)
    assert field == value


# --- fuzzing: whatever the input, a RunConfig or one ConfigError line ---------------------------

FIELD_NAMES = ["model", "train", "data", "activation", "adversarial", "kind", "noise", "mode", "std", "mean",
               "estimator", "architecture", "batch_norm", "input_mean", "input_std", "epochs", "batch_size", "lr",
               "betas", "train_samples", "eval_samples", "score_baseline_decay", "eval_batch_size", "seed", "method",
               "eps", "regenerate_every", "pgd_steps", "pgd_step_size", "train_limit", "test_limit"]
CHOICES = ["relu", "sign", "gaussian", "logistic", "uniform", "additive", "multiplicative", "ste", "classic_ste",
           "score", "fgsm_mixture", "pgd", "thesis_allconv"]
KEYS = st.sampled_from(FIELD_NAMES) | st.text(max_size=8)
SCALARS = (st.none() | st.booleans() | st.integers() | st.integers(-3, 3) | st.floats() | st.floats(0, 1)
           | st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -0.0, 2**64]) | st.sampled_from(CHOICES)
           | st.text(max_size=10))
JSON_LIKE = st.recursive(SCALARS, lambda children: st.lists(children, max_size=4)
                         | st.dictionaries(KEYS, children, max_size=6), max_leaves=30)
SECTIONS = st.fixed_dictionaries({}, optional={
    "model": st.fixed_dictionaries({}, optional={"activation": st.dictionaries(KEYS, JSON_LIKE, max_size=4),
                                                 "batch_norm": JSON_LIKE, "input_std": JSON_LIKE}),
    "train": st.dictionaries(KEYS, JSON_LIKE, max_size=5),
    "data": st.dictionaries(KEYS, JSON_LIKE, max_size=3),
})
"""Mostly well-formed sections with arbitrary values: reaches the field validators, not only the key check."""

FUZZ = settings(max_examples=200, deadline=None)


def assert_config_or_one_line_error(load) -> None:
    """``load()`` returns a RunConfig that survives a YAML round trip, or raises a one-line ConfigError."""
    try:
        config = load()
    except ConfigError as error:
        assert len(str(error).splitlines()) == 1, str(error)
        return
    assert isinstance(config, RunConfig)
    assert parse_config(yaml.safe_load(dump_config(config))) == config


@FUZZ
@given(raw=JSON_LIKE | SECTIONS)
def test_parse_config_on_any_value_gives_a_config_or_a_config_error(raw):
    assert_config_or_one_line_error(lambda: parse_config(raw))


YAML_PIECES = st.sampled_from(["model:", "train:", "data:", "activation:", " epochs: ", " std: ", "\n", "  ", "- ",
                               "[", "]", "{", "}", ", ", ": ", "!!int ", "!!float ", "!!bool ", "!!timestamp ",
                               "!!binary ", "!!set ", "!!omap ", "!!str ", "&a ", "*a", "? ", "'", '"', "# ", "~",
                               "null", ".inf", ".nan", "1e400", "0x", "0o9", "2001-02-30", "relu", "gaussian",
                               "0.05", "-1", "10", "%YAML 1.1\n---\n", "---\n", "...\n", "<<: "])
YAML_LIKE = st.lists(YAML_PIECES | st.text(max_size=3), max_size=40).map("".join)


@pytest.fixture(scope="module")
def fuzz_file(tmp_path_factory) -> Path:
    """One file that every fuzzing example overwrites (hypothesis runs many examples per test call)."""
    return tmp_path_factory.mktemp("fuzz") / "config.yaml"


@FUZZ
@given(text=st.text() | YAML_LIKE | JSON_LIKE.map(yaml.safe_dump) | SECTIONS.map(yaml.safe_dump))
def test_load_config_on_any_text_gives_a_config_or_a_config_error(fuzz_file, text):
    fuzz_file.write_text(text, encoding="utf-8")
    assert_config_or_one_line_error(lambda: load_config(fuzz_file))


@FUZZ
@given(contents=st.binary())
def test_load_config_on_any_bytes_gives_a_config_or_a_config_error(fuzz_file, contents):
    fuzz_file.write_bytes(contents)
    assert_config_or_one_line_error(lambda: load_config(fuzz_file))


def test_the_yaml_loader_stays_safe(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("train: !!python/object/apply:os.system ['echo owned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_exponents_without_a_dot_read_as_numbers_as_in_yaml_1_2(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("train: {lr: 1e-3, epochs: 2}\nmodel: {activation: {noise: gaussian, std: 5E-2}}\n")
    config = load_config(path)
    assert (config.train.lr, config.model.activation.std) == (0.001, 0.05)


def test_an_override_does_not_hide_an_invalid_value_of_the_file(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("train: {epochs: 2.5}\n")
    with pytest.raises(ConfigError, match=r"train.epochs"):
        load_config(path, {"train": {"epochs": 1}})
