"""One Trainer per method, all on `UnlearnTrainer`; `get_trainer_class` looks them up by name."""

from __future__ import annotations

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

TRAINERS: dict[str, type[UnlearnTrainer]] = {
    cls.method_name: cls
    for cls in (
        PretrainTrainer,
        RetrainTrainer,
        FinetuneTrainer,
        GradientAscentTrainer,
        RandomLabelTrainer,
        NegGradTrainer,
        SalUnTrainer,
        L1SparseTrainer,
        ScrubTrainer,
        SharpMinMaxTrainer,
    )
}


def get_trainer_class(method: str) -> type[UnlearnTrainer]:
    """The Trainer class of an unlearning method, e.g. ``get_trainer_class("sharp_minmax")``."""
    try:
        return TRAINERS[method]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(method, TRAINERS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"Unknown method {method!r}.{hint} Known methods: {', '.join(TRAINERS)}.") from None


__all__ = [
    "Branch",
    "UnlearnTrainer",
    "TRAINERS",
    "get_trainer_class",
    *[cls.__name__ for cls in TRAINERS.values()],
]
