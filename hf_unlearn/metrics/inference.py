"""Model outputs and top-1 accuracy (method-spec E.1)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, default_collate

_MODEL_INPUT_KEYS = ("pixel_values", "labels")


def _collate(batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Keep only the model inputs so that extra columns (ids, PIL images) do not break collation."""
    return default_collate([{key: item[key] for key in _MODEL_INPUT_KEYS} for item in batch])


def _default_device(model: torch.nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


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


def predict_probabilities(
    model: torch.nn.Module,
    dataset: Any,
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Softmax outputs of ``model`` on ``dataset`` in eval mode.

    Returns ``(probs [N, C] float64, labels [N] int64)``. The train/eval flag of every
    submodule is restored afterwards, so a model with e.g. frozen BatchNorm keeps it.
    """
    device = torch.device(device) if device is not None else _default_device(model)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=_collate)
    probs: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    with eval_mode(model), torch.inference_mode():
        for batch in loader:
            logits = model(pixel_values=batch["pixel_values"].to(device)).logits
            # Softmax in float64 so that half-precision logits do not give rows that miss 1.
            probs.append(torch.softmax(logits.double(), dim=-1).cpu().numpy())
            labels.append(torch.as_tensor(batch["labels"]).reshape(-1).cpu().numpy().astype(np.int64))
    if not probs:
        return np.zeros((0, 0), dtype=np.float64), np.zeros((0,), dtype=np.int64)
    return np.concatenate(probs), np.concatenate(labels)


def accuracy(probs_or_preds: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy as a fraction in [0, 1], from [N, C] probabilities or [N] predicted labels."""
    scores = np.asarray(probs_or_preds)
    labels = np.asarray(labels).reshape(-1)
    if scores.ndim not in (1, 2):
        raise ValueError(f"expected [N, C] probabilities or [N] predictions, got shape {scores.shape}")
    preds = scores.argmax(axis=1) if scores.ndim == 2 else scores
    if len(preds) == 0:
        raise ValueError("accuracy of an empty set is undefined")
    if len(preds) != len(labels):
        raise ValueError(f"{len(preds)} predictions but {len(labels)} labels")
    return float(np.mean(preds == labels))
