"""Sharp MinMax (Tang & Khanna, ICLR 2026): split the model by forget saliency.

The retain branch minimises ``alpha * CE_R`` with sharpness *minimisation* on the parameters outside the
mask; the forget branch minimises ``-(1 - alpha) * CE_F`` with sharpness *maximisation* on the mask. The
mask (top ``mask_ratio`` of |sum of forget gradients|) confines each branch's perturbation, its norm
and its final gradient, and both branches feed one optimizer step over disjoint partitions.
"""

from __future__ import annotations

from typing import Any

from ..masks import forget_saliency_mask
from .base import Batch, Branch, UnlearnTrainer, cross_entropy


class SharpMinMaxTrainer(UnlearnTrainer):
    method_name = "sharp_minmax"
    train_on = "paired"
    uses_mask = True

    def __init__(self, *args: Any, mask: dict | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if mask is None:
            mask = forget_saliency_mask(
                self.model,
                self.forget_dataset,
                self.args.mask_ratio,
                batch_size=self.args.per_device_eval_batch_size,
            )
        self.set_mask(mask)

    def retain_loss(self, model, batch: Batch):
        return self.args.alpha * cross_entropy(model, batch["retain"])

    def forget_loss(self, model, batch: Batch):
        return -(1.0 - self.args.alpha) * cross_entropy(model, batch["forget"])

    def branches(self, inputs: Batch) -> list[Branch]:
        return [
            Branch("retain", self.retain_loss, direction="min", partition="complement"),
            Branch("forget", self.forget_loss, direction=self.args.forget_direction, partition="mask"),
        ]
