"""Local copies of Hub data sets as `data.source`: a folder of parquet files (flat `train.parquet` / `test.parquet`,
or a `snapshot_download`-style `data/train-00000-of-00001.parquet` with a README), how a folder is told apart from
a save_to_disk folder and an image folder, the errors for a folder that is none of these, and a recipe run on one.

The parquet files are built here, small, in the Hub's format (an `Image` column stored as {bytes, path} structs and a
`ClassLabel`), as `uoft-cs/cifar10` has them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from datasets import ClassLabel, Dataset, Features, Image
from PIL import Image as PILImage

from hf_unlearn.data.prepare import prepare_splits
from hf_unlearn.data.sources import load_digits_dataset, load_source_splits

CLASSES = ["cat", "dog", "fox"]
RGB = {"image_size": 8, "num_channels": 3, "mean": [0.5], "std": [0.5]}


def _card(names: list[str]) -> str:
    """A Hub data set repository's card: the features (`datasets` reads the class names from here) and which
    files make which split."""
    label = {"class_label": {"names": {str(i): name for i, name in enumerate(names)}}}
    card = {
        "dataset_info": {"features": [{"name": "img", "dtype": "image"}, {"name": "label", "dtype": label}]},
        "configs": [
            {"config_name": "default", "data_files": [{"split": s, "path": f"data/{s}-*"} for s in ("train", "test")]}
        ],
    }
    return f"---\n{yaml.safe_dump(card, sort_keys=False)}---\n# A tiny data set\n"


def _split(n: int, seed: int) -> Dataset:
    """n 8x8 RGB images (class c brightest in channel c) in columns `img` (Image) and `label` (ClassLabel)."""
    rng = np.random.default_rng(seed)
    labels = [i % len(CLASSES) for i in range(n)]
    pictures = []
    for y in labels:
        arr = rng.integers(0, 80, size=(8, 8, 3), dtype=np.uint8)
        arr[..., y] += 170
        pictures.append(PILImage.fromarray(arr))
    features = Features({"img": Image(), "label": ClassLabel(names=CLASSES)})
    return Dataset.from_dict({"img": pictures, "label": labels}, features=features)


def _write(folder: Path, layout: str, parts: dict[str, Dataset]) -> Path:
    """The splits as parquet files in ``layout``: "flat" (SPLIT.parquet) or "snapshot" (a Hub repository's files,
    with the `.cache/` folder that `snapshot_download(local_dir=...)` leaves)."""
    for split, dataset in parts.items():
        if layout == "flat":
            dataset.to_parquet(str(folder / f"{split}.parquet"))
        else:
            (folder / "data").mkdir(parents=True, exist_ok=True)
            dataset.to_parquet(str(folder / "data" / f"{split}-00000-of-00001.parquet"))
    if layout == "snapshot":
        (folder / "README.md").write_text(_card(next(iter(parts.values())).features["label"].names))
        (folder / ".gitattributes").write_text("*.parquet filter=lfs diff=lfs merge=lfs -text\n")
        cache = folder / ".cache" / "huggingface" / "download" / "data"
        cache.mkdir(parents=True)
        (cache / "train-00000-of-00001.parquet.metadata").write_text("0123abcd\n")
    return folder


@pytest.fixture(scope="module", params=["flat", "snapshot"])
def parquet_folder(request, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp(request.param)
    return _write(folder, request.param, {"train": _split(30, 0), "test": _split(9, 1)})


def test_parquet_folder_loads_as_a_source(parquet_folder):
    splits, description = load_source_splits(str(parquet_folder), image_column="img")
    assert description["loader"] == "data_files" and description["format"] == "parquet"
    assert description["splits"] == {"train": 30, "test": 9}
    assert splits["train"].features["label"].names == CLASSES  # the ClassLabel's names survive the parquet files
    assert splits["train"][0]["image"].size == (8, 8)
    data = prepare_splits({"source": str(parquet_folder), "image_column": "img", **RGB}, seed=0)
    assert data.class_names == CLASSES  # what the model's id2label is built from
    assert (len(data.train), len(data.test)) == (30, 9)  # the source's test split, not a carved one
    item = data.train[0]
    assert item["pixel_values"].shape == (3, 8, 8) and int(item["labels"]) in range(3)
    np.testing.assert_array_equal(np.bincount(data.train.labels.numpy()), [10, 10, 10])


def test_parquet_without_datasets_metadata(tmp_path):
    """Parquet written by pyarrow (no `datasets` schema): images are bare {bytes, path} structs and labels ints;
    they still decode, and the labels become classes "0".."K-1"."""
    import pyarrow.parquet as pq

    for split, n in (("train", 12), ("test", 6)):
        table = _split(n, 0).with_format("arrow")[:]
        pq.write_table(table.replace_schema_metadata(None), tmp_path / f"{split}.parquet")
    data = prepare_splits({"source": str(tmp_path), "image_column": "img", **RGB}, seed=0)
    assert data.class_names == ["0", "1", "2"] and (len(data.train), len(data.test)) == (12, 6)
    assert data.train[0]["pixel_values"].shape == (3, 8, 8)


def test_save_to_disk_and_image_folders_keep_their_loaders(tmp_path):
    _split(6, 0).save_to_disk(str(tmp_path / "saved"))  # a save_to_disk folder holds arrow and json files too
    assert load_source_splits(str(tmp_path / "saved"), image_column="img")[1]["loader"] == "load_from_disk"
    for i, picture in enumerate(_split(6, 0)["img"]):
        folder = tmp_path / "images" / "train" / CLASSES[i % 3]
        folder.mkdir(parents=True, exist_ok=True)
        picture.save(folder / f"{i}.png")
    (tmp_path / "images" / "notes.csv").write_text("a,b\n1,2\n")  # a stray table does not make it a table folder
    splits, description = load_source_splits(str(tmp_path / "images"))
    assert description["loader"] == "imagefolder" and splits["train"].features["label"].names == CLASSES


def test_a_folder_that_is_no_data_set_says_what_was_looked_for(tmp_path):
    (tmp_path / "README.md").write_text("# nothing here\n")
    with pytest.raises(ValueError, match=r"holds no data set.*save_to_disk.*parquet.*class sub-folders") as caught:
        load_source_splits(str(tmp_path))
    assert str(tmp_path) in str(caught.value)
    _split(3, 0).to_parquet(str(tmp_path / "train.parquet"))
    (tmp_path / "test.csv").write_text("img,label\na.png,0\n")
    with pytest.raises(ValueError, match=r"holds data files, but datasets.load_dataset.*all in one format"):
        load_source_splits(str(tmp_path))


@pytest.mark.slow
def test_recipe_runs_on_a_snapshot_style_parquet_folder(tmp_path):
    """The tiny recipe with digits as a local Hub copy (named classes): it runs, and the class names reach the
    saved models' configs."""
    from conftest import run_cli, tiny_recipe

    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    digits = load_digits_dataset().rename_column("image", "img").cast_column("label", ClassLabel(names=names))
    half = len(digits) // 2
    source = _write(
        tmp_path / "digits",
        "snapshot",
        {"train": digits.select(range(half)), "test": digits.select(range(half, len(digits)))},
    )
    recipe = tiny_recipe(**{"data.source": str(source), "data.image_column": "img"})
    del recipe["data"]["test_size"]  # the folder has a test split
    assert run_cli(tmp_path, recipe, tmp_path / "out") == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["dataset"] == str(source) and report["sizes"]["test"] == len(digits) - half
    configs = [json.loads(p.read_text()) for p in (tmp_path / "out").rglob("config.json")]
    labelled = [c for c in configs if "id2label" in c]
    assert labelled and all(list(c["id2label"].values()) == names for c in labelled)
