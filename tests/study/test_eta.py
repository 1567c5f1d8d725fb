"""The remaining-time estimate: the makespan of list scheduling worked by hand, and costs taken from the
configuration itself, then its kind, then extrapolated from the nearest measured kind."""

from __future__ import annotations

import math

import pytest

from stochrelax.rundir.config import parse_config
from stochrelax.study.eta import TRAINING_NOISE_FACTOR, Cost, Measured, estimate, job_kind, makespan, work_factors

RELU = parse_config({"model": {"activation": {"kind": "relu"}}})
RELU_NOISY = parse_config({"model": {"activation": {"kind": "relu", "noise": "logistic", "std": 0.05}}})
RELU_GAUSSIAN = parse_config({"model": {"activation": {"kind": "relu", "noise": "gaussian", "std": 0.1}}})
SIGN = parse_config({"model": {"activation": {"kind": "sign", "estimator": "classic_ste"}}})
SIGN_NOISY = parse_config({"model": {"activation": {"kind": "sign", "noise": "logistic", "std": 1.0,
                                                    "estimator": "ste"}}})
PGD = parse_config({"model": {"activation": {"kind": "relu"}},
                    "train": {"adversarial": {"method": "pgd", "eps": 0.1, "pgd_steps": 10}}})
SAMPLES = (8, 4)  # prediction samples, EOT samples


def measured(**costs: tuple[object, Cost]) -> dict[str, Measured]:
    return {name: Measured(job_kind(config), config, cost) for name, (config, cost) in costs.items()}


@pytest.mark.parametrize(("in_progress", "pending", "workers", "expected"), [
    ([], [], 2, 0.0),
    ([5.0], [3.0, 3.0, 3.0], 2, 8.0),  # 0→3→6 on the free worker, then 5→8 on the other
    ([], [4.0, 4.0, 4.0, 4.0], 2, 8.0),
    ([1.0, 2.0, 9.0], [1.0], 2, 10.0),  # more jobs in progress than workers: the longest waits for the first free
    ([], [10.0, 1.0, 1.0], 3, 10.0),
])
def test_makespan_assigns_each_job_to_the_first_free_worker(in_progress, pending, workers, expected):
    assert makespan(in_progress, pending, workers) == pytest.approx(expected)


def test_a_configuration_measured_on_another_seed_is_taken_as_measured():
    known = measured(relu=(RELU, Cost(2.0, 7.0)), other=(RELU, Cost(100.0, 100.0)))
    assert estimate(RELU, known, "relu", *SAMPLES) == Cost(2.0, 7.0)


def test_an_unmeasured_configuration_takes_the_mean_of_its_kind():
    known = measured(logistic=(RELU_NOISY, Cost(3.0, 40.0)), other=(RELU_NOISY, Cost(5.0, 60.0)))
    assert estimate(RELU_GAUSSIAN, known, "gaussian", *SAMPLES) == Cost(4.0, 50.0)


def test_an_unmeasured_kind_is_extrapolated_from_its_unit_by_the_prior_work_of_its_noise():
    known = measured(relu=(RELU, Cost(2.0, 3.0)), sign=(SIGN, Cost(4.0, 9.0)))
    noise = math.sqrt(8 * 4)  # the geometric mean of the prediction and EOT draws
    assert work_factors(RELU_NOISY, *SAMPLES) == (TRAINING_NOISE_FACTOR, pytest.approx(noise))
    assert estimate(RELU_NOISY, known, "noisy", *SAMPLES) == (2.0 * TRAINING_NOISE_FACTOR, pytest.approx(3.0 * noise))
    assert estimate(SIGN_NOISY, known, "sign noisy", *SAMPLES) == (4.0 * TRAINING_NOISE_FACTOR,
                                                                   pytest.approx(9.0 * noise))


def test_the_work_of_noise_measured_on_one_unit_replaces_the_prior_for_another():
    known = measured(relu=(RELU, Cost(2.0, 3.0)), noisy=(RELU_NOISY, Cost(2.5, 15.0)), sign=(SIGN, Cost(4.0, 9.0)))
    assert estimate(SIGN_NOISY, known, "sign noisy", *SAMPLES) == (pytest.approx(4.0 * 1.25),
                                                                   pytest.approx(9.0 * 5.0))
    assert estimate(RELU_GAUSSIAN, known, "gaussian", *SAMPLES) == Cost(2.5, 15.0)  # its own kind was measured


def test_adversarial_training_adds_an_attack_pass_per_step_and_a_measurement_replaces_the_prior():
    known = measured(relu=(RELU, Cost(2.0, 3.0)))
    assert work_factors(PGD, *SAMPLES) == (11.0, 1.0)
    assert estimate(PGD, known, "pgd", *SAMPLES) == Cost(22.0, 3.0)
    known.update(measured(pgd=(PGD, Cost(13.0, None))))
    assert estimate(PGD, known, "pgd", *SAMPLES) == Cost(13.0, 3.0)  # the attack term still extrapolated


def test_nothing_measured_gives_no_estimate():
    assert estimate(RELU, {}, "relu", *SAMPLES) == Cost(None, None)
