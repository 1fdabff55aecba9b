"""The pipeline's public steps (hf_unlearn.steps, `Pipeline`): metrics cached apart from the weights, and the steps
other drivers (seeds, benchmarks, tuning) use instead of the pipeline's internals.

The session's tiny run (`baseline`, tests/conftest.py: one run of TINY_RECIPE) is shared; each test works on a copy
of it.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from conftest import TINY_RECIPE as TINY
from conftest import copy_of

from hf_unlearn.recipe import validate


@pytest.fixture
def trainers(monkeypatch) -> list[str]:
    """The output folder of every Trainer built from now on (one per stage that trains)."""
    from hf_unlearn.trainers import base

    built: list[str] = []
    init = base.UnlearnTrainer.__init__

    def spy(self, *args, **kwargs):
        init(self, *args, **kwargs)
        built.append(Path(self.args.output_dir).name)

    monkeypatch.setattr(base.UnlearnTrainer, "__init__", spy)
    return built


def _stamps(out: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in out.glob("models/*/*")}


def test_changing_the_evaluation_rescores_without_retraining(baseline, tmp_path, trainers, monkeypatch):
    from hf_unlearn.metrics import unlearning
    from hf_unlearn.models import load_saved_model
    from hf_unlearn.pipeline import Pipeline

    scored: list[int] = []  # the MIA seed of every scoring
    metrics = unlearning.unlearning_metrics

    def spy(*args, **kwargs):
        scored.append(kwargs["mia_seed"])
        return metrics(*args, **kwargs)

    monkeypatch.setattr(unlearning, "unlearning_metrics", spy)
    out = copy_of(baseline, tmp_path)
    before = json.loads((out / "report.json").read_text())
    keys = {k: v["key"] for k, v in json.loads((out / "scores.json").read_text()).items()}
    stamps = _stamps(out)
    recipe = validate({**copy.deepcopy(TINY), "evaluation": {**TINY["evaluation"], "mia_seed": 7}})
    pipeline = Pipeline(recipe, out, use_cpu=True)
    report = pipeline.run()
    assert trainers == []  # no stage trained again
    assert _stamps(out) == stamps  # weights and stage records untouched
    assert scored == [7, 7, 7]  # original, retrain and the run: each scored once, with the new seed
    scores = json.loads((out / "scores.json").read_text())
    assert set(scores) == set(keys) and all(scores[k]["key"] != keys[k] for k in keys)
    splits = pipeline.forget_set(pipeline.prepare_data()).splits
    for name, entry in report["models"].items():
        assert entry["accuracy"] == before["models"][name]["accuracy"]  # the MIA seed changes no accuracy
        model = load_saved_model(str(out / "models" / name))
        again = metrics(model, splits.retain, splits.forget, splits.test, mia_shadow_size=200, mia_seed=7)
        assert entry["mia"] == pytest.approx(again["mia"])  # the new seed's MIA, from the saved weights
    # The same settings again: everything comes from the cache (nothing trained, nothing scored).
    scored.clear()
    cached = (out / "scores.json").stat().st_mtime_ns
    assert Pipeline(recipe, out, use_cpu=True).run()["models"] == report["models"]
    assert scored == [] and trainers == [] and (out / "scores.json").stat().st_mtime_ns == cached


def test_public_steps_run_one_more_unlearning_run(baseline, tmp_path, trainers):
    """What a tuner does: the original and the reference once (here: reused), then one unlearning run with given
    settings on the forget set, scored and compared with the reference."""
    from hf_unlearn.models import load_saved_model
    from hf_unlearn.pipeline import Pipeline

    out = copy_of(baseline, tmp_path)
    pipeline = Pipeline(validate(copy.deepcopy(TINY)), out, use_cpu=True)
    splits = pipeline.prepare_data()
    original = pipeline.original_model(splits)
    run = pipeline.forget_set(splits)
    reference = pipeline.reference(run, original)
    assert trainers == []  # both reused from the finished run
    entry = pipeline.unlearn(run, original, {"method": "finetune", "name": "trial", "epochs": 1})
    assert trainers == ["trial"] and (out / "models" / "trial" / "model.safetensors").is_file()
    assert entry["method"] == "finetune" and entry["status"] == "finished"
    saved = load_saved_model(str(out / "models" / "trial"))
    assert entry["accuracy"] == pipeline.evaluate(saved, run.splits)["accuracy"]  # the saved weights' metrics
    report = pipeline.report(run, {"retrain": reference, "trial": entry})
    assert list(report["models"]) == ["original", "retrain", "trial"]
    ref, mine = reference["accuracy"], entry["accuracy"]
    expected = 1.0
    for split in ("retain", "forget", "test"):
        expected *= 1.0 - abs(mine[split] - ref[split])
    assert report["models"]["trial"]["tow"] == pytest.approx(expected)
    # Asking again reuses the finished run (same settings, same forget set).
    assert pipeline.unlearn(run, original, {"method": "finetune", "name": "trial", "epochs": 1}) == entry
    assert trainers == ["trial"]
