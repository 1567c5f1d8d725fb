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
:class:`~stochrelax.config.RunConfig`; a run can be repeated alone from its resolved
config. A group without axes is one run named after the group; a true/false axis
appears as its key's last part or ``no_`` before it (``batch_norm``, ``no_batch_norm``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stochrelax.config import ConfigError, RunConfig, merge_mappings, parse_config, read_yaml

__all__ = ["PlannedRun", "expand_grid", "load_grid"]

GRID_KEYS = ("base", "groups")
GROUP_KEYS = ("set", "axes")


@dataclass(frozen=True)
class PlannedRun:
    """One run of a grid: its name (a directory name) and its resolved config."""

    name: str
    config: RunConfig


def _nested(dotted: dict[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1, "a": {"c": 2}}`` → ``{"a": {"b": 1, "c": 2}}``."""
    nested: dict[str, Any] = {}
    for key, value in dotted.items():
        *parents, leaf = str(key).split(".")
        node = nested
        for parent in parents:
            node = node.setdefault(parent, {})
            if not isinstance(node, dict):
                raise ConfigError(f"key {key!r} goes below {parent!r}, which is not a section")
        node[leaf] = _nested(value) if isinstance(value, dict) else value
    return nested


def _check_keys(mapping: Any, allowed: tuple[str, ...], where: str) -> dict:
    if mapping is None:
        return {}
    if not isinstance(mapping, dict):
        raise ConfigError(f"{where}: expected a mapping with keys {', '.join(allowed)}")
    unknown = [key for key in mapping if key not in allowed]
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}; allowed keys: {', '.join(allowed)}")
    return mapping


def _label(key: str, value: Any) -> str:
    """How an axis value appears in a run name: the value, or the key's last part for a flag."""
    leaf = str(key).rsplit(".", 1)[-1]
    if isinstance(value, bool):
        return leaf if value else f"no_{leaf}"
    return "none" if value is None else str(value)


def expand_grid(grid: Any, source: str = "grid") -> list[PlannedRun]:
    """Expands a grid mapping (see the module docstring) into validated, uniquely named runs.

    Raises:
        ConfigError: for a malformed grid, an axis without values, a duplicate run name,
            or a run whose config is invalid (the message names the run).
    """
    grid = _check_keys(grid, GRID_KEYS, source)
    base = _nested(grid.get("base") or {})
    parse_config(base, source=f"{source}: base")
    groups = grid.get("groups")
    if not isinstance(groups, dict) or not groups:
        raise ConfigError(f"{source}: 'groups' must map group names to their settings")
    runs: dict[str, PlannedRun] = {}
    for group, spec in groups.items():
        spec = _check_keys(spec, GROUP_KEYS, f"{source}: group {group}")
        axes = spec.get("axes") or {}
        if not isinstance(axes, dict) or any(not isinstance(values, list) or not values for values in axes.values()):
            raise ConfigError(f"{source}: group {group}: every axis must be a non-empty list of values")
        group_base = merge_mappings(base, _nested(spec.get("set") or {}))
        for values in itertools.product(*axes.values()):
            name = "-".join([str(group), *(_label(key, value) for key, value in zip(axes, values))])
            if name in runs:
                raise ConfigError(f"{source}: run name {name!r} occurs twice; rename a group")
            config = parse_config(group_base, _nested(dict(zip(axes, values))), source=f"{source}: run {name}")
            runs[name] = PlannedRun(name, config)
    return list(runs.values())


def load_grid(path: str | Path) -> list[PlannedRun]:
    """Reads a grid YAML file and expands it (see :func:`expand_grid`)."""
    return expand_grid(read_yaml(path, kind="grid"), source=str(path))
