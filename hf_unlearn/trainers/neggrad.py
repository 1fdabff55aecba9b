"""NegGrad (RUM's NegGrad+): descend on retain while ascending on forget, as one objective."""

from __future__ import annotations

from .base import Batch, Branch, UnlearnTrainer, cross_entropy


class NegGradTrainer(UnlearnTrainer):
    """``alpha * CE(retain) - (1 - alpha) * CE(forget)`` on paired batches (one branch, one SAM pair of passes)."""

    method_name = "neggrad"
    train_on = "paired"

    def objective(self, model, batch: Batch):
        alpha = self.args.alpha
        return alpha * cross_entropy(model, batch["retain"]) - (1.0 - alpha) * cross_entropy(model, batch["forget"])

    def branches(self, inputs: Batch) -> list[Branch]:
        return [Branch("neggrad", self.objective)]
