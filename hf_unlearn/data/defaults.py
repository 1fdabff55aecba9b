"""The keys of a recipe's ``data`` section, their types, defaults and choice lists: the one home that the recipe schema
(hf_unlearn.recipe) and the data preparation (hf_unlearn.data.prepare) both read. Imports nothing heavy."""

from __future__ import annotations

from typing import Any

TRANSFORM_CHOICES = ("auto", "manual", "processor")
BAD_IMAGE_CHOICES = ("error", "skip")

# test_split / validation_split are used when the source has them; otherwise test_size / validation_size are carved
# out of the training split (stratified, seeded). docs/datasets.md describes every key.
DATA_DEFAULTS: dict[str, Any] = {
    "source": "digits",
    "config": None,
    "revision": None,
    "image_column": "image",
    "label_column": "label",
    "train_split": "train",
    "test_split": "test",
    "validation_split": "validation",
    "test_size": 0.2,
    "validation_size": None,
    "transforms": "auto",
    "precompute": None,
    "image_size": 16,
    "num_channels": 1,
    "mean": [0.5],
    "std": [0.5],
    "on_bad_image": "error",  # or "skip": leave out rows whose image does not decode, counted in the report
    # Training augmentation (hf_unlearn.data.augment): none | flip_crop | [{RandomHorizontalFlip: {p: 0.5}}, ...]
    "augmentation": "none",
}
# The recipe type of each key (hf_unlearn.recipe checks them; null is accepted wherever the default is null).
DATA_TYPES: dict[str, Any] = {
    "source": str,
    "config": str,
    "revision": str,
    "image_column": str,
    "label_column": str,
    "train_split": str,
    "test_split": str,
    "validation_split": str,
    "test_size": float,
    "validation_size": float,
    "transforms": str,
    "precompute": bool,
    "image_size": int,
    "num_channels": int,
    "mean": list,
    "std": list,
    "on_bad_image": str,
    "augmentation": object,  # none | flip_crop | a list of torchvision v2 transforms; checked in validate
    # Only the first N rows of train_split form the pool (row ids unchanged); unset: all of them. Not in
    # DATA_DEFAULTS, so that recipes without it keep their stage fingerprints (finished stages are reused).
    "first_train_rows": int,
}
