"""The tuning objective: ToW against the reference on retain, forget and the validation split, never the test split.

ToW (`hf_unlearn.metrics.tug_of_war`) multiplies ``1 - |a_u - a_r|`` over three accuracies; the report uses the
test split as the third, tuning uses the validation split in its place, so the test split stays unseen until the
tuned settings are run. Without a reference (``retrain: false``) the objective is `reference_free`: the same kind of
product against a target estimated from the original (`hf_unlearn.metrics.reference_free`). The objective is
measured at every epoch's end (Optuna's intermediate values, for median pruning); a trial's value is the last
epoch's.
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

OBJECTIVE = {"name": "tow", "split": "validation"}
REFERENCE_FREE = {"name": "reference_free", "split": "validation"}


def objective_of(recipe: dict[str, Any]) -> dict[str, str]:
    """ToW against the reference, or the reference-free objective when the recipe has none (retrain: false)."""
    return dict(REFERENCE_FREE if recipe["retrain"] is False else OBJECTIVE)


def trial_value(shared: Any, model: Any) -> tuple[dict[str, float], float]:
    """(what was measured, the objective) of ``model`` on ``shared``'s retain, forget and validation samples."""
    batch_size = shared.pipeline.recipe["evaluation"]["batch_size"]
    splits = shared.splits
    if shared.target is None:
        measured = accuracies(model, splits.retain, splits.forget, shared.validation, batch_size)
        return measured, validation_tow(measured, shared.reference)
    from ..forgetting import measure
    from ..metrics.reference_free import reference_free_score

    measured = measure(
        model, forget=splits.forget, validation=shared.validation, batch_size=batch_size, retain=splits.retain
    )
    return measured, reference_free_score(measured, shared.target)


def accuracies(model: Any, retain: Any, forget: Any, validation: Any, batch_size: int) -> dict[str, float]:
    """Top-1 accuracy of ``model`` on retain, forget and validation (the splits the objective reads)."""
    from ..metrics.inference import accuracy, predict_probabilities

    out = {}
    for name, dataset in (("retain", retain), ("forget", forget), ("validation", validation)):
        probs, labels = predict_probabilities(model, dataset, batch_size=batch_size)
        out[name] = accuracy(probs, labels)
    return out


def validation_tow(unlearned: dict[str, float], reference: dict[str, float]) -> float:
    """ToW over retain, forget and validation (the validation split takes the test split's place)."""
    from ..metrics import tug_of_war

    def as_tow(acc: dict[str, float]) -> dict[str, float]:
        return {"retain": acc["retain"], "forget": acc["forget"], "test": acc["validation"]}

    return tug_of_war(as_tow(unlearned), as_tow(reference))


class EpochObjective(TrainerCallback):
    """At each epoch's end: the objective on the trained model, reported to the trial (``report``); stops a trial
    to prune.

    Training stops (``should_training_stop``) rather than raising inside the Trainer, so the trainer unwinds
    normally; the caller raises ``optuna.TrialPruned`` when ``pruned`` is set.
    """

    def __init__(self, trial: Any, shared: Any, report: bool = True) -> None:
        self.trial, self.shared, self.report = trial, shared, report
        self.values: list[float] = []
        self.last: dict[str, float] | None = None
        self.pruned = False

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        self.last, value = trial_value(self.shared, model)
        self.values.append(value)
        if not self.report:  # several seeds / forget sets: the study reports their running mean instead
            return control
        self.trial.report(value, step=len(self.values))
        if self.trial.should_prune():
            self.pruned = True
            control.should_training_stop = True
        return control
