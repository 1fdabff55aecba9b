"""Build or load image classifiers: any `AutoModelForImageClassification` (timm checkpoints via TimmWrapper)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForImageClassification, PreTrainedModel


def label_maps(class_names: list[str]) -> dict[str, dict]:
    """``id2label`` / ``label2id`` for a model config."""
    return {
        "id2label": {i: name for i, name in enumerate(class_names)},
        "label2id": {name: i for i, name in enumerate(class_names)},
    }


def build_model_from_config(config: Mapping[str, Any], class_names: list[str], seed: int) -> PreTrainedModel:
    """A randomly initialised classifier from a config dict with a ``model_type`` (e.g. ``resnet``)."""
    settings = dict(config)
    model_type = settings.pop("model_type", None)
    if model_type is None:
        raise ValueError("model.config needs a 'model_type' (e.g. 'resnet', 'convnext', 'vit').")
    hf_config = AutoConfig.for_model(model_type, num_labels=len(class_names), **label_maps(class_names), **settings)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoModelForImageClassification.from_config(hf_config)


def load_pretrained_model(
    name_or_path: str, class_names: list[str], *, trust_remote_code: bool = False
) -> PreTrainedModel:
    """Load a Hub id or local folder, resizing the classification head to ``class_names``."""
    return AutoModelForImageClassification.from_pretrained(
        name_or_path,
        num_labels=len(class_names),
        ignore_mismatched_sizes=True,
        trust_remote_code=trust_remote_code,
        **label_maps(class_names),
    )


def load_saved_model(folder: str) -> PreTrainedModel:
    """Reload a model that hf_unlearn saved (safetensors only, never pickles)."""
    return AutoModelForImageClassification.from_pretrained(folder, use_safetensors=True)
