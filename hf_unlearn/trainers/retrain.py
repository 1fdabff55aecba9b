"""Retrain: the reference model, trained from scratch on the retain set only."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..models import fresh_model
from .base import Batch, Branch, UnlearnTrainer, retain_cross_entropy


def reinitialize(model: nn.Module, seed: int) -> None:
    """Give ``model`` the weights of a freshly built model of its architecture, from ``seed``, in place.

    A transformers / timm model (one with a ``config``) is rebuilt from its config (`hf_unlearn.models.fresh_model`)
    and its parameters and buffers copied over: every tensor starts from the architecture's own initialisation,
    none from the weights passed in. Another module is reset with each submodule's ``reset_parameters``; a parameter
    that no submodule resets is an error rather than a silent leak.
    """
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "model_type"):
        fresh = fresh_model(config, seed)
        model.load_state_dict(fresh.state_dict())
        return
    reset_modules = [m for m in model.modules() if callable(getattr(m, "reset_parameters", None))]
    covered = {id(p) for m in reset_modules for p in m.parameters(recurse=False)}
    kept = [name for name, p in model.named_parameters() if id(p) not in covered]
    if kept:
        raise ValueError(
            f"retrain cannot re-initialise {kept[:3]} (no submodule resets them, so the reference would keep the "
            "original's values); pass a freshly built model with RetrainTrainer(..., reinit=False)."
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in reset_modules:
            module.reset_parameters()


class RetrainTrainer(UnlearnTrainer):
    """Gold standard of unlearning: the model as if the forget set had never been seen.

    The weights passed in are replaced by a fresh initialisation from ``args.seed`` (``reinit=True``), so handing over
    the original model cannot leak what it learned. ``reinit=False`` trains the model as given (the pipeline passes the
    original's initial weights).
    """

    def __init__(self, *args: Any, reinit: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if reinit:
            reinitialize(self.model, self.args.seed)

    def branches(self, inputs: Batch) -> list[Branch]:
        return [Branch("retain", retain_cross_entropy)]
