"""Tests for hf_unlearn.data: sources, model inputs, splits, forget sets, manifests."""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter

import numpy as np
import pytest
import torch
from datasets import ClassLabel, Dataset, Features, Image, Value
from PIL import Image as PILImage

from hf_unlearn.data import (
    SOURCES,
    SplitManifest,
    forget_size,
    load_digits_dataset,
    load_source,
    lowest_score_indices,
    random_forget_indices,
    split_retain_forget,
    stratified_split,
    to_model_inputs,
)


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_digits_dataset()


def _tiny_image_dataset(pixels: list[np.ndarray], labels: list[int], num_classes: int = 3) -> Dataset:
    features = Features({"image": Image(), "label": ClassLabel(num_classes=num_classes)})
    return Dataset.from_dict({"image": [PILImage.fromarray(p) for p in pixels], "label": labels}, features=features)


# --- sources -----------------------------------------------------------------------------------------------


def test_digits_loads_real_images(digits: Dataset) -> None:
    from sklearn.datasets import load_digits

    assert len(digits) == 1797
    assert digits.column_names == ["image", "label"]
    label = digits.features["label"]
    assert isinstance(label, ClassLabel)
    assert label.num_classes == 10
    assert label.names == [str(d) for d in range(10)]
    assert sorted(set(digits["label"])) == list(range(10))

    img = digits[0]["image"]
    assert isinstance(img, PILImage.Image)
    assert img.mode == "L" and img.size == (8, 8)
    # 0..16 rescaled to 0..255, matching sklearn's raw values.
    raw = load_digits().images[0]
    expected = np.clip(np.rint(raw * 255.0 / 16.0), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(np.asarray(img), expected)
    assert int(np.asarray(img).max()) <= 255


def test_load_source_known_and_unknown() -> None:
    assert "digits" in SOURCES
    with pytest.raises(ValueError, match=r"Known sources: .*digits"):
        load_source("no-such-source")


# --- transforms --------------------------------------------------------------------------------------------


def test_to_model_inputs_digits_shapes_and_normalisation(digits: Dataset) -> None:
    ds = to_model_inputs(digits, image_size=8)
    assert ds.column_names == ["pixel_values", "labels"]
    assert len(ds) == len(digits)
    assert isinstance(ds.features["labels"], ClassLabel)
    assert ds.features["labels"].num_classes == 10

    item = ds[0]
    assert set(item) == {"pixel_values", "labels"}
    assert item["pixel_values"].dtype == torch.float32
    assert item["pixel_values"].shape == (1, 8, 8)
    assert item["labels"].dtype == torch.int64
    assert item["labels"].dim() == 0
    assert int(item["labels"]) == digits[0]["label"]

    # Same size: no resampling, so undoing the (0.5, 0.5) normalisation recovers the stored pixels exactly.
    restored = ((item["pixel_values"][0].numpy() * 0.5 + 0.5) * 255.0).round()
    np.testing.assert_array_equal(restored, np.asarray(digits[0]["image"], dtype=np.float32))

    batch = ds[:64]["pixel_values"]
    assert batch.shape == (64, 1, 8, 8)
    assert float(batch.min()) >= -1.0 and float(batch.max()) <= 1.0


def test_to_model_inputs_rgb_resize_and_per_channel_stats() -> None:
    white = np.full((4, 4), 255, dtype=np.uint8)
    black = np.zeros((4, 4), dtype=np.uint8)
    ds = _tiny_image_dataset([white, black], [2, 0])
    mean, std = (0.5, 0.25, 0.0), (0.5, 0.25, 2.0)
    out = to_model_inputs(ds, image_size=6, num_channels=3, mean=mean, std=std)

    pv = out[0]["pixel_values"]
    assert pv.shape == (3, 6, 6) and pv.dtype == torch.float32
    # A constant image stays constant under bilinear resize: (1 - mean) / std per channel.
    for c, value in enumerate([(1 - 0.5) / 0.5, (1 - 0.25) / 0.25, (1 - 0.0) / 2.0]):
        torch.testing.assert_close(pv[c], torch.full((6, 6), value))
    for c, value in enumerate([(0 - 0.5) / 0.5, (0 - 0.25) / 0.25, 0.0]):
        torch.testing.assert_close(out[1]["pixel_values"][c], torch.full((6, 6), value))
    assert out[:]["labels"].tolist() == [2, 0]
    assert out.features["labels"].num_classes == 3


def test_to_model_inputs_plain_int_labels_and_errors() -> None:
    ds = Dataset.from_dict(
        {"img": [PILImage.fromarray(np.zeros((3, 3), np.uint8))], "y": [7]},
        features=Features({"img": Image(), "y": Value("int32")}),
    )
    out = to_model_inputs(ds, image_size=3, image_column="img", label_column="y")
    assert out[0]["labels"].dtype == torch.int64 and int(out[0]["labels"]) == 7

    with pytest.raises(ValueError, match="num_channels"):
        to_model_inputs(ds, image_size=3, num_channels=2, image_column="img", label_column="y")
    with pytest.raises(ValueError, match="Column 'image' not found"):
        to_model_inputs(ds, image_size=3)
    with pytest.raises(ValueError, match="mean has 2 values"):
        to_model_inputs(ds, image_size=3, mean=(0.1, 0.2), image_column="img", label_column="y")


# --- splits ------------------------------------------------------------------------------------------------


def _with_row_ids(ds: Dataset) -> Dataset:
    return ds.add_column("row", list(range(len(ds))))


def test_stratified_split_deterministic_disjoint_proportional(digits: Dataset) -> None:
    ds = _with_row_ids(digits.remove_columns("image"))  # images are irrelevant to the split
    train_a, test_a = stratified_split(ds, test_size=0.2, seed=0)
    train_b, test_b = stratified_split(ds, test_size=0.2, seed=0)
    _, test_c = stratified_split(ds, test_size=0.2, seed=1)

    assert list(train_a["row"]) == list(train_b["row"])
    assert list(test_a["row"]) == list(test_b["row"])
    assert list(test_a["row"]) != list(test_c["row"])
    assert set(train_a["row"]).isdisjoint(test_a["row"])
    assert len(train_a) + len(test_a) == len(ds)
    assert abs(len(test_a) - 0.2 * len(ds)) <= 1.0

    total, in_test = Counter(ds["label"]), Counter(test_a["label"])
    for cls, count in total.items():
        # Each class contributes its share of the test set, to within one sample.
        assert abs(in_test[cls] - 0.2 * count) <= 1.0


def test_stratified_split_needs_classlabel() -> None:
    ds = Dataset.from_dict({"label": [0, 1] * 10})
    with pytest.raises(ValueError, match="ClassLabel"):
        stratified_split(ds, test_size=0.2, seed=0)


# --- forget sets -------------------------------------------------------------------------------------------


def test_random_forget_indices_seeded_sorted_unique() -> None:
    a = random_forget_indices(100, 10, seed=3)
    b = random_forget_indices(100, 10, seed=3)
    c = random_forget_indices(100, 10, seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.dtype == np.int64 and a.shape == (10,)
    assert np.all(np.diff(a) > 0)  # sorted, no repeats
    assert a.min() >= 0 and a.max() < 100
    with pytest.raises(ValueError, match="nothing to retain"):
        random_forget_indices(10, 10, seed=0)


def test_lowest_score_indices_with_ties() -> None:
    scores = np.array([0.9, 0.1, 0.5, 0.1, 0.3, 0.1, 0.7])
    # Three 0.1s tie; asking for two takes the lower indices (1, 3), not 5.
    np.testing.assert_array_equal(lowest_score_indices(scores, 2), [1, 3])
    np.testing.assert_array_equal(lowest_score_indices(scores, 4), [1, 3, 4, 5])
    np.testing.assert_array_equal(lowest_score_indices(scores, 5), [1, 2, 3, 4, 5])
    assert lowest_score_indices(scores, 2).dtype == np.int64
    with pytest.raises(ValueError, match="NaN"):
        lowest_score_indices(np.array([0.1, np.nan, 0.3]), 1)
    with pytest.raises(ValueError, match="1-D"):
        lowest_score_indices(np.zeros((2, 2)), 1)


def test_forget_size() -> None:
    assert forget_size(10, 100) == 10
    assert forget_size(np.int64(5), 100) == 5
    assert forget_size(0.1, 1437) == 144  # 143.7 rounds to 144
    assert forget_size(0.25, 10) == 3  # 2.5: halves round up
    for bad, match in [
        (0, "at least 1"),
        (100, "nothing to retain"),
        (0.001, "at least 1"),
        (1.0, r"outside \(0, 1\)"),
        (-0.2, r"outside \(0, 1\)"),
        (True, "int"),
        ("10", "int"),
    ]:
        with pytest.raises(ValueError, match=match):
            forget_size(bad, 100)


# --- manifest ----------------------------------------------------------------------------------------------


def test_manifest_build_and_sha256() -> None:
    m = SplitManifest.build("random", 10, np.array([7, 2, 5]), seed=1, details={"fraction": 0.3})
    assert m.forget_indices == [2, 5, 7]
    assert m.retain_indices == [0, 1, 3, 4, 6, 8, 9]
    assert all(type(i) is int for i in m.forget_indices + m.retain_indices)
    assert m.sha256 == hashlib.sha256(b"2,5,7").hexdigest()
    assert m.summary() == {"kind": "random", "size": 3, "commitment": m.commitment}  # no sha256, no key
    assert "forget_indices" not in repr(m)  # keep indices out of logs


@pytest.mark.parametrize(
    ("n_train", "indices", "match"),
    [
        (10, [], "empty"),
        (4, [0, 1, 2, 3], "whole training set"),
        (10, [3, 10], "outside"),
        (10, [-1, 3], "outside"),
        (10, [1, 4, 4], "repeats"),
        (10, [1.0, 2.0], "integers"),
        (1, [0], "n_train"),
    ],
)
def test_manifest_build_rejects(n_train: int, indices: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SplitManifest.build("user", n_train, indices)


def test_manifest_json_round_trip_is_atomic(tmp_path) -> None:
    m = SplitManifest.build(
        "low_confidence", 20, [19, 0, 4], seed=None, details={"score": "confidence", "epochs": np.int64(3)}
    )
    path = tmp_path / "sub" / "manifest.json"
    assert m.to_json(path) == path
    assert os.listdir(path.parent) == ["manifest.json"]  # no temporary file left behind
    loaded = SplitManifest.from_json(path)
    rebuilt = SplitManifest.build("low_confidence", 20, [0, 4, 19], details={"score": "confidence", "epochs": 3})
    assert loaded == rebuilt.with_key(m.commitment_key)  # equal up to the random commitment key
    assert loaded.commitment == m.commitment and loaded.commitment_key == m.commitment_key

    # Overwriting replaces the file whole.
    m2 = SplitManifest.build("random", 20, [1], seed=5)
    m2.to_json(path)
    assert SplitManifest.from_json(path) == m2
    assert os.listdir(path.parent) == ["manifest.json"]


def test_manifest_to_json_failure_leaves_old_file(tmp_path) -> None:
    path = tmp_path / "manifest.json"
    SplitManifest.build("random", 5, [1]).to_json(path)
    before = path.read_text()
    bad = SplitManifest.build("random", 5, [2], details={"oops": object()})
    with pytest.raises(TypeError):
        bad.to_json(path)
    assert path.read_text() == before
    assert os.listdir(tmp_path) == ["manifest.json"]


def _tamper(path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        # forget set edited (and retain kept consistent), sha left alone
        ({"forget_indices": [1, 3, 6], "retain_indices": [0, 2, 4, 5, 7, 8, 9]}, "sha256"),
        ({"sha256": "0" * 64}, "sha256"),
        ({"retain_indices": [0, 1, 2, 4, 6, 7, 8, 9]}, "overlap"),  # 1 moved into retain as well
        ({"retain_indices": [0, 2, 4, 6, 7, 8]}, "cover"),  # 9 dropped
        ({"forget_indices": [3, 1, 5], "sha256": hashlib.sha256(b"1,3,5").hexdigest()}, "sorted"),
        ({"n_train": 12}, "cover"),
    ],
)
def test_manifest_from_json_detects_tampering(tmp_path, changes: dict, match: str) -> None:
    path = tmp_path / "manifest.json"
    SplitManifest.build("random", 10, [1, 3, 5], seed=0).to_json(path)
    SplitManifest.from_json(path)  # untouched file loads
    _tamper(path, **changes)
    with pytest.raises(ValueError, match=match) as err:
        SplitManifest.from_json(path)
    assert "modified" in str(err.value)


def test_manifest_from_json_rejects_non_manifest(tmp_path) -> None:
    path = tmp_path / "manifest.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        SplitManifest.from_json(path)
    path.write_text(json.dumps({"kind": "random"}))
    with pytest.raises(ValueError, match="not a split manifest"):
        SplitManifest.from_json(path)


def test_split_retain_forget(digits: Dataset) -> None:
    train, _ = stratified_split(_with_row_ids(digits.remove_columns("image")), test_size=0.2, seed=0)
    size = forget_size(0.1, len(train))
    manifest = SplitManifest.build("random", len(train), random_forget_indices(len(train), size, seed=0), seed=0)
    retain, forget = split_retain_forget(train, manifest)

    assert len(forget) == size and len(retain) == len(train) - size
    assert set(retain["row"]).isdisjoint(forget["row"])
    assert set(retain["row"]) | set(forget["row"]) == set(train["row"])
    assert list(forget["row"]) == [train[i]["row"] for i in manifest.forget_indices]

    with pytest.raises(ValueError, match="manifest was built for"):
        split_retain_forget(train.select(range(10)), manifest)
