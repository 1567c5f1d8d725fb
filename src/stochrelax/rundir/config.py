"""Run configuration: YAML files validated by a strict schema before any work starts.

A config has three sections, ``model`` (:class:`~stochrelax.models.allconv.ModelConfig`, kept beside
the model it describes), ``train`` and ``data``; every field has a
default, so a YAML file only states what differs (``{}`` for every default; an empty
file is refused, as it is more likely a truncated or wrong file than a wish for the
defaults). An unknown key, a wrong type or an out-of-range value raises
:class:`ConfigError` with one line that names the key and the allowed values, as does
a file that is missing, unreadable, not UTF-8 text or not YAML. The *resolved* config
(every field filled in) is what a run directory stores, so any run can be repeated
from it alone.
"""

from __future__ import annotations

import re
import reprlib
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic.fields import FieldInfo

from stochrelax.models.allconv import ActivationConfig, ConfigSection, ModelConfig

__all__ = ["ConfigError", "ActivationConfig", "ModelConfig", "AdversarialConfig", "TrainConfig", "DataConfig",
           "RunConfig",  # the model's own sections live with the model (stochrelax.models.allconv), re-exported here
           "load_config", "parse_config", "dump_config", "merge_mappings", "expand_dotted_keys", "read_yaml",
           "validation_message",
           "check_keys"]


class ConfigError(ValueError):
    """A config that cannot be used; the message is one line naming the key."""


class AdversarialConfig(ConfigSection):
    """Adversarial training (thesis 5.3 baseline, or Madry et al.'s PGD training); none by default."""

    method: Optional[Literal["fgsm_mixture", "pgd"]] = None  # None: clean training
    eps: float = Field(default=0.07, ge=0, le=1)  # L∞ budget in pixels (thesis: FGSM, 0.07)
    regenerate_every: int = Field(default=20, ge=1)  # fgsm_mixture: epochs between rebuilding the FGSM set
    pgd_steps: int = Field(default=10, ge=1)  # pgd: attack iterations per batch
    pgd_step_size: Optional[float] = Field(default=None, gt=0)  # pgd: None means 2.5·eps/steps


class TrainConfig(ConfigSection):
    """Optimisation protocol (thesis 5.2: Adam, 100 epochs, batch 64)."""

    epochs: int = Field(default=10, ge=1)
    batch_size: int = Field(default=64, ge=1)
    lr: float = Field(default=1e-3, gt=0)  # Adam learning rate
    betas: tuple[float, float] = Field(default=(0.9, 0.999), strict=False)  # Adam moving-average factors
    train_samples: int = Field(default=1, ge=1)  # K noise draws in the predictive NLL (thesis: 1)
    eval_samples: int = Field(default=1, ge=1, le=1024)  # softmax samples averaged at test time (thesis: 1)
    score_baseline_decay: float = Field(default=0.9, ge=0, lt=1)  # EMA baseline of the score estimator
    eval_batch_size: int = Field(default=256, ge=1)  # test images per pass: ≤ 256 rows stay in the CPU caches (1.8×)
    seed: int = Field(default=0, ge=0, le=2**32 - 1)  # torch and numpy both take it
    precision: Literal["float32", "bfloat16"] = "float32"  # of the convolutions (models.PRECISIONS)
    adversarial: AdversarialConfig = AdversarialConfig()

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, betas: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= beta < 1.0 for beta in betas):
            raise ValueError(f"Adam betas must lie in [0, 1), got {list(betas)}")
        return betas


class DataConfig(ConfigSection):
    """Which part of Fashion-MNIST to use (limits take the first N examples)."""

    train_limit: Optional[int] = Field(default=None, ge=1)  # None: all 60,000
    test_limit: Optional[int] = Field(default=None, ge=1)  # None: all 10,000


class RunConfig(ConfigSection):
    """Everything that defines one training run."""

    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    data: DataConfig = DataConfig()


def check_keys(mapping: Any, allowed: tuple[str, ...], where: str,
               error: type[ConfigError] = ConfigError) -> dict:
    """``mapping`` (``{}`` for None) if it is a mapping of ``allowed`` keys only: the one unknown-key check of
    the files a user writes (grids, claims), besides the schemas.

    Raises:
        ``error``: one line naming ``where``, the unknown keys and the allowed ones.
    """
    if mapping is None:
        return {}
    if not isinstance(mapping, dict):
        raise error(f"{where}: expected a mapping with keys {', '.join(allowed)}")
    unknown = [key for key in mapping if key not in allowed]
    if unknown:
        raise error(f"{where}: unknown key(s) {', '.join(map(str, unknown))}; allowed keys: {', '.join(allowed)}")
    return mapping


def merge_mappings(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Nested overrides on top of ``base``; a non-mapping where ``base`` has a section stays, to fail validation."""
    merged = dict(base)
    for key, value in overrides.items():
        if not isinstance(value, dict):
            merged[key] = value
        elif isinstance(merged.get(key, {}), dict):
            merged[key] = merge_mappings(merged.get(key, {}), value)
    return merged


def expand_dotted_keys(dotted: dict[str, Any], enclosing: frozenset[int] = frozenset()) -> dict[str, Any]:
    """Dotted keys as nested sections: ``{"a.b": 1, "a": {"c": 2}}`` → ``{"a": {"b": 1, "c": 2}}``.

    A grid writes overrides either way (``model.activation.kind: relu``); :func:`merge_mappings`
    then lays them over a base. ``enclosing``: ids of the mappings around ``dotted``, to refuse
    one that contains itself (a YAML alias to an enclosing mapping).

    Raises:
        ConfigError: for a mapping that contains itself, or a dotted key below a plain value.
    """
    if id(dotted) in enclosing:
        raise ConfigError("a mapping contains itself (a YAML alias to a mapping around it); write the settings out")
    nested: dict[str, Any] = {}
    for key, value in dotted.items():
        *parents, leaf = str(key).split(".")
        node = nested
        for parent in parents:
            node = node.setdefault(parent, {})
            if not isinstance(node, dict):
                raise ConfigError(f"key {key!r} goes below {parent!r}, which is not a section")
        node[leaf] = expand_dotted_keys(value, enclosing | {id(dotted)}) if isinstance(value, dict) else value
    return nested


def _section_at(location: tuple, root: type[BaseModel]) -> type[BaseModel] | None:
    section: Any = root
    for key in location:
        field = section.model_fields.get(key) if isinstance(key, str) else None
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return None
        section = field.annotation
    return section


_SHOWN = reprlib.Repr()
_SHOWN.maxstring = _SHOWN.maxother = 60
"""Short reprs of offending values and keys: a huge or deeply nested value stays a short line."""


def _shown(value: Any) -> str:
    """``value`` as it appears in a message: a short repr with every control character escaped."""
    return _SHOWN.repr(value)


def _key_text(key: Any) -> str:
    """A key as it appears in a dotted location: plain when printable and short, else quoted and escaped."""
    text = str(key)
    return text if text.isprintable() and len(text) <= _SHOWN.maxstring else _shown(text)


_RANGE_ERRORS = frozenset({"greater_than", "greater_than_equal", "less_than", "less_than_equal"})
"""Pydantic error types of a number outside its field's bounds."""

_COMPARISONS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
"""Bound attribute of an ``annotated_types`` constraint -> how the message writes it."""


def _allowed_range(field: FieldInfo) -> str:
    """The bounds of a numeric field, e.g. ``>= 0 and <= 1``."""
    return " and ".join(f"{symbol} {getattr(constraint, bound)}" for constraint in field.metadata
                        for bound, symbol in _COMPARISONS.items() if hasattr(constraint, bound))


def _describe(error: dict, root: type[BaseModel]) -> str:
    location = tuple(error["loc"])
    key = ".".join(map(_key_text, location))
    section = _section_at(location[:-1], root)
    if error["type"] == "extra_forbidden":
        allowed = f"; allowed keys: {', '.join(section.model_fields)}" if section else ""
        return f"{key}: unknown key{allowed}"
    if error["type"] in _RANGE_ERRORS and section is not None and location[-1] in section.model_fields:
        return f"{key}: must be {_allowed_range(section.model_fields[location[-1]])} (got {_shown(error['input'])})"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] != "value_error" and "input" in error and not isinstance(error["input"], dict):
        message += f" (got {_shown(error['input'])})"
    return f"{key}: {message}" if key else message  # a check of the whole section names no key


def validation_message(error: ValidationError, root: type[BaseModel]) -> str:
    """A pydantic error of a ``root`` model in one line: each problem as ``key: what is wrong``, joined by ``; ``.

    The one formatter of configs, grids and claims: unknown keys list the allowed ones, ranges
    are spelled out, and every offending value is shown short.
    """
    return "; ".join(_describe(detail, root) for detail in error.errors())


def parse_config(raw: Any, overrides: dict[str, Any] | None = None, source: str = "config") -> RunConfig:
    """Validates a config mapping (e.g. parsed YAML) with optional nested overrides.

    Raises:
        ConfigError: naming every offending key in one line, or saying that ``raw`` is not a mapping.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping with sections model, train, data; got {type(raw).__name__}")
    try:
        return RunConfig.model_validate(merge_mappings(raw, overrides or {}))
    except ValidationError as error:
        raise ConfigError(f"{source}: {validation_message(error, RunConfig)}") from None


class _Loader(yaml.SafeLoader):
    """YAML's safe loader, reading ``1e-3`` as a number as YAML 1.2 does (YAML 1.1, which PyYAML
    implements, wants a dot in the mantissa and reads ``1e-3`` as a string)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                  |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                  |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                  |[-+]?\.(?:inf|Inf|INF)
                  |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))

_YAML_FAILURES = (yaml.YAMLError, ValueError, LookupError, AttributeError, RecursionError)
"""What ``yaml.safe_load`` raises on bad text: besides ``YAMLError``, its constructors raise plain
``ValueError`` (``!!int x``, ``2001-02-30``, an integer of over 4300 digits), ``IndexError``
(``!!int ''``), ``KeyError`` (``!!bool x``) and ``AttributeError`` (``!!timestamp x``), and deep
nesting raises ``RecursionError``."""


def _yaml_problem(error: Exception) -> str:
    """What is wrong with a YAML text, in one line: e.g. ``expected ',' or ']', but got ':' at line 2, column 7``."""
    if isinstance(error, yaml.MarkedYAMLError) and error.problem and error.problem_mark:
        text = f"{error.problem} at line {error.problem_mark.line + 1}, column {error.problem_mark.column + 1}"
    else:
        text = str(error) or type(error).__name__
    return " ".join(text.split())


def read_yaml(path: str | Path, kind: str = "config") -> Any:
    """The parsed contents of a YAML file (safe loader).

    Raises:
        ConfigError: if the file is missing or unreadable, is not UTF-8 text or is not valid
            YAML; ``kind`` names it in the message. An empty file (or only comments) is ``None``.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: {kind} file not found; check the path") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the {kind} file ({error.strerror}); "
                          "check the path and its permissions") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not a text file (byte {error.start} is not UTF-8); "
                          f"give a YAML {kind} file") from None
    try:
        loader = _Loader(text)  # what yaml.safe_load does, with the loader above
        try:
            document = loader.get_single_data()
        finally:
            loader.dispose()
    except _YAML_FAILURES as error:
        raise ConfigError(f"{path}: not valid YAML ({_yaml_problem(error)}); fix the {kind} file") from None
    return document


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Reads and validates a YAML config file.

    Raises:
        ConfigError: if the file is missing, unreadable, not UTF-8 text, not valid YAML,
            empty, or fails validation.
    """
    document = read_yaml(path)
    if document is None:
        raise ConfigError(f"{path}: the config file holds no settings (it is empty or null); "
                          "write its settings, or {} for every default")
    if overrides:
        parse_config(document, source=str(path))  # the file alone first: an override must not hide a bad value
    return parse_config(document, overrides, source=str(path))


def dump_config(config: RunConfig) -> str:
    """The resolved config as YAML, every field written out."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
