"""Evaluation metrics as plain functions; ``evaluate_modules`` wraps them for ``evaluate.load``.

report.json's accuracies and MIA come from `unlearning_scores` (via `unlearning.unlearning_metrics`), its ToW from
`tug_of_war`: the functions the ``accuracy``, ``mia`` and ``tow`` evaluate modules call, so both give one number.
Its ``attacks`` come from `threshold_attacks` (error rates by `attack_summary`); LiRA's per-example Gaussians are
`lira_scores` on `logit_confidence` statistics (docs/privacy.md).

Analysis metrics (method-spec.md E.4, E.5): penultimate features, entanglement score, loss landscape.
"""

from typing import TYPE_CHECKING

from hf_unlearn._lazy import lazy_exports

# Imported on first use (hf_unlearn._lazy), so that importing the package loads no sklearn / datasets.
_EXPORTS = {
    "FPR_TARGETS": ".attacks",
    "THRESHOLD_ATTACKS": ".attacks",
    "LossLandscape": ".landscape",
    "MIA_FEATURES": ".mia",
    "TOW_KEYS": ".tow",
    "accuracy": ".inference",
    "attack_summary": ".attacks",
    "basin_ratio": ".landscape",
    "classwise_entanglement_score": ".entanglement",
    "classwise_entanglement_scores": ".entanglement",
    "entanglement_score": ".entanglement",
    "gaussian_fit": ".lira",
    "gaussian_log_ratio": ".lira",
    "landscape_directions": ".landscape",
    "landscape_stats": ".landscape",
    "lira_scores": ".lira",
    "logit_confidence": ".lira",
    "loss_landscape": ".landscape",
    "metric_path": ".evaluate_modules",
    "mia_efficacy": ".mia",
    "mia_features": ".mia",
    "penultimate_features": ".features",
    "predict_probabilities": ".inference",
    "sample_shadow_members": ".mia",
    "sampled_mia_efficacy": ".mia",
    "threshold_attacks": ".attacks",
    "threshold_scores": ".attacks",
    "tpr_at_fpr": ".attacks",
    "tug_of_war": ".tow",
    "unlearning_scores": ".unlearning",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from .attacks import FPR_TARGETS, THRESHOLD_ATTACKS, attack_summary, threshold_attacks, threshold_scores, tpr_at_fpr
    from .entanglement import classwise_entanglement_score, classwise_entanglement_scores, entanglement_score
    from .evaluate_modules import metric_path
    from .features import penultimate_features
    from .inference import accuracy, predict_probabilities
    from .landscape import LossLandscape, basin_ratio, landscape_directions, landscape_stats, loss_landscape
    from .lira import gaussian_fit, gaussian_log_ratio, lira_scores, logit_confidence
    from .mia import MIA_FEATURES, mia_efficacy, mia_features, sample_shadow_members, sampled_mia_efficacy
    from .tow import TOW_KEYS, tug_of_war
    from .unlearning import unlearning_scores

__all__ = [
    "FPR_TARGETS",
    "MIA_FEATURES",
    "THRESHOLD_ATTACKS",
    "TOW_KEYS",
    "LossLandscape",
    "accuracy",
    "attack_summary",
    "basin_ratio",
    "classwise_entanglement_score",
    "classwise_entanglement_scores",
    "entanglement_score",
    "gaussian_fit",
    "gaussian_log_ratio",
    "landscape_directions",
    "landscape_stats",
    "lira_scores",
    "logit_confidence",
    "loss_landscape",
    "metric_path",
    "mia_efficacy",
    "mia_features",
    "penultimate_features",
    "predict_probabilities",
    "sample_shadow_members",
    "sampled_mia_efficacy",
    "threshold_attacks",
    "threshold_scores",
    "tpr_at_fpr",
    "tug_of_war",
    "unlearning_scores",
]
