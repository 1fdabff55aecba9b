"""Membership-inference attacks judged by their error rates: ROC AUC and the true-positive rate at a low FPR.

An attack gives each sample a score, higher meaning "member". `attack_summary` turns the scores of known members
and known non-members into the numbers the field reports (Carlini et al., 2022): the area under the ROC curve (0.5
is chance) and the TPR at 1% and 0.1% false positives, the regime where a confident attack does real harm.

`threshold_attacks` are the three population attacks that need no shadow models: the model's loss, its true-class
confidence and its prediction entropy, each thresholded once for all samples.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

FPR_TARGETS = (0.01, 0.001)
THRESHOLD_ATTACKS = ("loss", "confidence", "entropy")
# Clamp before log so that exact 0/1 probabilities give finite scores.
_EPS = 1e-30


def tpr_at_fpr(labels: np.ndarray, scores: np.ndarray, fpr_target: float) -> float:
    """The highest TPR among thresholds whose FPR is at most ``fpr_target`` (0 when none is)."""
    fpr, tpr, _ = roc_curve(labels, scores)
    allowed = fpr <= fpr_target
    return float(tpr[allowed].max()) if allowed.any() else 0.0


def attack_summary(
    member_scores: np.ndarray, nonmember_scores: np.ndarray, fpr_targets: tuple[float, ...] = FPR_TARGETS
) -> dict:
    """``{"auc": ..., "tpr_at_fpr": {"0.01": ..., "0.001": ...}}`` of an attack that scores members higher.

    A TPR at an FPR below ``1 / len(nonmember_scores)`` allows no false positive at all: read it with that in mind.
    """
    members = np.asarray(member_scores, dtype=np.float64).reshape(-1)
    nonmembers = np.asarray(nonmember_scores, dtype=np.float64).reshape(-1)
    if not len(members) or not len(nonmembers):
        raise ValueError(f"an attack needs members and non-members, got {len(members)} and {len(nonmembers)}.")
    if not (np.isfinite(members).all() and np.isfinite(nonmembers).all()):
        raise ValueError("attack scores must be finite.")
    labels = np.concatenate([np.ones(len(members)), np.zeros(len(nonmembers))])
    scores = np.concatenate([members, nonmembers])
    return {
        "auc": float(roc_auc_score(labels, scores)),
        "tpr_at_fpr": {str(target): tpr_at_fpr(labels, scores, target) for target in fpr_targets},
    }


def threshold_scores(probs: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Per-sample membership scores (higher = member) of the threshold attacks from softmax ``probs`` [N, C]."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    p_true = probs[np.arange(len(labels)), labels]
    return {
        "loss": np.log(np.clip(p_true, _EPS, None)),  # minus the cross-entropy: low loss = member
        "confidence": p_true,
        "entropy": (probs * np.log(np.clip(probs, _EPS, None))).sum(axis=1),  # minus the entropy
    }


def threshold_attacks(
    member_probs: np.ndarray, member_labels: np.ndarray, nonmember_probs: np.ndarray, nonmember_labels: np.ndarray
) -> dict[str, dict]:
    """`attack_summary` of each threshold attack; the report passes forget as members and test as non-members."""
    members = threshold_scores(member_probs, member_labels)
    nonmembers = threshold_scores(nonmember_probs, nonmember_labels)
    return {name: attack_summary(members[name], nonmembers[name]) for name in THRESHOLD_ATTACKS}
