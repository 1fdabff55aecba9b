"""The metrics of one model on one forget set: accuracy on retain / forget / test, MIA-efficacy and the threshold
attacks' error rates (forget against test).

The pipeline, ``hf-unlearn evaluate`` and `UnlearnTrainer.create_model_card` all measure a model with
`unlearning_metrics`, so a report and a model card written by any of them agree. It predicts, then hands the
probabilities to `unlearning_scores`, which calls the functions the ``accuracy``, ``mia`` and ``attacks`` evaluate
modules call (docs/privacy.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..errors import DivergenceError
from .attacks import threshold_attacks
from .inference import accuracy, predict_probabilities
from .mia import sampled_mia_efficacy

SPLITS = ("retain", "forget", "test")


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
    """``{"accuracy": {retain, forget, test}, "mia": {...}, "attacks": {...}}``; MIA shadow members are a seeded
    sample of retain of ``mia_shadow_size`` samples (default: as many as the test split).

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
        for name, dataset in zip(SPLITS, (retain, forget, test), strict=True)
    }
    for name, (p, _) in probs.items():
        if not np.isfinite(p).all():
            raise DivergenceError(
                f"the model's predictions on the {name} split are not finite (its weights or BatchNorm statistics "
                "overflow); the run diverged. Lower the learning rate."
            )
    group = distributed and torch.distributed.is_available() and torch.distributed.is_initialized()
    scores = None
    if not group or torch.distributed.get_rank() == 0:  # the MIA attack is fitted once, then shared
        scores = unlearning_scores(probs, mia_shadow_size=mia_shadow_size, mia_seed=mia_seed)
    if group:
        shared = [scores]
        torch.distributed.broadcast_object_list(shared, src=0)
        scores = shared[0]
    return scores


def unlearning_scores(
    probs: Mapping[str, tuple[np.ndarray, np.ndarray]], *, mia_shadow_size: int | None = None, mia_seed: int = 0
) -> dict[str, Any]:
    """``{"accuracy": {retain, forget, test}, "mia": {...}, "attacks": {...}}`` from each split's
    ``(probabilities [N, C], labels [N])``.

    report.json's numbers come from here: `accuracy` per split and `sampled_mia_efficacy` (retain as shadow members,
    test as non-members, forget as the target) and `threshold_attacks` (forget as members, test as non-members), the
    functions the ``accuracy``, ``mia`` and ``attacks`` evaluate modules wrap: ``attacks.<loss|confidence|entropy>`` =
    ``{"auc": ..., "tpr_at_fpr": {"0.01": ..., "0.001": ...}}``.
    """
    accuracies = {name: accuracy(*probs[name]) for name in SPLITS}
    # A shadow size of 0 counts as unset (the default size), like None.
    mia = sampled_mia_efficacy(
        *probs["retain"], *probs["test"], *probs["forget"], shadow_size=mia_shadow_size or None, seed=mia_seed
    )
    # The original trained on the forget samples, never on the test samples: does a score still tell them apart?
    attacks = threshold_attacks(*probs["forget"], *probs["test"])
    return {"accuracy": accuracies, "mia": mia, "attacks": attacks}
