"""The ``flip_crop`` augmentation on a whole batch: per-item random numbers, tensor ops on the batch.

`FlipCrop` gives the same numbers as ``v2.Compose([v2.RandomCrop(size, padding=4, fill=black),
v2.RandomHorizontalFlip()])`` run item by item with torch's generator seeded by the item's seed (what `Augmentation`
does): each item's generator draws the crop's top, then its left offset, then the flip, in torchvision's order, and
padding, cropping and flipping are exact copies, so the batched result is bit-identical (tests/test_augment.py). It
only replaces the Python per-item dispatch of torchvision's transforms, which dominated a CIFAR training step's data
time on 2 cores (benchmarks/input_pipeline.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def draw_flip_crop(
    seeds: Sequence[int], padded: tuple[int, int], crop: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per item: the crop's top and left offset in the padded image and whether it is flipped.

    The draws follow ``v2.RandomCrop.make_params`` then ``v2.RandomHorizontalFlip``: a ``randint`` for the top
    (only when the padded height exceeds the crop), one for the left (likewise), then ``rand(1) < 0.5`` flips."""
    tops, lefts, flips = [], [], []
    generator = torch.Generator()  # reseeded per item: cheaper than a new generator each time
    for seed in seeds:
        generator.manual_seed(int(seed))
        top = int(torch.randint(0, padded[0] - crop[0] + 1, size=(), generator=generator)) if padded[0] > crop[0] else 0
        left = (
            int(torch.randint(0, padded[1] - crop[1] + 1, size=(), generator=generator)) if padded[1] > crop[1] else 0
        )
        tops.append(top)
        lefts.append(left)
        flips.append(bool(torch.rand(1, generator=generator) < 0.5))
    return torch.tensor(tops), torch.tensor(lefts), torch.tensor(flips, dtype=torch.bool)


def apply_flip_crop(
    batch: torch.Tensor,
    tops: torch.Tensor,
    lefts: torch.Tensor,
    flips: torch.Tensor,
    *,
    size: int,
    padding: int,
    fill: Sequence[float],
) -> torch.Tensor:
    """``batch`` [B, C, H, W] padded by ``padding`` pixels of ``fill`` (per channel), cropped to ``size`` at each
    item's offsets and flipped horizontally where ``flips``: one padded copy and one gather for the whole batch."""
    n, channels, height, width = batch.shape
    padded = torch.empty(n, channels, height + 2 * padding, width + 2 * padding, dtype=batch.dtype)
    padded[:] = torch.tensor(list(fill), dtype=batch.dtype).reshape(1, channels, 1, 1)
    padded[:, :, padding : padding + height, padding : padding + width] = batch
    steps = torch.arange(size)
    rows = (tops[:, None] + steps)[:, None, :, None]  # [B, 1, size, 1]
    # A flipped item reads its crop's columns right to left (the same values as flipping the crop afterwards).
    columns = torch.where(flips[:, None], lefts[:, None] + size - 1 - steps, lefts[:, None] + steps)[:, None, None, :]
    items = torch.arange(n)[:, None, None, None]
    return padded[items, torch.arange(channels)[None, :, None, None], rows, columns]
