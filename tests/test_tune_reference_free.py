"""`hf-unlearn tune` without a reference (retrain: false) on the user path: an image folder with train/ and test/,
a model trained elsewhere and a forget list by file name (recipes/own-model.yaml). The study carves its validation
split from the retain samples, scores trials with the reference-free objective, never reads the test split, and
writes a best.yaml that `hf-unlearn run` runs, its report saying which objective chose the settings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_own_model import _make_image_folder, _recipe, _train_model_folder

from hf_unlearn.cli import main


class Tripwire:
    """A test split that fails the test when any sample is read."""

    def __init__(self, inner) -> None:
        self.inner = inner

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, index):
        raise AssertionError("the test split was read")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    """The user's image folder and deletion list (12 training images of class 1 by bare file name); no model."""
    root = tmp_path_factory.mktemp("user-rf")
    _make_image_folder(root / "images")
    names = sorted(p.name for p in (root / "images" / "train" / "1").glob("*.png"))[:12]
    (root / "forget.txt").write_text("\n".join(names) + "\n")
    return {"root": root, "images": root / "images", "model": root / "my-model", "forget": root / "forget.txt"}


@pytest.fixture(scope="module")
def user_files(images) -> dict[str, Path]:
    """... and the model trained on every training image (end to end: the tests that use it are slow)."""
    _train_model_folder(images["images"], images["model"])
    return images


@pytest.fixture(scope="module")
def study(user_files, tmp_path_factory) -> tuple[Path, dict]:
    """A 2-trial reference-free study of the user's recipe, with a test split that must not be read."""
    import hf_unlearn.steps.forget as steps_forget

    recipe = _recipe(user_files, False)
    recipe["unlearn"]["runs"] = [{"method": "neggrad", "alpha": 0.9, "epochs": 1, "batch_size": 24}]
    recipe["tune"] = {"validation_size": 0.2, "space": {"epochs": [1, 2], "alpha": [0.85, 0.99]}}
    path = user_files["root"] / "tune.yaml"
    path.write_text(yaml.safe_dump(recipe))
    out = tmp_path_factory.mktemp("rf-study") / "out"
    real = steps_forget.prepare_splits

    def guarded(*args, **kwargs):
        prepared = real(*args, **kwargs)
        prepared.test = Tripwire(prepared.test)
        return prepared

    patch = pytest.MonkeyPatch()
    patch.setattr(steps_forget, "prepare_splits", guarded)
    try:
        assert main(["tune", str(path), "--trials", "2", "--output-dir", str(out), "--cpu"]) == 0
    finally:
        patch.undo()
    return out, json.loads((out / "tuning.json").read_text())


def test_tune_runs_without_a_reference_on_a_file_forget_set(study) -> None:
    out, result = study
    assert result["objective"] == {"name": "reference_free", "split": "validation"}
    assert result["reference"] is None
    target = result["target"]
    assert target["forget_size"] == 12 and target["difficulty"] == "confidence"  # a given model: no learning events
    assert 0.0 <= target["forget"] <= 1.0
    assert [t["state"] for t in result["trials"]] == ["complete", "complete"]
    assert result["trials"][0]["params"] == {"learning_rate": 0.01, "epochs": 1, "alpha": 0.9}
    # A given model and a validation split carved from its training images: the study says the level may be off.
    assert len(result["warnings"]) == 1 and "data.validation_split" in result["warnings"][0]
    # The forget set is the user's 12 images, all kept in training; validation holds none of them.
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["forget_indices"]) == 12


def test_the_validation_split_is_carved_from_retain_samples_only(images) -> None:
    """The data as the study prepares it: the listed images stay in training, validation is a stratified fifth of
    the other training images, and the forget set resolves (it used to fail: "N of 12 entries are not in the
    training split")."""
    from hf_unlearn.recipe import validate
    from hf_unlearn.steps.forget import make_manifest, prepare_data

    recipe = _recipe(images, False)  # no model is loaded: the images are transformed by hand
    recipe["data"].update(validation_size=0.2, transforms="manual", image_size=8, num_channels=3)
    recipe["data"].update(mean=[0.5] * 3, std=[0.5] * 3)
    recipe = validate(recipe)
    splits = prepare_data(recipe)
    manifest = make_manifest(recipe, splits, recipe["forget"], Path("unused"))
    names = set(images["forget"].read_text().split())
    train_names = splits.prepared.train_column("file_name")
    assert {train_names[i].rsplit("/", 1)[-1] for i in manifest.forget_indices} == names
    before = splits.prepared.raw_before_carve
    held_out = set(before.with_format(None)["file_name"]) - set(train_names)
    assert len(held_out) == len(splits.prepared.validation) == pytest.approx(0.2 * (len(before) - 12), abs=1)
    assert not {n.rsplit("/", 1)[-1] for n in held_out} & names
    # Stratified over the retain samples: a fifth of each class's (class 1 has 12 fewer to give).
    counts = np.bincount(np.asarray(splits.prepared.validation.labels), minlength=3)
    retain = np.bincount(before.with_format("numpy")["label"], minlength=3) - np.bincount([1] * 12, minlength=3)
    assert np.abs(counts - 0.2 * retain).max() <= 1


@pytest.mark.slow
def test_best_yaml_runs_and_its_report_names_the_objective(study, tmp_path) -> None:
    out, result = study
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best["tune"]["chosen"]["neggrad"]["objective"]["name"] == "reference_free"
    assert best["data"]["validation_size"] is None  # the user's own data
    run = tmp_path / "best"
    assert main(["run", str(out / "best.yaml"), "--output-dir", str(run), "--cpu"]) == 0
    report = json.loads((run / "report.json").read_text())
    tuned = report["models"]["neggrad"]["tuned"]
    assert tuned["trial"] == result["best"]["number"] and tuned["value"] == pytest.approx(result["best"]["value"])
    assert "objective reference_free on the validation split" in (run / "report.md").read_text()


@pytest.mark.slow
def test_a_run_with_early_stop_records_where_it_stopped(user_files, tmp_path) -> None:
    recipe = _recipe(user_files, False)
    recipe["data"]["validation_size"] = 0.2
    recipe["unlearn"]["runs"] = [
        {"method": "neggrad", "alpha": 0.9, "epochs": 4, "batch_size": 24, "early_stop": {"every": "epoch"}}
    ]
    path = tmp_path / "stop.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["run", str(path), "--output-dir", str(tmp_path / "out"), "--cpu"]) == 0
    entry = json.loads((tmp_path / "out" / "report.json").read_text())["models"]["neggrad"]
    stop = entry["early_stop"]
    assert stop["settings"] == {"every": "epoch", "patience": 0} and stop["budget_steps"] > 0
    assert len(stop["checks"]) == (stop["epoch"] if stop["stopped"] else 4)
    text = (tmp_path / "out" / "report.md").read_text()
    assert ("stopped early at epoch" if stop["stopped"] else "trained its whole budget") in text
