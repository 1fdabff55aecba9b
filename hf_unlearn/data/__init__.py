"""Data for hf_unlearn: sources, model inputs, splits, forget sets and split manifests (no training here)."""

from .forget_sets import forget_size, lowest_score_indices, random_forget_indices
from .manifest import SplitManifest, indices_sha256, split_retain_forget
from .sources import SOURCES, load_digits_dataset, load_source
from .splits import stratified_split
from .transforms import to_model_inputs

__all__ = [
    "SOURCES",
    "SplitManifest",
    "forget_size",
    "indices_sha256",
    "load_digits_dataset",
    "load_source",
    "lowest_score_indices",
    "random_forget_indices",
    "split_retain_forget",
    "stratified_split",
    "to_model_inputs",
]
