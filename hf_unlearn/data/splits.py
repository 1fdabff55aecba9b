"""Seeded, stratified train/test splits."""

from __future__ import annotations

from datasets import ClassLabel, Dataset


def stratified_split(
    dataset: Dataset,
    *,
    test_size: float,
    seed: int,
    label_column: str = "label",
) -> tuple[Dataset, Dataset]:
    """Split into (train, test) with the class proportions of `label_column` kept in both parts.

    `test_size` is a fraction in (0, 1) (an int is taken as a count, as in `datasets`). The same seed gives
    the same split every time.
    """
    if label_column not in dataset.column_names:
        raise ValueError(
            f"Column {label_column!r} not found; the dataset has {dataset.column_names}. "
            "Pass label_column= to name the label column."
        )
    # datasets only stratifies on ClassLabel columns; say so plainly instead of its generic error.
    if not isinstance(dataset.features[label_column], ClassLabel):
        raise ValueError(
            f"Column {label_column!r} must be a datasets.ClassLabel to stratify on it; "
            f"cast it first, e.g. dataset.class_encode_column({label_column!r})."
        )
    parts = dataset.train_test_split(test_size=test_size, seed=seed, stratify_by_column=label_column)
    return parts["train"], parts["test"]
