"""The Trainer's own evaluation, on flat ``{"pixel_values", "labels"}`` batches, left out of training's way.

`UnlearnTrainer` evaluates like any `transformers.Trainer` (``eval_dataset``, a dict of them, ``eval_strategy``,
``compute_metrics``), with two defaults for image classifiers: ``eval_<name>_accuracy`` beside the loss, from the
predicted classes (logits are reduced to their arg-max batch by batch, so a retain set of a million images does not
gather a million logit rows). An evaluation in the middle of training changes nothing that training reads: torch's
random stream is forked (each DataLoader draws a seed from it) and the model goes back to the mode it was in
(evaluation runs in eval mode, so BatchNorm statistics stay as they are).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def predicted_classes(logits: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """``preprocess_logits_for_metrics``: each sample's arg-max class."""
    return logits.argmax(dim=-1)


def accuracy_metrics(prediction: Any) -> dict[str, float]:
    """``compute_metrics``: top-1 accuracy of the predicted classes (an `EvalPrediction`)."""
    predicted, labels = np.asarray(prediction.predictions), np.asarray(prediction.label_ids)
    return {"accuracy": float((predicted == labels).mean()) if labels.size else float("nan")}


class Evaluation:
    """Mixin of `UnlearnTrainer`: the defaults above, and an ``evaluate`` that leaves training's state alone."""

    def __init__(self, *args: Any, compute_metrics: Any = None, preprocess_logits_for_metrics: Any = None, **kwargs):
        if compute_metrics is None and preprocess_logits_for_metrics is None:
            compute_metrics, preprocess_logits_for_metrics = accuracy_metrics, predicted_classes
        super().__init__(
            *args,
            compute_metrics=compute_metrics,
            preprocess_logits_for_metrics=preprocess_logits_for_metrics,
            **kwargs,
        )

    def evaluate(self, eval_dataset: Any = None, ignore_keys: list[str] | None = None, metric_key_prefix: str = "eval"):
        model = self.model
        training = bool(getattr(model, "training", False))
        # The eval DataLoader draws its base seed from torch's generator: a fork keeps training's draws (data order,
        # forget partners, augmentation) the same with and without evaluation, so tracking never changes weights.
        with torch.random.fork_rng(devices=[]):
            try:
                return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
            finally:
                if model is not None:
                    model.train(training)
