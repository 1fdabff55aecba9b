"""Metric math checked against hand computations, plus the evaluate wrappers."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from hf_unlearn.metrics import (
    accuracy,
    mia_efficacy,
    mia_features,
    predict_probabilities,
    sample_shadow_members,
    tug_of_war,
)

# ---------------------------------------------------------------- ToW

RETRAINED = {"retain": 0.99, "forget": 0.40, "test": 0.92}


def test_tow_absolute_worked_example():
    unlearned = {"retain": 0.98, "forget": 0.50, "test": 0.90}
    # |.98-.99| = .01 -> .99 ; |.50-.40| = .10 -> .90 ; |.90-.92| = .02 -> .98 ; .99 * .90 * .98 = 0.87318
    assert tug_of_war(unlearned, RETRAINED) == pytest.approx(0.87318)


def test_tow_signed_differs_from_absolute_when_beating_retrain():
    # Better retain/test than retrain and over-forgetting: absolute penalises, signed rewards.
    unlearned = {"retain": 1.00, "forget": 0.30, "test": 0.95}
    # absolute: (1-.01)(1-.10)(1-.03) = .99 * .90 * .97 = 0.86427
    assert tug_of_war(unlearned, RETRAINED) == pytest.approx(0.86427)
    # signed: (1-(.99-1.00)) (1-(.30-.40)) (1-(.92-.95)) = 1.01 * 1.10 * 1.03 = 1.144330
    assert tug_of_war(unlearned, RETRAINED, signed=True) == pytest.approx(1.14433)


def test_tow_is_one_when_equal():
    assert tug_of_war(RETRAINED, dict(RETRAINED)) == pytest.approx(1.0)
    assert tug_of_war(RETRAINED, dict(RETRAINED), signed=True) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "bad, key",
    [
        ({"retain": 0.9, "test": 0.9}, "forget"),
        ({"retain": 99.0, "forget": 0.5, "test": 0.9}, "retain"),
        ({"retain": 0.9, "forget": -0.1, "test": 0.9}, "forget"),
        ({"retain": 0.9, "forget": 0.5, "test": float("nan")}, "test"),
    ],
)
def test_tow_validation_names_the_key(bad, key):
    with pytest.raises(ValueError, match=key):
        tug_of_war(bad, RETRAINED)
    with pytest.raises(ValueError, match=key):
        tug_of_war(RETRAINED, bad, signed=True)


# ---------------------------------------------------------------- accuracy


def test_accuracy_from_probabilities_and_predictions():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    labels = np.array([0, 1, 1, 1])  # argmax = 0,1,0,1 -> 3 of 4 right
    assert accuracy(probs, labels) == pytest.approx(0.75)
    assert accuracy(np.array([2, 0, 1]), np.array([2, 1, 1])) == pytest.approx(2 / 3)


def test_accuracy_rejects_empty_and_mismatched():
    with pytest.raises(ValueError):
        accuracy(np.zeros((0, 3)), np.zeros(0, dtype=int))
    with pytest.raises(ValueError):
        accuracy(np.array([0, 1]), np.array([0, 1, 1]))


# ---------------------------------------------------------------- MIA features

PROBS = np.array(
    [
        [0.7, 0.2, 0.1],  # label 0: right, confident
        [0.2, 0.5, 0.3],  # label 2: wrong (argmax 1)
        [1.0, 0.0, 0.0],  # label 0: exact one-hot, exercises the log clamp
    ]
)
LABELS = np.array([0, 2, 0])


def test_mia_features_by_hand():
    f = mia_features(PROBS, LABELS)
    np.testing.assert_array_equal(f["correctness"], [1.0, 0.0, 1.0])
    np.testing.assert_allclose(f["confidence"], [0.7, 0.3, 1.0])
    # entropy row 0: .7*.356675 + .2*1.609438 + .1*2.302585 = .249672 + .321888 + .230259
    # entropy row 1: .2*1.609438 + .5*.693147 + .3*1.203973 = .321888 + .346574 + .361192
    np.testing.assert_allclose(f["entropy"], [0.801819, 1.029653, 0.0], atol=1e-6)
    # m-entropy = -(1-p_y) log p_y - sum_{i != y} p_i log(1 - p_i)
    # row 0 (y=0): .3*.356675 + .2*.223144 (=-ln .8) + .1*.105361 (=-ln .9) = .107003 + .044629 + .010536
    # row 1 (y=2): .7*1.203973 + .2*.223144 + .5*.693147 = .842781 + .044629 + .346574
    # row 2 (y=0): 0*log 1 + 0 + 0
    np.testing.assert_allclose(f["m_entropy"], [0.162167, 1.233983, 0.0], atol=1e-6)


def test_m_entropy_is_not_the_official_buggy_formula():
    # The official code used log(p_i) instead of log(1 - p_i) for the other classes.
    buggy_row0 = -0.3 * math.log(0.7) - (0.2 * math.log(0.2) + 0.1 * math.log(0.1))
    assert mia_features(PROBS, LABELS)["m_entropy"][0] != pytest.approx(buggy_row0)


def test_m_entropy_finite_when_true_class_has_zero_probability():
    f = mia_features(np.array([[0.0, 1.0, 0.0]]), np.array([0]))
    assert np.isfinite(f["m_entropy"]).all() and f["m_entropy"][0] > 50


def test_mia_features_rejects_bad_labels():
    with pytest.raises(ValueError):
        mia_features(PROBS, np.array([0, 3, 0]))
    with pytest.raises(ValueError):
        mia_features(PROBS, np.array([0, 1]))


# ---------------------------------------------------------------- MIA efficacy


def _two_class_probs(confidences: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities [c, 1-c] with true label 0."""
    probs = np.stack([confidences, 1.0 - confidences], axis=1)
    return probs, np.zeros(len(confidences), dtype=np.int64)


@pytest.fixture(scope="module")
def toy_shadow():
    rng = np.random.default_rng(123)
    members = _two_class_probs(rng.uniform(0.95, 1.0, 60))  # seen data: confident and right
    nonmembers = _two_class_probs(rng.uniform(0.2, 0.4, 60))  # unseen data: unsure and wrong
    return members, nonmembers


def test_mia_efficacy_separable_toy(toy_shadow):
    members, nonmembers = toy_shadow
    # Target looking like unseen data: every sample called non-member -> efficacy 1.
    forgotten = mia_efficacy(*members, *nonmembers, *nonmembers)
    assert set(forgotten) == {"correctness", "confidence", "entropy", "m_entropy"}
    for value in forgotten.values():
        assert value == pytest.approx(1.0)
    # Target looking like training data: every sample called member -> efficacy 0.
    for value in mia_efficacy(*members, *nonmembers, *members).values():
        assert value == pytest.approx(0.0)


def test_mia_efficacy_is_deterministic_for_a_seed():
    rng = np.random.default_rng(7)
    # Overlapping groups, so the fitted boundary (and the score) is not trivially 0 or 1.
    members = _two_class_probs(rng.uniform(0.4, 1.0, 80))
    nonmembers = _two_class_probs(rng.uniform(0.2, 0.8, 80))
    target = _two_class_probs(rng.uniform(0.2, 1.0, 50))
    first = mia_efficacy(*members, *nonmembers, *target, seed=3)
    assert first == mia_efficacy(*members, *nonmembers, *target, seed=3)
    assert all(0.0 <= v <= 1.0 for v in first.values())


def test_mia_efficacy_feature_subset_and_errors(toy_shadow):
    members, nonmembers = toy_shadow
    only = mia_efficacy(*members, *nonmembers, *nonmembers, features=("confidence",))
    assert list(only) == ["confidence"]
    empty = (np.zeros((0, 2)), np.zeros(0, dtype=np.int64))
    with pytest.raises(ValueError, match="target"):
        mia_efficacy(*members, *nonmembers, *empty)
    with pytest.raises(ValueError, match="members"):
        mia_efficacy(*empty, *nonmembers, *members)
    with pytest.raises(ValueError):
        mia_efficacy(*members, *nonmembers, *members, features=("loss",))


def test_sample_shadow_members_seeded_without_replacement():
    picked = sample_shadow_members(1000, 100, seed=0)
    assert len(picked) == 100 and len(np.unique(picked)) == 100
    assert np.all(np.diff(picked) > 0) and picked.min() >= 0 and picked.max() < 1000
    np.testing.assert_array_equal(picked, sample_shadow_members(1000, 100, seed=0))
    assert not np.array_equal(picked, sample_shadow_members(1000, 100, seed=1))
    assert not np.array_equal(picked, np.arange(100))  # not the official "first n"
    np.testing.assert_array_equal(sample_shadow_members(5, 10, seed=0), np.arange(5))


# ---------------------------------------------------------------- inference


class _TinyClassifier(torch.nn.Module):
    """A Linear head with a BatchNorm, called like a transformers image classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 3)
        self.norm = torch.nn.BatchNorm1d(3)

    def forward(self, pixel_values: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(logits=self.norm(self.linear(pixel_values)))


def test_predict_probabilities_restores_modes_and_sums_to_one():
    torch.manual_seed(0)
    model = _TinyClassifier()
    model.train()
    model.norm.eval()  # a frozen submodule must stay frozen after evaluation
    x = torch.randn(10, 4)
    data = [{"pixel_values": x[i], "labels": i % 3, "id": f"s{i}"} for i in range(10)]
    probs, labels = predict_probabilities(model, data, batch_size=4)
    assert probs.shape == (10, 3) and probs.dtype == np.float64 and labels.dtype == np.int64
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(labels, np.arange(10) % 3)
    with torch.no_grad():
        model.eval()
        reference = torch.softmax(model(pixel_values=x).logits.double(), dim=-1).numpy()
        model.train()
        model.norm.eval()
    np.testing.assert_allclose(probs, reference, atol=1e-6)
    assert model.training and model.linear.training and not model.norm.training


def test_predict_probabilities_on_a_torch_formatted_hf_dataset():
    import datasets

    torch.manual_seed(0)
    model = _TinyClassifier()
    x = torch.randn(6, 4)
    ds = datasets.Dataset.from_dict({"pixel_values": x.tolist(), "labels": [0, 1, 2, 2, 1, 0]}).with_format("torch")
    probs, labels = predict_probabilities(model, ds, batch_size=4)
    assert probs.shape == (6, 3) and model.training
    np.testing.assert_array_equal(labels, [0, 1, 2, 2, 1, 0])
    assert accuracy(probs, labels) == pytest.approx(np.mean(probs.argmax(1) == labels))


def _report(forget: float, test: float) -> dict:
    original = {"accuracy": {"retain": 1.0, "forget": 0.5, "test": 0.9}}
    run = {"accuracy": {"retain": 1.0, "forget": forget, "test": test}}
    return {"sizes": {"forget": 20}, "models": {"original": original, "run": run}}


def test_the_plain_summary_names_a_rise_a_general_loss_and_real_forgetting_apart():
    from hf_unlearn.report import run_summary

    risen = run_summary(_report(forget=0.7, test=0.95), "run")
    assert any("raised the forget set's accuracy (10 -> 14 of 20" in line for line in risen)
    assert not any("lowered forget accuracy" in line for line in risen)
    general = run_summary(_report(forget=0.45, test=0.8), "run")  # forget -0.05, test -0.10
    assert any(line.startswith("Note: run lowered forget accuracy by 0.050") for line in general)
    forgotten = run_summary(_report(forget=0.2, test=0.89), "run")
    assert not any(line.startswith(("Note:", "Warning:")) for line in forgotten)
