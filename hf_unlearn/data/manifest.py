"""The split manifest: which training samples are forgotten, which retained, and how the split was made.

The manifest's `sha256` identifies a forget set without revealing it: it is the hex SHA-256 of the UTF-8 bytes
of the sorted forget indices written in decimal and joined by "," (no spaces, no brackets), e.g. indices
[3, 10, 42] hash the bytes b"3,10,42". Reports and model cards carry only `summary()` (kind, size, sha256).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset

from .atomic import atomic_path


def indices_sha256(indices: Iterable[int]) -> str:
    """Hex SHA-256 of the sorted indices joined by "," (UTF-8): the manifest's forget-set fingerprint."""
    text = ",".join(str(int(i)) for i in sorted(int(i) for i in indices))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _check_n_train(n_train: Any) -> int:
    if isinstance(n_train, bool) or not isinstance(n_train, (int, np.integer)) or n_train < 2:
        raise ValueError(f"n_train must be an int >= 2 (the training set size), got {n_train!r}.")
    return int(n_train)


def _as_index_array(indices: Iterable[int], name: str) -> np.ndarray:
    """Indices as a 1-D int64 array; rejects floats and booleans rather than silently truncating them."""
    arr = np.asarray(list(indices) if not isinstance(indices, np.ndarray) else indices)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a flat list of indices, got an array of shape {arr.shape}.")
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must be integers, got dtype {arr.dtype}; pass row indices into the training set.")
    return arr.astype(np.int64)


def _validated_forget(n_train: int, forget_indices: Iterable[int]) -> list[int]:
    """Check a user-given forget set and return it sorted; each failure names the problem and the fix."""
    arr = _as_index_array(forget_indices, "forget_indices")
    if arr.size == 0:
        raise ValueError("The forget set is empty; give at least one training index to forget.")
    out_of_range = arr[(arr < 0) | (arr >= n_train)]
    if out_of_range.size:
        raise ValueError(
            f"{out_of_range.size} forget indices are outside [0, {n_train}) (e.g. {int(out_of_range[0])}); "
            "indices must point into the training split: check n_train and that the indices refer to train rows."
        )
    unique, counts = np.unique(arr, return_counts=True)
    if unique.size != arr.size:
        dupes = unique[counts > 1]
        raise ValueError(
            f"The forget set repeats {dupes.size} indices (e.g. {int(dupes[0])}); remove the duplicates "
            "(e.g. with sorted(set(indices)))."
        )
    if unique.size == n_train:
        raise ValueError(
            f"The forget set is the whole training set ({n_train} samples), leaving nothing to retain; "
            "forget a strict subset (to forget everything, train from scratch instead)."
        )
    return [int(i) for i in unique]  # np.unique returns them sorted


@dataclass
class SplitManifest:
    """A retain/forget partition of a training split of `n_train` rows, plus how it was built.

    `forget_indices` and `retain_indices` are sorted, disjoint and together cover range(n_train);
    `sha256` is `indices_sha256(forget_indices)` (see the module docstring). Build one with
    `SplitManifest.build(...)`; every instance is checked on creation.
    """

    kind: str  # "random" | "low_confidence" | "classwise" | "memorization" | "user" ...
    n_train: int
    forget_indices: list[int] = field(repr=False)
    retain_indices: list[int] = field(repr=False)
    sha256: str
    seed: int | None = None
    details: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    @classmethod
    def build(
        cls,
        kind: str,
        n_train: int,
        forget_indices: Iterable[int],
        seed: int | None = None,
        details: dict | None = None,
    ) -> SplitManifest:
        """Validate a forget set and derive the retain complement and the sha256."""
        n = _check_n_train(n_train)
        forget = _validated_forget(n, forget_indices)
        mask = np.ones(n, dtype=bool)
        mask[forget] = False
        retain = [int(i) for i in np.flatnonzero(mask)]
        return cls(
            kind=str(kind),
            n_train=n,
            forget_indices=forget,
            retain_indices=retain,
            sha256=indices_sha256(forget),
            seed=None if seed is None else int(seed),
            details=dict(details or {}),
        )

    def validate(self) -> None:
        """Check internal consistency: sorted, disjoint, covering range(n_train), sha256 matching."""
        n = _check_n_train(self.n_train)
        forget = _as_index_array(self.forget_indices, "forget_indices")
        retain = _as_index_array(self.retain_indices, "retain_indices")
        for name, arr in (("forget_indices", forget), ("retain_indices", retain)):
            if arr.size == 0:
                raise ValueError(f"{name} is empty; both the forget and the retain set need at least one index.")
            if np.any(np.diff(arr) <= 0):
                raise ValueError(f"{name} is not sorted without duplicates.")
            if arr[0] < 0 or arr[-1] >= n:
                raise ValueError(f"{name} has indices outside [0, {n}).")
        if np.intersect1d(forget, retain).size:
            raise ValueError("forget_indices and retain_indices overlap; they must be disjoint.")
        if forget.size + retain.size != n:
            raise ValueError(
                f"forget ({forget.size}) and retain ({retain.size}) do not cover all {n} training indices."
            )
        expected = indices_sha256(forget.tolist())
        if self.sha256 != expected:
            raise ValueError(f"sha256 {self.sha256!r} does not match the forget indices (expected {expected!r}).")

    def summary(self) -> dict[str, Any]:
        """What reports and model cards record: kind, size and sha256, never the indices themselves."""
        return {"kind": self.kind, "size": len(self.forget_indices), "sha256": self.sha256}

    def to_json(self, path: str | os.PathLike) -> Path:
        """Write the manifest atomically: a temporary file in the same folder, fsync, then `os.replace`.

        A crash mid-write therefore leaves either the old file or the new one, never a truncated manifest.
        The file is readable by its owner only (mkstemp's mode), since it names the samples to forget.
        """
        target = Path(path)
        # Serialise first, so an unserialisable `details` fails before anything touches the disk.
        text = json.dumps(asdict(self), indent=2, default=_json_default) + "\n"
        with atomic_path(target, sync_dir=True) as tmp_name, open(tmp_name, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        return target

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> SplitManifest:
        """Read a manifest and re-check it; any inconsistency means the file was modified or is corrupt."""
        source = Path(path)
        try:
            data = json.loads(source.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{source} is not valid JSON ({err}); restore the file or rebuild the split.") from err
        names = {f.name for f in fields(cls)}
        if not isinstance(data, dict) or set(data) != names:
            got = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise ValueError(
                f"{source} is not a split manifest: expected keys {sorted(names)}, got {got}. "
                "Restore the file or rebuild the split."
            )
        try:
            return cls(**data)
        except ValueError as err:
            raise ValueError(
                f"{source} fails its consistency checks: {err} The file was modified after it was written "
                "(or is corrupt); restore the original or rebuild the split with SplitManifest.build."
            ) from err


def split_retain_forget(train_dataset: Dataset, manifest: SplitManifest) -> tuple[Dataset, Dataset]:
    """(retain, forget) subsets of the training split named by the manifest."""
    if len(train_dataset) != manifest.n_train:
        raise ValueError(
            f"The training set has {len(train_dataset)} rows but the manifest was built for {manifest.n_train}; "
            "use the same training split (same source, test_size and seed) the manifest was built from."
        )
    return train_dataset.select(manifest.retain_indices), train_dataset.select(manifest.forget_indices)


def _json_default(value: Any) -> Any:
    """Let numpy scalars and arrays in `details` serialise as plain JSON."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"details contains a {type(value).__name__}, which JSON cannot store; use plain values.")
