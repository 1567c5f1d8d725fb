"""Robustness evaluation of a model and a run: the attack plan, the sweep, the checks, and what it writes."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from stochrelax.evaluation.checks import CONSISTENCY_THRESHOLD
from stochrelax.evaluation.robustness import attack_plan, attack_run, robustness_sweep
from stochrelax.evaluation.table import AttackSettings
from stochrelax.nn.rng import seeded
from stochrelax.rundir import layout as runs


def test_plan_attacks_stochastic_models_with_and_without_eot() -> None:
    settings = AttackSettings(attacks=("fgsm", "missing", "worst-case"), eps=(0.1, 0.0), p=(0.2,), eot_samples=16)
    assert attack_plan(settings, stochastic=True) == [
        ("fgsm", 0.1, 1), ("fgsm", 0.1, 16), ("fgsm", 0.0, 1), ("fgsm", 0.0, 16), ("missing", 0.2, 1),
        ("worst-case", 0.0, 16), ("worst-case", 0.1, 16)]
    assert attack_plan(AttackSettings(attacks=("fgsm",), eps=(0.0, 0.1)), stochastic=False) == [
        ("fgsm", 0.0, 1), ("fgsm", 0.1, 1)]


def test_sweep_restores_the_model_mode_and_reports_probes(relu_victim) -> None:
    relu_victim.model.train()
    try:
        report = robustness_sweep(relu_victim.model, relu_victim.images, relu_victim.labels, AttackSettings(
            attacks=("fgsm", "missing"), eps=(0.0, 0.1), p=(0.3,), probe_examples=50))
        assert relu_victim.model.training
    finally:
        relu_victim.model.eval()
    assert [(r.attack, r.budget) for r in report.rows] == [("fgsm", 0.0), ("fgsm", 0.1), ("missing", 0.3)]
    assert report.randomized_fraction == 0.0 and report.convergence is not None
    assert report.clean_accuracy == pytest.approx(relu_victim.clean_accuracy())


def test_folding_batch_norm_for_the_attacks_changes_no_result(relu_victim) -> None:
    settings = AttackSettings(attacks=("fgsm", "ifgsm-ll"), eps=(0.05, 0.1), probe_examples=50,
                              check_convergence=False)
    images, labels = relu_victim.images[:100], relu_victim.labels[:100]
    folded = robustness_sweep(relu_victim.model, images, labels, settings)
    as_trained = robustness_sweep(relu_victim.model, images, labels, replace(settings, fold_batch_norm=False))
    # the same images broken: a rounding difference could flip an image on an attack's edge, none does here
    assert all(torch.equal(one.correct, other.correct) for one, other in zip(folded.rows, as_trained.rows, strict=True))
    assert folded.clean_accuracy == as_trained.clean_accuracy


def test_attack_run_writes_and_merges_the_table(fashion_mnist, relu_victim, tmp_path) -> None:
    from stochrelax.rundir.config import parse_config

    run_dir = tmp_path / "run"
    runs.create_run_dir(run_dir)
    runs.write_config(run_dir, parse_config({}))
    runs.save_weights(run_dir, relu_victim.model)
    runs.write_summary(run_dir, {"test_accuracy": 0.0})
    data = fashion_mnist.limit(test_limit=100)
    attack_run(runs.load_run(run_dir), data, AttackSettings(attacks=("fgsm",), eps=(0.05,), check_convergence=False))
    attack_run(runs.load_run(run_dir), data, AttackSettings(attacks=("missing",), p=(0.2,), check_convergence=False))
    table = json.loads((run_dir / runs.ATTACKS_JSON).read_text())
    assert [(r["attack"], r["budget"]) for r in table["rows"]] == [("fgsm", 0.05), ("missing", 0.2)]
    assert table["test_examples"] == 100 and isinstance(table["warnings"], list)
    csv_lines = (run_dir / runs.ATTACKS_CSV).read_text().splitlines()
    assert csv_lines[0].startswith("attack,budget_name,budget,eot_samples") and len(csv_lines) == 3
    assert "correct" not in csv_lines[0].split(",") and all(len(row["correct"]) == 2 * 13 for row in table["rows"])
    with runs.run_lock(run_dir):  # another writer holds the run: refused before any attack, table untouched
        with pytest.raises(runs.RunDirError, match="being written by another stochrelax process"):
            attack_run(runs.load_run(run_dir), data, AttackSettings(attacks=("fgsm",), eps=(0.1,)))
    assert json.loads((run_dir / runs.ATTACKS_JSON).read_text()) == table


@pytest.mark.slow
def test_checks_fire_on_the_blind_attack_of_a_sign_network(sign_ste_victim) -> None:
    settings = AttackSettings(attacks=("fgsm", "worst-case"), eps=(0.0, 0.1), eot_samples=8, prediction_samples=8,
                              worst_case_steps=20, apgd_steps=10, square_queries=20, probe_examples=100,
                              check_convergence=False)
    with seeded(0):
        report = robustness_sweep(sign_ste_victim.model, sign_ste_victim.images, sign_ste_victim.labels, settings)
    consistency = report.gradient_consistency
    assert consistency["own"] < 0.5 and consistency["own"] < consistency["tanh:0.25"], consistency
    text = "\n".join(report.warnings)
    assert "mostly noise" in text and "designed against the defence" in text and "this flat" in text
    fgsm_eot = next(row for row in report.rows if row.attack == "fgsm" and row.budget == 0.1 and row.eot_samples == 8)
    assert any("designed against the defence" in warning for warning in fgsm_eot.warnings)
    worst = next(row for row in report.rows if row.attack == "worst-case" and row.budget == 0.1)
    assert any("designed against the defence" in warning for warning in worst.warnings)


@pytest.mark.parametrize("victim_name", ["relu_victim", "stochastic_victim"])
def test_checks_stay_silent_on_relu_networks(victim_name: str, request) -> None:
    victim = request.getfixturevalue(victim_name)
    settings = AttackSettings(attacks=("fgsm", "pgd", "worst-case"), eps=(0.0, 0.05, 0.1), eot_samples=4,
                              prediction_samples=4, pgd_steps=10, worst_case_steps=10, apgd_steps=10,
                              square_queries=20, probe_examples=50, check_convergence=False)
    with seeded(0):
        report = robustness_sweep(victim.model, victim.images[:100], victim.labels[:100], settings)
    assert report.warnings == []
    assert all(value > CONSISTENCY_THRESHOLD for value in report.gradient_consistency.values())


def test_warnings_stay_with_their_rows_across_invocations(fashion_mnist, sign_ste_victim, tmp_path) -> None:
    from stochrelax.rundir.config import parse_config

    run_dir = tmp_path / "run"
    runs.create_run_dir(run_dir)
    runs.write_config(run_dir, parse_config({"model": {"activation": {"kind": "sign", "noise": "logistic",
                                                                      "std": 0.05, "estimator": "ste"}}}))
    runs.save_weights(run_dir, sign_ste_victim.model)
    runs.write_summary(run_dir, {"test_accuracy": 0.0})
    data = fashion_mnist.limit(test_limit=100)
    first = attack_run(runs.load_run(run_dir), data, AttackSettings(
        attacks=("fgsm",), eps=(0.0, 0.1), eot_samples=8, prediction_samples=4, probe_examples=50,
        check_convergence=False))
    assert first.warnings
    second = attack_run(runs.load_run(run_dir), data, AttackSettings(
        attacks=("missing",), p=(0.3,), prediction_samples=4, probe_examples=50, check_convergence=False))
    table = json.loads((run_dir / runs.ATTACKS_JSON).read_text())
    kept = [warning for row in table["rows"] if row["attack"] == "fgsm" for warning in row["warnings"]]
    assert set(first.warnings) <= set(kept) | set(second.warnings) and set(kept) <= set(table["warnings"])
    assert {row["examples"] for row in table["rows"]} == {100}
