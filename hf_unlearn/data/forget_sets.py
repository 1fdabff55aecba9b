"""Choosing which training samples to forget: sizes, random sets, class-wise sets, memorization bands, user files.

The index helpers return sorted int64 index arrays into the training set, so that the same inputs always give the
same indices (and the same manifest sha256). The builders (`random_forget_set`, `classwise_forget_set`,
`memorization_forget_set`, `low_confidence_forget_set`, `file_forget_set`) return a `SplitManifest`, which
checks that forget and retain are disjoint and cover the training split. See docs/forget-sets.md.
"""

from __future__ import annotations

import hashlib
import math
import numbers
from pathlib import Path
from typing import Any

import numpy as np

from ..paths import read_json
from ..recipe_schema import BANDS, FILE_INDEX_CHOICES
from .manifest import SplitManifest


def _check_size(size: int, n_train: int) -> None:
    """A forget set must hold at least one sample and leave at least one to retain."""
    if n_train < 2:
        raise ValueError(f"n_train must be at least 2 (one sample to forget, one to retain), got {n_train}.")
    if size < 1:
        raise ValueError(f"Forget set size is {size}; it must be at least 1. Ask for a larger size or fraction.")
    if size >= n_train:
        raise ValueError(
            f"Forget set size {size} would leave nothing to retain out of {n_train} training samples; "
            f"ask for fewer than {n_train} samples (or a fraction below 1)."
        )


def forget_size(spec: int | float, n_train: int) -> int:
    """Resolve a forget-set size: an int is a count, a float in (0, 1) a fraction of `n_train`.

    Fractions are rounded to the nearest count (halves round up). The result must be >= 1 and < n_train.
    """
    # bool is an int subclass; True/False as a size is almost certainly a mistake.
    if isinstance(spec, bool) or not isinstance(spec, numbers.Real):
        raise ValueError(f"Forget size must be an int (a count) or a float in (0, 1) (a fraction), got {spec!r}.")
    if isinstance(spec, numbers.Integral):
        size = int(spec)
    else:
        fraction = float(spec)
        if not 0.0 < fraction < 1.0:
            raise ValueError(
                f"Forget fraction {fraction} is outside (0, 1); give a fraction such as 0.1, "
                "or an int for an exact count."
            )
        size = math.floor(fraction * n_train + 0.5)
    _check_size(size, n_train)
    return size


def _checked_scores(scores: np.ndarray, size: int, nan_hint: str) -> np.ndarray:
    """One float64 score per training sample (1-D, no NaN), with a valid forget-set size for them."""
    values = np.asarray(scores, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"scores must be one value per training sample (1-D), got shape {values.shape}.")
    if np.isnan(values).any():
        raise ValueError(f"scores contain NaN; {nan_hint}")
    _check_size(size, values.size)
    return values


def random_forget_indices(n_train: int, size: int, seed: int) -> np.ndarray:
    """`size` distinct indices drawn uniformly from range(n_train) with a seeded Generator, sorted."""
    _check_size(size, n_train)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(n_train, size=size, replace=False)
    return np.sort(chosen).astype(np.int64)


def lowest_score_indices(scores: np.ndarray, size: int) -> np.ndarray:
    """Sorted indices of the `size` smallest scores; equal scores go to the lower index (stable sort).

    Used with the average true-class confidence over pretraining: low confidence marks hard, highly
    memorized samples, which make an informative forget set.
    """
    values = _checked_scores(scores, size, "fix or drop the failed score computations before choosing a forget set.")
    order = np.argsort(values, kind="stable")
    return np.sort(order[:size]).astype(np.int64)


# ----------------------------------------------------------------------------------------------------------------
# Forget-set builders (method-spec.md D): each returns a checked SplitManifest over the training split.
# ----------------------------------------------------------------------------------------------------------------


def _tie_break_key(n: int, seed: int) -> np.ndarray:
    """A seeded random rank per sample: among equal scores the band takes a random (but reproducible) subset.

    Memorization scores tie a lot (on digits most samples score exactly 0), so "lowest index first" would fill a
    band with the first rows of the data set; a seeded random tie-break keeps bands unbiased and deterministic.
    """
    return np.random.default_rng(np.random.SeedSequence([int(seed), 7])).permutation(n)


def band_indices(
    scores: np.ndarray,
    size: int,
    band: str,
    *,
    seed: int = 0,
    midpoint: float | str = 0.5,
    higher_is_more_memorized: bool = True,
) -> np.ndarray:
    """Sorted indices of the memorization band ``band`` (method-spec.md D.3 / D.6).

    - ``high``: the `size` most memorized samples (top-N), ``low``: the `size` least memorized (bottom-N),
    - ``mid``: the `size` samples closest to `midpoint`: 0.5 for Feldman-Zhang scores, ``"median"`` for proxies.

    For proxies where a high value means LESS memorization (true-class confidence), pass
    ``higher_is_more_memorized=False``: the scores are negated first, so "high" is always the most memorized band
    (the lowest confidences). Ties are broken by a seeded random permutation (`_tie_break_key`).
    """
    if band not in BANDS:
        raise ValueError(f"band must be one of {', '.join(BANDS)}, got {band!r}.")
    values = _checked_scores(scores, size, "estimate with more models, or drop the failed computations.")
    oriented = values if higher_is_more_memorized else -values
    if band == "mid":
        centre = float(np.median(oriented)) if midpoint == "median" else float(midpoint)
        if midpoint != "median" and not higher_is_more_memorized:
            centre = -centre
        primary = np.abs(oriented - centre)
    elif band == "high":
        primary = -oriented
    else:
        primary = oriented
    order = np.lexsort((_tie_break_key(values.size, seed), primary))
    return np.sort(order[:size]).astype(np.int64)


def random_forget_set(n_train: int, size: int | float, seed: int) -> SplitManifest:
    """A uniformly random forget set of `size` (a count, or a fraction of the training set)."""
    count = forget_size(size, n_train)
    return SplitManifest.build(
        "random", n_train, random_forget_indices(n_train, count, seed), seed=seed, details={"size_spec": size}
    )


def classwise_forget_set(
    labels: np.ndarray,
    *,
    classes: list[int | str] | None = None,
    fraction: float = 1.0,
    seed: int = 0,
    class_names: list[str] | None = None,
) -> SplitManifest:
    """Whole classes (``fraction=1``), or a seeded random `fraction` of each named class (all classes if None).

    Classes are given by id or by name (`class_names`). Each class contributes ``round(fraction * count)``
    samples, at least one.
    """
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    n_train = labels.size
    if not 0.0 < float(fraction) <= 1.0:
        raise ValueError(f"forget.fraction must be in (0, 1], got {fraction}.")
    present = np.unique(labels)
    if classes is None:
        chosen = [int(c) for c in present]
    else:
        chosen = []
        for c in classes:
            if isinstance(c, str) and not c.lstrip("-").isdigit():
                if class_names is None or c not in class_names:
                    raise ValueError(f"forget.classes: unknown class name {c!r}; known: {class_names}.")
                chosen.append(class_names.index(c))
            else:
                chosen.append(int(c))
        if len(set(chosen)) != len(chosen):
            raise ValueError(f"forget.classes repeats a class: {classes}.")
        absent = [c for c in chosen if c not in set(present.tolist())]
        if absent:
            raise ValueError(f"forget.classes {absent} have no training samples; classes present: {present.tolist()}.")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 11]))
    picked: list[np.ndarray] = []
    for c in sorted(chosen):
        members = np.flatnonzero(labels == c)
        take = max(1, int(np.floor(fraction * members.size + 0.5)))
        picked.append(members if take >= members.size else rng.choice(members, size=take, replace=False))
    indices = np.sort(np.concatenate(picked)).astype(np.int64)
    if indices.size >= n_train:
        raise ValueError("This class-wise forget set is the whole training set; name fewer classes or a fraction < 1.")
    details = {"classes": sorted(chosen), "fraction": float(fraction)}
    if class_names is not None:
        details["class_names"] = [class_names[c] for c in sorted(chosen)]
    return SplitManifest.build("classwise", n_train, indices, seed=seed, details=details)


def memorization_forget_set(
    scores: np.ndarray,
    size: int | float,
    band: str,
    *,
    seed: int = 0,
    midpoint: float = 0.5,
    details: dict | None = None,
) -> SplitManifest:
    """A band of memorization scores (one per training sample, in train order: `ScoreTable.for_rows`)."""
    n_train = int(np.asarray(scores).size)
    count = forget_size(size, n_train)
    indices = band_indices(scores, count, band, seed=seed, midpoint=midpoint)
    chosen = np.asarray(scores, dtype=np.float64)[indices]
    info = {
        "band": band,
        "size_spec": size,
        "midpoint": midpoint,
        "score_range": [float(chosen.min()), float(chosen.max())],
        **(details or {}),
    }
    return SplitManifest.build("memorization", n_train, indices, seed=seed, details=info)


def low_confidence_forget_set(
    confidence: np.ndarray, size: int | float, band: str = "high", *, seed: int = 0, details: dict | None = None
) -> SplitManifest:
    """A band of the confidence proxy (average true-class confidence during pretraining), inverted: "high" = the
    LOWEST confidences (most memorized), "low" = the highest, "mid" = closest to the median."""
    n_train = int(np.asarray(confidence).size)
    count = forget_size(size, n_train)
    indices = band_indices(confidence, count, band, seed=seed, midpoint="median", higher_is_more_memorized=False)
    info = {
        "band": band,
        "size_spec": size,
        "proxy": "mean true-class confidence over pretraining epochs (low confidence = high memorization)",
        **(details or {}),
    }
    return SplitManifest.build("low_confidence", n_train, indices, seed=seed, details=info)


def read_index_file(path: str | Path) -> list[Any]:
    """Entries of a user file: ``.npy`` (1-D), ``.json`` (a list, or {"indices": [...]} / {"ids": [...]}), or text
    (``.txt`` / ``.csv``: one entry per line; blank lines and lines starting with ``#`` are skipped)."""
    source = Path(path).expanduser()
    if not source.is_file():
        raise ValueError(f"forget.path {str(path)!r} is not a file; give a .txt, .csv, .json or .npy list of samples.")
    suffix = source.suffix.lower()
    if suffix == ".npy":
        return np.load(source, allow_pickle=False).reshape(-1).tolist()
    if suffix == ".json":
        data = read_json(source)
        if isinstance(data, dict):
            for key in ("indices", "ids", "rows"):
                if key in data:
                    return list(data[key])
            raise ValueError(f"{source}: a JSON forget file is a list, or a mapping with 'indices' or 'ids'.")
        return list(data)
    entries = []
    for line in source.read_text(encoding="utf-8").splitlines():
        text = line.split(",")[0].strip()
        if text and not text.startswith("#"):
            entries.append(text)
    return entries


def _as_ints(entries: list[Any], source: str) -> np.ndarray:
    try:
        values = [int(e) if not isinstance(e, float) or float(e).is_integer() else None for e in entries]
    except (TypeError, ValueError):
        raise ValueError(
            f"{source}: entries must be integer indices (use index: id for ids such as file names)."
        ) from None
    if any(v is None for v in values):
        raise ValueError(f"{source}: entries must be integer indices, got a fraction.")
    return np.asarray(values, dtype=np.int64)


def file_forget_set(
    path: str | Path,
    *,
    n_train: int,
    index: str = "row",
    train_rows: np.ndarray | None = None,
    train_ids: list[Any] | None = None,
    match_base_names: bool = False,
) -> SplitManifest:
    """The samples named in a user file.

    ``index`` says what the entries are: ``row`` (default) = rows of the source's training pool (stable across
    splits; `PreparedData.train_rows`), ``train`` = positions in this run's training split, ``id`` = values of an
    id column (`train_ids`, e.g. file names). An entry that is not in the training split is an error (a sample of
    the test split cannot be forgotten by unlearning the training data). With ``match_base_names`` (the
    ``file_name`` column of image folders) an entry may also be a bare base name (``digit_0341.png`` for
    ``3/digit_0341.png``) when exactly one training file has it; a name shared by several files is an error.
    """
    if index not in FILE_INDEX_CHOICES:
        raise ValueError(f"forget.index must be one of {', '.join(FILE_INDEX_CHOICES)}, got {index!r}.")
    entries = read_index_file(path)
    if not entries:
        raise ValueError(f"{path}: the file names no sample; the forget set would be empty.")
    if index == "train":
        indices = _as_ints(entries, str(path))
    else:
        if index == "row":
            if train_rows is None:
                raise ValueError("index: row needs the training rows of the split.")
            keys = [int(r) for r in np.asarray(train_rows)]
            wanted = _as_ints(entries, str(path)).tolist()
        else:
            if train_ids is None:
                raise ValueError("index: id needs forget.id_column (the column whose values the file lists).")
            keys = [str(v) for v in train_ids]
            wanted = [str(e) for e in entries]
        position = {key: i for i, key in enumerate(keys)}
        if len(position) != len(keys):
            raise ValueError("The id column repeats values; ids must name one sample each.")
        if match_base_names:
            wanted = _full_file_names(wanted, keys, str(path))
        missing = [w for w in wanted if w not in position]
        if missing:
            shown = ", ".join(repr(m) for m in missing[:3])
            raise ValueError(
                f"{path}: {len(missing)} of {len(wanted)} entries are not in the training split (e.g. {shown}"
                f"{', ...' if len(missing) > 3 else ''}); they may be in the test split, or the file may use another "
                "index (forget.index: row | train | id)."
            )
        indices = np.asarray([position[w] for w in wanted], dtype=np.int64)
    digest = hashlib.sha256(Path(path).expanduser().read_bytes()).hexdigest()
    return SplitManifest.build(
        "file", n_train, indices, details={"file": Path(path).name, "file_sha256": digest, "index": index}
    )


def _full_file_names(wanted: list[str], keys: list[str], where: str) -> list[str]:
    """Replace each bare base name in ``wanted`` by the one file name of ``keys`` that ends with it."""
    known = set(keys)
    by_base: dict[str, list[str]] = {}
    for key in keys:
        by_base.setdefault(key.rsplit("/", 1)[-1], []).append(key)
    out = []
    for entry in wanted:
        entry = entry.replace("\\", "/").strip("/")
        if entry in known or "/" in entry:
            out.append(entry)
            continue
        matches = by_base.get(entry, [])
        if len(matches) > 1:
            raise ValueError(
                f"{where}: {entry!r} names {len(matches)} training files ({', '.join(sorted(matches)[:4])}); give its "
                "path under the split folder instead, e.g. " + repr(sorted(matches)[0])
            )
        out.append(matches[0] if matches else entry)
    return out
