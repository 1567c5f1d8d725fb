"""Robustness evaluation: the attack table, its sanity properties, and what it writes."""

from __future__ import annotations

import json

import pytest
import torch

from stochrelax import runs
from stochrelax.checks import sampling_tolerance
from stochrelax.evaluate import (DEFAULT_BUDGETS, AttackResult, attack_model, attack_plan, attack_run, merge_rows,
                                 robustness_sweep)
from stochrelax.rng import seeded


def clean_accuracy(victim) -> float:
    with torch.no_grad():
        return (victim.model(victim.images).argmax(1) == victim.labels).float().mean().item()


def test_zero_budget_row_is_the_clean_accuracy(relu_victim) -> None:
    result = attack_model(relu_victim.model, "pgd", 0.0, relu_victim.images, relu_victim.labels)
    assert result.accuracy == pytest.approx(clean_accuracy(relu_victim))
    assert (result.mean_linf, result.success_rate) == (0.0, 0.0)


def test_untargeted_row_matches_an_independent_computation(relu_victim) -> None:
    model, images, labels = relu_victim.model, relu_victim.images, relu_victim.labels
    result = attack_model(model, "fgsm", 0.05, images, labels, batch_size=64)
    gradient = torch.autograd.grad(torch.nn.functional.cross_entropy(model(images.requires_grad_(True)), labels,
                                                                     reduction="sum"), images)[0]
    images.requires_grad_(False)
    adversarial = (images + 0.05 * gradient.sign()).clamp(0, 1)
    with torch.no_grad():
        clean_right = model(images).argmax(1) == labels
        adversarial_right = model(adversarial).argmax(1) == labels
    assert result.accuracy == pytest.approx(adversarial_right.float().mean().item())
    assert result.success_rate == pytest.approx((clean_right & ~adversarial_right).sum().item() / clean_right.sum().item())
    assert result.mean_linf == pytest.approx(0.05, abs=1e-6)
    assert result.mean_l2 == pytest.approx((adversarial - images).flatten(1).norm(dim=1).mean().item(), rel=1e-4)
    assert (result.examples, result.prediction_samples, result.eot_samples) == (200, 1, 1)


@pytest.mark.parametrize("attack", ["fgsm", "pgd", "ifgsm-ll"])
def test_gradient_attacks_never_beat_clean_and_get_stronger_with_eps(relu_victim, attack: str) -> None:
    accuracies = [attack_model(relu_victim.model, attack, eps, relu_victim.images, relu_victim.labels).accuracy
                  for eps in (0.0, 0.02, 0.05, 0.1)]
    assert accuracies[0] == pytest.approx(clean_accuracy(relu_victim))
    assert all(later <= earlier for earlier, later in zip(accuracies, accuracies[1:])), accuracies
    assert accuracies[-1] < accuracies[0] - 0.2


def test_targeted_success_rate_counts_reaching_the_target(relu_victim) -> None:
    result = attack_model(relu_victim.model, "ifgsm-ll", 0.2, relu_victim.images, relu_victim.labels)
    assert result.success_rate > 0.8  # the least-likely class is reached on most inputs


def test_eot_is_at_least_as_strong_as_one_draw_on_a_stochastic_model(stochastic_victim) -> None:
    with seeded(0):
        single, eot = (attack_model(stochastic_victim.model, "pgd", 0.03, stochastic_victim.images[:100],
                                    stochastic_victim.labels[:100], eot_samples=k, prediction_samples=8,
                                    settings={"steps": 5}) for k in (1, 8))
    assert eot.accuracy <= single.accuracy + sampling_tolerance(single.accuracy, single.examples)
    assert eot.prediction_samples == 8 and single.accuracy_single_draw_std > 0


def test_plan_attacks_stochastic_models_with_and_without_eot() -> None:
    budgets = {"eps": (0.0, 0.1), "p": (0.2,)}
    assert attack_plan(["fgsm", "missing"], budgets, 16, stochastic=True) == [
        ("fgsm", 0.0, 1), ("fgsm", 0.0, 16), ("fgsm", 0.1, 1), ("fgsm", 0.1, 16), ("missing", 0.2, 1)]
    assert attack_plan(["fgsm"], budgets, 16, stochastic=False) == [("fgsm", 0.0, 1), ("fgsm", 0.1, 1)]
    with pytest.raises(ValueError, match="valid: fgsm"):
        attack_plan(["deepfool"], budgets, 16, stochastic=False)


def test_default_budgets_cover_the_thesis_ranges() -> None:
    assert DEFAULT_BUDGETS["eps"][0] == 0.0 and DEFAULT_BUDGETS["eps"][-1] == 0.3 and 0.07 in DEFAULT_BUDGETS["eps"]
    assert DEFAULT_BUDGETS["p"] == (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)


def test_sweep_restores_the_model_mode_and_reports_probes(relu_victim) -> None:
    relu_victim.model.train()
    try:
        report = robustness_sweep(relu_victim.model, relu_victim.images, relu_victim.labels, ["fgsm", "missing"],
                                  {"eps": (0.0, 0.1), "p": (0.3,)}, probe_examples=50)
        assert relu_victim.model.training
    finally:
        relu_victim.model.eval()
    assert [(r.attack, r.budget) for r in report.rows] == [("fgsm", 0.0), ("fgsm", 0.1), ("missing", 0.3)]
    assert report.randomized_fraction == 0.0 and report.convergence is not None
    assert report.clean_accuracy == pytest.approx(clean_accuracy(relu_victim))


def test_merge_rows_replaces_rows_measured_again() -> None:
    def result(attack: str, budget: float, accuracy: float) -> AttackResult:
        return AttackResult(attack, "eps", budget, 1, 1, accuracy, accuracy, 0.0, 0.0, budget, 0.0, 0.0, 10)

    merged = merge_rows([result("pgd", 0.1, 0.5), result("fgsm", 0.1, 0.6)], [result("pgd", 0.1, 0.4)])
    assert [(r.attack, r.accuracy) for r in merged] == [("fgsm", 0.6), ("pgd", 0.4)]  # registry order


def test_attack_run_writes_and_merges_the_table(fashion_mnist, relu_victim, tmp_path) -> None:
    from stochrelax.config import parse_config

    run_dir = tmp_path / "run"
    runs.create_run_dir(run_dir)
    runs.write_config(run_dir, parse_config({}))
    runs.save_weights(run_dir, relu_victim.model)
    runs.write_summary(run_dir, {"test_accuracy": 0.0})
    data = fashion_mnist.limit(test_limit=100)
    attack_run(runs.load_run(run_dir), data, attacks=["fgsm"], budgets={"eps": (0.05,)}, check_convergence=False)
    attack_run(runs.load_run(run_dir), data, attacks=["missing"], budgets={"p": (0.2,)}, check_convergence=False)
    table = json.loads((run_dir / runs.ATTACKS_JSON).read_text())
    assert [(r["attack"], r["budget"]) for r in table["rows"]] == [("fgsm", 0.05), ("missing", 0.2)]
    assert table["test_examples"] == 100 and isinstance(table["warnings"], list)
    csv_lines = (run_dir / runs.ATTACKS_CSV).read_text().splitlines()
    assert csv_lines[0].startswith("attack,budget_name,budget,eot_samples") and len(csv_lines) == 3
    with runs.run_lock(run_dir):  # another writer holds the run: refused before any attack, table untouched
        with pytest.raises(runs.RunDirError, match="being written by another stochrelax process"):
            attack_run(runs.load_run(run_dir), data, attacks=["fgsm"], budgets={"eps": (0.1,)})
    assert json.loads((run_dir / runs.ATTACKS_JSON).read_text()) == table
