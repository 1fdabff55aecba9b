"""Knowing, without a reference model, how much to forget and when it is forgotten.

`original_target` estimates what a model retrained without the forget set would score (the numbers of
`hf_unlearn.metrics.reference_free`) from the original model, the retain and forget samples and a held-out split;
`measure` takes one model's numbers during training. `hf-unlearn tune` scores trials with them when the recipe has
no reference, and an unlearning run with ``early_stop`` stops when the target is reached
(`hf_unlearn.callbacks.StopWhenForgotten`). Neither is ever handed the test split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .errors import ValidationError

EARLY_STOP_DEFAULTS: dict[str, Any] = {"every": "epoch", "patience": 0}


def early_stop_settings(value: Any, where: str = "early_stop") -> dict[str, Any] | None:
    """A run's ``early_stop`` normalised: None (off) or ``{"every": "epoch" | steps, "patience": evaluations}``.

    ``true`` takes the defaults: check at every epoch's end, stop only when the forget set is forgotten. ``every: N``
    checks every N optimizer steps; ``patience: P`` also stops after P checks without a better score."""
    if value is None or value is False:
        return None
    if value is True:
        return dict(EARLY_STOP_DEFAULTS)
    if not isinstance(value, dict):
        raise ValidationError(f"{where}: expected true, false or a mapping {{every, patience}}, got {value!r}.")
    unknown = sorted(set(value) - set(EARLY_STOP_DEFAULTS))
    if unknown:
        raise ValidationError(f"{where}.{unknown[0]}: unknown key; early_stop takes every and patience.")
    out = {**EARLY_STOP_DEFAULTS, **value}
    every = out["every"]
    if every != "epoch" and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
        raise ValidationError(f"{where}.every: expected 'epoch' or a number of steps >= 1, got {every!r}.")
    patience = out["patience"]
    if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
        raise ValidationError(f"{where}.patience: expected a number of checks >= 0 (0: off), got {patience!r}.")
    return out


def check_early_stop(recipe: dict[str, Any], validation: Any) -> None:
    """Before anything trains: a run with ``early_stop`` needs held-out samples that are not the test split."""
    stopping = [run["name"] for run in recipe["unlearn"]["runs"] if early_stop_settings(run.get("early_stop"))]
    if stopping and (validation is None or len(validation) == 0):
        raise ValidationError(
            f"unlearn.runs ({', '.join(stopping)}).early_stop: stopping needs held-out samples and the data has no "
            "validation split; set data.validation_size (e.g. 0.1, carved from the retain samples) or give the "
            "source a validation split. The test split is never used to decide."
        )


def true_class_confidence(model: Any, dataset: Any, batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(true-class probability, correct, label) per sample of ``dataset``."""
    from .metrics.inference import predict_probabilities

    probs, labels = predict_probabilities(model, dataset, batch_size=batch_size)
    if len(labels) == 0:
        return np.zeros(0), np.zeros(0, dtype=bool), labels
    return probs[np.arange(len(labels)), labels], probs.argmax(axis=1) == labels, labels


def measure(model: Any, *, forget: Any, validation: Any, batch_size: int, retain: Any = None) -> dict[str, float]:
    """Accuracy on forget and validation (and retain when given) and mean true-class confidence on forget."""
    confidence, correct, _ = true_class_confidence(model, forget, batch_size)
    out = {"forget": float(correct.mean()), "forget_confidence": float(confidence.mean())}
    out["validation"] = float(true_class_confidence(model, validation, batch_size)[1].mean())
    if retain is not None:
        out["retain"] = float(true_class_confidence(model, retain, batch_size)[1].mean())
    return out


def learning_events_of(path: Path | None, manifest: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """(forget, retain) learning events (mean true-class confidence over pretraining, per training sample) when
    the recipe pretrained the original here; None for a given model (``pretrain.epochs: 0``)."""
    if path is None or not Path(path).is_file():
        return None
    events = np.load(path, allow_pickle=False)
    if events.shape != (manifest.n_train,):
        return None
    return events[np.asarray(manifest.forget_indices)], events[np.asarray(manifest.retain_indices)]


def original_target(
    original: Any,
    *,
    retain: Any,
    forget: Any,
    validation: Any,
    batch_size: int,
    learning_events: tuple[np.ndarray, np.ndarray] | None = None,
) -> Any:
    """The `ForgetTarget` of a forget set from the original: its predictions on retain, forget and validation (the
    held-out split), with the learning events ranking the training samples when there are any."""
    from .metrics.reference_free import forget_target

    if validation is None or len(validation) == 0:
        raise ValidationError("The reference-free objective needs a validation split; set data.validation_size.")
    retain_conf, retain_correct, retain_labels = true_class_confidence(original, retain, batch_size)
    forget_conf, _, forget_labels = true_class_confidence(original, forget, batch_size)
    held_conf, held_correct, _ = true_class_confidence(original, validation, batch_size)
    scores = (forget_conf, retain_conf) if learning_events is None else learning_events
    return forget_target(
        forget_scores=scores[0],
        retain_scores=scores[1],
        heldout_confidence=held_conf,
        heldout_correct=held_correct,
        forget_labels=forget_labels,
        retain_labels=retain_labels,
        original_retain=float(retain_correct.mean()),
        original_validation=float(held_correct.mean()),
        difficulty="confidence" if learning_events is None else "learning_events",
    )
