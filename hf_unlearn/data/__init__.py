"""Data for hf_unlearn: sources, model inputs, splits, forget sets and split manifests (no training here)."""

from .forget_sets import (
    band_indices,
    classwise_forget_set,
    file_forget_set,
    forget_size,
    low_confidence_forget_set,
    lowest_score_indices,
    memorization_forget_set,
    random_forget_indices,
    random_forget_set,
)
from .manifest import SplitManifest, indices_sha256, split_retain_forget
from .prepare import PreparedData, prepare_pool, prepare_splits
from .score_files import ScoreTable, load_scores, save_scores
from .sources import SOURCES, load_digits_dataset, load_source
from .splits import stratified_split
from .transforms import TensorImageDataset, to_model_inputs

__all__ = [
    "SOURCES",
    "PreparedData",
    "ScoreTable",
    "SplitManifest",
    "TensorImageDataset",
    "band_indices",
    "classwise_forget_set",
    "file_forget_set",
    "forget_size",
    "indices_sha256",
    "load_digits_dataset",
    "load_scores",
    "load_source",
    "low_confidence_forget_set",
    "lowest_score_indices",
    "memorization_forget_set",
    "prepare_pool",
    "prepare_splits",
    "random_forget_indices",
    "random_forget_set",
    "save_scores",
    "split_retain_forget",
    "stratified_split",
    "to_model_inputs",
]
