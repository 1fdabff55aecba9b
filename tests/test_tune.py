"""`hf-unlearn tune` (hf_unlearn.tune, docs/tuning.md): search spaces, the validation objective, resume, refusals.

One tiny recipe (digits at 8x8, a ResNet of width 8/16, 1-2 epochs, batches of 256) runs one study of 2 trials,
resumes it to 3, and runs the same study in a second folder with the test split's labels and images scrambled:
every trial value must be the same, since the objective never reads the test split.
"""

from __future__ import annotations

import copy
import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from conftest import tiny_recipe

from hf_unlearn.args import UnlearnArguments
from hf_unlearn.cli import main
from hf_unlearn.errors import ValidationError
from hf_unlearn.registry import METHOD_CHOICES, method_spec
from hf_unlearn.tune.objective import validation_tow
from hf_unlearn.tune.space import ALIASES, RHO, Range, default_space, resolve_space, spaces

TINY: dict[str, Any] = tiny_recipe(
    **{
        "forget.kind": "random",
        "unlearn.defaults.epochs": 1,
        "unlearn.runs": [{"method": "neggrad", "alpha": 0.97, "learning_rate": 0.02}],
        "evaluation.mia_shadow_size": 100,
        # Short trials: at most 2 epochs; rho is not searched by a plain NegGrad run.
        "tune": {"space": {"epochs": [1, 2], "alpha": [0.9, 0.99]}},
    }
)


def write(folder: Path, recipe: dict[str, Any]) -> Path:
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def tune(folder: Path, out: Path, trials: int, *extra: str) -> int:
    return main(["tune", str(write(folder, TINY)), "--trials", str(trials), "--output-dir", str(out), "--cpu", *extra])


# ------------------------------------------------------------------------------------------------- spaces
def test_every_unlearning_method_declares_a_space_of_its_own_settings() -> None:
    tunable = set(METHOD_CHOICES) - {"pretrain", "retrain"}
    declared = spaces()
    assert set(declared) == tunable
    for method in tunable:
        fields = method_spec(method).config.__dataclass_fields__
        for sharpness in ("none", "sam", "asam"):
            space = default_space(method, sharpness)
            assert ("rho" in space) == (sharpness != "none"), (method, sharpness)
            if sharpness != "none":
                assert space["rho"] == RHO[sharpness]
            for name, span in space.items():
                assert ALIASES.get(name, name) in fields, f"{method}: {name} is no UnlearnArguments field"
                assert span.low < span.high and (not span.log or span.low > 0), (method, name)
                # Both ends are values the method's arguments accept.
                for value in (span.low, span.high):
                    UnlearnArguments(
                        output_dir="unused", method=method, sharpness=sharpness, **{ALIASES.get(name, name): value}
                    )
    assert (
        "alpha" in declared["neggrad"] and "alpha" in declared["sharp_minmax"] and "alpha" not in declared["finetune"]
    )
    assert "mask_ratio" in declared["salun"] and "msteps" in declared["scrub"] and "l1_weight" in declared["l1_sparse"]
    assert declared["neggrad"]["learning_rate"].log and declared["scrub"]["msteps"].integer


def test_recipe_space_narrows_fixes_and_refuses() -> None:
    space = resolve_space("neggrad", "sam", {"alpha": [0.9, 0.99], "rho": {"low": 0.05, "high": 0.2, "log": False}})
    assert space["alpha"] == Range(0.9, 0.99) and space["rho"] == Range(0.05, 0.2, log=False)
    assert "epochs" not in resolve_space("neggrad", "none", {"epochs": None})
    with pytest.raises(ValidationError, match=r"tune.space.mask_ratio: neggrad is not tuned over 'mask_ratio'.*alpha"):
        resolve_space("neggrad", "none", {"mask_ratio": [0.1, 0.5]})
    with pytest.raises(ValidationError, match=r"tune.space.rho: .*not tuned over 'rho'"):
        resolve_space("neggrad", "none", {"rho": [0.1, 0.5]})  # no SAM, no radius
    with pytest.raises(ValidationError, match=r"tune.space.alpha: the range \[0.99, 0.9\] is empty"):
        resolve_space("neggrad", "none", {"alpha": [0.99, 0.9]})
    with pytest.raises(ValidationError, match="is empty"):
        resolve_space("neggrad", "none", {"alpha": [0.9, 0.9]})
    with pytest.raises(ValidationError, match="integer bounds"):
        resolve_space("scrub", "none", {"msteps": [1, 2.5]})
    with pytest.raises(ValidationError, match="log-uniform range needs low > 0"):
        resolve_space("neggrad", "none", {"learning_rate": [0, 0.1]})
    with pytest.raises(ValidationError, match=r"expected a range \[low, high\]"):
        resolve_space("neggrad", "none", {"alpha": 0.9})
    with pytest.raises(ValidationError, match="leave at least one"):
        resolve_space("finetune", "none", {"learning_rate": None, "epochs": None})


def test_validation_tow_is_the_product_over_retain_forget_and_validation() -> None:
    unlearned = {"retain": 0.9, "forget": 0.5, "validation": 0.8, "test": 0.0}
    reference = {"retain": 1.0, "forget": 0.7, "validation": 0.85, "test": 1.0}
    assert validation_tow(unlearned, reference) == pytest.approx((1 - 0.1) * (1 - 0.2) * (1 - 0.05))
    assert validation_tow(reference, reference) == 1.0


# ------------------------------------------------------------------------------------------------ refusals
def test_bad_space_is_one_line_before_anything_is_written(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    code = tune(tmp_path, out, 2, "--set", "tune.space.alpha=[0.99, 0.9]")
    err = capsys.readouterr().err.strip()
    assert code == 2 and not out.exists()
    assert err.startswith("hf-unlearn: error: tune.space.alpha: the range [0.99, 0.9] is empty") and "\n" not in err
    assert tune(tmp_path, out, 2, "--set", "tune.space.beta=[0.1, 0.2]") == 2
    assert "neggrad is not tuned over 'beta'" in capsys.readouterr().err and not out.exists()
    assert tune(tmp_path, out, 2, "--run", "scrub") == 2
    assert "no run named 'scrub'; its runs: neggrad" in capsys.readouterr().err


def test_missing_optuna_names_the_extra(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna raises ImportError
    assert tune(tmp_path, tmp_path / "out", 2) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hf-unlearn: error:") and "pip install 'hf_unlearn[tune]'" in err and "\n" not in err


def test_storage_without_its_driver_names_the_driver_and_hides_the_password(tmp_path, capsys, monkeypatch) -> None:
    from sqlalchemy.engine import make_url

    url = "postgresql://user:s3cret@localhost/db"

    def no_driver(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'psycopg'")

    monkeypatch.setattr(make_url(url).get_dialect(), "import_dbapi", classmethod(no_driver))  # as if not installed
    assert tune(tmp_path, tmp_path / "out", 2, "--storage", url) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hf-unlearn: error: tune --storage:") and "pip install 'psycopg[binary]'" in err
    assert "s3cret" not in err and "\n" not in err


# ------------------------------------------------------------------------------------------------- studies
@pytest.fixture(scope="module")
def study(tmp_path_factory) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """A 2-trial study, then the same call with --trials 3 (the tuning.json of each)."""
    folder = tmp_path_factory.mktemp("tune")
    out = folder / "out"
    assert tune(folder, out, 2) == 0
    first = json.loads((out / "tuning.json").read_text())
    assert tune(folder, out, 3) == 0
    return out, first, json.loads((out / "tuning.json").read_text())


def test_study_outputs_trial_zero_and_best(study) -> None:
    out, first, last = study
    assert first["run"] == "neggrad" and first["method"] == "neggrad"
    assert first["objective"] == {"name": "tow", "split": "validation"}
    assert [t["number"] for t in first["trials"]] == [0, 1]
    # Trial 0 is the run's own settings: alpha and lr from the run, epochs from unlearn.defaults.
    assert first["trials"][0]["params"] == {"learning_rate": 0.02, "epochs": 1, "alpha": 0.97}
    values = [t["value"] for t in first["trials"]]
    assert first["best"]["value"] == max(values) >= values[0]
    for trial in first["trials"]:
        assert trial["state"] == "complete" and len(trial["intermediate"]) == trial["params"]["epochs"]
        assert trial["value"] == pytest.approx(validation_tow(trial["accuracy"], first["reference"]))
    for name in ("optimization_history.png", "param_importances.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    best = yaml.safe_load((out / "best.yaml").read_text())  # of the last call (3 trials)
    run = best["unlearn"]["runs"][0]
    assert {k: run[k] for k in last["best"]["params"]} == last["best"]["params"]
    assert best["data"]["validation_size"] is None  # the user's data, not the tuning split
    assert "study.db" in {p.name for p in out.iterdir()}
    assert not (out / "checkpoints").exists()  # the trials' checkpoints go, and the empty folder with them


def test_second_call_resumes_the_study(study) -> None:
    _, first, second = study
    assert [t["number"] for t in second["trials"]] == [0, 1, 2]
    for a, b in zip(first["trials"], second["trials"], strict=False):
        assert (a["params"], a["value"]) == (b["params"], b["value"])
    assert second["trials"][2]["params"] not in [t["params"] for t in first["trials"]]


def test_objective_never_reads_the_test_split(study, tmp_path, monkeypatch) -> None:
    """The same study in a fresh folder with the test split's labels and images scrambled: the same trial values."""
    import hf_unlearn.steps.forget as pipeline_module
    from hf_unlearn.data.transforms import TensorImageDataset

    real = pipeline_module.prepare_splits

    def scrambled(*args, **kwargs):
        prepared = real(*args, **kwargs)
        test = prepared.test
        generator = torch.Generator().manual_seed(1)
        prepared.test = TensorImageDataset(
            torch.randn(test.pixel_values.shape, generator=generator), (test.labels + 3) % 10, test.class_names
        )
        return prepared

    monkeypatch.setattr(pipeline_module, "prepare_splits", scrambled)
    out = tmp_path / "scrambled"
    assert tune(tmp_path, out, 2) == 0
    _, first, _ = study
    again = json.loads((out / "tuning.json").read_text())
    assert again["reference"] == first["reference"]
    assert [(t["params"], t["value"]) for t in again["trials"]] == [(t["params"], t["value"]) for t in first["trials"]]
    # ... while the test accuracy the stages are scored with did change: the scrambled split reached the pipeline.
    test_acc = [json.loads((o / "scores.json").read_text())["retrain"]["accuracy"]["test"] for o in (study[0], out)]
    assert not math.isclose(*test_acc)


def test_bad_identity_is_refused(study, tmp_path, capsys) -> None:
    """A study database started with another space is not silently mixed with new trials."""
    out = study[0]
    changed = copy.deepcopy(TINY)
    changed["tune"]["space"]["alpha"] = [0.8, 0.99]
    code = main(["tune", str(write(tmp_path, changed)), "--trials", "4", "--output-dir", str(out), "--cpu"])
    assert code == 2 and "was started with another recipe, run or space" in capsys.readouterr().err


def test_several_forget_sets_share_the_original_and_average(study, tmp_path) -> None:
    """forget: a list -> every trial runs on each set; its value is the mean of the sets' validation ToW."""
    out = tmp_path / "sets"
    out.mkdir()
    # Not the study's original: the class-wise set's samples stay in training when validation is carved, so the
    # training split differs (and so does the original's fingerprint).
    recipe = copy.deepcopy(TINY)
    recipe["forget"] = [
        {"name": "rand", "kind": "random", "size": 0.06},
        {"name": "three", "kind": "classwise", "classes": ["3"], "fraction": 0.3},
    ]
    code = main(["tune", str(write(tmp_path, recipe)), "--trials", "2", "--output-dir", str(out), "--cpu"])
    assert code == 0
    result = json.loads((out / "tuning.json").read_text())
    assert set(result["reference"]) == {"rand", "three"}
    assert (out / "rand" / "models" / "retrain" / "stage.json").is_file()
    assert (out / "three" / "models" / "retrain" / "stage.json").is_file()
    for trial in result["trials"]:
        per_set = trial["values"]
        assert set(per_set) == {"rand", "three"}
        assert trial["value"] == pytest.approx((per_set["rand"] + per_set["three"]) / 2)
        for name, accuracy in zip(("rand", "three"), trial["accuracy"], strict=True):
            assert per_set[name] == pytest.approx(validation_tow(accuracy, result["reference"][name]))
