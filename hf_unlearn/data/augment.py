"""Training augmentation (a recipe's ``data.augmentation``): random transforms of training inputs, seeded per item.

* ``none``: no augmentation (the digits default);
* ``flip_crop``: the CIFAR recipe, a random crop of the input size after 4 pixels of black padding, then a
  horizontal flip with probability 1/2;
* ``timm``: timm's training transform (``timm.data.create_transform(is_training=True)``: random resized crop,
  flip, colour jitter, then ``ToTensor`` and the normalisation) of the model's data config, on the *decoded* images
  (`TimmAugmentation`);
* a list of torchvision ``transforms.v2`` transforms by name with their arguments, e.g.
  ``[{RandomHorizontalFlip: {p: 0.5}}, {RandomRotation: {degrees: 10}}, RandomErasing]``.

Augmentation works on the model inputs (normalised float tensors ``[C, H, W]``; ``timm``: on the decoded images,
in place of the deterministic transform, so the normalisation is applied once), on the fly, in the training
DataLoader (and its workers) of pretraining, retraining and unlearning only; saliency masks, evaluation, MIA and
analysis read the deterministic inputs. The random state of each item comes from ``(seed, epoch, stream, item)``
(`AugmentedDataset`), so one seed gives the same numbers in every run, for any number of processes or workers.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch.utils.data import Dataset

from ..errors import did_you_mean
from .pairing import EpochDraws, fetch_items

AUGMENTATION_PRESETS = ("none", "flip_crop", "timm")


class Augmentation:
    """A random transform of one input tensor, run under its own seed (the global random state is left alone)."""

    # True: the transform takes the decoded image and gives the model input (`AugmentedDataset` reads the images).
    on_images: ClassVar[bool] = False

    def __init__(self, transform: Callable[[torch.Tensor], torch.Tensor], description: Any) -> None:
        self.transform = transform
        self.description = description

    def for_model(self, model: torch.nn.Module) -> Augmentation:
        """The augmentation to train ``model`` with (presets that depend on the model resolve here)."""
        return self

    def __call__(self, pixel_values: torch.Tensor, seed: int) -> torch.Tensor:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.transform(pixel_values)

    def apply_batch(self, pixel_values: list[torch.Tensor], seeds: list[int]) -> list[torch.Tensor]:
        """The items of one batch, each under its own seed (`FlipCrop` does the whole batch in tensor ops)."""
        return [self(x, seed) for x, seed in zip(pixel_values, seeds, strict=True)]


class FlipCrop(Augmentation):
    """``flip_crop``: torchvision's random crop after ``padding`` pixels of ``fill``, then a horizontal flip, with
    a batched path (`hf_unlearn.data.flip_crop`) that gives bit-identical outputs for the same seeds."""

    def __init__(self, size: int, fill: list[float], padding: int = 4) -> None:
        from torchvision.transforms import v2

        transform = v2.Compose([v2.RandomCrop(size, padding=padding, fill=fill), v2.RandomHorizontalFlip()])
        super().__init__(transform, "flip_crop")
        self.size, self.fill, self.padding = size, fill, padding

    def apply_batch(self, pixel_values: list[torch.Tensor], seeds: list[int]) -> list[torch.Tensor]:
        from .flip_crop import apply_flip_crop, draw_flip_crop

        shape = pixel_values[0].shape if pixel_values else None
        padded = None if shape is None else (shape[-2] + 2 * self.padding, shape[-1] + 2 * self.padding)
        batchable = (
            shape is not None
            and len(shape) == 3
            and shape[0] == len(self.fill)
            and min(padded) >= self.size  # else torchvision's error, item by item
            and all(x.shape == shape for x in pixel_values)
        )
        if not batchable:
            return super().apply_batch(pixel_values, seeds)
        tops, lefts, flips = draw_flip_crop(seeds, padded, (self.size, self.size))
        out = apply_flip_crop(
            torch.stack(pixel_values), tops, lefts, flips, size=self.size, padding=self.padding, fill=self.fill
        )
        return list(out)


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
        return FlipCrop(image_size, black)
    if spec == "timm":
        means = list(mean) * num_channels if len(mean) == 1 else list(mean)
        stds = list(std) * num_channels if len(std) == 1 else list(std)
        fallback = {"input_size": (num_channels, image_size, image_size), "mean": tuple(means), "std": tuple(stds)}
        return TimmAugmentation(fallback)
    if isinstance(spec, str):
        raise ValueError(
            f"data.augmentation: unknown preset {spec!r}.{did_you_mean(spec, AUGMENTATION_PRESETS)} Use none, "
            "flip_crop, timm, or a list of torchvision v2 transforms such as [{RandomHorizontalFlip: {p: 0.5}}]."
        )
    if not isinstance(spec, list) or not spec:
        raise ValueError(
            f"data.augmentation: expected none, flip_crop, timm or a non-empty list of transforms, got {spec!r}."
        )
    return Augmentation(v2.Compose([_v2_transform(entry, i) for i, entry in enumerate(spec)]), list(spec))


class TimmAugmentation(Augmentation):
    """timm's training transform, ``create_transform(**data_config, is_training=True)``, on decoded images.

    The data config (input size, interpolation, mean, std) is the model's own for a timm model
    (``timm.data.resolve_model_data_config``); any other model gets ``fallback``, the recipe's ``data.image_size``,
    ``data.mean`` and ``data.std`` with bilinear interpolation. The transform ends in timm's ``ToTensor`` and
    ``Normalize``: it replaces the deterministic transform for training items (`AugmentedDataset` hands it the
    decoded image), so the normalisation is applied once. timm draws from Python's ``random`` as well as torch's
    generator; both are seeded per item and restored afterwards.
    """

    on_images = True

    def __init__(self, fallback: dict[str, Any], config: dict[str, Any] | None = None) -> None:
        self.fallback, self.config = fallback, config
        transform = None
        if config is not None:
            from timm.data import create_transform

            transform = create_transform(**config, is_training=True)
        super().__init__(transform, {"timm": config})

    def for_model(self, model: torch.nn.Module) -> TimmAugmentation:
        from ..models import is_timm_model

        if is_timm_model(model):
            from timm.data import resolve_model_data_config

            resolved = resolve_model_data_config(getattr(model, "timm_model", model))
            config = {k: resolved[k] for k in ("input_size", "interpolation", "mean", "std")}
        else:
            config = {**self.fallback, "interpolation": "bilinear"}
        return TimmAugmentation(self.fallback, config)

    def __call__(self, image: Any, seed: int) -> torch.Tensor:
        if self.transform is None:
            raise RuntimeError("data.augmentation timm: call for_model(model) first (the data config is the model's).")
        if hasattr(image, "convert"):  # grey or RGB, as the deterministic transform reads the image
            image = image.convert("L" if self.config["input_size"][0] == 1 else "RGB")
        state = random.getstate()
        try:
            random.seed(seed)
            return super().__call__(image, seed)
        finally:
            random.setstate(state)


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
        raise ValueError(f"{where}: {name!r} is not a torchvision.transforms.v2 transform.{did_you_mean(name, known)}")
    if not isinstance(kwargs, dict):
        raise ValueError(f"{where}: the arguments of {name} must be a mapping, got {kwargs!r}.")
    try:
        return getattr(v2, name)(**kwargs)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: {name}({kwargs}) failed: {error}") from error


class AugmentedDataset(EpochDraws):
    """``dataset`` with ``augmentation`` applied to each item's ``pixel_values``, seeded by (seed, epoch, item)."""

    def __init__(self, dataset: Dataset, augmentation: Augmentation, seed: int, stream: str = "train") -> None:
        super().__init__(seed)
        self.dataset = dataset
        self.augmentation = augmentation
        self.stream = stream
        self._rows = _source_rows(dataset) if augmentation.on_images else None

    def __len__(self) -> int:
        return len(self.dataset)

    def draw(self, generator: torch.Generator) -> torch.Tensor:
        """One seed per item for this epoch (the stream name keeps the retain and forget streams apart)."""
        return torch.randint(0, 2**62, (len(self.dataset),), generator=generator)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.__getitems__([int(index)])[0]

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        seeds = self.draws()[indices].tolist()
        if self._rows is not None:  # decoded images in, model inputs out (the deterministic transform skipped)
            from .transforms import decode_image  # PIL and datasets: only where images are decoded

            rows = self._rows[list(indices)]
            return [
                {"pixel_values": self.augmentation(decode_image(value), seed), "labels": torch.tensor(int(label))}
                for value, label, seed in zip(rows["image"], rows["label"], seeds, strict=True)
            ]
        items = [dict(item) for item in fetch_items(self.dataset, indices)]
        augmented = self.augmentation.apply_batch([item["pixel_values"] for item in items], seeds)
        for item, pixel_values in zip(items, augmented, strict=True):
            item["pixel_values"] = pixel_values
        return items


def _source_rows(dataset: Dataset) -> Any:
    """The rows of a dataset whose images are decoded and transformed when read (a `datasets.Dataset` with the
    format transform of `hf_unlearn.data.transforms.on_the_fly`), without that transform: ``image`` and ``label``."""
    plain = getattr(dataset, "with_format", None)
    columns = getattr(dataset, "column_names", None) or []
    if plain is None or "image" not in columns or "label" not in columns:
        raise ValueError(
            "data.augmentation: timm transforms the decoded images, which inputs precomputed in memory no longer "
            "have; set data.precompute: false (the images are then decoded per batch), or use flip_crop."
        )
    return plain(None)
