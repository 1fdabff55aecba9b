"""Trainer callbacks the pipeline attaches to its stages (the checkpoint and divergence callbacks live with the
checkpoints they guard: `hf_unlearn.checkpoints`)."""

from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset
from transformers import TrainerCallback

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
