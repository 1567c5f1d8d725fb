"""Per-attack rows: accuracy, success rate and perturbation of one attack, judged on fixed evaluation draws."""

from __future__ import annotations

import pytest
import torch

from stochrelax.evaluation import rows as attack_rows
from stochrelax.evaluation.checks import sampling_tolerance
from stochrelax.evaluation.rows import FixedDrawJudge, attack_model
from stochrelax.evaluation.table import AttackSettings
from stochrelax.models.allconv import ModelConfig, build_model, computing_in
from stochrelax.nn.prediction import predictive_log_prob, sample_logits
from stochrelax.nn.rng import seeded


def test_zero_budget_row_is_the_clean_accuracy(relu_victim) -> None:
    result = attack_model(relu_victim.model, "pgd", 0.0, relu_victim.images, relu_victim.labels)
    assert result.accuracy == pytest.approx(relu_victim.clean_accuracy())
    assert (result.mean_linf, result.success_rate) == (0.0, 0.0)


def test_a_row_records_the_precision_the_model_computed_in(relu_victim) -> None:
    measured = attack_model(relu_victim.model, "fgsm", 0.1, relu_victim.images, relu_victim.labels)
    with computing_in(relu_victim.model, "bfloat16"):
        in_bfloat16 = attack_model(relu_victim.model, "fgsm", 0.1, relu_victim.images, relu_victim.labels)
    assert (measured.precision, in_bfloat16.precision) == ("float32", "bfloat16")
    assert abs(in_bfloat16.accuracy - measured.accuracy) <= 0.05  # the same attack, judged in coarser arithmetic


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
    assert torch.equal(result.correct, adversarial_right)


@pytest.mark.parametrize("attack", ["fgsm", "pgd", "ifgsm-ll"])
def test_gradient_attacks_never_beat_clean_and_get_stronger_with_eps(relu_victim, attack: str) -> None:
    accuracies = [attack_model(relu_victim.model, attack, eps, relu_victim.images, relu_victim.labels).accuracy
                  for eps in (0.0, 0.02, 0.05, 0.1)]
    assert accuracies[0] == pytest.approx(relu_victim.clean_accuracy())
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


def _scores_independently(model: torch.nn.Module, images: torch.Tensor, samples: int, batch_size: int,
                          seed: int) -> torch.Tensor:
    """(K, N, classes) by the definition of the fixed draws: batch b from generator state seed + b."""
    logits = []
    for index, start in enumerate(range(0, len(images), batch_size)):
        with seeded(seed + index), torch.no_grad():
            logits.append(sample_logits(model, images[start:start + batch_size], samples))
    return torch.cat(logits, dim=1)


@pytest.mark.parametrize("bank_bytes", [attack_rows.NOISE_BANK_BYTES, 0], ids=["recorded draws", "drawn again"])
def test_any_subset_of_positions_is_judged_on_its_own_fixed_draws(fashion_mnist, monkeypatch, bank_bytes):
    monkeypatch.setattr(attack_rows, "NOISE_BANK_BYTES", bank_bytes)
    with seeded(0):  # noise so large that every draw changes the predicted class: a draw misplaced shows
        model = build_model(ModelConfig(activation={"kind": "relu", "noise": "logistic", "std": 3.0})).eval()
    pixels, labels = fashion_mnist.test_images[:60].float() / 255, fashion_mnist.test_labels[:60]
    scores = _scores_independently(model, pixels, 4, 25, seed=7)
    single_expected, averaged_expected = scores.argmax(dim=2), predictive_log_prob(scores).argmax(dim=1)
    judge = FixedDrawJudge(model, labels, samples=4, batch_size=25, seed=7)
    subset = torch.tensor([59, 3, 26, 27, 50])  # three batches, out of order
    for _ in range(2):  # before and after every batch was judged once
        averaged, single = judge.predict(pixels[subset], subset)
        assert torch.equal(single, single_expected[:, subset]) and torch.equal(averaged, averaged_expected[subset])
        assert torch.equal(judge(pixels)[1], single_expected == labels)
    correct, _ = judge(pixels[subset], subset)
    assert torch.equal(correct, averaged_expected[subset] == labels[subset])


def test_input_noise_is_recorded_and_replayed_like_the_units_noise(fashion_mnist):
    with seeded(0):  # noise on the pixels only, so large that every draw changes the predicted class
        model = build_model(ModelConfig(input_noise={"std": 2.0})).eval()
    pixels, labels = fashion_mnist.test_images[:30].float() / 255, fashion_mnist.test_labels[:30]
    expected = _scores_independently(model, pixels, 4, 10, seed=3).argmax(dim=2)
    judge = FixedDrawJudge(model, labels, samples=4, batch_size=10, seed=3)
    assert torch.equal(judge.predict(pixels)[1], expected)
    subset = torch.tensor([29, 0, 14])
    assert torch.equal(judge.predict(pixels[subset], subset)[1], expected[:, subset])


@pytest.mark.parametrize("attack", ["fgsm", "ifgsm-ll", "pgd"])
def test_budgets_attacked_together_give_each_budget_s_row_alone(stochastic_victim, attack: str) -> None:
    model, images, labels = stochastic_victim.model, stochastic_victim.images[:50], stochastic_victim.labels[:50]
    settings = AttackSettings(batch_size=16, prediction_samples=4, pgd_steps=3)  # 4 batches, the last of 2
    budgets = [0.03, 0.0, 0.07]
    with seeded(2):
        together = attack_rows.attack_budgets(model, attack, budgets, images, labels, settings, eot_samples=2)
    for budget, row in zip(budgets, together):
        with seeded(2):
            alone = attack_model(model, attack, budget, images, labels, settings, eot_samples=2)
        assert (row.budget, row.eot_samples, row.steps) == (budget, 2, alone.steps)
        assert torch.equal(row.correct, alone.correct), f"{attack} at eps {budget}"  # the same images broken
        assert (row.accuracy, row.accuracy_single_draw, row.success_rate, row.mean_l2) == (
            alone.accuracy, alone.accuracy_single_draw, alone.success_rate, alone.mean_l2)
    assert together[1].seconds == 0.0 and together[1].mean_linf == 0.0
    assert together[2].mean_linf == pytest.approx(0.07, abs=1e-6)  # attacked, to the edge of its ball


def test_shared_iterative_fgsm_splits_its_time_by_steps(stochastic_victim) -> None:
    rows = attack_rows.attack_budgets(stochastic_victim.model, "ifgsm-ll", [0.03, 0.1], stochastic_victim.images[:20],
                                      stochastic_victim.labels[:20], AttackSettings(prediction_samples=2))
    assert [row.steps for row in rows] == [9, 29]
    assert rows[0].seconds > 0 and rows[1].seconds == pytest.approx(rows[0].seconds * 29 / 9)


def test_a_row_at_budget_zero_reuses_the_clean_judgement(stochastic_victim) -> None:
    model, labels = stochastic_victim.model, stochastic_victim.labels[:40]
    pixels = attack_rows.as_pixels(stochastic_victim.images[:40])
    judge = FixedDrawJudge(model, labels, samples=4, batch_size=16, seed=0)
    clean = judge.clean(pixels)
    passes: list[int] = []
    hook = model.register_forward_hook(lambda module, inputs, output: passes.append(len(inputs[0])))
    try:
        row = attack_model(model, "fgsm", 0.0, pixels, labels, eot_samples=2, judge=judge)
        assert passes == []  # neither attacked nor judged again
        attack_model(model, "fgsm", 0.05, pixels, labels, eot_samples=2, judge=judge)
        assert passes  # a real budget is
    finally:
        hook.remove()
    assert row.accuracy == pytest.approx(clean.float().mean().item()) and row.success_rate == 0.0
