"""Fine-tune (FT): keep training on the retain set and let forgetting happen by itself."""

from __future__ import annotations

from .base import Batch, Branch, UnlearnTrainer, retain_cross_entropy


class FinetuneTrainer(UnlearnTrainer):
    """Retain cross-entropy only (Warnecke et al.; the standard FT baseline)."""

    def branches(self, inputs: Batch) -> list[Branch]:
        return [Branch("retain", retain_cross_entropy)]
