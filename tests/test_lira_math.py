"""LiRA's per-example Gaussians (hf_unlearn.metrics.lira) on worked examples computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hf_unlearn.metrics.attacks import attack_summary
from hf_unlearn.metrics.lira import gaussian_fit, gaussian_log_ratio, lira_scores, logit_confidence

# One sample, six shadows: three trained on it (statistics 1.5, 2, 2.5: mean 2, sample variance 0.5 / 2 = 0.25, std
# 0.5) and three not (-1, 0, 1: mean 0, variance 2 / 2 = 1, std 1).
ONE_STATS = np.array([[1.5], [2.0], [2.5], [-1.0], [0.0], [1.0]])
ONE_IN = np.array([[True], [True], [True], [False], [False], [False]])

# Two samples, four shadows, different counts per sample:
#   sample A: in {1, 3} (mean 2, squares 2, 1 dof),    out {10, 12} (mean 11, squares 2, 1 dof)
#   sample B: in {0, 3, 6} (mean 3, squares 18, 2 dof), out {9} (mean 9, no spread of its own)
TWO_STATS = np.array([[1.0, 0.0], [3.0, 3.0], [10.0, 6.0], [12.0, 9.0]])
TWO_IN = np.array([[True, True], [True, True], [False, True], [False, False]])


def _log_normal(x: float, mean: float, std: float) -> float:
    return -0.5 * ((x - mean) / std) ** 2 - math.log(std) - 0.5 * math.log(2 * math.pi)


def test_gaussian_fit_per_sample_mean_and_std():
    mean, std = gaussian_fit(ONE_STATS, ONE_IN, fixed_variance=False)
    assert (mean.tolist(), std.tolist()) == ([[2.0]], [[0.5]])
    mean, std = gaussian_fit(ONE_STATS, ~ONE_IN, fixed_variance=False)
    assert (mean.tolist(), std.tolist()) == ([[0.0]], [[1.0]])


def test_online_log_likelihood_ratio_by_hand():
    # x = 1: log N(1; 2, 0.5^2) - log N(1; 0, 1) = (-2 - log 0.5) - (-0.5) = log 2 - 1.5 (the 2 pi terms cancel).
    assert _log_normal(1.0, 2.0, 0.5) - _log_normal(1.0, 0.0, 1.0) == pytest.approx(math.log(2) - 1.5)
    score = lira_scores(np.array([1.0]), ONE_STATS, ONE_IN)
    assert score.tolist() == pytest.approx([math.log(2) - 1.5])
    # x = 2, the in mean: (0 - log 0.5) - (-2) = log 2 + 2.
    assert lira_scores(np.array([2.0]), ONE_STATS, ONE_IN).tolist() == pytest.approx([math.log(2) + 2])
    fits = ((np.array([[2.0]]), np.array([[0.5]])), (np.array([[0.0]]), np.array([[1.0]])))
    assert gaussian_log_ratio(np.array([1.0]), *fits).tolist() == pytest.approx([math.log(2) - 1.5])


def test_offline_is_the_z_score_against_the_out_shadows():
    # (x - mu_out) / s_out with mu_out = 0, s_out = 1: the in shadows play no part.
    for x in (-0.5, 1.0, 2.0):
        assert lira_scores(np.array([x]), ONE_STATS, ONE_IN, online=False).tolist() == pytest.approx([x])
    scores = lira_scores(np.array([11.0, 9.0]), TWO_STATS, TWO_IN, online=False)
    assert scores.tolist() == pytest.approx([0.0, 0.0])  # each sample at its out mean


def test_fixed_variance_pools_squared_deviations_over_degrees_of_freedom():
    # In: (2 + 18) / (1 + 2) = 20 / 3 for both samples; out: 2 / 1 (sample B's single shadow adds no dof).
    mean, std = gaussian_fit(TWO_STATS, TWO_IN, fixed_variance=True)
    assert mean[:, 0].tolist() == [2.0, 3.0]
    assert std[:, 0].tolist() == pytest.approx([math.sqrt(20 / 3)] * 2)
    mean, std = gaussian_fit(TWO_STATS, ~TWO_IN, fixed_variance=True)
    assert mean[:, 0].tolist() == [11.0, 9.0]
    assert std[:, 0].tolist() == pytest.approx([math.sqrt(2)] * 2)
    x = np.array([4.0, 3.0])
    s_in, s_out = math.sqrt(20 / 3), math.sqrt(2)
    expected = [
        _log_normal(4.0, 2.0, s_in) - _log_normal(4.0, 11.0, s_out),
        _log_normal(3.0, 3.0, s_in) - _log_normal(3.0, 9.0, s_out),
    ]
    assert lira_scores(x, TWO_STATS, TWO_IN, fixed_variance=True).tolist() == pytest.approx(expected)


def test_per_sample_variance_falls_back_to_the_pooled_one_for_a_single_shadow():
    # Sample B has one out shadow: no spread of its own, so the pooled out std (sqrt 2, from sample A), not ~0.
    _, std = gaussian_fit(TWO_STATS, ~TWO_IN, fixed_variance=False)
    assert std[:, 0].tolist() == pytest.approx([math.sqrt(2), math.sqrt(2)])
    _, std = gaussian_fit(TWO_STATS, TWO_IN, fixed_variance=False)
    assert std[:, 0].tolist() == pytest.approx([math.sqrt(2), 3.0])  # each sample's own


def test_views_are_summed():
    rng = np.random.default_rng(0)
    stats = rng.normal(size=(12, 5, 2))
    shadow_in = np.tile(np.arange(12)[:, None] % 2 == 0, (1, 5))  # every sample: 6 in, 6 out
    target = rng.normal(size=(5, 2))
    for kwargs in ({}, {"online": False}, {"fixed_variance": True}):
        both = lira_scores(target, stats, shadow_in, **kwargs)
        each = [lira_scores(target[:, v], stats[..., v], shadow_in, **kwargs) for v in range(2)]
        assert both == pytest.approx(each[0] + each[1])


def test_missing_shadows_are_an_error():
    every_in = np.array([[True, True], [True, False], [True, True], [True, False]])  # sample A: never out
    with pytest.raises(ValueError, match="left them out"):
        lira_scores(np.zeros(2), TWO_STATS, every_in)
    with pytest.raises(ValueError, match="left them out"):
        lira_scores(np.zeros(2), TWO_STATS, every_in, online=False)
    never_in = ~every_in  # sample A: never in; offline needs no in shadows
    with pytest.raises(ValueError, match="trained on them"):
        lira_scores(np.zeros(2), TWO_STATS, never_in)
    assert np.isfinite(lira_scores(np.zeros(2), TWO_STATS, never_in, online=False)).all()
    one_each = np.array([[True, False], [False, True]])  # no sample has two shadows on either side: no spread
    with pytest.raises(ValueError, match="spread is unknown"):
        lira_scores(np.zeros(2), TWO_STATS[:2], one_each, fixed_variance=True)
    with pytest.raises(ValueError, match="do not match"):
        lira_scores(np.zeros((2, 2)), TWO_STATS, TWO_IN)


def test_logit_confidence_keeps_precision_near_one():
    # p_y = 1 - 3e-20 is 1.0 in float64; the statistic is log(p_y) - log(3e-20), from the other classes' sum.
    probs = np.array([[1 - 3e-20, 1e-20, 2e-20], [0.2, 0.8, 0.0], [1 - 3e-20, 1e-20, 2e-20]])
    stats = logit_confidence(probs, np.array([0, 0, 1]))
    assert stats[0] == pytest.approx(-math.log(3e-20), rel=1e-12)  # 45.05..., not the clamp of a 0 difference
    assert stats[1] == pytest.approx(math.log(0.2 / 0.8))
    assert stats[2] == pytest.approx(math.log(1e-20), rel=1e-12)  # a tiny true class: log(1e-20 / (1 + 2e-20))


def test_lira_separates_members_it_was_built_for():
    """Synthetic shadows with a per-sample in/out gap: members drawn from the in Gaussians score far above
    non-members drawn from the out ones (a sanity check of the signs)."""
    rng = np.random.default_rng(3)
    n, k = 200, 16
    mu_out = rng.normal(0, 3, n)  # samples differ in difficulty far more than membership moves them
    shadow_in = rng.permuted(np.tile(np.arange(k)[:, None] < k // 2, (1, n)), axis=0)
    stats = mu_out + 1.5 * shadow_in + rng.normal(0, 0.5, (k, n))
    member = rng.random(n) < 0.5
    target = mu_out + 1.5 * member + rng.normal(0, 0.5, n)
    for kwargs in ({}, {"online": False}, {"fixed_variance": True}):
        scores = lira_scores(target, stats, shadow_in, **kwargs)
        assert attack_summary(scores[member], scores[~member])["auc"] > 0.9, kwargs
    # The population threshold on the raw statistic is fooled by the spread of difficulties.
    assert attack_summary(target[member], target[~member])["auc"] < 0.75
