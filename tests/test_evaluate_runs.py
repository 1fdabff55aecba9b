"""``hf-unlearn evaluate`` on a model of a finished run: the run's forget set (its learning events, manifest and
commitment), original and reference are found from the folder the model sits in, the numbers equal the run's own
report, and a run's folder is never overwritten."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import TINY_RECIPE, copy_of, tiny_recipe, write_recipe

from hf_unlearn.cli import main
from hf_unlearn.errors import ValidationError
from hf_unlearn.evaluate_folder import find_source_run, recipe_for_run
from hf_unlearn.recipe import validate

# Tests with the shared `baseline` run are slow (conftest marks them); the layout tests below build folders only.


def _evaluate(recipe: Path, model: Path, out: Path, *extra: str) -> int:
    return main(["evaluate", str(recipe), "--model", str(model), "--output-dir", str(out), "--cpu", *extra])


def test_a_runs_model_is_evaluated_on_that_runs_forget_set_original_and_reference(baseline, tmp_path):
    out = tmp_path / "eval"
    assert _evaluate(write_recipe(tmp_path, TINY_RECIPE), baseline / "models" / "neggrad_sam", out) == 0
    report, run = (json.loads((folder / "report.json").read_text()) for folder in (out, baseline))
    assert report["forget_set"]["commitment"] == run["forget_set"]["commitment"]  # the run's manifest and key
    assert set(report["models"]) == {"original", "retrain", "neggrad_sam"}
    for name in ("original", "retrain", "neggrad_sam"):  # the same models on the same data: the same numbers
        assert report["models"][name]["accuracy"] == run["models"][name]["accuracy"], name
        assert report["models"][name]["mia"] == run["models"][name]["mia"], name
    assert report["models"]["neggrad_sam"]["tow"] == pytest.approx(run["models"]["neggrad_sam"]["tow"])
    assert report["evaluation"]["run_dir"] == str(baseline.resolve())
    assert report["evaluation"]["same_forget_set_as_run"] is True
    assert report["environment"]["libraries"]["torch"]


def test_evaluate_refuses_to_overwrite_a_runs_report(baseline, tmp_path, capsys):
    run = copy_of(baseline, tmp_path)
    before = {name: (run / name).read_bytes() for name in ("report.json", "report.md")}
    code = _evaluate(write_recipe(tmp_path, TINY_RECIPE), run / "models" / "neggrad_sam", run)
    err = capsys.readouterr().err
    assert code == 2 and "holds a `hf-unlearn run`" in err and "choose another folder" in err
    assert all((run / name).read_bytes() == data for name, data in before.items())


def test_a_model_outside_its_run_says_what_to_pass(baseline, tmp_path, capsys):
    model = tmp_path / "moved" / "neggrad_sam"
    shutil.copytree(baseline / "models" / "neggrad_sam", model)
    recipe = write_recipe(tmp_path, TINY_RECIPE)
    assert _evaluate(recipe, model, tmp_path / "eval") == 2
    err = capsys.readouterr().err.strip()
    assert "low_confidence" in err and "Pass --run-dir RUN" in err and "\n" not in err
    assert not (tmp_path / "eval").exists()
    assert _evaluate(recipe, model, tmp_path / "eval", "--run-dir", str(baseline)) == 0
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    run = json.loads((baseline / "report.json").read_text())
    assert report["forget_set"]["commitment"] == run["forget_set"]["commitment"]


@pytest.mark.parametrize(
    "changes, fragment",
    [
        ({"seed": 3}, "used seed 0 and the recipe's seed is 3"),
        ({"seeds": [1, 2]}, "the recipe runs seeds [1, 2] and"),
    ],
    ids=["other-seed", "seeds-without-the-runs"],
)
def test_the_runs_seed_decides(baseline, tmp_path, capsys, changes, fragment):
    recipe = write_recipe(tmp_path, tiny_recipe(**changes))
    assert _evaluate(recipe, baseline / "models" / "neggrad_sam", tmp_path / "eval") == 2
    assert fragment in capsys.readouterr().err
    assert not (tmp_path / "eval").exists()


def test_a_recipe_with_seeds_takes_the_runs_seed(baseline, tmp_path):
    recipe = write_recipe(tmp_path, tiny_recipe(seeds=[0, 1, 2]))  # as recipes/digits.yaml
    assert _evaluate(recipe, baseline / "models" / "neggrad_sam", tmp_path / "eval") == 0
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["seed"] == 0 and "retrain" in report["models"]


def _layout(root: Path, *files: str) -> None:
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("{}")


def test_a_run_with_several_forget_sets_and_seeds_is_found_from_the_models_folder(tmp_path):
    """OUTPUT/seed-1/<set>/models/<run>: the set's folder, the seed's root (shared original, learning events)."""
    root = tmp_path / "out" / "seed-1"
    _layout(root, "learning_events.npy", "models/original/config.json", "high/manifest.json")
    _layout(root, "high/models/retrain/config.json", "high/models/neggrad/config.json", "mid/manifest.json")
    source = find_source_run(root / "high" / "models" / "neggrad")
    assert source.folder == (root / "high").resolve() and source.root == root.resolve()
    assert source.seed == 1 and source.forget_name == "high"
    assert source.model("original") == source.root / "models" / "original"
    assert source.model("retrain") == source.folder / "models" / "retrain"
    bands = [{"kind": "low_confidence", "band": b, "size": 0.05} for b in ("high", "mid")]
    recipe = validate(tiny_recipe(forget=bands, seeds=[0, 1]))
    chosen = recipe_for_run(recipe, source)
    assert chosen["seed"] == 1 and "seeds" not in chosen and chosen["forget"]["name"] == "high"
    with pytest.raises(ValidationError, match=r"evaluate takes one: pass a model \(or --run-dir\) inside"):
        recipe_for_run(validate(tiny_recipe(forget=bands)), None)
    assert find_source_run(tmp_path / "elsewhere" / "model") is None
    with pytest.raises(ValidationError, match=r"--run-dir .*: no manifest\.json there"):
        find_source_run(tmp_path / "m", tmp_path)
