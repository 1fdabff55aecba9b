"""Data for hf_unlearn: sources, model inputs, splits, forget sets and split manifests (no training here)."""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

# Imported on first use (hf_unlearn._lazy), so that importing the package loads no sklearn / datasets.
_EXPORTS = {
    "PreparedData": ".prepare",
    "SOURCES": ".sources",
    "ScoreTable": ".score_files",
    "SplitManifest": ".manifest",
    "TensorImageDataset": ".transforms",
    "band_indices": ".forget_sets",
    "classwise_forget_set": ".forget_sets",
    "file_forget_set": ".forget_sets",
    "forget_size": ".forget_sets",
    "indices_sha256": ".manifest",
    "load_digits_dataset": ".sources",
    "load_scores": ".score_files",
    "load_source": ".sources",
    "low_confidence_forget_set": ".forget_sets",
    "lowest_score_indices": ".forget_sets",
    "memorization_forget_set": ".forget_sets",
    "prepare_pool": ".prepare",
    "prepare_splits": ".prepare",
    "random_forget_indices": ".forget_sets",
    "random_forget_set": ".forget_sets",
    "save_scores": ".score_files",
    "split_retain_forget": ".manifest",
    "stratified_split": ".splits",
    "to_model_inputs": ".transforms",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
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
