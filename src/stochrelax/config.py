"""Run configuration: YAML files validated by a strict schema before any work starts.

A config has three sections, ``model``, ``train`` and ``data``; every field has a
default, so a YAML file only states what differs. An unknown key, a wrong type or an
out-of-range value raises :class:`ConfigError` with one line that names the key and
the allowed values. The *resolved* config (every field filled in) is what a run
directory stores, so any run can be repeated from it alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from stochrelax.estimators import ESTIMATORS
from stochrelax.layers import ACTIVATIONS, MODES, check_activation_args
from stochrelax.models import ARCHITECTURES
from stochrelax.noise import NOISES

__all__ = ["ConfigError", "ActivationConfig", "ModelConfig", "AdversarialConfig", "TrainConfig", "DataConfig",
           "RunConfig",
           "load_config", "parse_config", "dump_config", "merge_mappings", "read_yaml"]


class ConfigError(ValueError):
    """A config that cannot be used; the message is one line naming the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class ActivationConfig(_Section):
    """The unit used after every non-pooling convolution (thesis 4.1)."""

    kind: Literal[tuple(ACTIVATIONS)] = "relu"  # "relu" or "sign" (±1)
    noise: Optional[Literal[tuple(NOISES)]] = None  # None: deterministic units
    mode: Literal[tuple(MODES)] = "additive"  # f(a − ξ) or f(a · ξ)
    std: Optional[float] = Field(default=None, gt=0)  # standard deviation of ξ
    mean: Optional[float] = None  # mean of ξ; None: 0 for additive, 1 for multiplicative
    estimator: Optional[Literal[tuple(ESTIMATORS)]] = None  # sign only; None: "ste" with noise, else "classic_ste"

    @model_validator(mode="after")
    def _consistent(self) -> "ActivationConfig":
        self.estimator = check_activation_args(self.kind, self.noise, self.mode, self.std, self.mean, self.estimator)
        return self


class ModelConfig(_Section):
    """Network architecture (thesis Fig. 5.2) and input normalisation."""

    architecture: Literal[tuple(ARCHITECTURES)] = "thesis_allconv"  # preset list of convolutions
    batch_norm: bool = True  # BatchNorm2d between each convolution and its activation
    input_mean: float = 0.5  # normalisation, the model's first layer (thesis: 0.5; data: 0.2860)
    input_std: float = Field(default=0.5, gt=0)  # (thesis: 0.5; data: 0.3530)
    activation: ActivationConfig = ActivationConfig()


class AdversarialConfig(_Section):
    """Adversarial training (thesis 5.3 baseline, or Madry et al.'s PGD training); none by default."""

    method: Optional[Literal["fgsm_mixture", "pgd"]] = None  # None: clean training
    eps: float = Field(default=0.07, ge=0, le=1)  # L∞ budget in pixels (thesis: FGSM, 0.07)
    regenerate_every: int = Field(default=20, ge=1)  # fgsm_mixture: epochs between rebuilding the FGSM set
    pgd_steps: int = Field(default=10, ge=1)  # pgd: attack iterations per batch
    pgd_step_size: Optional[float] = Field(default=None, gt=0)  # pgd: None means 2.5·eps/steps


class TrainConfig(_Section):
    """Optimisation protocol (thesis 5.2: Adam, 100 epochs, batch 64)."""

    epochs: int = Field(default=10, ge=1)
    batch_size: int = Field(default=64, ge=1)
    lr: float = Field(default=1e-3, gt=0)  # Adam learning rate
    betas: tuple[float, float] = Field(default=(0.9, 0.999), strict=False)  # Adam moving-average factors
    train_samples: int = Field(default=1, ge=1)  # K noise draws in the predictive NLL (thesis: 1)
    eval_samples: int = Field(default=1, ge=1)  # softmax samples averaged at test time (thesis: 1)
    score_baseline_decay: float = Field(default=0.9, ge=0, lt=1)  # EMA baseline of the score estimator
    eval_batch_size: int = Field(default=1000, ge=1)
    seed: int = Field(default=0, ge=0)
    adversarial: AdversarialConfig = AdversarialConfig()

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, betas: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= beta < 1.0 for beta in betas):
            raise ValueError(f"Adam betas must lie in [0, 1), got {list(betas)}")
        return betas


class DataConfig(_Section):
    """Which part of Fashion-MNIST to use (limits take the first N examples)."""

    train_limit: Optional[int] = Field(default=None, ge=1)  # None: all 60,000
    test_limit: Optional[int] = Field(default=None, ge=1)  # None: all 10,000


class RunConfig(_Section):
    """Everything that defines one training run."""

    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    data: DataConfig = DataConfig()


def merge_mappings(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Nested overrides on top of ``base``; a non-mapping where ``base`` has a section stays, to fail validation."""
    merged = dict(base)
    for key, value in overrides.items():
        if not isinstance(value, dict):
            merged[key] = value
        elif isinstance(merged.get(key, {}), dict):
            merged[key] = merge_mappings(merged.get(key, {}), value)
    return merged


def _section_at(location: tuple) -> type[BaseModel] | None:
    section: Any = RunConfig
    for key in location:
        field = section.model_fields.get(key) if isinstance(key, str) else None
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return None
        section = field.annotation
    return section


def _describe(error: dict) -> str:
    location = tuple(error["loc"])
    key = ".".join(map(str, location)) or "(top level)"
    if error["type"] == "extra_forbidden":
        section = _section_at(location[:-1])
        allowed = f"; allowed keys: {', '.join(section.model_fields)}" if section else ""
        return f"{key}: unknown key{allowed}"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] != "value_error" and "input" in error and not isinstance(error["input"], dict):
        message += f" (got {error['input']!r})"
    return f"{key}: {message}"


def parse_config(raw: Any, overrides: dict[str, Any] | None = None, source: str = "config") -> RunConfig:
    """Validates a config mapping (e.g. parsed YAML) with optional nested overrides.

    Raises:
        ConfigError: naming every offending key in one line.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping with sections model, train, data; got {type(raw).__name__}")
    try:
        return RunConfig.model_validate(merge_mappings(raw, overrides or {}))
    except ValidationError as error:
        raise ConfigError(f"{source}: " + "; ".join(_describe(e) for e in error.errors())) from None


def read_yaml(path: str | Path, kind: str = "config") -> Any:
    """The parsed contents of a YAML file (safe loader).

    Raises:
        ConfigError: if the file is missing or is not valid YAML; ``kind`` names it in the message.
    """
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: {kind} file not found") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(error).split())})") from None


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Reads and validates a YAML config file.

    Raises:
        ConfigError: if the file is missing, is not valid YAML, or fails validation.
    """
    return parse_config(read_yaml(path), overrides, source=str(path))


def dump_config(config: RunConfig) -> str:
    """The resolved config as YAML, every field written out."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
