"""recipes/cifar10-cpu.yaml on a local copy of CIFAR-10's format (built here, tiny): ``data.first_train_rows`` keeps
a class-balanced prefix of the training split with its row ids, and the forget sets the recipe documents resolve."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from datasets import ClassLabel, Dataset, Features, Image
from PIL import Image as PILImage

from hf_unlearn.data.prepare import prepare_splits
from hf_unlearn.recipe import load_recipe
from hf_unlearn.recipe_schema import forget_sets

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _cifar10_like(folder: Path, n_train: int = 60, n_test: int = 20) -> Path:
    """train.parquet / test.parquet with `img` (32x32 RGB) and `label` (ClassLabel), row i of class i % 10, as
    the Hub's uoft-cs/cifar10 parquet files hold them (the test builds its own; it reads no local copy)."""
    rng = np.random.default_rng(0)
    features = Features({"img": Image(), "label": ClassLabel(names=CLASSES)})
    folder.mkdir()
    for split, n in (("train", n_train), ("test", n_test)):
        pictures = [PILImage.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(n)]
        labels = [i % 10 for i in range(n)]
        Dataset.from_dict({"img": pictures, "label": labels}, features=features).to_parquet(
            str(folder / f"{split}.parquet")
        )
    return folder


@pytest.fixture(scope="module")
def cifar10_copy(tmp_path_factory) -> Path:
    return _cifar10_like(tmp_path_factory.mktemp("cifar10") / "cifar10")


def test_first_train_rows_is_a_class_balanced_prefix_with_its_row_ids(cifar10_copy):
    recipe = load_recipe("cifar10-cpu", [f"data.source={cifar10_copy}", "data.first_train_rows=30"])
    data = prepare_splits(recipe["data"], recipe["seed"], recipe["model"])
    assert (len(data.train), len(data.test), data.validation) == (30, 20, None)
    assert data.train_rows.tolist() == list(range(30)) and data.pool_size == 30
    assert Counter(data.train.labels.tolist()) == dict.fromkeys(range(10), 3)
    assert data.class_names == CLASSES and data.train[0]["pixel_values"].shape == (3, 32, 32)


@pytest.mark.parametrize("rows", [1, 61])
def test_first_train_rows_outside_the_split_is_refused(cifar10_copy, rows: int):
    recipe = load_recipe("cifar10-cpu", [f"data.source={cifar10_copy}", f"data.first_train_rows={rows}"])
    with pytest.raises(ValueError, match=rf"data\.first_train_rows: {rows} is not between 2 and the 60 rows"):
        prepare_splits(recipe["data"], recipe["seed"], recipe["model"])


@pytest.mark.parametrize(
    "forget, expected",
    [("{kind: random, size: 0.1}", None), ("{kind: classwise, classes: [cat]}", [3, 13, 23])],
)
def test_random_and_classwise_forget_sets_resolve(cifar10_copy, tmp_path, forget: str, expected):
    from hf_unlearn.pipeline import Pipeline

    overrides = [f"data.source={cifar10_copy}", "data.first_train_rows=30", f"forget={forget}"]
    recipe = load_recipe("cifar10-cpu", overrides)
    pipeline = Pipeline(recipe, tmp_path / "out", use_cpu=True)
    splits = pipeline.prepare_data()
    rows = sorted(splits.train_rows[pipeline.forget_set(splits).manifest.forget_indices].tolist())
    assert len(rows) == 3 and (expected is None or rows == expected)


@pytest.mark.parametrize("band", ["high", "low"])
def test_confidence_proxy_bands_are_valid(band: str):
    recipe = load_recipe("cifar10-cpu", [f"forget={{kind: low_confidence, band: {band}, size: 0.1}}"])
    assert forget_sets(recipe)[0]["band"] == band
