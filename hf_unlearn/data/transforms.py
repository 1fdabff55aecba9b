"""Turn an image classification Dataset into model inputs (`pixel_values`, `labels`) once, up front."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from datasets import Array3D, ClassLabel, Dataset, Features, Value
from PIL import Image as PILImage

from ..errors import ValidationError

# PIL mode for each supported channel count.
_MODES: dict[int, str] = {1: "L", 3: "RGB"}


def _per_channel(values: Sequence[float], num_channels: int, name: str) -> np.ndarray:
    """Broadcast mean/std to shape [C, 1, 1]; a single value applies to every channel."""
    arr = np.asarray(values, dtype=np.float32).reshape(-1)
    if arr.size == 1:
        arr = np.repeat(arr, num_channels)
    if arr.size != num_channels:
        raise ValueError(
            f"{name} has {arr.size} values but num_channels is {num_channels}; give one value, or one per channel."
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
    transform = manual_image_transform(image_size=image_size, num_channels=num_channels, mean=mean, std=std)
    for column in (image_column, label_column):
        if column not in dataset.column_names:
            raise ValueError(
                f"Column {column!r} not found; the dataset has {dataset.column_names}. "
                "Pass image_column= / label_column= to name the right columns."
            )

    def convert(batch: dict[str, list]) -> dict[str, Any]:
        return {"pixel_values": transform(batch[image_column]), "labels": [int(y) for y in batch[label_column]]}

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


# --------------------------------------------------------------------------------------------------------------
# In-memory inputs and per-batch transforms (used by `hf_unlearn.data.prepare`)
# --------------------------------------------------------------------------------------------------------------
class TensorImageDataset(torch.utils.data.Dataset):
    """Model inputs held in memory: items ``{"pixel_values": FloatTensor[C, H, W], "labels": int64 0-d}``.

    The same items as `to_model_inputs` gives (the same float32 values), without the Arrow round trip per batch
    (docs/datasets.md has the speed-up). `select(indices)` returns a view-like subset, as
    `datasets.Dataset.select` does, so `split_retain_forget` works on both. `class_names` carries the label names.
    """

    def __init__(self, pixel_values: torch.Tensor, labels: torch.Tensor, class_names: Sequence[str] | None = None):
        if len(pixel_values) != len(labels):
            raise ValueError(f"{len(pixel_values)} images but {len(labels)} labels.")
        self.pixel_values = pixel_values
        self.labels = labels.long()
        self.class_names = list(class_names) if class_names is not None else None

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        index = int(index)
        return {"pixel_values": self.pixel_values[index], "labels": self.labels[index]}

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, torch.Tensor]]:
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        pixels, labels = self.pixel_values[idx], self.labels[idx]
        return [{"pixel_values": x, "labels": y} for x, y in zip(pixels, labels, strict=True)]

    def select(self, indices: Sequence[int]) -> TensorImageDataset:
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        return TensorImageDataset(self.pixel_values[idx], self.labels[idx], self.class_names)


def manual_image_transform(
    *, image_size: int, num_channels: int = 1, mean: Sequence[float] = (0.5,), std: Sequence[float] = (0.5,)
) -> Callable[[list[Any]], np.ndarray]:
    """images -> float32 [N, C, H, W]: grey / RGB, bilinear resize, [0, 1], ``(x - mean) / std``.

    `to_model_inputs` uses it, so both give the same values."""
    if num_channels not in _MODES:
        raise ValueError(f"num_channels must be 1 (grey) or 3 (RGB), got {num_channels}.")
    if image_size < 1:
        raise ValueError(f"image_size must be a positive number of pixels, got {image_size}.")
    mean_arr = _per_channel(mean, num_channels, "mean")
    std_arr = _per_channel(std, num_channels, "std")
    if np.any(std_arr == 0):
        raise ValueError(f"std must be non-zero for every channel, got {tuple(std)}.")
    mode = _MODES[num_channels]

    def transform(images: list[Any]) -> np.ndarray:
        pixels = np.stack([_image_to_array(img, image_size, mode) for img in images])
        return ((pixels - mean_arr) / std_arr).astype(np.float32)

    transform.description = {  # type: ignore[attr-defined]
        "kind": "manual",
        "image_size": image_size,
        "num_channels": num_channels,
        "mean": [float(v) for v in np.asarray(mean).reshape(-1)],
        "std": [float(v) for v in np.asarray(std).reshape(-1)],
    }
    return transform


def processor_image_transform(
    name_or_path: str, *, trust_remote_code: bool = False
) -> Callable[[list[Any]], np.ndarray]:
    """images -> float32 [N, C, H, W] with the model's own image processor (`AutoImageProcessor`).

    timm checkpoints load as `TimmWrapperImageProcessor`, which applies timm's data config (resize, centre crop,
    mean / std of the checkpoint), so transformers and timm models are covered alike. Evaluation transforms only:
    no random augmentation (the inputs of a sample are the same in every epoch).
    """
    from transformers import AutoImageProcessor

    try:
        processor = AutoImageProcessor.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        raise ValueError(
            f"No image processor could be loaded for {name_or_path!r} ({error}). Give data.transforms: manual with "
            "data.image_size / num_channels / mean / std, or save the processor next to the model "
            "(processor.save_pretrained(folder))."
        ) from error

    def transform(images: list[Any]) -> np.ndarray:
        rgb = [_as_pil(img).convert("RGB") for img in images]
        out = processor(images=rgb, return_tensors="pt")["pixel_values"]
        return out.numpy().astype(np.float32)

    transform.description = {  # type: ignore[attr-defined]
        "kind": "processor",
        "processor": type(processor).__name__,
        "from": str(name_or_path),
    }
    return transform


def decode_image(value: Any) -> PILImage.Image:
    """A decoded image from what a row holds: a PIL image, or an encoded ``{"bytes", "path"}`` (``datasets.Image``)."""
    if isinstance(value, PILImage.Image):
        return value
    from datasets import Image

    image = Image().decode_example(value)
    image.load()
    return image


def on_the_fly(
    dataset: Dataset,
    transform: Callable[[list[Any]], np.ndarray],
    *,
    image_column: str = "image",
    label_column: str = "label",
    row_column: str | None = None,
) -> Dataset:
    """The dataset with a format transform giving ``{"pixel_values", "labels"}`` per accessed batch.

    Images are decoded and transformed when the Trainer (or the evaluation) reads them, so data sets that would not
    fit in memory as tensors (ImageNet) work; `select` keeps the transform. Encoded images are decoded here, one
    by one, so that an image that does not decode stops the run with a `ValidationError` naming its source row
    (``row_column``) and file, not a raw PIL error from inside the data loader mid-training.
    """
    from datasets import Image

    feature = dataset.features.get(image_column)
    encoded = isinstance(feature, Image) and feature.decode
    if encoded:
        dataset = dataset.cast_column(image_column, Image(decode=False))
    decoder = Image()

    def decode(value: Any, batch: dict[str, list], k: int) -> Any:
        try:
            image = decoder.decode_example(value)
            image.load()
            return image
        except Exception as error:  # PIL raises many types for a broken file; any of them means "does not decode"
            row = f"row {batch[row_column][k]} of the source's training split" if row_column else "a row"
            path = value.get("path") if isinstance(value, dict) else None
            raise ValidationError(
                f"data.image_column: {row}{f' (file {path})' if path else ''} does not decode as an image "
                f"({type(error).__name__}: {error}). Fix or remove that row (e.g. dataset.filter), or set "
                "data.on_bad_image: skip to leave out such rows (they are counted in the report)."
            ) from None

    def apply(batch: dict[str, list]) -> dict[str, Any]:
        images = batch[image_column]
        if encoded:
            images = [decode(value, batch, k) for k, value in enumerate(images)]
        pixels = torch.from_numpy(transform(images))
        return {"pixel_values": list(pixels), "labels": [torch.tensor(int(y)) for y in batch[label_column]]}

    columns = [image_column, label_column, *([row_column] if row_column else [])]
    return dataset.with_transform(apply, columns=columns)


def materialize(
    dataset: Dataset,
    transform: Callable[[list[Any]], np.ndarray],
    *,
    image_column: str = "image",
    label_column: str = "label",
    class_names: Sequence[str] | None = None,
    batch_size: int = 1024,
) -> TensorImageDataset:
    """Transform every image once and keep the result in memory (small data sets such as digits or CIFAR)."""
    plain = dataset.with_format(None).select_columns([image_column, label_column])
    chunks, labels = [], []
    for start in range(0, len(plain), batch_size):
        batch = plain[start : start + batch_size]
        chunks.append(torch.from_numpy(transform(batch[image_column])))
        labels.extend(int(y) for y in batch[label_column])
    if not chunks:
        raise ValueError("The data set is empty; nothing to train or evaluate on.")
    return TensorImageDataset(torch.cat(chunks), torch.tensor(labels, dtype=torch.long), class_names)
