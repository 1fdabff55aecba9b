"""Turn an image classification Dataset into model inputs (`pixel_values`, `labels`) once, up front."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from datasets import Array3D, ClassLabel, Dataset, Features, Value
from PIL import Image as PILImage

# PIL mode for each supported channel count.
_MODES: dict[int, str] = {1: "L", 3: "RGB"}


def _per_channel(values: Sequence[float], num_channels: int, name: str) -> np.ndarray:
    """Broadcast mean/std to shape [C, 1, 1]; a single value applies to every channel."""
    arr = np.asarray(values, dtype=np.float32).reshape(-1)
    if arr.size == 1:
        arr = np.repeat(arr, num_channels)
    if arr.size != num_channels:
        raise ValueError(
            f"{name} has {arr.size} values but num_channels is {num_channels}; "
            f"give one value, or one per channel."
        )
    return arr.reshape(num_channels, 1, 1)


def _as_pil(image: Any) -> PILImage.Image:
    """Accept PIL images (the usual decoded `datasets.Image`) and plain HxW / HxWxC arrays."""
    if isinstance(image, PILImage.Image):
        return image
    return PILImage.fromarray(np.asarray(image))


def _image_to_array(image: Any, image_size: int, mode: str) -> np.ndarray:
    """One image -> float32 [C, H, W] in [0, 1]."""
    pil = _as_pil(image).convert(mode)
    if pil.size != (image_size, image_size):
        pil = pil.resize((image_size, image_size), resample=PILImage.Resampling.BILINEAR)
    arr = np.asarray(pil, dtype=np.float32) / 255.0
    if arr.ndim == 2:  # "L" images have no channel axis
        arr = arr[None, :, :]
    else:
        arr = arr.transpose(2, 0, 1)
    return arr


def _label_feature(dataset: Dataset, label_column: str) -> ClassLabel | Value:
    """Keep a ClassLabel (so `num_classes` and names survive); plain integers become int64."""
    feature = dataset.features[label_column]
    return feature if isinstance(feature, ClassLabel) else Value("int64")


def to_model_inputs(
    dataset: Dataset,
    *,
    image_size: int,
    num_channels: int = 1,
    mean: Sequence[float] = (0.5,),
    std: Sequence[float] = (0.5,),
    image_column: str = "image",
    label_column: str = "label",
) -> Dataset:
    """Precompute `pixel_values` (float32 [C, H, W], normalised) and `labels` for every row.

    Each image is converted to grey ("L", num_channels=1) or RGB (num_channels=3), resized bilinearly to
    `image_size` x `image_size`, scaled to [0, 1] and normalised with `(x - mean) / std`. All other columns
    are dropped and the result is in torch format, so `ds[i]` is
    `{"pixel_values": FloatTensor[C, H, W], "labels": int64 0-d tensor}`; `labels` keeps its ClassLabel.

    Inputs are computed once, deliberately: the data sets are small, and a fixed tensor per sample makes runs
    deterministic. There is no random augmentation in v1.
    """
    if num_channels not in _MODES:
        raise ValueError(f"num_channels must be 1 (grey) or 3 (RGB), got {num_channels}.")
    if image_size < 1:
        raise ValueError(f"image_size must be a positive number of pixels, got {image_size}.")
    for column in (image_column, label_column):
        if column not in dataset.column_names:
            raise ValueError(
                f"Column {column!r} not found; the dataset has {dataset.column_names}. "
                "Pass image_column= / label_column= to name the right columns."
            )
    mean_arr = _per_channel(mean, num_channels, "mean")
    std_arr = _per_channel(std, num_channels, "std")
    if np.any(std_arr == 0):
        raise ValueError(f"std must be non-zero for every channel, got {tuple(std)}.")
    mode = _MODES[num_channels]

    def convert(batch: dict[str, list]) -> dict[str, Any]:
        pixels = np.stack([_image_to_array(img, image_size, mode) for img in batch[image_column]])
        pixels = (pixels - mean_arr) / std_arr
        return {"pixel_values": pixels.astype(np.float32), "labels": [int(y) for y in batch[label_column]]}

    features = Features(
        {
            "pixel_values": Array3D(shape=(num_channels, image_size, image_size), dtype="float32"),
            "labels": _label_feature(dataset, label_column),
        }
    )
    # Drop any user format first so `convert` sees decoded PIL images, not tensors.
    plain = dataset.with_format(None)
    converted = plain.map(
        convert,
        batched=True,
        remove_columns=plain.column_names,
        features=features,
        desc="Preparing model inputs",
    )
    converted.set_format("torch", columns=["pixel_values", "labels"])
    return converted
