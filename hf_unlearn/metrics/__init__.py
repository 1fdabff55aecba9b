"""Evaluation metrics as plain functions; ``evaluate_modules`` wraps them for ``evaluate.load``."""

from hf_unlearn.metrics.evaluate_modules import metric_path
from hf_unlearn.metrics.inference import accuracy, predict_probabilities
from hf_unlearn.metrics.mia import MIA_FEATURES, mia_efficacy, mia_features, sample_shadow_members
from hf_unlearn.metrics.tow import TOW_KEYS, tug_of_war

__all__ = [
    "MIA_FEATURES",
    "TOW_KEYS",
    "accuracy",
    "mia_efficacy",
    "metric_path",
    "mia_features",
    "predict_probabilities",
    "sample_shadow_members",
    "tug_of_war",
]
