"""The attacks' error rates (hf_unlearn.metrics.attacks) on worked examples computed by hand, and the report's
rendering of them (hf_unlearn.report_attacks)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hf_unlearn.metrics.attacks import (
    THRESHOLD_ATTACKS,
    attack_summary,
    threshold_attacks,
    threshold_scores,
    tpr_at_fpr,
)
from hf_unlearn.report_attacks import attack_rows, attacks_markdown, false_positive_budget

# 4 members, 5 non-members. In descending order: M .9, M .8, N .7, M .6, N .5, N .4, M .3, N .2, N .1, so the ROC's
# corners (FPR, TPR) are (0, 1/2), (1/5, 3/4), (3/5, 1), (1, 1).
MEMBERS = np.array([0.9, 0.8, 0.6, 0.3])
NONMEMBERS = np.array([0.7, 0.5, 0.4, 0.2, 0.1])


def _labelled(members: np.ndarray, nonmembers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.r_[np.ones(len(members)), np.zeros(len(nonmembers))], np.r_[members, nonmembers]


def _mann_whitney(members: np.ndarray, nonmembers: np.ndarray) -> float:
    """The fraction of (member, non-member) pairs the score orders right, ties counting half: a plain loop."""
    wins = 0.0
    for m in members:
        for n in nonmembers:
            wins += 1.0 if m > n else 0.5 if m == n else 0.0
    return wins / (len(members) * len(nonmembers))


def _brute_tpr(members: np.ndarray, nonmembers: np.ndarray, fpr_target: float) -> float:
    """Try every threshold "score >= t" (and one above all scores) and keep the best TPR within the FPR."""
    best = 0.0
    for t in np.r_[np.unique(np.r_[members, nonmembers]), np.inf]:
        if np.mean(nonmembers >= t) <= fpr_target:
            best = max(best, float(np.mean(members >= t)))
    return best


# ------------------------------------------------------------------------------------------- TPR at an FPR
@pytest.mark.parametrize(
    ("fpr", "tpr"),
    [(0.0, 0.5), (0.001, 0.5), (0.19, 0.5), (0.2, 0.75), (0.5, 0.75), (0.6, 1.0), (1.0, 1.0)],
)
def test_tpr_at_fpr_on_a_known_roc(fpr, tpr):
    assert tpr_at_fpr(*_labelled(MEMBERS, NONMEMBERS), fpr) == tpr


def test_no_threshold_meets_the_fpr_gives_zero():
    # The highest score is a non-member's: every threshold that catches a member also flags it (FPR >= 1/3).
    labels, scores = _labelled(np.array([0.5, 0.4]), np.array([0.9, 0.2, 0.1]))
    assert tpr_at_fpr(labels, scores, 0.3) == 0.0
    assert tpr_at_fpr(labels, scores, 1 / 3) == 1.0


def test_ties_cannot_be_split_by_a_threshold():
    # Two members tie with a non-member at 0.5: the threshold 0.5 flags all three, so FPR 1/2 comes with them.
    members, nonmembers = np.array([0.8, 0.5, 0.5]), np.array([0.5, 0.2])
    labels, scores = _labelled(members, nonmembers)
    assert tpr_at_fpr(labels, scores, 0.0) == pytest.approx(1 / 3)
    assert tpr_at_fpr(labels, scores, 0.49) == pytest.approx(1 / 3)
    assert tpr_at_fpr(labels, scores, 0.5) == 1.0
    # AUC by hand: 0.8 beats both (2), each 0.5 ties one and beats one (1.5 + 1.5): 5 of 6 pairs.
    assert attack_summary(members, nonmembers)["auc"] == pytest.approx(5 / 6)


def test_tpr_at_fpr_equals_trying_every_threshold():
    rng = np.random.default_rng(0)
    members, nonmembers = np.round(rng.normal(1, 1, 60), 1), np.round(rng.normal(0, 1, 80), 1)  # many ties
    for fpr in (0.0, 0.01, 0.05, 0.1, 0.3):
        assert tpr_at_fpr(*_labelled(members, nonmembers), fpr) == pytest.approx(_brute_tpr(members, nonmembers, fpr))


# ------------------------------------------------------------------------------------------------ summary
def test_attack_summary_on_the_known_roc():
    # AUC by hand: .9 and .8 beat all 5, .6 beats 4, .3 beats 2: 16 of 20 pairs.
    summary = attack_summary(MEMBERS, NONMEMBERS)
    # With 5 non-members a 1% or 0.1% FPR allows no false positive: the TPR at FPR 0.
    assert summary == {"auc": pytest.approx(0.8), "tpr_at_fpr": {"0.01": 0.5, "0.001": 0.5}}


def test_auc_equals_the_mann_whitney_fraction():
    rng = np.random.default_rng(1)
    members, nonmembers = np.round(rng.normal(0.5, 1, 37), 1), np.round(rng.normal(0, 1, 53), 1)
    assert attack_summary(members, nonmembers)["auc"] == pytest.approx(_mann_whitney(members, nonmembers))
    # Swapping the roles mirrors it; identical scores give chance.
    assert attack_summary(nonmembers, members)["auc"] == pytest.approx(1 - _mann_whitney(members, nonmembers))
    assert attack_summary(np.ones(4), np.ones(7))["auc"] == 0.5


def test_attack_summary_refuses_empty_or_non_finite_scores():
    with pytest.raises(ValueError, match="members and non-members"):
        attack_summary(np.array([]), NONMEMBERS)
    with pytest.raises(ValueError, match="finite"):
        attack_summary(np.array([0.1, np.nan]), NONMEMBERS)


# ---------------------------------------------------------------------------------------- threshold scores
PROBS = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.25, 0.25, 0.5]])
LABELS = np.array([0, 0, 2])  # the second row is wrong: its loss and its top-1 confidence part ways


def test_threshold_scores_on_a_tiny_probability_matrix():
    scores = threshold_scores(PROBS, LABELS)
    assert scores["loss"] == pytest.approx([math.log(0.7), math.log(0.1), math.log(0.5)])
    assert scores["confidence"] == pytest.approx([math.log(0.7), math.log(0.6), math.log(0.5)])
    minus_entropy = [
        0.7 * math.log(0.7) + 0.2 * math.log(0.2) + 0.1 * math.log(0.1),
        0.1 * math.log(0.1) + 0.6 * math.log(0.6) + 0.3 * math.log(0.3),
        2 * 0.25 * math.log(0.25) + 0.5 * math.log(0.5),
    ]
    assert scores["entropy"] == pytest.approx(minus_entropy)


def test_threshold_scores_keep_confident_samples_apart():
    # p_y rounds to 1.0 in float64 for both rows; the loss must still rank them (it is the rest's sum, not 1 - p_y).
    probs = np.array([[1 - 3e-20, 1e-20, 2e-20], [1 - 6e-20, 3e-20, 3e-20], [1.0, 0.0, 0.0]])
    scores = threshold_scores(probs, np.zeros(3, dtype=int))
    assert scores["loss"][:2] == pytest.approx([-3e-20, -6e-20], rel=1e-12)
    assert scores["loss"][2] == 0.0
    assert scores["loss"][2] > scores["loss"][0] > scores["loss"][1]
    assert scores["entropy"][2] > scores["entropy"][0] > scores["entropy"][1]
    assert attack_summary(scores["loss"][:1], scores["loss"][1:2])["auc"] == 1.0  # told apart, not tied


def test_threshold_attacks_score_forget_against_test():
    rng = np.random.default_rng(2)
    forget, test = rng.dirichlet(np.ones(4) * 0.3, 30), rng.dirichlet(np.ones(4), 40)
    forget_y, test_y = forget.argmax(axis=1), rng.integers(0, 4, 40)
    result = threshold_attacks(forget, forget_y, test, test_y)
    assert list(result) == list(THRESHOLD_ATTACKS)
    members, nonmembers = threshold_scores(forget, forget_y), threshold_scores(test, test_y)
    for name in THRESHOLD_ATTACKS:
        assert result[name] == attack_summary(members[name], nonmembers[name])
        assert result[name]["auc"] == pytest.approx(_mann_whitney(members[name], nonmembers[name]))
    assert result["loss"]["auc"] > 0.7  # peaked, correctly labelled "members" against flat, randomly labelled ones


# ------------------------------------------------------------------------------------------------- report
def test_report_renders_every_attack_present():
    summary = {"auc": 0.75, "tpr_at_fpr": {"0.01": 0.125, "0.001": 0.0}}
    report = {
        "sizes": {"test": 360},
        "models": {
            "original": {"attacks": {"loss": summary, "lira": {**summary, "auc": 0.9}}},
            "retrain": {"attacks": None},  # diverged before a checkpoint: no rows
            "neggrad": {"attacks": {"loss": summary, "lira_offline": None}},
        },
    }
    assert attack_rows(report) == [
        ["original", "loss", "0.750", "0.125", "0.000"],
        ["original", "lira", "0.900", "0.125", "0.000"],
        ["neggrad", "loss", "0.750", "0.125", "0.000"],
        ["neggrad", "lira_offline", "—", "—", "—"],
    ]
    text = attacks_markdown(report)
    assert "| original | lira | 0.900 | 0.125 | 0.000 |" in text
    assert "3 at 1.0% and 0 at 0.1%" in text  # 360 test samples: no false positive at all at 0.1%
    assert "lira, lira_offline: LiRA" in text  # said only when LiRA is there
    assert "lira, lira_offline" not in attacks_markdown({"models": {"original": {"attacks": {"loss": summary}}}})
    assert attacks_markdown({"models": {"original": {}}}) == ""


def test_false_positive_budget_counts_exactly():
    assert (
        false_positive_budget(1000)
        == "on 1000 test samples a threshold may flag 10 at 1.0% and 1 at 0.1% of them falsely"
    )
    assert false_positive_budget(999).endswith("9 at 1.0% and 0 at 0.1% of them falsely")


# ------------------------------------------------------------------------------------------- score cache
def test_scores_cached_before_the_attacks_existed_are_scored_again(tmp_path):
    """A scores.json entry with the right key but no ``attacks`` (written by an older hf_unlearn) is not reused."""
    import json
    from types import SimpleNamespace

    from hf_unlearn.steps.score import NO_METRICS, SCORES, Evaluator

    evaluator = Evaluator({})
    run = SimpleNamespace(folder=tmp_path, manifest=SimpleNamespace(sha256="0" * 64))
    old = {"accuracy": {"retain": 1.0, "forget": 1.0, "test": 0.9}, "mia": {"confidence": 0.5}}
    key = evaluator.key("stage", run)
    (tmp_path / SCORES).write_text(json.dumps({"neggrad": {"key": key, **old}}))
    assert evaluator.cached(run, "neggrad", "stage") is None
    loads = []
    assert evaluator.scores(run, "neggrad", "stage", lambda: loads.append(1)) == NO_METRICS  # None: no weights
    assert loads == [1] and NO_METRICS["attacks"] is None
    assert evaluator.cached(run, "neggrad", "stage") == NO_METRICS  # now complete: reused
    new = {**old, "attacks": {"loss": {"auc": 0.6, "tpr_at_fpr": {"0.01": 0.0, "0.001": 0.0}}}}
    evaluator.remember(run, "neggrad", "stage", new)
    assert evaluator.cached(run, "neggrad", "stage") == new


def test_report_md_console_table_and_plain_words_carry_the_attacks():
    from hf_unlearn.report import format_table, markdown, plain_summary

    def model(method: str, auc: float | None) -> dict:
        attacks = (
            None
            if auc is None
            else {a: {"auc": auc, "tpr_at_fpr": {"0.01": 0.1, "0.001": 0.0}} for a in THRESHOLD_ATTACKS}
        )
        return {
            "method": method,
            "sharpness": "none",
            "tow": None if method == "retrain" else 0.9,
            "accuracy": {"retain": 1.0, "forget": 0.8, "test": 0.95},
            "mia": {"confidence": 0.4, "entropy": 0.5},
            "attacks": attacks,
        }

    report = {
        "name": "tiny",
        "dataset": "digits",
        "seed": 0,
        "forget_set": {"kind": "random", "size": 10, "commitment": "c" * 64, "band": None},
        "sizes": {"forget": 10, "test": 40},
        "reference": {"kind": "retrain"},
        "models": {
            "original": model("pretrain", 0.8),
            "retrain": model("retrain", 0.5),
            "neggrad": model("neggrad", 0.55),
        },
    }
    table = format_table(report).splitlines()
    assert "loss AUC" in table[0] and "0.550" in table[-1]
    assert "neggrad: loss-attack AUC 0.550 (original 0.800)" in "\n".join(plain_summary(report))
    text = markdown(report)
    assert "## Membership inference: error rates (docs/privacy.md)" in text
    assert "| retrain | entropy | 0.500 | 0.100 | 0.000 |" in text and "0 at 1.0% and 0 at 0.1%" in text
    report["models"]["neggrad"]["attacks"] = None  # diverged: no attack rows, "—" in the table
    assert "| neggrad | loss |" not in markdown(report) and format_table(report).splitlines()[-1].count("—") >= 2


def test_trackers_get_each_attacks_auc():
    from hf_unlearn.tracking import final_metrics

    summary = {"auc": 0.625, "tpr_at_fpr": {"0.01": 0.1, "0.001": 0.0}}
    final = final_metrics({"accuracy": {"forget": 0.5}, "attacks": {"loss": summary, "lira": None}})
    assert final == {"final_forget_accuracy": 0.5, "final_attack_loss_auc": 0.625}
    assert final_metrics({"accuracy": None, "mia": None, "attacks": None}) == {}
