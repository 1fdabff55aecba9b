"""Random label (RL): one shuffled loader over the forget set with random labels and the retain set (method-spec B.4)."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from ..data.pairing import RelabelledUnion
from .base import Batch, Branch, UnlearnTrainer, cross_entropy
from .labels import num_labels_of


def random_wrong_labels(
    labels: torch.Tensor, num_labels: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Uniform labels that never equal the true one: ``(y + U{1..C-1}) mod C``."""
    if num_labels < 2:
        raise ValueError("Random relabelling needs at least 2 classes.")
    shift = torch.randint(1, num_labels, labels.shape, device=labels.device, generator=generator)
    return (labels + shift) % num_labels


class RandomLabelTrainer(UnlearnTrainer):
    """Cross-entropy on batches of ``shuffle(forget with random labels + retain)``.

    An epoch is one pass over the union, so each forget item is seen once per epoch, a share of about
    ``|F| / (|F| + |R|)`` of every batch. The labels are redrawn every epoch (`RelabelledUnion`): never the true
    class, or with ``official=True`` uniform over all classes as in the official code.
    """

    def build_union_dataset(self, retain: Dataset, forget: Dataset) -> Dataset:
        args = self._args_for_data
        self.num_labels = num_labels_of(self._model_for_data, retain, forget)
        return RelabelledUnion(forget, retain, self.num_labels, seed=args.seed, keep_true_possible=args.official)

    def relabel_branch_options(self) -> dict[str, Any]:
        """Extra `Branch` fields of the relabelling branch (SalUn restricts it to its mask)."""
        return {}

    def branches(self, inputs: Batch) -> list[Branch]:
        return [Branch("relabel", relabelled_loss, **self.relabel_branch_options())]


def relabelled_loss(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """Mean cross-entropy over the mixed batch (retain items with their labels, forget items with random ones)."""
    return cross_entropy(model, batch["union"])
