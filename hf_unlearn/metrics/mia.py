"""Membership-inference "MIA-efficacy" on the forget set (method-spec E.3, with design.md's fixes).

Shadow members (label 1) are retain samples, shadow non-members (label 0) are test samples; one
RBF-SVC per scalar feature learns member vs non-member, and the score is the fraction of target
(forget) samples it calls non-member. Higher = the forget set looks more like unseen data.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.svm import SVC

MIA_FEATURES = ("correctness", "confidence", "entropy", "m_entropy")
# "prob" (the whole probability vector) is accepted too, as in the official dict, but is off by default.
_ALL_FEATURES = (*MIA_FEATURES, "prob")
# Clamp before log so that exact 0/1 probabilities give finite features (0 * log 0 counts as 0).
_EPS = 1e-30


def _log(x: np.ndarray) -> np.ndarray:
    return np.log(np.clip(x, _EPS, None))


def _validated(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    if probs.ndim != 2:
        raise ValueError(f"probabilities must be [N, C], got shape {probs.shape}")
    if len(probs) != len(labels):
        raise ValueError(f"{len(probs)} probability rows but {len(labels)} labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= probs.shape[1]):
        raise ValueError(f"labels must lie in [0, {probs.shape[1]})")
    return probs, labels


def mia_features(probs: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Per-sample attack features from softmax outputs ``probs`` [N, C] and true ``labels`` [N].

    ``m_entropy`` is Song & Mittal's modified entropy
    ``-(1 - p_y) log p_y - sum_{i != y} p_i log(1 - p_i)``; the official code indexed the
    whole batch's labels and used log(p) for log(1 - p) (method-spec G.9).
    """
    probs, labels = _validated(probs, labels)
    rows = np.arange(len(labels))
    p_true = probs[rows, labels]
    not_true = np.ones_like(probs, dtype=bool)
    not_true[rows, labels] = False
    others = np.where(not_true, -probs * _log(1.0 - probs), 0.0).sum(axis=1)
    return {
        "correctness": (probs.argmax(axis=1) == labels).astype(np.float64),
        "confidence": p_true,
        "entropy": -(probs * _log(probs)).sum(axis=1),
        "m_entropy": -(1.0 - p_true) * _log(p_true) + others,
        "prob": probs,
    }


def _as_columns(values: np.ndarray) -> np.ndarray:
    """SVC wants a 2-D design matrix: scalar features become one column."""
    return values.reshape(len(values), -1)


def mia_efficacy(
    shadow_member_probs: np.ndarray,
    shadow_member_labels: np.ndarray,
    shadow_nonmember_probs: np.ndarray,
    shadow_nonmember_labels: np.ndarray,
    target_probs: np.ndarray,
    target_labels: np.ndarray,
    *,
    features: Sequence[str] = MIA_FEATURES,
    seed: int = 0,
) -> dict[str, float]:
    """MIA-efficacy per feature: 1 - mean(SVC predicts member) over the target samples."""
    unknown = [name for name in features if name not in _ALL_FEATURES]
    if unknown:
        raise ValueError(f"unknown MIA features {unknown}; choose from {_ALL_FEATURES}")
    groups = {
        "shadow members": (shadow_member_probs, shadow_member_labels),
        "shadow non-members": (shadow_nonmember_probs, shadow_nonmember_labels),
        "target": (target_probs, target_labels),
    }
    feats = {}
    for name, (probs, labels) in groups.items():
        if len(np.asarray(labels).reshape(-1)) == 0:
            raise ValueError(f"the {name} group is empty")
        feats[name] = mia_features(probs, labels)
    members, nonmembers, target = feats["shadow members"], feats["shadow non-members"], feats["target"]
    n_members = len(members["confidence"])
    n_nonmembers = len(nonmembers["confidence"])
    y = np.concatenate([np.ones(n_members, dtype=np.int64), np.zeros(n_nonmembers, dtype=np.int64)])
    # Shuffled as in the official code; seeded so the score is reproducible (libsvm is order-sensitive).
    order = np.random.default_rng(seed).permutation(len(y))
    scores = {}
    for name in features:
        x = np.concatenate([_as_columns(members[name]), _as_columns(nonmembers[name])])
        attacker = SVC(C=3, gamma="auto", kernel="rbf")
        attacker.fit(x[order], y[order])
        scores[name] = float(1.0 - attacker.predict(_as_columns(target[name])).mean())
    return scores


def sampled_mia_efficacy(
    member_probs: np.ndarray,
    member_labels: np.ndarray,
    nonmember_probs: np.ndarray,
    nonmember_labels: np.ndarray,
    target_probs: np.ndarray,
    target_labels: np.ndarray,
    *,
    shadow_size: int | None = None,
    features: Sequence[str] = MIA_FEATURES,
    seed: int = 0,
) -> dict[str, float]:
    """The report's MIA-efficacy: `mia_efficacy` with a seeded sample of ``shadow_size`` member rows (default: as
    many as the non-member rows) as shadow members, so the attack trains on balanced classes.

    The pipeline passes retain as members, test as non-members and forget as the target; the ``mia`` evaluate module
    calls this function too.
    """
    member_labels = np.asarray(member_labels).reshape(-1)
    size = len(np.asarray(nonmember_labels).reshape(-1)) if shadow_size is None else shadow_size
    rows = sample_shadow_members(len(member_labels), size, seed)
    member_probs = np.asarray(member_probs)[rows]
    return mia_efficacy(
        member_probs,
        member_labels[rows],
        nonmember_probs,
        nonmember_labels,
        target_probs,
        target_labels,
        features=features,
        seed=seed,
    )


def sample_shadow_members(n_retain: int, n: int, seed: int) -> np.ndarray:
    """Sorted seeded random retain indices (without replacement), ``min(n, n_retain)`` of them.

    The official code took the first ``n`` retain indices in order (method-spec G.10).
    """
    if n_retain < 0 or n < 0:
        raise ValueError(f"n_retain and n must be non-negative, got {n_retain} and {n}")
    chosen = np.random.default_rng(seed).choice(n_retain, size=min(n, n_retain), replace=False)
    return np.sort(chosen).astype(np.int64)
