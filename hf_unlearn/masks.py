"""Forget-saliency masks (SalUn, Sharp MinMax): the parameters the forget loss pulls on hardest."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, default_collate

from .metrics.inference import eval_mode

Mask = dict[str, torch.Tensor]


def forget_saliency(model: nn.Module, forget_dataset: Dataset, batch_size: int = 256) -> dict[str, torch.Tensor]:
    """|sum over forget samples of grad CE| per trainable parameter.

    Computed without side effects: eval mode (a train-mode forward would move BatchNorm running
    statistics with forget data), summed per-sample losses (independent of batch size and order),
    gradients accumulated in a scratch buffer and the model's ``.grad`` left as it was.
    """
    if len(forget_dataset) == 0:
        raise ValueError("The forget set is empty; a saliency mask needs at least one forget sample.")
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    device = next(iter(params.values())).device
    saved_grads = {name: p.grad for name, p in params.items()}
    total = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in params.items()}
    try:
        with eval_mode(model):
            for batch in DataLoader(forget_dataset, batch_size=batch_size, collate_fn=default_collate):
                for p in params.values():
                    p.grad = None
                logits = model(pixel_values=batch["pixel_values"].to(device)).logits
                loss = F.cross_entropy(logits.float(), batch["labels"].to(device), reduction="sum")
                loss.backward()
                for name, p in params.items():
                    if p.grad is not None:
                        total[name] += p.grad.float()
    finally:
        for name, p in params.items():
            p.grad = saved_grads[name]
    return {name: t.abs() for name, t in total.items()}


def top_fraction_mask(saliency: dict[str, torch.Tensor], ratio: float, *, largest: bool = True) -> Mask:
    """Boolean mask of exactly ``round(ratio * N)`` elements ranked globally across all parameters.

    ``largest=True`` keeps the most salient elements (SalUn and the paper's text); ``largest=False``
    keeps the least salient ones, which is what the official Sharp MinMax code does.
    """
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"mask ratio must lie in (0, 1] (got {ratio}).")
    names = list(saliency)
    flat = torch.cat([saliency[n].reshape(-1).float() for n in names])
    k = max(1, min(flat.numel(), round(ratio * flat.numel())))
    # topk gives exactly k elements even when scores tie (many exact zeros are common).
    chosen = torch.topk(flat, k, largest=largest, sorted=False).indices
    selected = torch.zeros_like(flat, dtype=torch.bool)
    selected[chosen] = True
    mask: Mask = {}
    offset = 0
    for name in names:
        n = saliency[name].numel()
        mask[name] = selected[offset : offset + n].view_as(saliency[name])
        offset += n
    return mask


def forget_saliency_mask(
    model: nn.Module, forget_dataset: Dataset, ratio: float, *, largest: bool = True, batch_size: int = 256
) -> Mask:
    """The forget-saliency mask of ``model``: True marks the forget partition."""
    return top_fraction_mask(forget_saliency(model, forget_dataset, batch_size), ratio, largest=largest)
