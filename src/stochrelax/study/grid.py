"""Experiment grids: a base config plus groups of axes to cross, expanded into named runs.

A grid file is YAML with two keys::

    base:                      # a run config (model / train / data), shared by every run
      train: {epochs: 100, batch_size: 64, lr: 0.001}
    groups:
      relu_noisy:              # group name: the prefix of its runs' names
        set:                   # overrides of the base for this group (nested or dotted keys)
          model.activation.kind: relu
        axes:                  # every combination of these values is one run
          model.activation.noise: [gaussian, logistic]
          model.activation.std: [0.05, 0.1]

expands into the runs ``relu_noisy-gaussian-0.05``, ``relu_noisy-gaussian-0.1``,
``relu_noisy-logistic-0.05`` and ``relu_noisy-logistic-0.1``, each a fully validated
:class:`~stochrelax.rundir.config.RunConfig`; a run can be repeated alone from its resolved
config. A group without axes is one run named after the group; a true/false axis
appears as its key's last part or ``no_`` before it (``batch_norm``, ``no_batch_norm``).
A run name is a directory name below the study directory, so group names and axis
values may hold only letters, digits and ``. _ - = +`` (not starting with ``.``): a
grid cannot make a sweep write anywhere else.

A :class:`Preset` scales a grid's epochs, data and attack budgets (:data:`PRESETS`);
:mod:`stochrelax.study.sweep` runs a grid with a preset.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stochrelax.evaluation.certification import CertifySettings
from stochrelax.evaluation.table import DEFAULT_BUDGETS, THESIS_ATTACKS, WORST_CASE, AttackSettings
from stochrelax.rundir.config import (ConfigError, RunConfig, check_keys, expand_dotted_keys, merge_mappings,
                                      parse_config, read_yaml)

__all__ = ["PlannedRun", "expand_grid", "load_grid", "Preset", "PRESETS", "STUDY_GRID", "RUN_NAME_RULE"]

STUDY_GRID = Path(__file__).resolve().parents[1] / "configs" / "thesis_study.yaml"
"""The thesis study's grid, shipped with the package."""

GRID_KEYS = ("base", "groups")
GROUP_KEYS = ("set", "axes")


@dataclass(frozen=True)
class PlannedRun:
    """One run of a grid: its name (a directory name) and its resolved config."""

    name: str
    config: RunConfig


_NAME_LENGTH = 200
"""Longest run name: with ``-seedN`` it stays below the 255 bytes of a file name."""

_SAFE_NAME = re.compile(rf"[A-Za-z0-9_=+-][A-Za-z0-9._=+-]{{0,{_NAME_LENGTH - 1}}}")
"""A part of a run name, and a run name: no path separator, no ``..``, nothing hidden."""

RUN_NAME_RULE = (f"use 1 to {_NAME_LENGTH} letters, digits, '.', '_', '-', '=' or '+', "
                   "not starting with '.'")


def _safe_name(name: str, what: str) -> str:
    """``name`` if it can be (part of) a directory name inside the study directory.

    Raises:
        ConfigError: naming ``what`` (e.g. ``group '../x'``) and the allowed characters.
    """
    if not _SAFE_NAME.fullmatch(name):
        raise ConfigError(f"{what} cannot be used in a run directory's name; {RUN_NAME_RULE}")
    return name


def _label(key: str, value: Any) -> str:
    """How an axis value appears in a run name: the value, or the key's last part for a flag."""
    leaf = str(key).rsplit(".", 1)[-1]
    if isinstance(value, bool):
        return leaf if value else f"no_{leaf}"
    return "none" if value is None else str(value)


def expand_grid(grid: Any, source: str = "grid") -> list[PlannedRun]:
    """Expands a grid mapping (see the module docstring) into validated, uniquely named runs.

    Raises:
        ConfigError: for a malformed grid, an axis without values, a group name or axis
            value that is not a safe directory name, a duplicate run name, or a run whose
            config is invalid (the message names the run).
    """
    grid = check_keys(grid, GRID_KEYS, source)
    base = expand_dotted_keys(grid.get("base") or {})
    parse_config(base, source=f"{source}: base")
    groups = grid.get("groups")
    if not isinstance(groups, dict) or not groups:
        raise ConfigError(f"{source}: 'groups' must map group names to their settings")
    runs: dict[str, PlannedRun] = {}
    for group, spec in groups.items():
        prefix = _safe_name(str(group), f"{source}: group {str(group)!r}")
        where = f"{source}: group {prefix}"
        spec = check_keys(spec, GROUP_KEYS, where)
        axes = spec.get("axes") or {}
        if not isinstance(axes, dict) or any(not isinstance(values, list) or not values for values in axes.values()):
            raise ConfigError(f"{where}: every axis must be a non-empty list of values")
        group_base = merge_mappings(base, expand_dotted_keys(spec.get("set") or {}))
        labels = [[_safe_name(_label(key, value), f"{where}: axis {key!r} value {value!r}") for value in axis_values]
                  for key, axis_values in axes.items()]
        for values, parts in zip(itertools.product(*axes.values()), itertools.product(*labels)):
            name = "-".join([prefix, *parts])
            _safe_name(name, f"{where}: run {name!r}")  # its parts are safe: only its length can be wrong
            if name in runs:
                raise ConfigError(f"{source}: run name {name!r} occurs twice; rename a group")
            config = parse_config(group_base, expand_dotted_keys(dict(zip(axes, values))),
                                  source=f"{source}: run {name}")
            runs[name] = PlannedRun(name, config)
    return list(runs.values())


def load_grid(path: str | Path) -> list[PlannedRun]:
    """Reads a grid YAML file and expands it (see :func:`expand_grid`)."""
    return expand_grid(read_yaml(path, kind="grid"), source=str(path))


# --- presets ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Preset:
    """How much of the protocol a sweep runs: epochs and data of training, and how runs are attacked."""

    epochs: int | None  # training epochs (None: the grid's own, the thesis' 100)
    train_limit: int | None  # first N training images (None: all 60,000)
    test_limit: int | None  # first N test images for the per-epoch evaluation (None: all 10,000)
    attack_limit: int  # first N test images attacked
    attack: AttackSettings  # attacks, budgets, draws, steps and proxies (the seed is the run's)
    converged: bool = False  # trains long enough to judge claims about absolute accuracy (stochrelax.analysis.claims)
    pipeline_check: bool = False  # only checks that the pipeline runs: its verdicts are not evidence
    certify_limit: int = 0  # first N test images certified for runs with input noise (0: none)
    certify: CertifySettings = CertifySettings()  # draws and α of the certification (the seed is the run's)

    def apply(self, config: RunConfig, seed: int) -> RunConfig:
        """``config`` with this preset's epochs and data limits and the given seed."""
        train = {"seed": seed, **({"epochs": self.epochs} if self.epochs is not None else {})}
        data = {"train_limit": self.train_limit, "test_limit": self.test_limit}
        return parse_config(config.model_dump(mode="python"), {"train": train, "data": data})

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> "Preset":
        """The preset as :func:`dataclasses.asdict` wrote it into ``sweep.json``."""
        attack = {key: tuple(value) if isinstance(value, list) else value for key, value in record["attack"].items()}
        certify = CertifySettings(**record["certify"]) if "certify" in record else CertifySettings()
        return cls(**{**record, "attack": AttackSettings(**attack), "certify": certify})


_STUDY_ATTACKS = (*THESIS_ATTACKS, WORST_CASE)

PRESETS: dict[str, Preset] = {
    # a few minutes on 2 CPU cores: checks that the whole pipeline works, numbers are noise
    "smoke": Preset(epochs=2, train_limit=2000, test_limit=500, attack_limit=100, attack=AttackSettings(
        attacks=_STUDY_ATTACKS, eps=(0.03, 0.07, 0.1), p=(0.3,), eot_samples=4, prediction_samples=4,
        worst_case_steps=10, apgd_steps=10, square_queries=50, probe_examples=50, check_convergence=False),
        pipeline_check=True, certify_limit=20, certify=CertifySettings(n0=50, n=500, batch=500)),
    # well under an hour on 2 CPU cores with 2 seeds: claims about differences get a first answer
    "quick": Preset(epochs=3, train_limit=10_000, test_limit=2000, attack_limit=200, attack=AttackSettings(
        attacks=_STUDY_ATTACKS, eps=(0.0, 0.03, 0.07, 0.1), p=(0.0, 0.1, 0.3, 0.5), eot_samples=4,
        prediction_samples=8, worst_case_steps=20, apgd_steps=10, square_queries=50, probe_examples=100,
        check_convergence=False), certify_limit=100, certify=CertifySettings(n=10_000)),
    # overnight on 2 CPU cores with 3 seeds: every claim. 10 epochs on all data (the baseline is within
    # 1 point of its 10-epoch accuracy after 3), the whole test set, attacks on 1000 test images
    "standard": Preset(epochs=10, train_limit=None, test_limit=None, attack_limit=1000, attack=AttackSettings(
        attacks=_STUDY_ATTACKS, eps=(0.0, 0.03, 0.07, 0.1), p=(0.0, 0.1, 0.3, 0.5), eot_samples=4,
        prediction_samples=8, worst_case_steps=20, apgd_steps=10, square_queries=50, probe_examples=100,
        check_convergence=False), converged=True, certify_limit=500, certify=CertifySettings(n=10_000)),
    # the thesis protocol (100 epochs, all data) and budgets; attacks on 1000 test images
    "thesis": Preset(epochs=None, train_limit=None, test_limit=None, attack_limit=1000, attack=AttackSettings(
        attacks=_STUDY_ATTACKS, eps=DEFAULT_BUDGETS["eps"], p=DEFAULT_BUDGETS["p"], eot_samples=16,
        prediction_samples=16, worst_case_steps=50, apgd_steps=100, square_queries=1000, check_convergence=True),
        converged=True, certify_limit=500, certify=CertifySettings()),
}
