"""The CLI runs a tiny recipe end to end and writes a valid report; bad recipes fail with a clear message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import tiny_resnet_config

from hf_unlearn.cli import main
from hf_unlearn.recipe import RecipeError, load_recipe

TINY = {
    "name": "tiny",
    "seed": 0,
    "data": {"source": "digits", "test_size": 0.2, "image_size": 8},
    "forget": {"kind": "low_confidence", "size": 0.05},
    "model": {"config": tiny_resnet_config()},
    "pretrain": {"epochs": 2, "batch_size": 128},
    "unlearn": {
        "defaults": {"epochs": 1, "batch_size": 128},
        "runs": [
            {"method": "finetune"},
            {"method": "neggrad", "sharpness": "sam"},
            {"method": "sharp_minmax", "sharpness": "asam", "rho": 1.0},
        ],
    },
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[Path, int]:
    folder = tmp_path_factory.mktemp("cli")
    recipe = folder / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(TINY))
    code = main(["run", str(recipe), "--output-dir", str(folder / "out"), "--cpu", "--set", "retrain.epochs=1"])
    return folder / "out", code


def test_cli_writes_a_valid_report(tiny_run):
    out, code = tiny_run
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["dataset"] == "digits" and report["seed"] == 0
    forget = report["forget_set"]
    assert forget["kind"] == "low_confidence" and forget["size"] == report["sizes"]["forget"] > 0
    assert len(forget["commitment"]) == 64 and "sha256" not in forget
    assert set(report["models"]) == {"original", "retrain", "finetune", "neggrad_sam", "sharp_minmax_asam"}
    for name, entry in report["models"].items():
        assert set(entry["accuracy"]) == {"retain", "forget", "test"}
        assert all(0.0 <= v <= 1.0 for v in entry["accuracy"].values())
        assert 0.0 <= entry["mia"]["confidence"] <= 1.0
        assert entry["wall_seconds"] >= 0.0
        assert (entry["tow"] is None) == (name == "retrain")
    assert report["models"]["neggrad_sam"]["sharpness"] == "sam"
    assert report["models"]["retrain"]["hyperparameters"]["num_train_epochs"] == 1  # the --set override
    assert "| run |" in (out / "report.md").read_text()
    assert (out / "accuracy_tow.png").read_bytes()[:4] == b"\x89PNG"


def test_forget_and_retain_partition_the_training_set(tiny_run):
    out, _ = tiny_run
    manifest = json.loads((out / "manifest.json").read_text())
    forget, retain = set(manifest["forget_indices"]), set(manifest["retain_indices"])
    assert not forget & retain and len(forget | retain) == manifest["n_train"]


def test_rerun_reuses_finished_stages(tiny_run, capsys):
    out, _ = tiny_run
    before = {p: p.stat().st_mtime_ns for p in out.glob("models/*/model.safetensors")}
    recipe = out.parent / "tiny.yaml"
    assert main(["run", str(recipe), "--output-dir", str(out), "--cpu", "--set", "retrain.epochs=1"]) == 0
    after = {p: p.stat().st_mtime_ns for p in out.glob("models/*/model.safetensors")}
    assert before == after


def test_unknown_recipe_key_is_an_error_with_a_suggestion(tmp_path, capsys):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(yaml.safe_dump({**TINY, "unlearn": {"runs": [{"method": "neggrad", "alpah": 0.9}]}}))
    assert main(["run", str(recipe), "--output-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "alpah" in err and "did you mean 'alpha'" in err


def test_set_overrides_and_unknown_method():
    recipe = load_recipe("digits", ["unlearn.runs.neggrad.alpha=0.9", "pretrain.epochs=3"])
    assert next(r for r in recipe["unlearn"]["runs"] if r["name"] == "neggrad")["alpha"] == 0.9
    assert recipe["pretrain"]["epochs"] == 3
    with pytest.raises(RecipeError, match="did you mean 'neggrad'"):
        load_recipe("digits", ["unlearn.runs.0.method=neggrd"])
