"""One Trainer per method, all on `UnlearnTrainer`; `get_trainer_class` looks them up in `hf_unlearn.registry`."""

from __future__ import annotations

from ..registry import REGISTRY, method_spec
from .base import Branch, UnlearnTrainer
from .finetune import FinetuneTrainer
from .gradient_ascent import GradientAscentTrainer
from .l1_sparse import L1SparseTrainer
from .neggrad import NegGradTrainer
from .pretrain import PretrainTrainer
from .random_label import RandomLabelTrainer
from .retrain import RetrainTrainer
from .salun import SalUnTrainer
from .scrub import ScrubTrainer
from .sharp_minmax import SharpMinMaxTrainer

TRAINERS: dict[str, type[UnlearnTrainer]] = {name: spec.trainer_class for name, spec in REGISTRY.items()}


def get_trainer_class(method: str) -> type[UnlearnTrainer]:
    """The Trainer class of a method, e.g. ``get_trainer_class("sharp_minmax")``; its arguments are
    ``UnlearnArguments(method="sharp_minmax", ...)`` (a `SharpMinMaxConfig`)."""
    return method_spec(method).trainer_class


__all__ = [
    "TRAINERS",
    "Branch",
    "FinetuneTrainer",
    "GradientAscentTrainer",
    "L1SparseTrainer",
    "NegGradTrainer",
    "PretrainTrainer",
    "RandomLabelTrainer",
    "RetrainTrainer",
    "SalUnTrainer",
    "ScrubTrainer",
    "SharpMinMaxTrainer",
    "UnlearnTrainer",
    "get_trainer_class",
]
