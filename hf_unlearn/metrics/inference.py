"""Running a model for its outputs: `eval_mode`, predicted probabilities and top-1 accuracy (method-spec E.1)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset, default_collate
from tqdm.auto import tqdm

_MODEL_INPUT_KEYS = ("pixel_values", "labels")


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


def collate_inputs(batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Keep only the model inputs so that extra columns (ids, PIL images) do not break collation."""
    return default_collate([{key: item[key] for key in _MODEL_INPUT_KEYS} for item in batch])


def model_device(model: torch.nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def predict_probabilities(
    model: torch.nn.Module,
    dataset: Any,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    *,
    num_workers: int = 0,
    distributed: bool = False,
    desc: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Softmax outputs of ``model`` on ``dataset`` in eval mode.

    Returns ``(probs [N, C] float64, labels [N] int64)``. The train/eval flag of every
    submodule is restored afterwards, so a model with e.g. frozen BatchNorm keeps it.

    ``distributed=True`` under torch.distributed (DDP, ``accelerate launch``): each process predicts every
    ``world_size``-th sample and the shards are gathered, so every process returns the whole result, in order, equal to
    one process's. ``desc`` shows a progress bar (tqdm, on the main process, on a terminal).
    """
    device = torch.device(device) if device is not None else model_device(model)
    rank, world = _process_group() if distributed else (0, 1)
    shard = dataset if world == 1 else Subset(dataset, range(rank, len(dataset), world))
    loader = DataLoader(shard, batch_size=batch_size, shuffle=False, collate_fn=collate_inputs, num_workers=num_workers)
    probs: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    batches = tqdm(loader, desc=desc, leave=False, disable=None if desc and rank == 0 else True)
    with eval_mode(model), torch.inference_mode():
        for batch in batches:
            logits = model(pixel_values=batch["pixel_values"].to(device)).logits
            # Softmax in float64 so that half-precision logits do not give rows that miss 1.
            probs.append(torch.softmax(logits.double(), dim=-1))
            labels.append(torch.as_tensor(batch["labels"]).reshape(-1).to(device=logits.device, dtype=torch.int64))
    if world > 1:
        return _gather_shards(probs, labels, len(dataset), world, device)
    if not probs:
        return np.zeros((0, 0), dtype=np.float64), np.zeros((0,), dtype=np.int64)
    return torch.cat(probs).cpu().numpy(), torch.cat(labels).cpu().numpy()


def _process_group() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _gather_shards(
    probs: list[torch.Tensor], labels: list[torch.Tensor], n: int, world: int, device: torch.device
) -> tuple[np.ndarray, np.ndarray]:
    """All-gather the strided shards (padded to one length) and interleave them back into dataset order."""
    dist = torch.distributed
    per_process = -(-n // world)
    num_classes = torch.tensor([probs[0].shape[1] if probs else 0], device=device)
    dist.all_reduce(num_classes, op=dist.ReduceOp.MAX)  # a process with an empty shard learns the class count
    c = int(num_classes)
    local_p = torch.cat(probs) if probs else torch.zeros((0, c), dtype=torch.float64, device=device)
    local_y = torch.cat(labels) if labels else torch.zeros((0,), dtype=torch.int64, device=device)
    padded_p = torch.zeros((per_process, c), dtype=torch.float64, device=device)
    padded_y = torch.zeros((per_process,), dtype=torch.int64, device=device)
    padded_p[: len(local_p)] = local_p
    padded_y[: len(local_y)] = local_y
    all_p = [torch.empty_like(padded_p) for _ in range(world)]
    all_y = [torch.empty_like(padded_y) for _ in range(world)]
    dist.all_gather(all_p, padded_p)
    dist.all_gather(all_y, padded_y)
    # Row i of process r is sample r + i * world: stack per row, then drop the padding past n.
    out_p = torch.stack(all_p, dim=1).reshape(per_process * world, c)[:n]
    out_y = torch.stack(all_y, dim=1).reshape(-1)[:n]
    if n == 0:
        return np.zeros((0, 0), dtype=np.float64), np.zeros((0,), dtype=np.int64)
    return out_p.cpu().numpy(), out_y.cpu().numpy()


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
