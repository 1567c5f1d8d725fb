"""The robustness table's vocabulary: default budgets, the settings' validation, merging rows."""

from __future__ import annotations

import pytest
import torch

from stochrelax.evaluation.table import DEFAULT_BUDGETS, AttackResult, AttackSettings, merge_rows


def test_settings_refuse_unknown_attacks_and_bad_proxies() -> None:
    with pytest.raises(ValueError, match="valid: fgsm.*worst-case"):
        AttackSettings(attacks=("deepfool",))
    with pytest.raises(ValueError, match="bad proxy 'tanh:-1'"):
        AttackSettings(proxies=("tanh:-1",))
    with pytest.raises(ValueError, match="unknown precision 'half'; valid: float32, bfloat16"):
        AttackSettings(precision="half")


def test_default_budgets_cover_the_thesis_ranges() -> None:
    assert DEFAULT_BUDGETS["eps"][0] == 0.0 and DEFAULT_BUDGETS["eps"][-1] == 0.3 and 0.07 in DEFAULT_BUDGETS["eps"]
    assert DEFAULT_BUDGETS["p"] == (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)


def test_merge_rows_replaces_rows_measured_alike_and_keeps_other_settings_apart() -> None:
    def result(attack: str, budget: float, accuracy: float, examples: int = 10, **measured_with) -> AttackResult:
        return AttackResult(attack, "eps", budget, 1, 1, accuracy, accuracy, 0.0, 0.0, budget, 0.0, 0.0, examples,
                            **measured_with)

    old = [result("pgd", 0.1, 0.5, steps=20, warnings=("kept",)), result("fgsm", 0.1, 0.6, steps=1)]
    merged = merge_rows(old, [result("pgd", 0.1, 0.4, steps=20), result("pgd", 0.1, 0.3, steps=40, examples=20)])
    assert [(r.attack, r.accuracy, r.steps) for r in merged] == [("fgsm", 0.6, 1), ("pgd", 0.4, 20), ("pgd", 0.3, 40)]
    assert merge_rows(old, [])[1].warnings == ("kept",)
    in_bfloat16 = merge_rows(old, [result("pgd", 0.1, 0.45, steps=20, precision="bfloat16")])
    assert sorted((r.precision, r.accuracy) for r in in_bfloat16 if r.attack == "pgd") == [("bfloat16", 0.45),
                                                                                           ("float32", 0.5)]
    assert AttackResult.from_dict({**old[0].as_dict(), "unknown": 1}) == old[0]


def test_one_table_says_how_much_work_every_evaluation_does():
    from stochrelax.attacks import make_attack
    from stochrelax.evaluation.table import ATTACK_WORK, EVALUATIONS

    assert set(ATTACK_WORK) == set(EVALUATIONS)
    settings = AttackSettings(pgd_steps=7, apgd_steps=9, square_queries=11, worst_case_steps=13)
    assert {name: settings.steps(name, 0.1) for name in EVALUATIONS} == {
        "fgsm": 1, "ifgsm-ll": 29, "pgd": 7, "apgd-ce": 9, "apgd-dlr": 9, "square": 11, "missing": None,
        "worst-case": 13}
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    for name in EVALUATIONS[:-1]:  # every registered attack takes the keyword the table gives it
        options = settings.attack_options(name, 0.1)
        attack = make_attack(name, model, **options)
        assert all(getattr(attack, keyword) == value for keyword, value in options.items())


def test_a_rows_per_image_results_are_a_tensor_until_written_and_read_back_as_one(tmp_path):
    from stochrelax.rundir.layout import read_attack_table, write_attack_table

    correct = torch.tensor([True, False, True, True, False])
    row = AttackResult("fgsm", "eps", 0.1, 1, 1, 0.6, 0.6, 0.0, 0.2, 0.1, 1.0, 0.5, 5, correct=correct)
    assert row.as_dict()["correct"] is correct
    write_attack_table(tmp_path, {"rows": [row.as_dict()], "warnings": []})
    [stored] = read_attack_table(tmp_path)["rows"]
    assert isinstance(stored["correct"], str)  # packed on disk
    assert torch.equal(AttackResult.from_dict(stored).correct, correct)
    assert AttackResult.from_dict({**stored, "correct": ""}).correct is None  # a table older than the field
