"""Robustness evaluation: the attack rows, the adaptive worst case, the checks, and what it writes."""

from __future__ import annotations

import json

import pytest
import torch

from stochrelax import runs
from stochrelax.checks import CONSISTENCY_THRESHOLD, sampling_tolerance
from stochrelax.robustness import (DEFAULT_BUDGETS, AttackResult, AttackSettings, FixedDrawJudge, attack_model,
                                   attack_plan, attack_run, merge_rows, robustness_sweep, worst_case)
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
    result = attack_model(model, "fgsm", 0.05, images, labels, AttackSettings(batch_size=64))
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
    assert result.clean_accuracy == pytest.approx(clean_right.float().mean().item())
    assert (result.steps, result.proxy, result.seed) == (1, "own", 0)
    assert (runs.unpack_correct(result.correct, 200) == adversarial_right.numpy()).all()


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
    settings = AttackSettings(prediction_samples=8, pgd_steps=5)
    with seeded(0):
        single, eot = (attack_model(stochastic_victim.model, "pgd", 0.03, stochastic_victim.images[:100],
                                    stochastic_victim.labels[:100], settings, eot_samples=k) for k in (1, 8))
    assert eot.accuracy <= single.accuracy + sampling_tolerance(single.accuracy, single.examples)
    assert eot.prediction_samples == 8 and single.accuracy_single_draw_std > 0


def test_plan_attacks_stochastic_models_with_and_without_eot() -> None:
    settings = AttackSettings(attacks=("fgsm", "missing", "worst-case"), eps=(0.1, 0.0), p=(0.2,), eot_samples=16)
    assert attack_plan(settings, stochastic=True) == [
        ("fgsm", 0.1, 1), ("fgsm", 0.1, 16), ("fgsm", 0.0, 1), ("fgsm", 0.0, 16), ("missing", 0.2, 1),
        ("worst-case", 0.0, 16), ("worst-case", 0.1, 16)]
    assert attack_plan(AttackSettings(attacks=("fgsm",), eps=(0.0, 0.1)), stochastic=False) == [
        ("fgsm", 0.0, 1), ("fgsm", 0.1, 1)]
    with pytest.raises(ValueError, match="valid: fgsm.*worst-case"):
        AttackSettings(attacks=("deepfool",))
    with pytest.raises(ValueError, match="bad proxy 'tanh:-1'"):
        AttackSettings(proxies=("tanh:-1",))


def test_default_budgets_cover_the_thesis_ranges() -> None:
    assert DEFAULT_BUDGETS["eps"][0] == 0.0 and DEFAULT_BUDGETS["eps"][-1] == 0.3 and 0.07 in DEFAULT_BUDGETS["eps"]
    assert DEFAULT_BUDGETS["p"] == (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)


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
    assert report.clean_accuracy == pytest.approx(clean_accuracy(relu_victim))


def test_merge_rows_replaces_rows_measured_alike_and_keeps_other_settings_apart() -> None:
    def result(attack: str, budget: float, accuracy: float, examples: int = 10, **measured_with) -> AttackResult:
        return AttackResult(attack, "eps", budget, 1, 1, accuracy, accuracy, 0.0, 0.0, budget, 0.0, 0.0, examples,
                            **measured_with)

    old = [result("pgd", 0.1, 0.5, steps=20, warnings=("kept",)), result("fgsm", 0.1, 0.6, steps=1)]
    merged = merge_rows(old, [result("pgd", 0.1, 0.4, steps=20), result("pgd", 0.1, 0.3, steps=40, examples=20)])
    assert [(r.attack, r.accuracy, r.steps) for r in merged] == [("fgsm", 0.6, 1), ("pgd", 0.4, 20), ("pgd", 0.3, 40)]
    assert merge_rows(old, [])[1].warnings == ("kept",)
    assert AttackResult.from_dict({**old[0].as_dict(), "unknown": 1}) == old[0]


def test_attack_run_writes_and_merges_the_table(fashion_mnist, relu_victim, tmp_path) -> None:
    from stochrelax.config import parse_config

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


# --- fixed evaluation draws and the worst case ------------------------------------------------------

def test_fixed_draws_judge_a_position_alike_whatever_its_neighbours(stochastic_victim) -> None:
    images, labels = stochastic_victim.images[:60], stochastic_victim.labels[:60]
    judge = FixedDrawJudge(stochastic_victim.model, labels, samples=4, batch_size=25, seed=7)
    correct, single = judge(images)
    changed = images.clone()
    changed[30:] = torch.rand_like(changed[30:])  # other images of the same batches change
    changed_correct, changed_single = judge(changed)
    assert torch.equal(changed_single[:, :30], single[:, :30]) and torch.equal(changed_correct[:30], correct[:30])
    assert single.shape == (4, 60)
    other_seed, _ = FixedDrawJudge(stochastic_victim.model, labels, 4, 25, seed=8)(images)
    assert not torch.equal(FixedDrawJudge(stochastic_victim.model, labels, 4, 25, 8).predict(images)[1],
                           judge.predict(images)[1])  # the draws do depend on the seed


FAST = AttackSettings(eot_samples=4, prediction_samples=4, worst_case_steps=10, apgd_steps=10, square_queries=20)


def test_worst_case_accounts_for_every_image(stochastic_victim) -> None:
    images, labels = stochastic_victim.images[:100], stochastic_victim.labels[:100]
    rows = worst_case(stochastic_victim.model, images, labels, (0.1, 0.0, 0.03), FAST)
    assert [row.budget for row in rows] == [0.0, 0.03, 0.1]  # increasing budgets
    clean = rows[0].clean_accuracy
    assert rows[0].accuracy == clean and all(row.clean_accuracy == clean for row in rows)
    assert rows[0].accuracy >= rows[1].accuracy >= rows[2].accuracy  # broken at a smaller eps: broken at a larger
    standing = [runs.unpack_correct(row.correct, 100) for row in rows]
    assert all((later <= earlier).all() for earlier, later in zip(standing, standing[1:]))
    for row in rows[1:]:
        broken = sum(member["broke"] for member in row.members)
        previous = rows[rows.index(row) - 1]
        assert previous.accuracy - row.accuracy == pytest.approx(broken / 100)
        assert row.mean_linf <= row.budget + 1e-6 and row.success_rate == pytest.approx(1 - row.accuracy / clean)
        assert [(member["attack"], member["adaptive"]) for member in row.members] == [
            ("fgsm", False), ("pgd", False), ("surrogate-pgd", True), ("apgd-ce", False), ("apgd-dlr", False),
            ("square", False)]
        assert (row.attack, row.eot_samples, row.prediction_samples, row.steps) == ("worst-case", 4, 4, 10)


def test_worst_case_is_no_weaker_than_its_strongest_member_on_a_relu_network(relu_victim) -> None:
    """On a deterministic network the ensemble's PGD member is exactly a PGD row: the worst case is at most it."""
    settings = AttackSettings(pgd_steps=10, worst_case_steps=10, apgd_steps=10, square_queries=20)
    with seeded(0):
        pgd = attack_model(relu_victim.model, "pgd", 0.05, relu_victim.images, relu_victim.labels, settings)
        (worst,) = worst_case(relu_victim.model, relu_victim.images, relu_victim.labels, (0.05,), settings)
    assert worst.accuracy <= pgd.accuracy + sampling_tolerance(pgd.accuracy, pgd.examples)
    assert [member["attack"] for member in worst.members] == ["fgsm", "pgd", "apgd-ce", "apgd-dlr", "square"]


def test_transfer_source_joins_the_ensemble_in_eval_mode(relu_victim, stochastic_victim) -> None:
    images, labels = stochastic_victim.images[:50], stochastic_victim.labels[:50]
    modes = []
    hook = relu_victim.model.register_forward_pre_hook(lambda module, inputs: modes.append(module.training))
    relu_victim.model.train()
    try:
        (row,) = worst_case(stochastic_victim.model, images, labels, (0.1,), FAST, transfer_source=relu_victim.model)
        assert relu_victim.model.training  # restored
    finally:
        relu_victim.model.eval()
        hook.remove()
    assert "transfer-pgd" in [member["attack"] for member in row.members]
    assert modes and not any(modes)  # BatchNorm used its running statistics while crafting


@pytest.mark.slow
def test_worst_case_unmasks_a_sign_network_that_fgsm_with_eot_cannot_move(sign_ste_victim) -> None:
    """The issue's finding on a small network: the thesis' FGSM with EOT through the trained estimator's spiky
    proxy leaves most images standing; the adaptive worst case is at least 30 points lower."""
    model, images, labels = sign_ste_victim.model, sign_ste_victim.images, sign_ste_victim.labels
    settings = AttackSettings(eot_samples=8, prediction_samples=8, worst_case_steps=20, apgd_steps=10,
                              square_queries=20)
    with seeded(0):
        fgsm = attack_model(model, "fgsm", 0.1, images, labels, settings, eot_samples=8)
        (worst,) = worst_case(model, images, labels, (0.1,), settings)
    assert worst.accuracy <= fgsm.accuracy - 0.30, (fgsm.accuracy, worst.accuracy, worst.members)


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
    from stochrelax.config import parse_config

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
