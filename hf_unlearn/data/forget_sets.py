"""Choosing which training samples to forget: sizes, random sets, and lowest-score (hard) sets.

All helpers return sorted int64 index arrays into the training set, so that the same inputs always give the
same indices (and the same manifest sha256).
"""

from __future__ import annotations

import math
import numbers

import numpy as np


def _check_size(size: int, n_train: int) -> None:
    """A forget set must hold at least one sample and leave at least one to retain."""
    if n_train < 2:
        raise ValueError(f"n_train must be at least 2 (one sample to forget, one to retain), got {n_train}.")
    if size < 1:
        raise ValueError(f"Forget set size is {size}; it must be at least 1. Ask for a larger size or fraction.")
    if size >= n_train:
        raise ValueError(
            f"Forget set size {size} would leave nothing to retain out of {n_train} training samples; "
            f"ask for fewer than {n_train} samples (or a fraction below 1)."
        )


def forget_size(spec: int | float, n_train: int) -> int:
    """Resolve a forget-set size: an int is a count, a float in (0, 1) a fraction of `n_train`.

    Fractions are rounded to the nearest count (halves round up). The result must be >= 1 and < n_train.
    """
    # bool is an int subclass; True/False as a size is almost certainly a mistake.
    if isinstance(spec, bool) or not isinstance(spec, numbers.Real):
        raise ValueError(f"Forget size must be an int (a count) or a float in (0, 1) (a fraction), got {spec!r}.")
    if isinstance(spec, numbers.Integral):
        size = int(spec)
    else:
        fraction = float(spec)
        if not 0.0 < fraction < 1.0:
            raise ValueError(
                f"Forget fraction {fraction} is outside (0, 1); give a fraction such as 0.1, "
                "or an int for an exact count."
            )
        size = math.floor(fraction * n_train + 0.5)
    _check_size(size, n_train)
    return size


def random_forget_indices(n_train: int, size: int, seed: int) -> np.ndarray:
    """`size` distinct indices drawn uniformly from range(n_train) with a seeded Generator, sorted."""
    _check_size(size, n_train)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(n_train, size=size, replace=False)
    return np.sort(chosen).astype(np.int64)


def lowest_score_indices(scores: np.ndarray, size: int) -> np.ndarray:
    """Sorted indices of the `size` smallest scores; equal scores go to the lower index (stable sort).

    Used with the average true-class confidence over pretraining: low confidence marks hard, highly
    memorized samples, which make an informative forget set.
    """
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"scores must be one value per training sample (1-D), got shape {values.shape}.")
    if np.isnan(values).any():
        raise ValueError("scores contain NaN; fix or drop the failed score computations before choosing a forget set.")
    _check_size(size, values.size)
    order = np.argsort(values, kind="stable")
    return np.sort(order[:size]).astype(np.int64)
