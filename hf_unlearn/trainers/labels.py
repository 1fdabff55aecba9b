"""How many classes a model has, and whether the data's labels fit its head (checked before training).

The Python API takes any module returning ``.logits``; the class count comes from ``model.config.num_labels``,
``model.num_labels``, the data sets' labels (a `datasets.ClassLabel`, or `TensorImageDataset.class_names`) or, for a
bare module on plain data, the width of its output on one item (`measured_head_width`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Subset


def _class_label_count(dataset: Any) -> int | None:
    """The class count a data set declares (ClassLabel / class_names), or None."""
    names = getattr(dataset, "class_names", None)
    if names:
        return len(names)
    features = getattr(dataset, "features", None) or {}
    for column in ("labels", "label"):
        feature = features.get(column) if hasattr(features, "get") else None
        if feature is not None and hasattr(feature, "num_classes"):
            return int(feature.num_classes)
    return None


def _declared_num_labels(model: torch.nn.Module) -> int | None:
    config = getattr(model, "config", None)
    return getattr(config, "num_labels", None) or getattr(model, "num_labels", None) or None


def _declared_class_count(datasets: tuple[Any, ...]) -> int | None:
    counts = {c for c in (_class_label_count(d) for d in datasets if d is not None) if c}
    return max(counts) if counts else None


def _logits(output: Any) -> torch.Tensor | None:
    logits = getattr(output, "logits", None)
    if logits is None and isinstance(output, (tuple, list)) and output:
        logits = output[0]
    if logits is None and isinstance(output, torch.Tensor):
        logits = output
    return logits if isinstance(logits, torch.Tensor) else None


def measured_head_width(model: torch.nn.Module, *datasets: Any) -> int | None:
    """The width of ``model``'s output on the first item of the first non-empty data set (one forward pass in
    eval mode, no gradient; BatchNorm statistics untouched), or None when the item or the model does not allow it
    (training then meets the same problem with its own error)."""
    dataset = next((d for d in datasets if d is not None and len(d)), None)
    if dataset is None:
        return None
    try:
        item = dataset[0]
        pixels = item.get("pixel_values") if isinstance(item, dict) else None
        if not isinstance(pixels, torch.Tensor):
            return None
        parameter = next(model.parameters(), None)
        if parameter is not None:
            pixels = pixels.to(parameter.device, parameter.dtype if pixels.is_floating_point() else pixels.dtype)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                logits = _logits(model(pixel_values=pixels.unsqueeze(0)))
        finally:
            model.train(was_training)
    except Exception:  # a measurement only: a model that cannot run on one item fails in training, with its error
        return None
    return int(logits.shape[-1]) if logits is not None and logits.dim() >= 1 else None


NO_CLASS_COUNT = (
    "Cannot tell the number of classes: the model has neither config.num_labels nor num_labels, the data sets "
    "declare no ClassLabel, and one forward pass on an item gave no logits. Set model.num_labels = <number of classes>."
)


def num_labels_of(model: torch.nn.Module, *datasets: Any) -> int:
    """The number of classes: ``model.config.num_labels``, else ``model.num_labels``, else the data sets' declared
    class count, else the measured width of the model's head (`measured_head_width`)."""
    n = _declared_num_labels(model) or _declared_class_count(datasets) or measured_head_width(model, *datasets)
    if not n:
        raise ValueError(NO_CLASS_COUNT)
    return int(n)


def head_width_of(model: torch.nn.Module, *datasets: Any) -> int:
    """The width of the model's head, which labels must stay below: declared (``config.num_labels`` /
    ``num_labels``), else measured with one forward pass (a bare module's head may be narrower than the data's
    ClassLabel), else the data sets' declared class count."""
    n = _declared_num_labels(model) or measured_head_width(model, *datasets) or _declared_class_count(datasets)
    if not n:
        raise ValueError(NO_CLASS_COUNT)
    return int(n)


def labels_of(dataset: Any) -> np.ndarray | None:
    """Every label of ``dataset`` when it can be read cheaply, else None."""
    if dataset is None:
        return None
    labels = getattr(dataset, "labels", None)
    if isinstance(labels, torch.Tensor):  # TensorImageDataset
        return labels.numpy()
    if hasattr(dataset, "column_names") and hasattr(dataset, "with_format"):  # datasets.Dataset, transforms off
        plain = dataset.with_format(None)
        for column in ("labels", "label"):
            if column in plain.column_names:
                return np.asarray(plain[column])
        return None
    if isinstance(dataset, ConcatDataset):
        parts = [labels_of(d) for d in dataset.datasets]
        return None if any(p is None for p in parts) else np.concatenate(parts)
    if isinstance(dataset, Subset):
        inner = labels_of(dataset.dataset)
        return None if inner is None else inner[np.asarray(dataset.indices)]
    return None  # any other data set: its batches are checked as they come (`check_batch_labels`)


def _out_of_range(name: str, label: int, num_labels: int) -> ValueError:
    return ValueError(
        f"{name} holds label {label} but the model's head has {num_labels} classes (labels 0..{num_labels - 1}); "
        "map the labels to the head's classes or give the model a head with more classes."
    )


def check_label_range(num_labels: int, **datasets: Any) -> bool:
    """Refuse labels outside ``[0, num_labels)`` before training (they would fail inside the loss). Returns
    whether every data set could be checked (labels read without touching the images)."""
    complete = True
    for name, dataset in datasets.items():
        if dataset is None:
            continue
        labels = labels_of(dataset)
        if labels is None:
            complete = False
            continue
        bad = labels[(labels < 0) | (labels >= num_labels)]
        if bad.size:
            raise _out_of_range(name, int(bad[0]), num_labels)
    return complete


def check_batch_labels(batch: dict[str, Any], num_labels: int) -> None:
    """The same check on one nested training batch, for data sets whose labels cannot be read up front."""
    for part in ("retain", "forget"):
        labels = (batch.get(part) or {}).get("labels")
        if isinstance(labels, torch.Tensor) and labels.numel():
            bad = labels[(labels < 0) | (labels >= num_labels)]
            if bad.numel():
                raise _out_of_range(f"{part}_dataset", int(bad[0]), num_labels)
