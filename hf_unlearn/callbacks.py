"""Trainer callbacks the pipeline attaches to its stages (the checkpoint and divergence callbacks live with the
checkpoints they guard: `hf_unlearn.checkpoints`)."""

from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset
from transformers import EarlyStoppingCallback, TrainerCallback

from .metrics.inference import predict_probabilities


class ConfidenceRecorder(TrainerCallback):
    """A `TrainerCallback` recording per-sample true-class confidence at the end of every epoch.

    `mean_confidence()` is the "confidence" learning-event proxy of method-spec.md D.6. Direction: LOW average
    confidence = HIGH memorization (the sample was hard to learn); a high-memorization band built from it takes
    the LOWEST confidences (`hf_unlearn.data.forget_sets.band_indices(..., higher_is_more_memorized=False)`).
    """

    def __init__(self, dataset: Dataset, batch_size: int = 256) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.history: list[np.ndarray] = []

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        probs, labels = predict_probabilities(model, self.dataset, batch_size=self.batch_size)
        self.history.append(probs[np.arange(len(labels)), labels])

    def mean_confidence(self) -> np.ndarray:
        """Average true-class confidence per sample over the recorded epochs."""
        if not self.history:
            raise RuntimeError("No epoch was recorded; attach the callback to a Trainer and train first.")
        return np.mean(np.stack(self.history), axis=0)


class BestMetricStopping(EarlyStoppingCallback):
    """transformers' `EarlyStoppingCallback` (a run's ``early_stopping_patience`` / ``early_stopping_threshold``) over
    a dict of evaluation sets: each set's evaluation reaches ``on_evaluate`` on its own, and only the one holding
    ``metric_for_best_model`` counts (the others would log that early stopping is disabled)."""

    def on_evaluate(self, args, state, control, metrics, **kwargs):
        metric = args.metric_for_best_model
        if (metric if metric.startswith("eval_") else f"eval_{metric}") in metrics:
            super().on_evaluate(args, state, control, metrics, **kwargs)


class StopWhenForgotten(TrainerCallback):
    """A run's ``early_stop`` (`hf_unlearn.forgetting.early_stop_settings`): at every epoch's end (or every N steps)
    the model is measured on the forget and validation samples and scored against the reference-free target
    (`hf_unlearn.metrics.reference_free`); training stops when the forget set is forgotten (forget accuracy at the
    target), or, with ``patience``, after that many checks without a better score. `record()` is what the run's
    stage.json and report keep."""

    def __init__(self, target, *, forget: Dataset, validation: Dataset, settings: dict, batch_size: int = 256) -> None:
        self.target, self.forget, self.validation = target, forget, validation
        self.settings, self.batch_size = settings, batch_size
        self.checks: list[dict] = []
        self.stopped: dict | None = None

    def on_step_end(self, args, state, control, model=None, **kwargs):
        every = self.settings["every"]
        if every != "epoch" and state.global_step % every == 0:
            self._check(state, control, model)

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        if self.settings["every"] == "epoch" and self.stopped is None:
            self._check(state, control, model)

    def _check(self, state, control, model) -> None:
        from .forgetting import measure
        from .metrics.reference_free import forgotten, reference_free_score

        measured = measure(model, forget=self.forget, validation=self.validation, batch_size=self.batch_size)
        score = reference_free_score(measured, self.target)
        self.checks.append({"step": state.global_step, "epoch": round(float(state.epoch or 0), 4), **measured})
        self.checks[-1]["score"] = score
        reason = "forgotten" if forgotten(measured, self.target) else None
        patience = self.settings["patience"]
        if reason is None and patience and len(self.checks) > patience:
            best_before = max(c["score"] for c in self.checks[:-patience])
            if all(c["score"] <= best_before for c in self.checks[-patience:]):
                reason = "no_improvement"
        if reason is not None:
            self.stopped = {"reason": reason, "step": state.global_step, "epoch": self.checks[-1]["epoch"]}
            control.should_training_stop = True

    def record(self, max_steps: int | None = None) -> dict:
        return {
            "settings": self.settings,
            "target": self.target.as_dict(),
            "stopped": self.stopped is not None,
            **(self.stopped or {"reason": None, "step": None, "epoch": None}),
            "budget_steps": max_steps,
            "checks": self.checks,
        }
