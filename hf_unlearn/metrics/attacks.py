"""Membership-inference attacks judged by their error rates: ROC AUC and the true-positive rate at a low FPR.

An attack gives each sample a score, higher meaning "member". `attack_summary` turns the scores of known members
and known non-members into the numbers the field reports (Carlini et al., 2022): the area under the ROC curve (0.5
is chance) and the TPR at 1% and 0.1% false positives, the regime where a confident attack does real harm.

`threshold_attacks` are the three population attacks that need no shadow models, each thresholded once for all
samples: the loss (Yeom et al., 2018), the top-1 confidence (Salem et al., 2019) and the prediction entropy. The
top-1 confidence, not the true-class one: the true-class confidence is a monotone function of the loss, so its ROC
would repeat the loss attack's; the top-1 confidence (like the entropy) reads no label and differs on the samples
the model gets wrong.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

FPR_TARGETS = (0.01, 0.001)
THRESHOLD_ATTACKS = ("loss", "confidence", "entropy")
# Clamp before log so that a probability that underflowed to 0 gives a finite (very low) score.
_TINY = np.finfo(np.float64).tiny


def tpr_at_fpr(labels: np.ndarray, scores: np.ndarray, fpr_target: float) -> float:
    """The highest TPR among thresholds whose FPR is at most ``fpr_target``; no interpolation between thresholds.

    Tied scores cannot be split by a threshold: a member and a non-member with the same score are flagged together.
    The threshold above every score (FPR 0, TPR 0) always qualifies, so the result is 0 when nothing better does.
    """
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    return float(tpr[fpr <= fpr_target].max())


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


def log_probabilities(probs: np.ndarray) -> np.ndarray:
    """Normalized ``log p`` [N, C] that keeps precision where a probability is near 1.

    ``log(p_max)`` is taken as ``-log1p(rest / p_max)`` with ``rest`` the sum of the other probabilities: a
    confident model's ``p_max`` rounds to 1.0 (and its loss to 0) while ``rest``, a sum of small numbers, does not,
    so confident samples keep distinct scores instead of tying.
    """
    probs = np.asarray(probs, dtype=np.float64)
    rows, top = np.arange(len(probs)), probs.argmax(axis=1)
    p_top = probs[rows, top]
    rest = np.where(np.arange(probs.shape[1]) == top[:, None], 0.0, probs).sum(axis=1)
    logp = np.log(np.clip(probs, _TINY, None)) - np.log(p_top + rest)[:, None]
    logp[rows, top] = -np.log1p(rest / p_top)
    return logp


def threshold_scores(probs: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Per-sample membership scores (higher = member) of the threshold attacks from softmax ``probs`` [N, C].

    ``loss``: ``log p_y`` (minus the cross-entropy); ``confidence``: ``log max_c p_c``; ``entropy``: minus the
    entropy. Logs of probabilities rather than probabilities: the same ranking (so the same ROC), more precision.
    """
    logp = log_probabilities(probs)
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    if len(labels) != len(logp):
        raise ValueError(f"{len(logp)} probability rows but {len(labels)} labels.")
    return {
        "loss": logp[np.arange(len(labels)), labels],
        "confidence": logp.max(axis=1),
        "entropy": (np.exp(logp) * logp).sum(axis=1),
    }


def threshold_attacks(
    member_probs: np.ndarray, member_labels: np.ndarray, nonmember_probs: np.ndarray, nonmember_labels: np.ndarray
) -> dict[str, dict]:
    """`attack_summary` of each threshold attack; the report passes forget as members and test as non-members."""
    members = threshold_scores(member_probs, member_labels)
    nonmembers = threshold_scores(nonmember_probs, nonmember_labels)
    return {name: attack_summary(members[name], nonmembers[name]) for name in THRESHOLD_ATTACKS}
