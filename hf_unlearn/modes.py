"""`eval_mode`: evaluate a model without losing any submodule's own train / eval flag. Imports torch only."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """``model.eval()`` for the block; afterwards every submodule gets back its own train/eval flag.

    Per-module flags, not model.training alone: model.train(True) would unfreeze submodules left in eval
    (e.g. a frozen BatchNorm).
    """
    previous_modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, was_training in previous_modes:
            module.train(was_training)
