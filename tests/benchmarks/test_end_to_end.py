"""The thesis study's projected wall time (:func:`benchmarks.end_to_end.project_thesis_study`) from given rates."""

from __future__ import annotations

import math

import pytest

from benchmarks.end_to_end import iterative_fgsm_gradients, project_thesis_study
from benchmarks.harness import Row, compare_row
from benchmarks.suite import TRAIN_VARIANTS
from stochrelax.rundir.config import parse_config
from stochrelax.study.grid import STUDY_GRID, load_grid


def rows_at(train_rate: float, pgd_rate: float) -> list[Row]:
    """Rows as the suite reports them, every network training at ``train_rate`` and PGD-20 at ``pgd_rate``."""
    rows = [compare_row(f"train/{name}", name, "images/s", "ours", "plain", [train_rate], [1.0], None)
            for name in TRAIN_VARIANTS]
    return rows + [compare_row("attack/pgd-20", "pgd", "examples/s", "ours", "art", [pgd_rate], [1.0], None)]


def test_one_deterministic_run_is_its_epochs_plus_its_attack_steps() -> None:
    run = parse_config({"model": {"activation": {"kind": "relu"}}})
    seconds, detail = project_thesis_study(rows_at(1000.0, 50.0), [run], 1)
    # 100 epochs × 60,000 images at 1,000 images/s + 1,000 images × (1 + 95) gradients at 50 × 20 per second
    assert seconds == pytest.approx(6000.0 + 96.0)
    assert detail.startswith("1 runs x 100 epochs")


def test_every_run_of_the_thesis_grid_is_projected_and_the_projection_scales_with_rates_and_cores() -> None:
    runs = [planned.config for planned in load_grid(STUDY_GRID)]
    seconds, detail = project_thesis_study(rows_at(1000.0, 50.0), runs, 2)
    assert math.isfinite(seconds) and seconds > 0 and detail.startswith(f"{len(runs)} runs")
    assert project_thesis_study(rows_at(2000.0, 100.0), runs, 2)[0] == pytest.approx(seconds / 2)
    assert project_thesis_study(rows_at(1000.0, 50.0), runs, 4)[0] == pytest.approx(seconds / 2)


def test_iterative_fgsm_gradients_count_the_shared_trajectory_and_its_branches() -> None:
    # By hand: eps 0.03, 0.07, 0.1 take 9, 21, 29 steps and part from the 0.1 trajectory at iterates
    # 8 and 18 (the first beyond 7.65/255 and 17.85/255): 29 + (9 − 8) + (21 − 18), as tests/attacks counts.
    assert iterative_fgsm_gradients([0.0, 0.03, 0.07, 0.1]) == 33
    # The thesis' budgets: 80 steps for 0.3, and 0, 0, 1, 2, 3, 3, 3, 3 after the branches of the smaller ones.
    assert iterative_fgsm_gradients([0.0, 0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3]) == 95
    assert iterative_fgsm_gradients([0.05]) == 15 and iterative_fgsm_gradients([0.0]) == 0
