"""Image classification sources, each returned as `datasets.Dataset`s with `image` and `label` columns.

`digits` is embedded (scikit-learn ships it), so it works without network access; it is the default for tests
and demos. Any other source is a Hub data set id (`datasets.load_dataset`), a folder written by `save_to_disk`
(`datasets.load_from_disk`), a folder of data files as a Hub data set repository holds them (parquet, arrow, csv,
json: `datasets.load_dataset(folder)`) or a folder of images in class sub-folders (the "imagefolder" builder); see
`load_source_splits` and docs/datasets.md.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from datasets import ClassLabel, Dataset, Features, Image, Value
from PIL import Image as PILImage

DIGITS_CLASS_NAMES: list[str] = [str(d) for d in range(10)]
# sklearn's digits store ink intensity as integers 0..16 (counts of set pixels in 4x4 blocks).
_DIGITS_MAX_VALUE = 16


def _digits_to_uint8(images: np.ndarray) -> np.ndarray:
    """Rescale 0..16 intensities to the 0..255 range image models and processors expect."""
    scaled = np.rint(images.astype(np.float64) * (255.0 / _DIGITS_MAX_VALUE))
    return np.clip(scaled, 0, 255).astype(np.uint8)


def load_digits_dataset() -> Dataset:
    """scikit-learn's 1,797 real 8x8 grey digit images as a Dataset (offline).

    Columns: `image` (`datasets.Image()`, PIL mode "L", values 0..255) and
    `label` (`ClassLabel` with names "0".."9").
    """
    # Imported here so that importing hf_unlearn.data stays cheap for users who never touch digits.
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels = _digits_to_uint8(bunch.images)
    features = Features({"image": Image(), "label": ClassLabel(names=DIGITS_CLASS_NAMES)})
    return Dataset.from_dict(
        {
            # A 2-D uint8 array becomes a mode "L" image (the `mode=` argument is deprecated in Pillow).
            "image": [PILImage.fromarray(img) for img in pixels],
            "label": [int(y) for y in bunch.target],
        },
        features=features,
    )


# name -> zero-argument loader. Adding a source is one line here.
SOURCES: dict[str, Callable[[], Dataset]] = {
    "digits": load_digits_dataset,
}


def load_source(name: str) -> Dataset:
    """Load a registered source by name; raises ValueError naming the known sources for an unknown one."""
    try:
        loader = SOURCES[name]
    except KeyError:
        known = ", ".join(sorted(SOURCES))
        raise ValueError(
            f"Unknown data source {name!r}. Known sources: {known}. "
            "Pick one of these, or register a loader in hf_unlearn.data.sources.SOURCES."
        ) from None
    return loader()


# ----------------------------------------------------------------------------------------------------------------
# Hub data sets and local folders
# ----------------------------------------------------------------------------------------------------------------
def _is_saved_dataset(folder: Path) -> bool:
    """A folder written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk`."""
    return (folder / "dataset_dict.json").is_file() or (folder / "state.json").is_file()


# Formats that `datasets`' packaged builders read from a folder, as a Hub data set repository holds them
# (`train.parquet`, `data/train-00000-of-00001.parquet`, `<config>/test-*.parquet`, ...).
DATA_FILE_SUFFIXES = (".parquet", ".arrow", ".csv", ".tsv", ".json", ".jsonl")
# The image-folder builder's own label / caption files: they belong to a folder of images, not to a table.
_IMAGE_FOLDER_METADATA = frozenset({"metadata.csv", "metadata.jsonl", "metadata.parquet"})


def _count_files(folder: Path) -> tuple[int, int]:
    """(data files, image files) anywhere under ``folder``. Hidden files and folders (and ``__*``) are skipped, as
    `datasets` skips them: a `snapshot_download(local_dir=...)` folder keeps its download state in `.cache/`."""
    image_suffixes = {suffix.lower() for suffix in PILImage.registered_extensions()}
    data = images = 0
    for _root, folders, files in os.walk(folder):
        folders[:] = [name for name in folders if not name.startswith((".", "__"))]
        for name in files:
            if name.startswith((".", "__")):
                continue
            suffix = os.path.splitext(name)[1].lower()
            if suffix in DATA_FILE_SUFFIXES and name.lower() not in _IMAGE_FOLDER_METADATA:
                data += 1
            elif suffix in image_suffixes:
                images += 1
    return data, images


def _folder_loader(folder: Path) -> str:
    """How to read a local folder: "load_from_disk", "data_files" (`datasets.load_dataset(folder)`) or
    "imagefolder". Data files win when they outnumber the images (a Hub repository may carry a few pictures for its
    card; an image folder may carry a stray table), as `datasets` itself picks a folder's most common format."""
    if _is_saved_dataset(folder):
        return "load_from_disk"
    data, images = _count_files(folder)
    if data > images:
        return "data_files"
    if images:
        return "imagefolder"
    raise ValueError(
        f"data.source {str(folder)!r} is a folder, but it holds no data set hf_unlearn can read: no "
        "dataset_dict.json / state.json (a save_to_disk folder), no data files "
        f"({' / '.join(s.lstrip('.') for s in DATA_FILE_SUFFIXES)}, as in a Hub data set repository, e.g. "
        "train.parquet or data/train-00000-of-00001.parquet) and no images (a folder of images in class "
        "sub-folders). Point data.source at the folder that holds one of these, or give a Hub data set id."
    )


def load_source_splits(
    source: str,
    *,
    config: str | None = None,
    revision: str | None = None,
    image_column: str = "image",
    label_column: str = "label",
) -> tuple[dict[str, Dataset], dict[str, Any]]:
    """Every split of a source, with the image column renamed to `image` and the label column to `label`.

    `source` is a registered name (`digits`: one split, "train"), a local folder (a `save_to_disk` folder; a local
    copy of a Hub data set, i.e. parquet / arrow / csv / json files with splits named by file or folder, loaded
    with `datasets.load_dataset(folder, config)`; or a folder of images in class sub-folders, loaded as
    "imagefolder": see `_folder_loader`), the literal ``imagefolder:PATH``, or a Hub data set id
    (`datasets.load_dataset(source, config, revision=revision)`). Integer labels that are not a
    `ClassLabel` become one (names "0".."K-1") so that splits can be stratified. Other columns are kept (an id
    column can name samples to forget). Returns (splits, description) where the description says what was loaded.
    """
    import datasets

    description: dict[str, Any] = {"source": source, "config": config, "revision": revision}
    if source in SOURCES:
        loaded: Any = {"train": load_source(source)}
        description["loader"] = "embedded"
    else:
        forced_imagefolder = source.startswith("imagefolder:")
        path = Path(source[len("imagefolder:") :] if forced_imagefolder else source).expanduser()
        kind = ("imagefolder" if forced_imagefolder else _folder_loader(path)) if path.is_dir() else None
        if kind == "load_from_disk":
            loaded = datasets.load_from_disk(str(path))
            description["loader"] = "load_from_disk"
        elif kind == "data_files":
            loaded = _load_data_files(datasets, path, config)
            description["loader"] = "data_files"
            description["format"] = next(iter(loaded.values())).info.builder_name  # parquet, csv, ...
        elif kind == "imagefolder":
            loaded = datasets.load_dataset("imagefolder", data_dir=str(path))
            loaded = {name: with_file_names(ds, path, image_column) for name, ds in loaded.items()}
            description["loader"] = "imagefolder"
        elif forced_imagefolder or source.startswith((".", "/", "~")):
            raise ValueError(
                f"data.source {source!r} is not a folder. Give a folder written by save_to_disk, a local copy of a "
                "Hub data set (its parquet / arrow / csv / json files), a folder of images in class sub-folders, or "
                "a Hub data set id such as uoft-cs/cifar100."
            )
        else:
            try:
                loaded = datasets.load_dataset(source, config, revision=revision)
            except Exception as error:  # the Hub client raises many types; the user needs the same advice for each
                raise ValueError(
                    f"Could not load the data set {source!r} from the Hub ({type(error).__name__}: {error}). Check the "
                    "id, that the Hub is reachable (HF_HUB_OFFLINE unset) and, for gated sets such as "
                    "ILSVRC/imagenet-1k, that you accepted its terms and are logged in (hf auth login); or give a "
                    "local folder (save_to_disk, a Hub data set's files, or imagefolder)."
                ) from error
            description["loader"] = "load_dataset"
    if isinstance(loaded, Dataset):
        loaded = {"train": loaded}
    splits = {name: _standard_columns(ds, image_column, label_column, name) for name, ds in dict(loaded).items()}
    description["splits"] = {name: len(ds) for name, ds in splits.items()}
    return splits, description


def _load_data_files(datasets: Any, folder: Path, config: str | None) -> dict[str, Dataset]:
    """`datasets.load_dataset(folder, config)`: splits from the file or folder names, or from the README's
    `configs:` block (pick one with data.config), as for the Hub repository the folder was copied from."""
    try:
        loaded = datasets.load_dataset(str(folder), config)
    except Exception as error:  # datasets raises many types here (no split, mixed formats, missing config name...)
        raise ValueError(
            f"data.source {str(folder)!r} holds data files, but datasets.load_dataset({str(folder)!r}"
            f"{f', {config!r}' if config else ''}) failed ({type(error).__name__}: {error}). Split files must be named "
            "by their split (train.parquet and test.parquet, or data/train-00000-of-00001.parquet), all in one "
            "format; a folder with several configurations needs data.config."
        ) from error
    return {"train": loaded} if isinstance(loaded, Dataset) else dict(loaded)


FILE_NAME_COLUMN = "file_name"


def with_file_names(dataset: Dataset, root: Path, image_column: str = "image") -> Dataset:
    """Add a ``file_name`` column to an image-folder split: each image's path under its split folder, with ``/``
    (``3/digit_0341.png`` for ``ROOT/train/3/digit_0341.png``), so a forget file can name samples by file."""
    if FILE_NAME_COLUMN in dataset.column_names or image_column not in dataset.column_names:
        return dataset
    paths = dataset.cast_column(image_column, Image(decode=False)).with_format(None)[image_column]
    parts = [Path(item["path"]).resolve().relative_to(root.resolve()).parts for item in paths]
    # ROOT/<split>/<class>/<file>: drop the split folder, which every file of the split shares.
    if parts and all(len(p) >= 3 for p in parts) and len({p[0] for p in parts}) == 1:
        parts = [p[1:] for p in parts]
    return dataset.add_column(FILE_NAME_COLUMN, ["/".join(p) for p in parts])


def _standard_columns(dataset: Dataset, image_column: str, label_column: str, split: str) -> Dataset:
    missing = [c for c in (image_column, label_column) if c not in dataset.column_names]
    if missing:
        raise ValueError(
            f"Split {split!r} has no column {missing[0]!r}; its columns are {dataset.column_names}. Set "
            "data.image_column / data.label_column to the names this data set uses (e.g. img / fine_label for "
            "uoft-cs/cifar100)."
        )
    renames = {old: new for old, new in ((image_column, "image"), (label_column, "label")) if old != new}
    for new in renames.values():
        if new in dataset.column_names:  # e.g. a data set with both "img" and an unrelated "image"
            dataset = dataset.remove_columns(new)
    if renames:
        dataset = dataset.rename_columns(renames)
    image = dataset.features["image"]
    if isinstance(image, dict) and set(image) == {"bytes", "path"}:
        # Parquet written without `datasets`' schema metadata (pandas, pyarrow) keeps images as the Hub's
        # {bytes, path} structs; declaring the Image feature makes them decode.
        dataset = dataset.cast_column("image", Image())
    label = dataset.features["label"]
    if not isinstance(label, ClassLabel):
        if not (isinstance(label, Value) and label.dtype.startswith(("int", "uint"))):
            raise ValueError(
                f"Label column {label_column!r} of split {split!r} holds {label}; hf_unlearn needs integer class "
                "labels (a ClassLabel or ints)."
            )
        values = np.asarray(dataset.with_format("numpy")["label"])
        num_classes = int(values.max()) + 1 if len(values) else 0
        dataset = dataset.cast_column("label", ClassLabel(names=[str(i) for i in range(num_classes)]))
    return dataset


def class_names_of(dataset: Dataset) -> list[str]:
    """The label names of a `ClassLabel` column named `label`."""
    return list(dataset.features["label"].names)
