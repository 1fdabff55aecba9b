"""From a recipe's `data` section to model inputs: load the source, split it, transform the images.

Row ids. Every training sample keeps its row number in the source's *pool* (the source's train split before any
test or validation split is carved out of it; for digits, the whole data set of 1,797 images). Memorization scores
and user files of indices are keyed by these row ids, so one score file serves every split of the same source:
`PreparedData.train_rows[i]` is the pool row of training sample i, whatever the seed or test_size.

Inputs are either computed once and kept in memory (`TensorImageDataset`, the default when they take at most
`PRECOMPUTE_MAX_BYTES`, e.g. digits or CIFAR at 32x32), or computed per batch when read (`datasets` format
transform, e.g. ImageNet at 224x224).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from datasets import ClassLabel, Dataset

from .defaults import DATA_DEFAULTS, TRANSFORM_CHOICES
from .sources import class_names_of, load_source_splits
from .splits import stratified_split
from .transforms import manual_image_transform, materialize, on_the_fly, processor_image_transform

logger = logging.getLogger(__name__)

ROW_COLUMN = "__row__"
PRECOMPUTE_MAX_BYTES = 1 << 30


@dataclass
class PreparedData:
    """Model inputs of train / (validation) / test plus what ties them to the source."""

    train: Any
    test: Any
    class_names: list[str]
    train_rows: np.ndarray
    validation: Any = None
    pool_size: int = 0
    pool_fingerprint: str = ""
    description: dict[str, Any] = field(default_factory=dict)
    raw_train: Dataset | None = field(default=None, repr=False)
    # The training split before a validation carve (None when none was carved): forget sets known before training
    # are resolved on it, so that a carve does not change them.
    raw_before_carve: Dataset | None = field(default=None, repr=False)
    # Row id of each test sample: its pool row when the test split is carved from the pool, else ``-1 - j`` for
    # sample j of the source's own test split (`test_row_ids`); shadow models are keyed by both kinds.
    test_rows: np.ndarray | None = field(default=None, repr=False)

    def train_column(self, name: str) -> list[Any]:
        """Values of a source column (e.g. an id or a file name) for every training sample, in train order."""
        if self.raw_train is None or name not in self.raw_train.column_names:
            known = [] if self.raw_train is None else [c for c in self.raw_train.column_names if c != ROW_COLUMN]
            raise ValueError(f"The training split has no column {name!r}; its columns are {known}.")
        return list(self.raw_train.with_format(None)[name])


def labels_fingerprint(labels: np.ndarray) -> str:
    """sha256 of the pool's size and labels: identifies the data a score file was computed on (cheap even for
    ImageNet, unlike hashing every image). A different data set, order or label mapping changes it."""
    arr = np.ascontiguousarray(np.asarray(labels, dtype=np.int64))
    digest = hashlib.sha256(f"n={arr.size};".encode())
    digest.update(arr.tobytes())
    return digest.hexdigest()


def resolve_transform(data: dict[str, Any], model: dict[str, Any] | None = None):
    """The image transform named by `data.transforms`: the model's image processor, or the manual settings."""
    kind = data.get("transforms", "auto")
    if kind not in TRANSFORM_CHOICES:
        raise ValueError(f"data.transforms must be one of {', '.join(TRANSFORM_CHOICES)}, got {kind!r}.")
    manual = dict(image_size=data["image_size"], num_channels=data["num_channels"], mean=data["mean"], std=data["std"])
    name = (model or {}).get("name_or_path")
    from_scratch = (model or {}).get("config") is not None
    if kind == "manual" or (kind == "auto" and (name is None or from_scratch)):
        return manual_image_transform(**manual)
    if name is None:
        raise ValueError("data.transforms: processor needs model.name_or_path (the processor is loaded from it).")
    trust = bool((model or {}).get("trust_remote_code", False))
    if kind == "processor":
        return processor_image_transform(name, trust_remote_code=trust)
    try:
        return processor_image_transform(name, trust_remote_code=trust)
    except ValueError as error:
        logger.warning("%s Falling back to data.image_size / num_channels / mean / std.", error)
        return manual_image_transform(**manual)


def _aligned_labels(split: Dataset, names: list[str], split_name: str) -> Dataset:
    """Give a separately loaded split the pool's ClassLabel (ints cast per split may have fewer classes)."""
    own = split.features["label"]
    if own.names == names:
        return split
    if own.names == [str(i) for i in range(own.num_classes)] and own.num_classes <= len(names):
        return split.cast_column("label", ClassLabel(names=names))
    raise ValueError(
        f"The {split_name!r} split's label names differ from the training split's; check data.label_column "
        f"and the splits ({own.names[:5]}... vs {names[:5]}...)."
    )


def _to_inputs(dataset: Dataset, transform, precompute: bool, class_names: list[str]):
    if precompute:
        return materialize(dataset, transform, class_names=class_names)
    rows = ROW_COLUMN if ROW_COLUMN in dataset.column_names else None  # to name a bad image's source row
    return on_the_fly(dataset.select_columns(["image", "label", *([rows] if rows else [])]), transform, row_column=rows)


def _decide_precompute(data: dict[str, Any], pool: Dataset, transform) -> bool:
    if data.get("augmentation") == "timm":  # timm's training transform reads the decoded images
        if data.get("precompute"):
            raise ValueError(
                "data.precompute: true cannot go with data.augmentation: timm, which transforms the decoded images; "
                "leave precompute unset (or false)."
            )
        return False
    if data.get("precompute") is not None:
        return bool(data["precompute"])
    sample = transform([pool.with_format(None)[0]["image"]])
    return sample.nbytes * len(pool) <= PRECOMPUTE_MAX_BYTES


def load_pool(data: dict[str, Any]) -> tuple[Dataset, dict[str, Dataset], dict[str, Any]]:
    """The source's pool (its train split) with a row-id column, the other splits, and a description."""
    spec = {**DATA_DEFAULTS, **data}
    splits, description = load_source_splits(
        spec["source"],
        config=spec["config"],
        revision=spec["revision"],
        image_column=spec["image_column"],
        label_column=spec["label_column"],
    )
    if spec["train_split"] not in splits:
        raise ValueError(
            f"data.train_split {spec['train_split']!r} is not a split of {spec['source']!r}; it has "
            f"{sorted(splits)}. Set data.train_split."
        )
    pool = first_rows(splits.pop(spec["train_split"]), spec.get("first_train_rows"))
    if len(pool) < 2:
        raise ValueError(f"The training split of {spec['source']!r} has {len(pool)} rows; at least 2 are needed.")
    pool = pool.add_column(ROW_COLUMN, np.arange(len(pool), dtype=np.int64))
    if spec["on_bad_image"] == "skip":  # row ids stay the source's, so index and score files still line up
        skipped = {}
        pool, skipped[spec["train_split"]] = drop_undecodable(pool)
        for name in list(splits):
            splits[name], skipped[name] = drop_undecodable(splits[name])
        description["skipped_images"] = {
            name: {"count": len(rows), "rows": rows[:20]} for name, rows in skipped.items() if rows
        }
    labels = np.asarray(pool.with_format("numpy")["label"])
    description["pool_fingerprint"] = labels_fingerprint(labels)
    description["pool_size"] = len(pool)
    return pool, splits, description


def first_rows(split: Dataset, count: int | None) -> Dataset:
    """The first ``count`` rows of the training split (``data.first_train_rows``; None: all), e.g. a class-balanced
    prefix of CIFAR-10; a prefix keeps every row id, so index and score files of the source still line up."""
    if count is None:
        return split
    if count < 2 or count > len(split):
        raise ValueError(
            f"data.first_train_rows: {count} is not between 2 and the {len(split)} rows of the training split."
        )
    return split.select(range(count))


def drop_undecodable(dataset: Dataset, column: str = "image", chunk: int = 1024) -> tuple[Dataset, list[int]]:
    """``dataset`` without the rows whose image does not decode, and those rows (positions in ``dataset``).

    One decoding pass over the split (``data.on_bad_image: skip``); plain arrays (no `datasets.Image` column) are
    kept as they are."""
    from datasets import Image

    if not isinstance(dataset.features.get(column), Image):
        return dataset, []
    raw = dataset.with_format(None).cast_column(column, Image(decode=False))
    decoder, bad = Image(), []
    for start in range(0, len(raw), chunk):
        for offset, value in enumerate(raw[start : start + chunk][column]):
            try:
                decoder.decode_example(value).load()
            except Exception:  # any PIL failure means "does not decode"
                bad.append(start + offset)
    if not bad:
        return dataset, []
    keep = np.setdiff1d(np.arange(len(dataset)), np.asarray(bad))
    return dataset.select(keep), bad


def prepare_pool(data: dict[str, Any], model: dict[str, Any] | None = None) -> PreparedData:
    """Model inputs of the whole pool (row i = pool row i): what the memorization estimator trains and scores on."""
    spec = {**DATA_DEFAULTS, **data}
    pool, _, description = load_pool(spec)
    names = class_names_of(pool)
    transform = resolve_transform(spec, model)
    precompute = _decide_precompute(spec, pool, transform)
    description["transform"] = getattr(transform, "description", {})
    inputs = _to_inputs(pool, transform, precompute, names)
    return PreparedData(
        train=inputs,
        test=None,
        class_names=names,
        train_rows=np.arange(len(pool), dtype=np.int64),
        pool_size=len(pool),
        pool_fingerprint=description["pool_fingerprint"],
        description=description,
        raw_train=pool,
    )


def test_row_ids(count: int) -> np.ndarray:
    """Row ids of the samples of a source's own test split: ``-1 - j`` for sample j (pool rows are >= 0)."""
    return -1 - np.arange(count, dtype=np.int64)


def prepare_population(data: dict[str, Any], model: dict[str, Any] | None = None) -> PreparedData:
    """Model inputs of every sample a recipe trains or tests on: the pool, then the source's own test split when it
    has one (a carved test split is part of the pool already). ``train_rows`` are their row ids (`test_row_ids` for
    the test split's samples). Shadow models (`hf_unlearn.shadows`) train on halves of it."""
    from datasets import concatenate_datasets

    spec = {**DATA_DEFAULTS, **data}
    pool, others, description = load_pool(spec)
    names = class_names_of(pool)
    population = pool.select_columns(["image", "label", ROW_COLUMN])
    test_name = spec["test_split"]
    if test_name is not None and test_name in others:
        test = _aligned_labels(others[test_name], names, test_name).select_columns(["image", "label"])
        test = test.add_column(ROW_COLUMN, test_row_ids(len(test))).cast(population.features)
        population = concatenate_datasets([population, test])
        labels = np.asarray(test.with_format("numpy")["label"])
        description["test_split"] = {"name": test_name, "size": len(test), "fingerprint": labels_fingerprint(labels)}
    transform = resolve_transform(spec, model)
    precompute = _decide_precompute(spec, pool, transform)
    description["transform"] = getattr(transform, "description", {})
    return PreparedData(
        train=_to_inputs(population, transform, precompute, names),
        test=None,
        class_names=names,
        train_rows=np.asarray(population.with_format("numpy")[ROW_COLUMN], dtype=np.int64),
        pool_size=len(pool),
        pool_fingerprint=description["pool_fingerprint"],
        description=description,
        raw_train=population,
    )


def prepare_splits(
    data: dict[str, Any],
    seed: int,
    model: dict[str, Any] | None = None,
    keep: Callable[[Dataset], np.ndarray] | None = None,
) -> PreparedData:
    """Train / (validation) / test model inputs for a recipe's `data` section.

    The test split is the source's `test_split` when it has one, else `test_size` carved out of the pool
    (stratified, seeded: digits). The validation split is the source's `validation_split` when it has one, else
    `validation_size` carved out of what is left for training (stratified, seeded), else none.

    ``keep`` (given the training split before that carve, with its source columns) marks the rows that must stay
    in training: the forget samples known before training (file and class-wise sets), so that validation comes from
    retain samples only and the forget set is the one the recipe names without a carve (`raw_before_carve`).
    """
    spec = {**DATA_DEFAULTS, **data}
    if spec["test_split"] is not None and spec["test_split"] == spec["validation_split"]:
        raise ValueError(
            f"data.test_split and data.validation_split both name {spec['test_split']!r}; set data.validation_split: "
            "null (or to another split) so that no sample is both validation and test."
        )
    pool, others, description = load_pool(spec)
    names = class_names_of(pool)
    if spec["test_split"] is not None and spec["test_split"] in others:
        rest, test = pool, _aligned_labels(others[spec["test_split"]], names, spec["test_split"])
        description["test"] = f"split {spec['test_split']!r}"
        test_rows = test_row_ids(len(test))
    else:
        rest, test = stratified_split(pool, test_size=spec["test_size"], seed=seed)
        description["test"] = f"carved from the training split (test_size {spec['test_size']}, seed {seed})"
        test_rows = np.asarray(test.with_format("numpy")[ROW_COLUMN], dtype=np.int64)
    validation = None
    if spec["validation_split"] is not None and spec["validation_split"] in others:
        validation = _aligned_labels(others[spec["validation_split"]], names, spec["validation_split"])
        train = rest
        description["validation"] = f"split {spec['validation_split']!r}"
    elif spec["validation_size"] is not None:
        train, validation = carve_validation(rest, spec["validation_size"], seed, keep, description)
    else:
        train = rest
        description["validation"] = None
    transform = resolve_transform(spec, model)
    precompute = _decide_precompute(spec, pool, transform)
    description["transform"] = getattr(transform, "description", {})
    description["precompute"] = precompute
    return PreparedData(
        train=_to_inputs(train, transform, precompute, names),
        test=_to_inputs(test, transform, precompute, names),
        validation=None if validation is None else _to_inputs(validation, transform, precompute, names),
        class_names=names,
        train_rows=np.asarray(train.with_format("numpy")[ROW_COLUMN], dtype=np.int64),
        raw_before_carve=rest if len(rest) != len(train) else None,
        test_rows=test_rows,
        pool_size=len(pool),
        pool_fingerprint=description["pool_fingerprint"],
        description=description,
        raw_train=train,
    )


def carve_validation(
    rest: Dataset, size: float, seed: int, keep: Callable[[Dataset], np.ndarray] | None, description: dict[str, Any]
) -> tuple[Dataset, Dataset]:
    """(train, validation): ``size`` of ``rest`` carved out stratified and seeded, never from the rows ``keep``
    marks (known forget samples); train keeps ``rest``'s order."""
    kept = np.zeros(len(rest), dtype=bool) if keep is None else np.asarray(keep(rest), dtype=bool)
    description["validation"] = f"carved from the training split (validation_size {size})"
    if not kept.any():
        return stratified_split(rest, test_size=size, seed=seed)
    candidates = rest.select(np.flatnonzero(~kept))
    if len(candidates) < 2:
        raise ValueError("data.validation_size: every training sample is in the forget set; nothing to validate on.")
    _, validation = stratified_split(candidates, test_size=size, seed=seed)
    carved = np.isin(rest.with_format("numpy")[ROW_COLUMN], validation.with_format("numpy")[ROW_COLUMN])
    description["validation"] += f", retain samples only ({int(kept.sum())} forget samples kept in training)"
    description["validation_kept"] = hashlib.sha256(np.flatnonzero(kept).astype(np.int64).tobytes()).hexdigest()
    return rest.select(np.flatnonzero(~carved)), validation
