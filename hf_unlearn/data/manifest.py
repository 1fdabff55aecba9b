"""The split manifest: which training samples are forgotten, which retained, and how the split was made.

The manifest is private (it lists the samples). Reports and model cards carry only `summary()`: the kind, the size
and the forget set's `commitment`, the hex HMAC-SHA256 of the forget set's canonical text under
`commitment_key`, a random 32-byte key kept only in this manifest. The canonical text is the sorted forget
indices written in decimal and joined by "," (UTF-8, no spaces, no brackets): indices [3, 10, 42] give b"3,10,42".
Without the key nobody can test a guessed list against a published commitment (a plain hash could be checked
against any rebuilt candidate set); with the manifest, `hf-unlearn verify` proves which list was committed to.
The manifest's own `sha256` (the plain SHA-256 of the same text) stays private: it checks the file's consistency
and keys the stage fingerprints.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset

from ..atomic import atomic_path


def indices_sha256(indices: Iterable[int]) -> str:
    """Hex SHA-256 of the sorted indices joined by "," (UTF-8): the manifest's forget-set fingerprint."""
    text = ",".join(str(int(i)) for i in sorted(int(i) for i in indices))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def indices_text(indices: Iterable[int]) -> bytes:
    """The canonical bytes of a forget set: sorted decimal indices joined by ","."""
    return ",".join(str(int(i)) for i in sorted(int(i) for i in indices)).encode("utf-8")


def indices_commitment(indices: Iterable[int], key_hex: str) -> str:
    """Hex HMAC-SHA256 of `indices_text` under the hex key: the forget-set commitment of reports and cards."""
    return hmac.new(bytes.fromhex(key_hex), indices_text(indices), hashlib.sha256).hexdigest()


def new_commitment_key() -> str:
    """A fresh random 32-byte key (hex), from the OS's cryptographic generator."""
    return secrets.token_hex(32)


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
    commitment_key: str = field(default="", repr=False)  # private: 32 random bytes as hex ("" = draw one)
    commitment: str = ""  # HMAC-SHA256 of the forget set under commitment_key ("" = compute it)

    def __post_init__(self) -> None:
        if not self.commitment_key:
            self.commitment_key = new_commitment_key()
            self.commitment = indices_commitment(self.forget_indices, self.commitment_key)
        elif not self.commitment:
            self.commitment = indices_commitment(self.forget_indices, self.commitment_key)
        self.validate()

    def with_key(self, key_hex: str) -> SplitManifest:
        """This manifest under another commitment key (a rebuilt manifest keeps its saved key)."""
        return dataclasses.replace(self, commitment_key=key_hex, commitment="")

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
        try:
            key_ok = len(bytes.fromhex(self.commitment_key)) == 32
        except (TypeError, ValueError):
            key_ok = False
        if not key_ok:
            raise ValueError("commitment_key is not 32 bytes of hex.")
        if not hmac.compare_digest(str(self.commitment), indices_commitment(forget.tolist(), self.commitment_key)):
            raise ValueError("commitment does not match the forget indices under commitment_key.")

    def summary(self) -> dict[str, Any]:
        """What reports and model cards record: kind, size and the commitment, never the indices or the key."""
        return {"kind": self.kind, "size": len(self.forget_indices), "commitment": self.commitment}

    def to_json(self, path: str | os.PathLike) -> Path:
        """Write the manifest atomically: a temporary file in the same folder, fsync, then `os.replace`.

        A crash mid-write therefore leaves either the old file or the new one, never a truncated manifest.
        The file is readable by its owner only (mode 0600): it names the samples to forget and holds the key.
        """
        target = Path(path)
        # Serialise first, so an unserialisable `details` fails before anything touches the disk.
        text = json.dumps(asdict(self), indent=2, default=json_default) + "\n"
        with (
            atomic_path(target, sync_dir=True, mode=0o600) as tmp_name,
            open(tmp_name, "w", encoding="utf-8") as handle,
        ):
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
        optional = {"commitment", "commitment_key"}  # manifests written before commitments: a key is drawn
        if not isinstance(data, dict) or not names - optional <= set(data) <= names:
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


def json_default(value: Any) -> Any:
    """Let numpy scalars and arrays in `details` serialise as plain JSON."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"details contains a {type(value).__name__}, which JSON cannot store; use plain values.")
