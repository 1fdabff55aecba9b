"""The likelihood-ratio attack (LiRA, Carlini et al., 2022) and its per-example Gaussians.

Each sample is judged against shadow models: those that trained on it ("in") and those that did not ("out"). The
statistic is the logit-scaled true-class confidence ``log(p / (1 - p))``, which is close to Gaussian over shadow
models. For a target model's statistic ``x`` on sample i:

- online:  ``log N(x; mu_in[i], s_in[i]^2) - log N(x; mu_out[i], s_out[i]^2)`` (higher = member);
- offline: ``(x - mu_out[i]) / s_out[i]``, a one-sided test against the out models only (no in models needed);
- fixed variance: one ``s_in`` and one ``s_out`` for all samples (pooled over samples), steadier with few shadows.

Statistics may carry a last axis of views (the image and its mirror): the views are treated as independent and
their scores are summed. `gaussian_log_ratio` serves U-LiRA too (there "in" = unlearned, "out" = retrained).
"""

from __future__ import annotations

import numpy as np

# Clamp before log so that a probability that underflowed to 0 gives a finite statistic.
_TINY = np.finfo(np.float64).tiny
# A per-sample standard deviation below this (shadows that agree to float precision) is floored, so that the
# ratio stays finite.
MIN_STD = 1e-4


def logit_confidence(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``log p_y - log(sum_{i != y} p_i)`` per sample: the logit-scaled true-class confidence.

    ``1 - p_y`` is taken as the sum of the other probabilities, never as a difference: near ``p_y = 1`` the
    difference cancels to 0 (or to rounding noise) while the sum of the small probabilities keeps their precision.
    """
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    if len(labels) != len(probs):
        raise ValueError(f"{len(probs)} probability rows but {len(labels)} labels.")
    true_class = np.arange(probs.shape[1]) == labels[:, None]
    p_true = probs[true_class]
    rest = np.where(true_class, 0.0, probs).sum(axis=1)
    return np.log(np.clip(p_true, _TINY, None)) - np.log(np.clip(rest, _TINY, None))


def gaussian_fit(shadow_stats: np.ndarray, mask: np.ndarray, *, fixed_variance: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample mean and std over the shadows where ``mask`` [K, N] holds; ``shadow_stats`` is [K, N] or [K, N, V].

    Returns arrays of shape [N, V]; the std is the sample std (``ddof=1``). With ``fixed_variance`` the std is one
    value per view, pooled: every sample's squared deviations from its own mean, summed, over the summed
    ``count - 1``. Without it, a sample with one masked shadow has no spread of its own and takes the pooled std. A
    sample no masked shadow covers gets NaN mean and std, as does every std when no sample has two (the caller
    decides).
    """
    stats = np.asarray(shadow_stats, dtype=np.float64)
    if stats.ndim == 2:
        stats = stats[..., None]
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != stats.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match the shadows' [K, N] = {stats.shape[:2]}.")
    weights = np.broadcast_to(mask[..., None], stats.shape)
    counts = weights.sum(axis=0).astype(np.float64)
    dof = np.maximum(counts - 1, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(weights, stats, 0.0).sum(axis=0) / counts
        # Masked out before squaring: an uncovered sample's NaN mean must not reach the pooled sum.
        squares = np.where(weights, (stats - mean) ** 2, 0.0).sum(axis=0)
        pooled = np.sqrt(squares.sum(axis=0) / dof.sum(axis=0))  # [V]; NaN when no sample has two shadows
        std = np.broadcast_to(pooled, mean.shape) if fixed_variance else np.sqrt(squares / dof)
        std = np.where(dof > 0, std, pooled)
    std = np.where(counts > 0, np.maximum(std, MIN_STD), np.nan)
    return mean, std


def _log_normal(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return -0.5 * ((x - mean) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi)


def _as_views(target_stats: np.ndarray) -> np.ndarray:
    x = np.asarray(target_stats, dtype=np.float64)
    return x[:, None] if x.ndim == 1 else x


def gaussian_log_ratio(target_stats: np.ndarray, fit_in: tuple, fit_out: tuple) -> np.ndarray:
    """``sum over views of log N(x; in) - log N(x; out)`` per sample; ``target_stats`` is [N] or [N, V]."""
    x = _as_views(target_stats)
    return (_log_normal(x, *fit_in) - _log_normal(x, *fit_out)).sum(axis=1)


def lira_scores(
    target_stats: np.ndarray,
    shadow_stats: np.ndarray,
    shadow_in: np.ndarray,
    *,
    online: bool = True,
    fixed_variance: bool = False,
) -> np.ndarray:
    """LiRA membership scores (higher = member) of a target model's statistics [N] or [N, V].

    ``shadow_stats`` [K, N] or [K, N, V] are the shadows' statistics on the same samples and ``shadow_in`` [K, N]
    says which shadows trained on which sample. Online needs in and out shadows for every sample, offline only out.
    """
    x = _as_views(target_stats)
    stats = np.asarray(shadow_stats, dtype=np.float64)
    if (stats if stats.ndim == 3 else stats[..., None]).shape[1:] != x.shape:
        raise ValueError(f"the shadows' statistics {stats.shape} do not match the target's {x.shape} ([K, N(, V)]).")
    shadow_in = np.asarray(shadow_in, dtype=bool)
    fit_out = gaussian_fit(stats, ~shadow_in, fixed_variance=fixed_variance)
    _check_fit(fit_out, "left them out")
    if not online:
        return ((x - fit_out[0]) / fit_out[1]).sum(axis=1)
    fit_in = gaussian_fit(stats, shadow_in, fixed_variance=fixed_variance)
    _check_fit(fit_in, "trained on them")
    return gaussian_log_ratio(x, fit_in, fit_out)


def _check_fit(fit: tuple[np.ndarray, np.ndarray], which: str) -> None:
    mean, std = fit
    if np.isnan(mean).any():
        raise ValueError(f"some samples have no shadow model that {which}; train more shadows.")
    if np.isnan(std).any():
        raise ValueError(f"no sample has two shadow models that {which}: their spread is unknown; train more shadows.")
