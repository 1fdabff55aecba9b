"""Training augmentation (a recipe's ``data.augmentation``): random transforms of training inputs, seeded per item.

* ``none``: no augmentation (the digits default);
* ``flip_crop``: the CIFAR recipe, a random crop of the input size after 4 pixels of black padding, then a
  horizontal flip with probability 1/2;
* a list of torchvision ``transforms.v2`` transforms by name with their arguments, e.g.
  ``[{RandomHorizontalFlip: {p: 0.5}}, {RandomRotation: {degrees: 10}}, RandomErasing]``.

Augmentation works on the model inputs (normalised float tensors ``[C, H, W]``), on the fly, in the training
DataLoader (and its workers) of pretraining, retraining and unlearning only; saliency masks, evaluation, MIA and
analysis read the deterministic inputs. The random state of each item comes from ``(seed, epoch, stream, item)``
(`AugmentedDataset`), so one seed gives the same numbers in every run, for any number of processes or workers.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from .pairing import _EpochDraws, _fetch

AUGMENTATION_PRESETS = ("none", "flip_crop")


class Augmentation:
    """A random transform of one input tensor, run under its own seed (the global random state is left alone)."""

    def __init__(self, transform: Callable[[torch.Tensor], torch.Tensor], description: Any) -> None:
        self.transform = transform
        self.description = description

    def __call__(self, pixel_values: torch.Tensor, seed: int) -> torch.Tensor:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.transform(pixel_values)


def build_augmentation(
    spec: Any, *, image_size: int, mean: Sequence[float] = (0.5,), std: Sequence[float] = (0.5,), num_channels: int = 1
) -> Augmentation | None:
    """The `Augmentation` of a ``data.augmentation`` value, or None for ``none``; a bad value is a ValueError."""
    from torchvision.transforms import v2

    if spec is None or spec == "none":
        return None
    if spec == "flip_crop":
        # Black in the normalised space: (0 - mean) / std per channel, as zero padding of the raw image.
        means = list(mean) * num_channels if len(mean) == 1 else list(mean)
        stds = list(std) * num_channels if len(std) == 1 else list(std)
        black = [-m / s for m, s in zip(means, stds, strict=True)]
        transform = v2.Compose([v2.RandomCrop(image_size, padding=4, fill=black), v2.RandomHorizontalFlip()])
        return Augmentation(transform, "flip_crop")
    if isinstance(spec, str):
        close = difflib.get_close_matches(spec, AUGMENTATION_PRESETS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"data.augmentation: unknown preset {spec!r}.{hint} Use none, flip_crop, or a list of torchvision v2 "
            "transforms such as [{RandomHorizontalFlip: {p: 0.5}}]."
        )
    if not isinstance(spec, list) or not spec:
        raise ValueError(
            f"data.augmentation: expected none, flip_crop or a non-empty list of transforms, got {spec!r}."
        )
    return Augmentation(v2.Compose([_v2_transform(entry, i) for i, entry in enumerate(spec)]), list(spec))


def _v2_transform(entry: Any, i: int) -> Callable:
    """One list entry: ``Name`` or ``{Name: {argument: value}}`` of `torchvision.transforms.v2`."""
    from torchvision.transforms import v2

    where = f"data.augmentation[{i}]"
    if isinstance(entry, str):
        name, kwargs = entry, {}
    elif isinstance(entry, dict) and len(entry) == 1:
        ((name, kwargs),) = entry.items()
        kwargs = kwargs or {}
    else:
        raise ValueError(f"{where}: expected a transform name or {{Name: {{argument: value}}}}, got {entry!r}.")
    known = [n for n in dir(v2) if n[:1].isupper() and isinstance(getattr(v2, n), type)]
    if name not in known:
        close = difflib.get_close_matches(str(name), known, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"{where}: {name!r} is not a torchvision.transforms.v2 transform.{hint}")
    if not isinstance(kwargs, dict):
        raise ValueError(f"{where}: the arguments of {name} must be a mapping, got {kwargs!r}.")
    try:
        return getattr(v2, name)(**kwargs)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: {name}({kwargs}) failed: {error}") from error


class AugmentedDataset(_EpochDraws):
    """``dataset`` with ``augmentation`` applied to each item's ``pixel_values``, seeded by (seed, epoch, item)."""

    def __init__(self, dataset: Dataset, augmentation: Augmentation, seed: int, stream: str = "train") -> None:
        super().__init__(seed)
        self.dataset = dataset
        self.augmentation = augmentation
        self.stream = stream

    def __len__(self) -> int:
        return len(self.dataset)

    def draw(self, generator: torch.Generator) -> torch.Tensor:
        """One seed per item for this epoch (the stream name keeps the retain and forget streams apart)."""
        return torch.randint(0, 2**62, (len(self.dataset),), generator=generator)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.__getitems__([int(index)])[0]

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        seeds = self.draws()[indices].tolist()
        out = []
        for item, seed in zip(_fetch(self.dataset, indices), seeds, strict=True):
            item = dict(item)
            item["pixel_values"] = self.augmentation(item["pixel_values"], seed)
            out.append(item)
        return out
