"""Pretraining: cross-entropy on all training data (retain and forget), with SGD or SAM."""

from __future__ import annotations

from .base import Batch, Branch, UnlearnTrainer, retain_cross_entropy


class PretrainTrainer(UnlearnTrainer):
    """Train the original model on every training sample; ``sharpness='sam'`` gives SAM pretraining."""

    def branches(self, inputs: Batch) -> list[Branch]:
        return [Branch("train", retain_cross_entropy)]
