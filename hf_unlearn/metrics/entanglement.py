"""Variance entanglement score between retain and forget features (method-spec.md E.4; RUM's ES).

With ``mu_R`` and ``mu_F`` the means of the retain and forget features and ``mu`` the mean of R and F pooled
(so dominated by the larger set, usually R):

    ES = [ mean_{x in R} ||phi(x) - mu_R||^2 + mean_{x in F} ||phi(x) - mu_F||^2 ]
         / ( 1/2 * (||mu_R - mu||^2 + ||mu_F - mu||^2) )

i.e. within-set spread over between-set separation. Higher = more entangled = harder to unlearn. This is
the raw ratio RUM reports; the official sharp-unlearn code additionally min-max scales it with the arbitrary
bounds (0, 1300) and clips to [0, 1], which is not done here (divide by 1300 yourself to compare).

The class-wise score applies the same formula within each class present in both sets (intra-class,
inter-set) and averages the per-class scores weighted by ``|R_c| + |F_c|``.

Degenerate cases follow the arithmetic: identical set means give ``inf`` (or ``nan`` when the spread is zero
too). Features are usually L2-normalised penultimate features (`hf_unlearn.metrics.features`).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _as_features(x: Any, name: str) -> np.ndarray:
    array = np.asarray(x, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"{name} features must be a [N, D] array, got shape {array.shape}")
    if len(array) == 0:
        raise ValueError(f"{name} features are empty; the entanglement score needs both sets")
    return array


def _ratio(retain: np.ndarray, forget: np.ndarray) -> float:
    mu_r = retain.mean(axis=0)
    mu_f = forget.mean(axis=0)
    mu = np.concatenate([retain, forget]).mean(axis=0)
    within = np.mean(np.sum((retain - mu_r) ** 2, axis=1)) + np.mean(np.sum((forget - mu_f) ** 2, axis=1))
    between = 0.5 * (np.sum((mu_r - mu) ** 2) + np.sum((mu_f - mu) ** 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(within) / np.float64(between))


def entanglement_score(retain_features: Any, forget_features: Any) -> float:
    """Global variance entanglement score (raw ratio, no scaling) of ``[N_R, D]`` and ``[N_F, D]`` features."""
    retain = _as_features(retain_features, "retain")
    forget = _as_features(forget_features, "forget")
    if retain.shape[1] != forget.shape[1]:
        raise ValueError(f"retain has {retain.shape[1]} feature dimensions, forget has {forget.shape[1]}")
    return _ratio(retain, forget)


def classwise_entanglement_scores(
    retain_features: Any,
    retain_labels: Any,
    forget_features: Any,
    forget_labels: Any,
    min_per_set: int = 1,
) -> dict[int, tuple[float, int]]:
    """Per-class scores ``{class: (ES_c, |R_c| + |F_c|)}``, for classes with >= ``min_per_set`` samples in both sets."""
    retain = _as_features(retain_features, "retain")
    forget = _as_features(forget_features, "forget")
    retain_labels = np.asarray(retain_labels).reshape(-1)
    forget_labels = np.asarray(forget_labels).reshape(-1)
    if len(retain_labels) != len(retain) or len(forget_labels) != len(forget):
        raise ValueError("every feature row needs one label (retain and forget)")
    if min_per_set < 1:
        raise ValueError(f"min_per_set must be >= 1 (got {min_per_set})")
    scores: dict[int, tuple[float, int]] = {}
    for c in np.intersect1d(retain_labels, forget_labels):
        r = retain[retain_labels == c]
        f = forget[forget_labels == c]
        if len(r) >= min_per_set and len(f) >= min_per_set:
            scores[int(c)] = (_ratio(r, f), len(r) + len(f))
    return scores


def classwise_entanglement_score(
    retain_features: Any,
    retain_labels: Any,
    forget_features: Any,
    forget_labels: Any,
    min_per_set: int = 1,
) -> float:
    """Class-wise variance entanglement: per-class ES averaged with weights ``|R_c| + |F_c|``.

    Only classes present in both sets count (with at least ``min_per_set`` samples in each). Returns ``nan``
    when no class qualifies.
    """
    scores = classwise_entanglement_scores(retain_features, retain_labels, forget_features, forget_labels, min_per_set)
    if not scores:
        return float("nan")
    values = np.array([s for s, _ in scores.values()], dtype=np.float64)
    weights = np.array([w for _, w in scores.values()], dtype=np.float64)
    return float(np.sum(values * weights) / np.sum(weights))
