"""A reference-free unlearning objective: how close a model comes to what a model retrained without the forget set
would score, with the retrained model's forget accuracy *estimated* from the original instead of measured.

Numbers in, numbers out (no model, no data set): `forget_target` estimates the target from the original's
per-sample scores, `reference_free_score` scores a model against it, `forgotten` says when enough is forgotten.
`hf_unlearn.forgetting` feeds them from models; docs/tuning.md ("Without a reference") says what they assume.

The estimate. A model never trained on a sample gets it right about as often as it gets a held-out sample of the
same difficulty right. Difficulty is ranked twice, once per population, with the only scores each has:
- a forget sample's rank among all training samples (retain and forget, which the original trained on alike) by
  its training-time true-class confidence: the learning events (mean over pretraining epochs) where the recipe
  trained the original, else the original's own confidence on it;
- a held-out sample's rank among the held-out samples by the original's true-class confidence on it.
Each forget sample is matched with the held-out sample at the same quantile, and the target forget accuracy is the
original's mean true-class confidence on the matched samples: their expected accuracy, read from a calibrated
probability rather than from their few errors (a strong model gets its hardest held-out samples right more often
than not, and counting errors would round a hard forget set's target up to 1; docs/tuning.md has the measurement).
A random forget set matches the held-out set as a whole (target = its expected accuracy); a hard one matches its
hardest part. A forget sample whose class has no retain sample left gets 0: a model trained without any sample of a
class never predicts it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class ForgetTarget:
    """What a model retrained without the forget set is expected to score, estimated from the original alone."""

    forget: float  # forget accuracy (and mean true-class confidence on the forget samples)
    matched_accuracy: float  # the matched held-out samples' observed accuracy (a record; the target is `forget`)
    retain: float  # the original's retain accuracy (retraining keeps it)
    validation: float  # the original's held-out accuracy
    forget_size: int
    difficulty: str = "confidence"  # what ranked the training samples: "learning_events" or "confidence"

    def as_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def difficulty_quantiles(forget_scores: np.ndarray, retain_scores: np.ndarray) -> np.ndarray:
    """Mid-rank quantile in (0, 1) of each forget score among all training scores (retain and forget); low = hard."""
    pool = np.sort(np.concatenate([np.asarray(retain_scores, float), np.asarray(forget_scores, float)]))
    forget = np.asarray(forget_scores, float)
    below, upto = np.searchsorted(pool, forget, "left"), np.searchsorted(pool, forget, "right")
    return (below + upto) / (2.0 * pool.size)


def forget_target(
    *,
    forget_scores: np.ndarray,
    retain_scores: np.ndarray,
    heldout_confidence: np.ndarray,
    heldout_correct: np.ndarray,
    forget_labels: np.ndarray,
    retain_labels: np.ndarray,
    original_retain: float,
    original_validation: float,
    difficulty: str = "confidence",
) -> ForgetTarget:
    """The target of a forget set (module docstring): ``*_scores`` are training-time true-class confidences (higher
    = easier), ``heldout_*`` the original's true-class confidence and correctness on the held-out samples."""
    confidence = np.asarray(heldout_confidence, float)
    if confidence.size == 0:
        raise ValueError("The reference-free target needs held-out samples; the validation split is empty.")
    order = np.argsort(confidence, kind="stable")
    quantiles = difficulty_quantiles(forget_scores, retain_scores)
    matched = order[np.minimum((quantiles * order.size).astype(int), order.size - 1)]
    accuracy = np.asarray(heldout_correct, float)[matched]
    level = confidence[matched]
    unseen = ~np.isin(np.asarray(forget_labels), np.asarray(retain_labels))
    accuracy[unseen], level[unseen] = 0.0, 0.0
    return ForgetTarget(
        forget=float(level.mean()),
        matched_accuracy=float(accuracy.mean()),
        retain=float(original_retain),
        validation=float(original_validation),
        forget_size=int(accuracy.size),
        difficulty=difficulty,
    )


def reference_free_score(measured: Mapping[str, float | None], target: ForgetTarget) -> float:
    """ToW against the estimated reference: ``1 - |a - t|`` for forget accuracy and forget confidence (both toward
    the target ``t``), ``1 - drop`` for retain and validation accuracy below the original's (a gain is not
    penalised), multiplied. A measurement left out (retain during early stopping) is skipped."""
    factors = [1.0 - abs(float(measured["forget"]) - target.forget)]
    if measured.get("forget_confidence") is not None:
        factors.append(1.0 - abs(float(measured["forget_confidence"]) - target.forget))
    for split, level in (("retain", target.retain), ("validation", target.validation)):
        if measured.get(split) is not None:
            factors.append(1.0 - max(0.0, level - float(measured[split])))
    return float(np.prod(factors))


def tolerance(target: ForgetTarget) -> float:
    """One standard error of an accuracy over the forget set at the target: finer differences are noise."""
    t = min(max(target.forget, 0.0), 1.0)
    return math.sqrt(t * (1.0 - t) / max(target.forget_size, 1))


def forgotten(measured: Mapping[str, float | None], target: ForgetTarget) -> bool:
    """Enough is forgotten: the forget accuracy is at the target or below it (within `tolerance`)."""
    return float(measured["forget"]) <= target.forget + tolerance(target) + 1e-12
