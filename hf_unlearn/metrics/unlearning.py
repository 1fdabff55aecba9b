"""The metrics of one model on one forget set: accuracy on retain / forget / test and MIA-efficacy.

The pipeline, ``hf-unlearn evaluate`` and `UnlearnTrainer.create_model_card` all measure a model with this one
function, so a report and a model card written by any of them agree.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..errors import DivergenceError
from .inference import accuracy, predict_probabilities
from .mia import mia_efficacy, sample_shadow_members


def unlearning_metrics(
    model: torch.nn.Module,
    retain: Any,
    forget: Any,
    test: Any,
    *,
    batch_size: int = 256,
    mia_shadow_size: int | None = None,
    mia_seed: int = 0,
    num_workers: int = 0,
    distributed: bool = False,
) -> dict[str, Any]:
    """``{"accuracy": {retain, forget, test}, "mia": {...}}``; MIA shadow members are a seeded sample of retain
    of ``mia_shadow_size`` samples (default: as many as the test split).

    ``distributed=True`` under torch.distributed: every process must call it; each predicts a shard of every split
    (`predict_probabilities`), the MIA attack is fitted on process 0 and its result shared, and every process gets
    the same metrics as one process would.
    """
    probs = {
        name: predict_probabilities(
            model,
            dataset,
            batch_size=batch_size,
            num_workers=num_workers,
            distributed=distributed,
            desc=f"evaluating on {name}" if distributed else None,
        )
        for name, dataset in (("retain", retain), ("forget", forget), ("test", test))
    }
    for name, (p, _) in probs.items():
        if not np.isfinite(p).all():
            raise DivergenceError(
                f"the model's predictions on the {name} split are not finite (its weights or BatchNorm statistics "
                "overflow); the run diverged. Lower the learning rate."
            )
    accuracies = {name: accuracy(p, y) for name, (p, y) in probs.items()}
    members = sample_shadow_members(len(retain), mia_shadow_size or len(test), mia_seed)
    retain_probs, retain_labels = probs["retain"]
    group = distributed and torch.distributed.is_available() and torch.distributed.is_initialized()
    mia = None
    if not group or torch.distributed.get_rank() == 0:
        mia = mia_efficacy(
            retain_probs[members], retain_labels[members], *probs["test"], *probs["forget"], seed=mia_seed
        )
    if group:
        shared = [mia]
        torch.distributed.broadcast_object_list(shared, src=0)
        mia = shared[0]
    return {"accuracy": accuracies, "mia": mia}
