"""Per-sample score files (memorization scores and proxies), keyed by the source's row ids.

The format written by `hf-unlearn memorization` (see `hf_unlearn.memorization`) is a compressed ``.npz`` with
arrays ``row_ids`` (int64: the row of each sample in the source's pool, see `hf_unlearn.data.prepare`),
``scores`` (float64, NaN where undefined), ``labels`` and the Feldman-Zhang counts ``n_in`` / ``n_out`` /
``correct_in`` / ``correct_out`` / ``model_ids``, plus ``metadata``: a JSON string (K, subset ratio, seeds, model,
training settings, data fingerprint, whether every model is in).

Scores from elsewhere are read too: an ``.npz`` with a ``scores``, ``memorization`` (RUM's CIFAR-10 release) or
``tr_mem`` (Feldman & Zhang's ``cifar100_infl_matrix.npz``) array and optional ``row_ids``; a 1-D ``.npy``; or
a ``.json`` list / ``{"scores": [...], "row_ids": [...]}``. Without row ids, entry i scores pool row i.

Built-in names: ``digits`` (`BUILTIN_SCORES`), the estimator's scores for the embedded digits data, shipped so
the default recipes need no estimation step.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_path
from ..paths import read_json

SCORE_FORMAT = "hf_unlearn.memorization/1"
FOREIGN_KEYS = ("scores", "memorization", "tr_mem")
BUILTIN_SCORES: dict[str, str] = {"digits": "digits_memorization.npz"}
COUNT_ARRAYS = ("n_in", "n_out", "correct_in", "correct_out")


@dataclass
class ScoreTable:
    """Scores by pool row id, and where they came from."""

    scores: np.ndarray
    row_ids: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    origin: str = ""

    def __post_init__(self) -> None:
        self.scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        self.row_ids = np.asarray(self.row_ids).reshape(-1)
        if self.row_ids.dtype.kind not in "iu":
            raise ValueError(f"{self.origin or 'score file'}: row_ids must be integers, got {self.row_ids.dtype}.")
        self.row_ids = self.row_ids.astype(np.int64)
        if self.scores.size != self.row_ids.size:
            raise ValueError(
                f"{self.origin or 'score file'}: {self.scores.size} scores but {self.row_ids.size} row ids."
            )
        if np.unique(self.row_ids).size != self.row_ids.size:
            raise ValueError(f"{self.origin or 'score file'}: row_ids repeat; each row may be scored once.")

    @property
    def sha256(self) -> str:
        """Fingerprint of (row_ids, scores): recorded in manifests built from these scores."""
        digest = hashlib.sha256(self.row_ids.tobytes())
        digest.update(np.ascontiguousarray(self.scores).tobytes())
        return digest.hexdigest()

    def for_rows(self, rows: np.ndarray, *, pool_fingerprint: str | None = None) -> np.ndarray:
        """Scores of the given pool rows (e.g. `PreparedData.train_rows`), in their order.

        Raises if the file was computed on other data (its pool fingerprint differs), if a row has no score, or if
        a score is NaN (a sample that was in every subset, or in none: estimate with more models).
        """
        recorded = self.metadata.get("data", {}).get("pool_fingerprint")
        if pool_fingerprint is not None and recorded is not None and recorded != pool_fingerprint:
            raise ValueError(
                f"{self.origin}: these scores were computed on other data (pool fingerprint {recorded[:12]}..., this "
                f"data set {pool_fingerprint[:12]}...: another source, split, order or label mapping). Recompute "
                "them with `hf-unlearn memorization RECIPE` for this recipe's data."
            )
        rows = np.asarray(rows, dtype=np.int64)
        order = np.argsort(self.row_ids, kind="stable")
        sorted_ids = self.row_ids[order]
        pos = np.searchsorted(sorted_ids, rows)
        pos_clipped = np.minimum(pos, max(sorted_ids.size - 1, 0))
        if sorted_ids.size:
            found = (pos < sorted_ids.size) & (sorted_ids[pos_clipped] == rows)
        else:
            found = np.zeros(rows.shape, dtype=bool)
        if not np.all(found):
            missing = rows[~found]
            raise ValueError(
                f"{self.origin}: {missing.size} training rows have no score (e.g. row {int(missing[0])}). The file "
                "must score every row of the source's training split (pool); was it computed on another data set "
                "or a subset?"
            )
        values = self.scores[order[pos]]
        if np.isnan(values).any():
            bad = rows[np.isnan(values)]
            raise ValueError(
                f"{self.origin}: {bad.size} training rows have an undefined (NaN) score (e.g. row {int(bad[0])}): "
                "with too few models a sample can land in every subset or in none. Estimate with more models "
                "(--num-models)."
            )
        return values

    def summary(self) -> dict[str, Any]:
        meta = {k: self.metadata[k] for k in ("num_models", "subset_ratio", "seed", "estimator") if k in self.metadata}
        return {"file": self.origin, "sha256": self.sha256, **meta}


def builtin_scores_path(name: str) -> Path | None:
    filename = BUILTIN_SCORES.get(name)
    if filename is None:
        return None
    candidate = resources.files("hf_unlearn.data") / "scores" / filename
    return Path(str(candidate)) if candidate.is_file() else None


def resolve_scores_path(path_or_name: str | os.PathLike) -> Path:
    path = Path(path_or_name).expanduser()
    if path.is_file():
        return path
    builtin = builtin_scores_path(str(path_or_name))
    if builtin is not None:
        return builtin
    raise ValueError(
        f"Score file {str(path_or_name)!r} not found. Give a file (.npz / .npy / .json) or a built-in name "
        f"({', '.join(sorted(BUILTIN_SCORES))}); compute scores with `hf-unlearn memorization RECIPE --output FILE`."
    )


def load_scores(
    path_or_name: str | os.PathLike, key: str | None = None, *, require_complete: bool = True
) -> ScoreTable:
    """Read a score file (see the module docstring); ``key`` names the array in a foreign ``.npz``."""
    path = resolve_scores_path(path_or_name)
    origin = str(path_or_name)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        metadata = json.loads(str(arrays.pop("metadata"))) if "metadata" in arrays else {}
        names = [key] if key else [k for k in FOREIGN_KEYS if k in arrays]
        if not names or names[0] not in arrays:
            raise ValueError(
                f"{origin}: no score array {'named ' + repr(key) if key else 'found'}; the file holds "
                f"{sorted(arrays)}. Name it with forget.scores_key (e.g. tr_mem for Feldman & Zhang's files)."
            )
        scores = arrays.pop(names[0])
        row_ids = arrays.pop("row_ids", np.arange(np.asarray(scores).size))
        table = ScoreTable(scores, row_ids, metadata, arrays, origin)
    elif suffix == ".npy":
        scores = np.load(path, allow_pickle=False)
        table = ScoreTable(scores, np.arange(np.asarray(scores).size), {}, {}, origin)
    elif suffix == ".json":
        data = read_json(path)
        if isinstance(data, dict):
            scores = data.get(key or "scores")
            if scores is None:
                raise ValueError(f"{origin}: a JSON score file is a list, or a mapping with 'scores' (and 'row_ids').")
            row_ids = data.get("row_ids", list(range(len(scores))))
            table = ScoreTable(scores, row_ids, data.get("metadata", {}), {}, origin)
        else:
            table = ScoreTable(data, np.arange(len(data)), {}, {}, origin)
    else:
        raise ValueError(f"{origin}: unknown score file type {suffix!r}; use .npz, .npy or .json.")
    if require_complete and table.metadata.get("complete") is False:
        raise ValueError(
            f"{origin} holds only part of the estimator's models ({table.metadata.get('shard')}); merge the shards "
            "first: hf-unlearn memorization-merge SHARD_FILES... --output FILE."
        )
    return table


def save_scores(path: str | os.PathLike, table: ScoreTable) -> Path:
    """Write a score table in the estimator's format, atomically (temporary file, then rename)."""
    target = Path(path)
    arrays = {"scores": table.scores, "row_ids": table.row_ids, **table.arrays}
    arrays["metadata"] = np.array(json.dumps(table.metadata, sort_keys=True, default=str))
    atomic_savez(target, **arrays)
    return target


def atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    """``np.savez_compressed`` to a temporary file in the same folder, then rename it over ``path``."""
    with atomic_path(path, suffix=".tmp.npz") as tmp:  # the .npz suffix stops numpy from appending one
        np.savez_compressed(tmp, **arrays)
