"""Random label (RL): train on forget samples with wrong labels, mixed with retain samples."""

from __future__ import annotations

from functools import cached_property
from typing import Any

import torch

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
    """Cross-entropy on ``concat(retain, forget with random wrong labels)``.

    The wrong labels are drawn once per step (both SAM passes see the same labels) and anew every step.
    """

    method_name = "random_label"
    train_on = "paired"

    @cached_property
    def num_labels(self) -> int:
        return num_labels_of(self.model, self.retain_dataset, self.forget_dataset)

    def random_labels(self, forget_labels: torch.Tensor) -> torch.Tensor:
        return random_wrong_labels(forget_labels, self.num_labels)

    def relabelled_loss(self, model: torch.nn.Module, batch: Batch, wrong: torch.Tensor) -> torch.Tensor:
        mixed = {
            "pixel_values": torch.cat([batch["retain"]["pixel_values"], batch["forget"]["pixel_values"]]),
            "labels": torch.cat([batch["retain"]["labels"], wrong]),
        }
        return cross_entropy(model, mixed)

    def relabel_branch_options(self) -> dict[str, Any]:
        """Extra `Branch` fields of the relabelling branch (SalUn restricts it to its mask)."""
        return {}

    def branches(self, inputs: Batch) -> list[Branch]:
        wrong = self.random_labels(inputs["forget"]["labels"])
        return [
            Branch(
                "relabel",
                lambda model, batch: self.relabelled_loss(model, batch, wrong),
                **self.relabel_branch_options(),
            )
        ]
