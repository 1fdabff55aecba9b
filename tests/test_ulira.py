"""U-LiRA (hf_unlearn.ulira, `hf-unlearn ulira`): the leave-one-pair-out attack on worked examples, the shadow
pairs' sets, the command's refusals, and one tiny end-to-end run on digits."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import tiny_recipe, write_recipe

from hf_unlearn.errors import ValidationError
from hf_unlearn.ulira import attack_result, bootstrap_interval, forget_half, leave_one_out, shadow_sets


def forgotten_mask(num_pairs: int, n_targets: int, seed: int = 0) -> np.ndarray:
    mask = np.zeros((num_pairs, n_targets), dtype=bool)
    for k in range(num_pairs):
        mask[k, forget_half(n_targets, seed, k)] = True
    return mask


# ----------------------------------------------------------------------------------------- the attack by hand
def test_leave_one_out_on_a_worked_example() -> None:
    """Two targets, four pairs; target 0 forgotten by pairs 0 and 2, target 1 by pairs 1 and 3. Each R statistic
    is its U statistic minus 1, so both Gaussians have the same spread and a call is the midpoint rule.

    Target 0, U = (2, 1), R = (1, 0) at pairs 0, 2. Leave out pair 0: N_u at 1, N_r at 0, midpoint 0.5: U_0 = 2 is
    called unlearned (right), R_0 = 1 unlearned (wrong). Leave out pair 2: N_u at 2, N_r at 1, midpoint 1.5: U_2 = 1
    is called retrained (wrong), R_2 = 0 retrained (right). Target 1, U = (5, 5.2), R = (4, 4.2) at pairs 1, 3:
    midpoints 4.7 and 4.5, all four calls right. 6 of 8 calls: accuracy 0.75; per pair 1, 2, 1, 2 of 2.
    """
    forgotten = np.array([[1, 0], [0, 1], [1, 0], [0, 1]], dtype=bool)
    unlearned = np.array([[2.0, 0.0], [0.0, 5.0], [1.0, 0.0], [0.0, 5.2]])
    retrained = np.where(forgotten, unlearned - 1.0, 0.0)
    calls = leave_one_out(unlearned, retrained, forgotten, fixed_variance=True)
    assert calls["correct"].tolist() == [1, 2, 1, 2]
    assert calls["calls"].tolist() == [2, 2, 2, 2]
    assert calls["target_correct"].tolist() == [2, 4]
    result = attack_result(unlearned, retrained, forgotten, fixed_variance=True)
    assert result["accuracy"] == pytest.approx(0.75)
    assert result["calls"] == 8
    # Per-target variances need two other pairs per target; four pairs give each target only one.
    with pytest.raises(ValidationError, match="raise --shadows"):
        attack_result(unlearned, retrained, forgotten, fixed_variance=False)


@pytest.mark.parametrize("fixed_variance", [True, False])
def test_separated_statistics_are_always_told_apart(fixed_variance: bool) -> None:
    rng = np.random.default_rng(0)
    forgotten = forgotten_mask(8, 10)
    unlearned = 3.0 + 0.1 * rng.standard_normal((8, 10, 2))  # two views
    retrained = -3.0 + 0.1 * rng.standard_normal((8, 10, 2))
    result = attack_result(unlearned, retrained, forgotten, fixed_variance=fixed_variance)
    assert result["accuracy"] == 1.0
    assert result["interval"] == [1.0, 1.0]
    assert result["auc"] == 1.0
    assert result["calls"] == 2 * forgotten.sum()  # every target forgotten by 4 pairs: all of them called


def test_identical_distributions_give_about_one_half() -> None:
    rng = np.random.default_rng(1)
    forgotten = forgotten_mask(32, 60)
    means = rng.standard_normal(60) * 3  # targets differ, U and R do not
    unlearned = means + rng.standard_normal((32, 60))
    retrained = means + rng.standard_normal((32, 60))
    result = attack_result(unlearned, retrained, forgotten, fixed_variance=True)
    assert abs(result["accuracy"] - 0.5) < 0.05
    low, high = result["interval"]
    assert low < 0.5 < high
    assert abs(result["auc"] - 0.5) < 0.06


def test_bootstrap_interval_is_seeded_and_brackets_the_estimate() -> None:
    correct, calls = np.array([8, 6, 9, 5, 7, 10]), np.full(6, 10)
    first = bootstrap_interval(correct, calls, seed=3)
    assert first == bootstrap_interval(correct, calls, seed=3)
    assert first[0] < correct.sum() / calls.sum() < first[1]
    assert bootstrap_interval(np.full(5, 4), np.full(5, 8)) == [0.5, 0.5]


# ------------------------------------------------------------------------------------------ the shadow pairs
def test_shadow_sets_hold_every_target_and_forget_complementary_halves() -> None:
    targets = np.arange(0, 100, 7)  # 15 targets in a pool of 100
    for k in range(6):
        train, forget = shadow_sets(100, targets, seed=5, k=k)
        assert np.isin(targets, train).all()
        assert len(np.setdiff1d(train, targets)) == 43  # round(85 / 2) non-targets
        assert np.isin(forget, targets).all() and len(forget) == (7 if k % 2 == 0 else 8)
        again = shadow_sets(100, targets, seed=5, k=k)
        assert np.array_equal(train, again[0]) and np.array_equal(forget, again[1])
    for j in range(3):  # pairs 2j and 2j + 1 split T: each target forgotten in exactly half of the pairs
        _, even = shadow_sets(100, targets, seed=5, k=2 * j)
        _, odd = shadow_sets(100, targets, seed=5, k=2 * j + 1)
        assert np.array_equal(np.union1d(even, odd), targets) and not np.intersect1d(even, odd).size
    assert not np.array_equal(shadow_sets(100, targets, 5, 0)[0], shadow_sets(100, targets, 5, 2)[0])
    assert not np.array_equal(shadow_sets(100, targets, 5, 0)[0], shadow_sets(100, targets, 6, 0)[0])


# ------------------------------------------------------------------------------------------------- the command
def test_ulira_refuses_an_unknown_run_and_too_few_shadows(tmp_path, capsys) -> None:
    from hf_unlearn.cli import main

    recipe = write_recipe(tmp_path, tiny_recipe())
    out = tmp_path / "out"
    assert main(["ulira", str(recipe), "--run", "neggrad", "--shadows", "8", "--output-dir", str(out)]) == 2
    assert "no unlearning run named 'neggrad'; its runs: neggrad_sam" in capsys.readouterr().err
    assert main(["ulira", str(recipe), "--run", "neggrad_sam", "--shadows", "5", "--output-dir", str(out)]) == 2
    assert "--shadows 5: need at least 6 pairs" in capsys.readouterr().err
    assert not out.exists()  # refused before anything was written


def test_ulira_refuses_a_folder_that_holds_a_run(tmp_path, capsys) -> None:
    from hf_unlearn.cli import main

    recipe = write_recipe(tmp_path, tiny_recipe())
    (tmp_path / "out" / "models").mkdir(parents=True)
    assert main(["ulira", str(recipe), "--run", "neggrad_sam", "-K", "6", "--output-dir", str(tmp_path / "out")]) == 2
    assert "holds the outputs of another command" in capsys.readouterr().err


@pytest.mark.slow
def test_ulira_end_to_end_on_digits_writes_its_report_and_resumes(tmp_path, capsys) -> None:
    from hf_unlearn.cli import main

    # One epoch per stage and plain NegGrad: the test checks the plumbing, not the verdict.
    changes = {"pretrain.epochs": 1, "unlearn.defaults.epochs": 1, "unlearn.runs": [{"method": "neggrad"}]}
    recipe = write_recipe(tmp_path, tiny_recipe(**changes))
    out = tmp_path / "ulira"
    command = ["ulira", str(recipe), "--run", "neggrad", "--shadows", "6", "--output-dir", str(out), "--cpu"]
    assert main([*command, "--no-progress"]) == 0
    result = json.loads((out / "ulira.json").read_text())
    assert 0.0 <= result["attack_accuracy"] <= 1.0
    low, high = result["attack_accuracy_interval"]
    assert low <= result["attack_accuracy"] <= high
    assert result["shadows"] == 6 and result["fixed_variance"] is True and result["trained_this_run"] == 6
    assert result["targets"] == {
        "forget_set": "high",
        "kind": "low_confidence",
        "size": 45,
        "forgotten_per_pair": [22, 23],
        "pool_size": 898,
        "views": 1,
    }
    assert len(result["per_pair"]) == 6 and len(result["per_target"]["row"]) == 45
    assert {"auc", "tpr_at_fpr", "original_attack_accuracy", "settings", "environment"} <= set(result)
    assert "Attack accuracy" in (out / "ulira.md").read_text()
    assert "U-LiRA neggrad: attack accuracy" in capsys.readouterr().out
    # A rerun finds every pair finished: it trains nothing and writes the same numbers.
    assert main([*command, "--no-progress"]) == 0
    again = json.loads((out / "ulira.json").read_text())
    assert again["trained_this_run"] == 0 and again["attack_accuracy"] == result["attack_accuracy"]
