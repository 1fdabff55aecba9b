"""Forget-set builders: sizes, disjointness, manifests, determinism by seed, band orientation, recipe validation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import SUBSET_MODEL

from hf_unlearn.data import SplitManifest
from hf_unlearn.data.forget_sets import (
    band_indices,
    classwise_forget_set,
    file_forget_set,
    low_confidence_forget_set,
    memorization_forget_set,
    random_forget_set,
)
from hf_unlearn.data.score_files import ScoreTable, load_scores, save_scores
from hf_unlearn.recipe import RecipeError, validate


def _check(manifest: SplitManifest, n_train: int, size: int) -> None:
    forget, retain = set(manifest.forget_indices), set(manifest.retain_indices)
    assert len(forget) == size and not forget & retain and forget | retain == set(range(n_train))
    assert manifest.n_train == n_train
    manifest.validate()


def test_random_forget_set_size_seed_and_fraction():
    a = random_forget_set(200, 0.1, seed=3)
    _check(a, 200, 20)
    assert a.kind == "random" and a.seed == 3
    assert a.forget_indices == random_forget_set(200, 20, seed=3).forget_indices  # fraction == count
    assert a.forget_indices != random_forget_set(200, 0.1, seed=4).forget_indices


def test_classwise_whole_classes_and_fraction_per_class():
    labels = np.repeat(np.arange(4), [10, 20, 30, 40])
    whole = classwise_forget_set(labels, classes=[1, "3"], seed=0)
    _check(whole, 100, 60)
    assert set(labels[whole.forget_indices]) == {1, 3}
    assert whole.details["classes"] == [1, 3]

    named = classwise_forget_set(labels, classes=["b"], class_names=["a", "b", "c", "d"])
    assert named.forget_indices == classwise_forget_set(labels, classes=[1]).forget_indices

    part = classwise_forget_set(labels, fraction=0.1, seed=5)  # every class, 10% of each
    _check(part, 100, 1 + 2 + 3 + 4)
    assert np.bincount(labels[part.forget_indices], minlength=4).tolist() == [1, 2, 3, 4]
    assert part.forget_indices == classwise_forget_set(labels, fraction=0.1, seed=5).forget_indices
    assert part.forget_indices != classwise_forget_set(labels, fraction=0.1, seed=6).forget_indices

    with pytest.raises(ValueError, match="whole training set"):
        classwise_forget_set(labels, classes=[0, 1, 2, 3])
    with pytest.raises(ValueError, match="unknown class name"):
        classwise_forget_set(labels, classes=["z"], class_names=["a", "b", "c", "d"])
    with pytest.raises(ValueError, match="no training samples"):
        classwise_forget_set(labels, classes=[7])


def test_memorization_bands_top_bottom_and_closest_to_half():
    scores = np.array([0.0, 0.9, 0.45, 0.1, 0.55, 1.0, 0.2, 0.5, 0.05, 0.8])
    assert band_indices(scores, 3, "high").tolist() == [1, 5, 9]
    assert band_indices(scores, 3, "low").tolist() == [0, 3, 8]
    assert band_indices(scores, 3, "mid").tolist() == [2, 4, 7]
    m = memorization_forget_set(scores, 3, "high", seed=0)
    _check(m, 10, 3)
    assert m.kind == "memorization" and m.details["band"] == "high" and m.details["score_range"] == [0.8, 1.0]
    with pytest.raises(ValueError, match="NaN"):
        band_indices(np.array([0.1, np.nan, 0.3]), 1, "high")
    with pytest.raises(ValueError, match="band"):
        band_indices(scores, 1, "top")


def test_ties_are_broken_by_seed_not_by_row_order():
    scores = np.zeros(1000)  # digits: most samples score exactly 0
    scores[:5] = -0.1
    a = band_indices(scores, 30, "low", seed=0)
    assert set(range(5)) <= set(a.tolist())  # the strictly lowest are always in
    assert a.tolist() == band_indices(scores, 30, "low", seed=0).tolist()
    assert a.tolist() != band_indices(scores, 30, "low", seed=1).tolist()
    assert a.max() > 100  # not simply the first rows


def test_proxy_direction_low_confidence_is_high_memorization():
    confidence = np.array([0.99, 0.2, 0.95, 0.5, 0.97, 0.1, 0.9, 0.6])
    high = low_confidence_forget_set(confidence, 2, "high")
    assert high.forget_indices == [1, 5]  # the two LEAST confident samples are the most memorized
    assert low_confidence_forget_set(confidence, 2, "low").forget_indices == [0, 4]
    # mid: closest to the median (0.75: samples 6 and 7 at 0.9 and 0.6), not to 0.5 (sample 3)
    assert low_confidence_forget_set(confidence, 2, "mid").forget_indices == [6, 7]
    assert high.kind == "low_confidence" and "low confidence = high memorization" in high.details["proxy"]


def test_file_forget_set_rows_train_positions_and_ids(tmp_path):
    train_rows = np.array([10, 3, 7, 42, 5])  # pool row of each training sample
    (tmp_path / "rows.txt").write_text("# rows of the source\n42\n3\n")
    rows = file_forget_set(tmp_path / "rows.txt", n_train=5, index="row", train_rows=train_rows)
    _check(rows, 5, 2)
    assert rows.forget_indices == [1, 3] and rows.kind == "file"

    np.save(tmp_path / "pos.npy", np.array([0, 4]))
    assert file_forget_set(tmp_path / "pos.npy", n_train=5, index="train").forget_indices == [0, 4]

    (tmp_path / "ids.json").write_text(json.dumps({"ids": ["b.png", "e.png"]}))
    ids = file_forget_set(
        tmp_path / "ids.json", n_train=5, index="id", train_ids=["a.png", "b.png", "c.png", "d.png", "e.png"]
    )
    assert ids.forget_indices == [1, 4]

    (tmp_path / "test_rows.txt").write_text("99\n")
    with pytest.raises(ValueError, match="not in the training split"):
        file_forget_set(tmp_path / "test_rows.txt", n_train=5, train_rows=train_rows)
    (tmp_path / "dup.txt").write_text("3\n3\n")
    with pytest.raises(ValueError, match="repeats"):
        file_forget_set(tmp_path / "dup.txt", n_train=5, train_rows=train_rows)


def test_score_files_keyed_by_row_ids(tmp_path):
    table = ScoreTable(np.array([0.1, 0.9, 0.5, np.nan]), np.array([7, 2, 5, 9]), {"data": {"pool_fingerprint": "abc"}})
    path = save_scores(tmp_path / "s.npz", table)
    loaded = load_scores(path)
    np.testing.assert_array_equal(loaded.for_rows(np.array([5, 7]), pool_fingerprint="abc"), [0.5, 0.1])
    with pytest.raises(ValueError, match="other data"):
        loaded.for_rows(np.array([5]), pool_fingerprint="xyz")
    with pytest.raises(ValueError, match="no score"):
        loaded.for_rows(np.array([5, 3]))
    with pytest.raises(ValueError, match="NaN"):
        loaded.for_rows(np.array([9]))
    # Foreign files: Feldman & Zhang's tr_mem array, a plain .npy, a JSON list (entry i = pool row i).
    np.savez(tmp_path / "fz.npz", tr_mem=np.array([0.3, 0.7]), tr_labels=np.array([1, 2]))
    np.testing.assert_array_equal(load_scores(tmp_path / "fz.npz").for_rows(np.array([1])), [0.7])
    (tmp_path / "s.json").write_text("[0.2, 0.4]")
    np.testing.assert_array_equal(load_scores(tmp_path / "s.json").for_rows(np.array([0, 1])), [0.2, 0.4])
    with pytest.raises(ValueError, match="not found"):
        load_scores(tmp_path / "missing.npz")


def test_builtin_digits_scores_cover_every_digits_row():
    table = load_scores("digits")
    assert table.row_ids.tolist() == list(range(1797)) and not np.isnan(table.scores).any()
    meta = table.metadata
    assert meta["complete"] and meta["num_models"] >= 40 and meta["subset_ratio"] == 0.7
    assert meta["data"]["source"] == "digits" and len(meta["data"]["pool_fingerprint"]) == 64


# --- recipe validation --------------------------------------------------------------------------------------
BASE = {"model": {"config": {"model_type": "resnet"}}, "unlearn": {"runs": [{"method": "finetune"}]}}


def test_recipe_forget_kinds_and_keys():
    one = validate({**BASE, "forget": {"kind": "memorization", "band": "mid", "scores": "digits", "size": 10}})
    assert one["forget"] == {
        "kind": "memorization",
        "band": "mid",
        "scores": "digits",
        "size": 10,
        "seed": None,
        "scores_key": None,
        "midpoint": 0.5,
        "name": "mid",
    }
    several = validate({**BASE, "forget": [{"kind": "random", "size": 5}, {"kind": "classwise", "classes": [1]}]})
    assert [f["name"] for f in several["forget"]] == ["random", "classwise"]
    assert several["forget"][1]["fraction"] == 1.0
    for bad, match in [
        ({"kind": "memorization", "band": "high"}, "needs 'scores'"),
        ({"kind": "memorization", "band": "top", "scores": "digits"}, "band=top"),
        ({"kind": "random", "band": "high"}, "does not take 'band'"),
        ({"kind": "randm"}, "Did you mean 'random'"),
        ({"kind": "file"}, "needs 'path'"),
        ({"kind": "classwise"}, "whole training set"),
        ({"kind": "random", "sise": 3}, "Did you mean 'size'"),
        ([{"kind": "random"}, {"kind": "random"}], "unique 'name'"),
    ]:
        with pytest.raises(RecipeError, match=match):
            validate({**BASE, "forget": bad})


# --- several forget sets in one recipe ----------------------------------------------------------------------
@pytest.mark.slow
def test_several_forget_sets_share_the_original_and_write_a_report_each(tmp_path):
    import yaml

    from hf_unlearn.cli import main
    from hf_unlearn.data import load_digits_dataset

    # 300 digits as a local data set (fast), scored by a file keyed by its rows.
    load_digits_dataset().select(range(300)).save_to_disk(str(tmp_path / "digits300"))
    save_scores(tmp_path / "mem.npz", ScoreTable(np.random.default_rng(0).random(300), np.arange(300)))
    recipe = {
        "name": "multi",
        "data": {"source": str(tmp_path / "digits300"), "image_size": 8},
        "forget": [
            {"name": "high", "kind": "memorization", "band": "high", "size": 0.02, "scores": str(tmp_path / "mem.npz")},
            {"name": "few", "kind": "classwise", "classes": [3], "fraction": 0.1},
        ],
        "model": {"config": dict(SUBSET_MODEL)},
        "pretrain": {"epochs": 1, "batch_size": 128},
        "unlearn": {"defaults": {"epochs": 1, "batch_size": 128}, "runs": [{"method": "neggrad"}]},
    }
    (tmp_path / "multi.yaml").write_text(yaml.safe_dump(recipe))
    out = tmp_path / "out"
    assert main(["run", str(tmp_path / "multi.yaml"), "--output-dir", str(out), "--cpu"]) == 0
    assert not (out / "report.json").exists() and (out / "models" / "original" / "stage.json").is_file()
    reports = {name: json.loads((out / name / "report.json").read_text()) for name in ("high", "few")}
    assert reports["high"]["forget_set"]["kind"] == "memorization" and reports["high"]["forget_set"]["band"] == "high"
    assert reports["high"]["forget_set"]["size"] == 5 and reports["high"]["forget_set"]["name"] == "high"
    assert reports["few"]["forget_set"]["kind"] == "classwise" and reports["few"]["forget_set"]["band"] is None
    for name, report in reports.items():
        assert set(report["models"]) == {"original", "retrain", "neggrad"}
        assert (out / name / "models" / "retrain" / "stage.json").is_file()
        manifest = SplitManifest.from_json(out / name / "manifest.json")
        assert manifest.commitment == report["forget_set"]["commitment"] and manifest.details["name"] == name
    # The original is the same model in both reports; the retrained references differ.
    assert reports["high"]["models"]["original"]["fingerprint"] == reports["few"]["models"]["original"]["fingerprint"]
    combined = (out / "report.md").read_text()
    assert "[high](high/report.md)" in combined and "## few" in combined
    # A rerun reuses every stage.
    before = {p: p.stat().st_mtime_ns for p in out.rglob("model.safetensors")}
    assert main(["run", str(tmp_path / "multi.yaml"), "--output-dir", str(out), "--cpu"]) == 0
    assert before == {p: p.stat().st_mtime_ns for p in out.rglob("model.safetensors")}


def test_file_names_match_paths_or_unique_base_names(tmp_path):
    names = ["0/a.png", "1/a.png", "1/b.png", "2/c.png"]
    (tmp_path / "forget.txt").write_text("b.png\n2/c.png\n")
    manifest = file_forget_set(tmp_path / "forget.txt", n_train=4, index="id", train_ids=names, match_base_names=True)
    assert manifest.forget_indices == [2, 3]
    (tmp_path / "ambiguous.txt").write_text("a.png\n")
    with pytest.raises(ValueError, match=r"'a\.png' names 2 training files \(0/a\.png, 1/a\.png\)"):
        file_forget_set(tmp_path / "ambiguous.txt", n_train=4, index="id", train_ids=names, match_base_names=True)
    (tmp_path / "unknown.txt").write_text("b.png\nzzz.png\n")
    with pytest.raises(ValueError, match=r"1 of 2 entries are not in the training split \(e\.g\. 'zzz\.png'\)"):
        file_forget_set(tmp_path / "unknown.txt", n_train=4, index="id", train_ids=names, match_base_names=True)
    # Without base-name matching (any other id column) a bare name must equal an id exactly.
    with pytest.raises(ValueError, match="not in the training split"):
        file_forget_set(tmp_path / "forget.txt", n_train=4, index="id", train_ids=names)


def test_image_folders_have_a_file_name_column(tmp_path):
    from PIL import Image

    from hf_unlearn.data.sources import load_source_splits

    for path in ("train/cat/x.png", "train/dog/x.png", "train/dog/y.png", "test/cat/z.png"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4)).save(tmp_path / path)
    splits, _ = load_source_splits(str(tmp_path))
    assert sorted(splits["train"]["file_name"]) == ["cat/x.png", "dog/x.png", "dog/y.png"]
    assert list(splits["test"]["file_name"]) == ["cat/z.png"]
