"""Retrain: the reference model, trained from scratch on the retain set only."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .base import Batch, Branch, UnlearnTrainer, retain_cross_entropy


def reinitialize(model: nn.Module, seed: int) -> None:
    """Reset every submodule that knows how (conv, linear, norm layers), from a seeded generator."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in model.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()


class RetrainTrainer(UnlearnTrainer):
    """Gold standard of unlearning: the model as if the forget set had never been seen.

    The weights passed in are re-initialised (``reinit=True``), so handing over the original model
    cannot leak what it learned from the forget set.
    """

    method_name = "retrain"
    train_on = "retain"

    def __init__(self, *args: Any, reinit: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if reinit:
            reinitialize(self.model, self.args.seed)

    def branches(self, inputs: Batch) -> list[Branch]:
        return [Branch("retain", retain_cross_entropy)]
