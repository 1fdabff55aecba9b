"""Evaluation metrics as plain functions; ``evaluate_modules`` wraps them for ``evaluate.load``.

Analysis metrics (method-spec.md E.4, E.5): penultimate features, entanglement score, loss landscape.
"""

from hf_unlearn.metrics.entanglement import (
    classwise_entanglement_score,
    classwise_entanglement_scores,
    entanglement_score,
)
from hf_unlearn.metrics.evaluate_modules import metric_path
from hf_unlearn.metrics.features import penultimate_features
from hf_unlearn.metrics.inference import accuracy, predict_probabilities
from hf_unlearn.metrics.landscape import (
    LossLandscape,
    basin_ratio,
    landscape_directions,
    landscape_stats,
    loss_landscape,
)
from hf_unlearn.metrics.mia import MIA_FEATURES, mia_efficacy, mia_features, sample_shadow_members
from hf_unlearn.metrics.tow import TOW_KEYS, tug_of_war

__all__ = [
    "MIA_FEATURES",
    "TOW_KEYS",
    "LossLandscape",
    "accuracy",
    "basin_ratio",
    "classwise_entanglement_score",
    "classwise_entanglement_scores",
    "entanglement_score",
    "landscape_directions",
    "landscape_stats",
    "loss_landscape",
    "metric_path",
    "mia_efficacy",
    "mia_features",
    "penultimate_features",
    "predict_probabilities",
    "sample_shadow_members",
    "tug_of_war",
]
