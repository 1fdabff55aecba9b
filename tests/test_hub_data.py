"""Hub-style data sets, offline: a save_to_disk folder and an imagefolder with non-default column names, column
mapping, split carving, row ids, transforms (manual, precomputed or per batch, and an image processor), and a
pipeline run on such a data set with a file forget set naming samples by an id column."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from datasets import Dataset, DatasetDict, Features, Image, Value
from PIL import Image as PILImage

from hf_unlearn.data.prepare import prepare_pool, prepare_splits, resolve_transform
from hf_unlearn.data.sources import load_source_splits
from hf_unlearn.data.transforms import TensorImageDataset

RGB = {"image_size": 4, "num_channels": 3, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}


def _images(n: int, seed: int, num_classes: int = 3) -> tuple[list, list[int]]:
    rng = np.random.default_rng(seed)
    labels = [i % num_classes for i in range(n)]
    # Class c is brightest in channel c, so a tiny model can learn it.
    pictures = []
    for y in labels:
        arr = rng.integers(0, 80, size=(6, 6, 3), dtype=np.uint8)
        arr[..., y] += 170
        pictures.append(PILImage.fromarray(arr))
    return pictures, labels


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A DatasetDict on disk whose columns are `picture` / `target` (plain ints) / `uid`, with train and test."""
    folder = tmp_path_factory.mktemp("hub") / "toy"
    features = Features({"picture": Image(), "target": Value("int64"), "uid": Value("string")})
    parts = {}
    for split, n, seed in (("train", 60, 0), ("test", 15, 1)):
        pictures, labels = _images(n, seed)
        parts[split] = Dataset.from_dict(
            {"picture": pictures, "target": labels, "uid": [f"{split}-{i:03d}" for i in range(n)]}, features=features
        )
    DatasetDict(parts).save_to_disk(str(folder))
    return folder


def spec(folder, **extra):
    return {"source": str(folder), "image_column": "picture", "label_column": "target", **RGB, **extra}


def test_save_to_disk_with_column_mapping_and_carved_validation(saved):
    data = prepare_splits(spec(saved, validation_size=0.2), seed=0)
    assert data.description["loader"] == "load_from_disk"
    assert (len(data.train), len(data.validation), len(data.test)) == (48, 12, 15)
    assert data.class_names == ["0", "1", "2"]  # int labels became a ClassLabel
    assert isinstance(data.train, TensorImageDataset)  # small: precomputed in memory
    item = data.train[0]
    assert item["pixel_values"].shape == (3, 4, 4) and item["labels"].dtype == torch.int64
    # Row ids point back into the source's train split, whatever the carving.
    source = Dataset.load_from_disk(str(saved / "train"))
    assert len(set(data.train_rows.tolist())) == 48 and set(data.train_rows.tolist()) <= set(range(60))
    np.testing.assert_array_equal(np.asarray(source["target"])[data.train_rows], data.train.labels.numpy())
    assert data.train_column("uid")[:3] == [f"train-{r:03d}" for r in data.train_rows[:3]]
    # Same seed, same split; the stratified carve keeps the class balance.
    again = prepare_splits(spec(saved, validation_size=0.2), seed=0)
    np.testing.assert_array_equal(again.train_rows, data.train_rows)
    assert np.bincount(data.train.labels.numpy()).tolist() == [16, 16, 16]


def test_on_the_fly_inputs_equal_precomputed(saved):
    eager = prepare_splits(spec(saved), seed=0)
    lazy = prepare_splits(spec(saved, precompute=False), seed=0)
    assert not isinstance(lazy.train, TensorImageDataset) and len(eager.validation or []) == 0
    subset = lazy.train.select([4, 0, 9])  # select keeps the per-batch transform
    for j, i in enumerate([4, 0, 9]):
        torch.testing.assert_close(subset[j]["pixel_values"], eager.train[i]["pixel_values"])
        assert int(subset[j]["labels"]) == int(eager.train[i]["labels"])


def test_errors_name_the_fix(saved):
    with pytest.raises(ValueError, match=r"no column 'image'.*image_column"):
        prepare_splits({"source": str(saved), **RGB}, seed=0)
    with pytest.raises(ValueError, match="train_split 'training'"):
        prepare_splits(spec(saved, train_split="training"), seed=0)
    with pytest.raises(ValueError, match="validation_split: null"):
        prepare_splits(spec(saved, test_split="test", validation_split="test"), seed=0)
    with pytest.raises(ValueError, match="not a folder"):
        load_source_splits("./no/such/folder")


def test_imagefolder_source(tmp_path):
    for split, n in (("train", 6), ("test", 2)):
        for name in ("cat", "dog"):
            folder = tmp_path / "pets" / split / name
            folder.mkdir(parents=True)
            pictures, _ = _images(n, seed=len(name))
            for i, picture in enumerate(pictures):
                picture.save(folder / f"{i}.png")
    data = prepare_splits({"source": str(tmp_path / "pets"), **RGB}, seed=0)
    assert data.description["loader"] == "imagefolder"
    assert data.class_names == ["cat", "dog"] and (len(data.train), len(data.test)) == (12, 4)
    pool = prepare_pool({"source": str(tmp_path / "pets"), **RGB})
    assert len(pool.train) == 12 and pool.pool_fingerprint == data.pool_fingerprint


def test_image_processor_transforms(tmp_path):
    from transformers import ViTImageProcessor

    ViTImageProcessor(size={"height": 8, "width": 8}, image_mean=[0.5] * 3, image_std=[0.25] * 3).save_pretrained(
        tmp_path / "proc"
    )
    transform = resolve_transform({"transforms": "processor", **RGB}, {"name_or_path": str(tmp_path / "proc")})
    white = PILImage.fromarray(np.full((5, 5), 255, np.uint8))
    out = transform([white])
    assert out.shape == (1, 3, 8, 8) and out.dtype == np.float32
    np.testing.assert_allclose(out, (1.0 - 0.5) / 0.25, rtol=1e-5)
    assert transform.description["processor"] == "ViTImageProcessor"
    # auto: a model built from a config has no processor, so the manual settings apply.
    manual = resolve_transform(
        {"transforms": "auto", **RGB}, {"config": {"model_type": "resnet"}, "name_or_path": None}
    )
    assert manual.description["kind"] == "manual"
    with pytest.raises(ValueError, match="No image processor"):
        resolve_transform({"transforms": "processor", **RGB}, {"name_or_path": str(tmp_path / "none")})


@pytest.mark.slow
def test_pipeline_runs_on_a_local_dataset_with_an_id_forget_file(saved, tmp_path):
    from hf_unlearn.pipeline import Pipeline
    from hf_unlearn.recipe import validate

    train_ids = prepare_splits(spec(saved, validation_size=0.2), seed=0).train_column("uid")
    (tmp_path / "forget.txt").write_text("\n".join(train_ids[5:8]) + "\n")
    recipe = validate(
        {
            "name": "toy",
            "data": spec(saved, validation_size=0.2),
            "forget": {"kind": "file", "path": str(tmp_path / "forget.txt"), "index": "id", "id_column": "uid"},
            "model": {
                "config": {
                    "model_type": "resnet",
                    "num_channels": 3,
                    "embedding_size": 4,
                    "hidden_sizes": [4],
                    "depths": [1],
                    "layer_type": "basic",
                }
            },
            "pretrain": {"epochs": 1, "batch_size": 16},
            "unlearn": {"defaults": {"epochs": 1, "batch_size": 16}, "runs": [{"method": "neggrad"}]},
            "evaluation": {"batch_size": 64},
        }
    )
    report = Pipeline(recipe, tmp_path / "out", use_cpu=True).run()
    assert report["dataset"] == str(saved) and report["forget_set"]["kind"] == "file"
    assert report["sizes"] == {"train": 48, "retain": 45, "forget": 3, "test": 15}
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["details"]["index"] == "id" and len(manifest["forget_indices"]) == 3


def _cifar_like(folder, n_train: int = 60, n_test: int = 20):
    """A local copy in uoft-cs/cifar100's format: columns img / fine_label (ClassLabel) / coarse_label."""
    from datasets import ClassLabel

    features = Features({"img": Image(), "fine_label": ClassLabel(num_classes=3), "coarse_label": Value("int64")})
    parts = {}
    for split, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
        pictures, labels = _images(n, seed)
        parts[split] = Dataset.from_dict(
            {"img": [p.resize((32, 32)) for p in pictures], "fine_label": labels, "coarse_label": [0] * n},
            features=features,
        )
    DatasetDict(parts).save_to_disk(str(folder))
    return folder


def test_cifar100_recipe_data_and_bands_on_a_local_copy(tmp_path):
    """recipes/cifar100-resnet18.yaml's data section on a local data set of the same format, and its memorization
    bands from a score file keyed by the rows of the source's train split (as the estimator writes them)."""
    from hf_unlearn.data.score_files import ScoreTable, save_scores
    from hf_unlearn.pipeline import Pipeline
    from hf_unlearn.recipe import load_recipe

    source = _cifar_like(tmp_path / "cifar")
    scores = np.linspace(0.0, 1.0, 60)  # pool row r scores r / 59
    save_scores(tmp_path / "mem.npz", ScoreTable(scores, np.arange(60), {"format": "test"}))
    recipe = load_recipe(
        "cifar100-resnet18",
        [
            f"data.source={source}",
            *[f"forget.{band}.scores={tmp_path / 'mem.npz'}" for band in ("high", "mid", "low")],
            *[f"forget.{band}.size=3" for band in ("high", "mid", "low")],
        ],
    )
    pipeline = Pipeline(recipe, tmp_path / "out", use_cpu=True)
    splits = pipeline.prepare_data()
    assert (len(splits.train), len(splits.prepared.validation), len(splits.test)) == (54, 6, 20)  # 10% validation
    assert splits.train[0]["pixel_values"].shape == (3, 32, 32)
    picked = {}
    for spec in recipe["forget"]:
        manifest = pipeline.forget_set(splits, spec).manifest
        picked[spec["name"]] = scores[splits.train_rows[manifest.forget_indices]]
    train_scores = np.sort(scores[splits.train_rows])
    np.testing.assert_allclose(np.sort(picked["high"]), train_scores[-3:])
    np.testing.assert_allclose(np.sort(picked["low"]), train_scores[:3])
    assert np.all(np.abs(picked["mid"] - 0.5) <= 0.06)


def test_imagenet_recipe_data_on_a_local_copy(tmp_path):
    """recipes/imagenet1k-resnet50.yaml's splits: train = pool, the labelled validation split = test, the unlabelled
    test split unused."""
    from hf_unlearn.recipe import load_recipe

    features = Features({"image": Image(), "label": Value("int64")})
    parts = {}
    for split, n, seed in (("train", 30, 0), ("validation", 9, 1), ("test", 6, 2)):
        pictures, labels = _images(n, seed)
        parts[split] = Dataset.from_dict(
            {"image": pictures, "label": labels if split != "test" else [-1] * n}, features=features
        )
    DatasetDict(parts).save_to_disk(str(tmp_path / "imagenet"))
    recipe = load_recipe(
        "imagenet1k-resnet50",
        [
            f"data.source={tmp_path / 'imagenet'}",
            "data.transforms=manual",
            "data.image_size=4",
            "data.num_channels=3",
            "data.mean=[0.5]",
            "data.std=[0.5]",
        ],
    )
    data = prepare_splits(recipe["data"], recipe["seed"], recipe["model"])
    assert (len(data.train), len(data.test), data.validation) == (30, 9, None)
    assert not isinstance(data.train, TensorImageDataset)  # precompute: false, as for the real 1.28 M images
    assert data.train_rows.tolist() == list(range(30)) and int(data.test[0]["labels"]) >= 0
    # data.augmentation: timm, for a model that is no timm model: the recipe's size / mean / std, on decoded images.
    from hf_unlearn.data.augment import AugmentedDataset
    from hf_unlearn.models import build_model_from_config
    from hf_unlearn.recipe import recipe_augmentation

    model = build_model_from_config({"model_type": "resnet", "num_channels": 3, "depths": [1]}, ["a", "b"], seed=0)
    augmentation = recipe_augmentation(recipe).for_model(model)
    assert augmentation.config["input_size"] == (3, 4, 4) and augmentation.config["mean"] == (0.5, 0.5, 0.5)
    item = AugmentedDataset(data.train, augmentation, seed=0)[3]
    assert item["pixel_values"].shape == (3, 4, 4) and int(item["labels"]) == int(data.train[3]["labels"])
