"""NegGrad (RUM's NegGrad+): descend on retain while ascending on forget, as one objective."""

from __future__ import annotations

import torch

from .base import Batch, Branch, UnlearnTrainer, cross_entropy


class NegGradTrainer(UnlearnTrainer):
    """``alpha * CE(retain) - (1 - alpha) * CE(forget)`` on paired batches (one branch, one SAM pair of passes)."""

    def objective(self, model, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The objective's two terms, ``alpha * CE(retain)`` and ``-(1 - alpha) * CE(forget)``; their sum is the loss.

        As terms (see `Branch`) each is backpropagated on its own and the two gradients are added in one
        multi-tensor op; autograd would otherwise add them parameter by parameter. The sum is the same, bit for bit.
        """
        alpha = self.args.alpha
        return alpha * cross_entropy(model, batch["retain"]), -(1.0 - alpha) * cross_entropy(model, batch["forget"])

    def branches(self, inputs: Batch) -> list[Branch]:
        return [Branch("neggrad", self.objective)]
