"""Gradient ascent (GA): maximise the loss on the forget set."""

from __future__ import annotations

from .base import Batch, Branch, UnlearnTrainer, cross_entropy


class GradientAscentTrainer(UnlearnTrainer):
    """Minus cross-entropy on forget batches; one epoch is one pass over the forget set."""

    def branches(self, inputs: Batch) -> list[Branch]:
        return [Branch("forget", lambda model, batch: -cross_entropy(model, batch["forget"]))]
