"""The evaluate modules are the report's metrics: each wraps the function report.json's numbers come from.

Unit checks feed the modules and the plain functions the same inputs; `test_report_json_equals_the_evaluate_modules`
recomputes a finished run's report.json through the modules alone.
"""

from __future__ import annotations

import doctest
import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import copy_of, make_dataset, make_model

from hf_unlearn.metrics import (
    THRESHOLD_ATTACKS,
    accuracy,
    metric_path,
    mia_efficacy,
    predict_probabilities,
    sample_shadow_members,
    sampled_mia_efficacy,
    threshold_attacks,
    tug_of_war,
)
from hf_unlearn.metrics.evaluate_modules import available_metrics
from hf_unlearn.metrics.unlearning import unlearning_metrics

MODULES = ("accuracy", "attacks", "mia", "tow")
SPLITS = ("retain", "forget", "test")
RETRAINED = {"retain": 0.99, "forget": 0.40, "test": 0.92}
# The sections of evaluate's metric cards.
CARD_SECTIONS = (
    "## Metric Description",
    "## How to Use",
    "### Inputs",
    "### Output Values",
    "### Examples",
    "## Limitations and Bias",
    "## Citation",
)


@pytest.fixture(scope="module")
def evaluate_cache(tmp_path_factory):
    """Point every evaluate/HF cache at a temporary folder and forbid network access."""
    root = tmp_path_factory.mktemp("hf_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HOME", str(root))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_DATASETS_OFFLINE", "1")
        mp.setenv("HF_EVALUATE_OFFLINE", "1")
        import evaluate

        # evaluate derived its cache paths from HF_HOME at import time, possibly before this fixture.
        mp.setattr(evaluate.config, "HF_MODULES_CACHE", root / "modules")
        mp.setattr(evaluate.config, "HF_EVALUATE_CACHE", root / "evaluate")
        mp.setattr(evaluate.config, "HF_METRICS_CACHE", root / "metrics")
        yield evaluate, str(root)


@pytest.fixture(scope="module")
def modules(evaluate_cache):
    evaluate, cache = evaluate_cache
    return {name: evaluate.load(metric_path(name), cache_dir=cache) for name in MODULES}


def _two_class_probs(confidences: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two-class softmax rows whose true class (0) gets ``confidences``."""
    return np.stack([confidences, 1.0 - confidences], axis=1), np.zeros(len(confidences), dtype=np.int64)


def _mia_inputs(groups: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, list]:
    """The mia module's columns from ``{group: (probabilities, labels)}``."""
    return {
        "probabilities": np.concatenate([p for p, _ in groups.values()]).tolist(),
        "labels": np.concatenate([y for _, y in groups.values()]).tolist(),
        "group": [name for name, (_, y) in groups.items() for _ in range(len(y))],
    }


def _tow_inputs(unlearned: dict[str, float], retrained: dict[str, float]) -> dict[str, list[float]]:
    return {**{f"unlearned_{k}": [unlearned[k]] for k in SPLITS}, **{f"retrained_{k}": [retrained[k]] for k in SPLITS}}


# ------------------------------------------------------------------------------------------- folders and cards
def test_metric_path_points_at_the_module_folders():
    assert available_metrics() == list(MODULES)
    for name in MODULES:
        assert Path(metric_path(name)).name == name
    with pytest.raises(ValueError):
        metric_path("nope")


@pytest.mark.parametrize("name", MODULES)
def test_every_module_has_a_metric_card(name):
    card = (Path(metric_path(name)) / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\n") and "\ntags:\n- evaluate\n- metric\n" in card  # the Hub's card metadata
    positions = [card.find(section + "\n") for section in CARD_SECTIONS]
    assert -1 not in positions and positions == sorted(positions), dict(zip(CARD_SECTIONS, positions, strict=True))
    assert "hf_unlearn" in card and "report.json" in card  # says it needs the package and what it computes
    assert re.search(r"@\w+\{", card)  # a BibTeX entry


@pytest.mark.parametrize("name", MODULES)
def test_metric_card_examples_run(name, evaluate_cache):
    result = doctest.testfile(
        str(Path(metric_path(name)) / "README.md"), module_relative=False, optionflags=doctest.NORMALIZE_WHITESPACE
    )
    assert result.attempted > 0 and result.failed == 0, result


def test_package_data_ships_the_modules_and_their_cards():
    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8")
    shipped = re.search(r"^hf_unlearn = \[(.*)\]$", text, flags=re.MULTILINE).group(1)
    for pattern in ("metrics/evaluate_modules/*/*.py", "metrics/evaluate_modules/*/*.md"):
        assert f'"{pattern}"' in shipped


# --------------------------------------------------------------------------------- modules = plain functions
def test_evaluate_accuracy_matches_plain_function(modules):
    rng = np.random.default_rng(2)
    probs, labels = rng.dirichlet(np.ones(4), size=30), rng.integers(0, 4, 30)
    result = modules["accuracy"].compute(predictions=probs.argmax(axis=1), references=labels)
    assert result == {"accuracy": accuracy(probs, labels)}


def test_evaluate_tow_matches_plain_function(modules):
    rows = [
        ({"retain": 0.98, "forget": 0.50, "test": 0.90}, RETRAINED),
        ({"retain": 1.00, "forget": 0.30, "test": 0.95}, RETRAINED),
    ]
    kwargs = {
        f"{side}_{split}": [pair[i][split] for pair in rows]
        for i, side in enumerate(("unlearned", "retrained"))
        for split in SPLITS
    }
    for signed in (False, True):
        expected = [tug_of_war(u, r, signed=signed) for u, r in rows]
        result = modules["tow"].compute(**kwargs, signed=signed)
        assert result["tow_per_row"] == expected
        assert result["tow"] == pytest.approx(np.mean(expected))


def test_evaluate_mia_matches_plain_function(modules):
    rng = np.random.default_rng(11)
    groups = {
        "member": _two_class_probs(rng.uniform(0.4, 1.0, 70)),
        "nonmember": _two_class_probs(rng.uniform(0.2, 0.8, 40)),
        "target": _two_class_probs(rng.uniform(0.2, 1.0, 20)),
    }
    inputs = _mia_inputs(groups)
    default = modules["mia"].compute(**inputs, seed=5)
    assert default == sampled_mia_efficacy(*groups["member"], *groups["nonmember"], *groups["target"], seed=5)
    # The default attack trains on as many sampled members as there are non-members (40 of the 70).
    rows = sample_shadow_members(70, 40, 5)
    members = (groups["member"][0][rows], groups["member"][1][rows])
    assert default == mia_efficacy(*members, *groups["nonmember"], *groups["target"], seed=5)
    # shadow_size=70 keeps every member row.
    every = modules["mia"].compute(**inputs, shadow_size=70, seed=5)
    assert every == mia_efficacy(*groups["member"], *groups["nonmember"], *groups["target"], seed=5)


def test_evaluate_attacks_matches_plain_function(modules):
    rng = np.random.default_rng(3)
    groups = {
        "member": _two_class_probs(rng.uniform(0.4, 1.0, 30)),
        "nonmember": _two_class_probs(rng.uniform(0.2, 1.0, 50)),
    }
    result = modules["attacks"].compute(**_mia_inputs(groups))
    assert result == threshold_attacks(*groups["member"], *groups["nonmember"])
    assert list(result) == list(THRESHOLD_ATTACKS) and result["loss"]["auc"] > 0.5
    with pytest.raises(ValueError, match="unknown groups"):
        modules["attacks"].compute(**_mia_inputs({**groups, "target": groups["member"]}))


def test_the_modules_give_unlearning_metrics_numbers(modules):
    """What `Evaluator.metrics` (steps/score.py) stores for a model equals the modules fed its predictions."""
    model = make_model(3)
    splits = {"retain": make_dataset(90, 1), "forget": make_dataset(25, 2), "test": make_dataset(40, 3)}
    stored = unlearning_metrics(model, *splits.values(), batch_size=16, mia_shadow_size=30, mia_seed=4)
    probs = {name: predict_probabilities(model, data, batch_size=16) for name, data in splits.items()}
    for name, (p, y) in probs.items():
        assert (
            modules["accuracy"].compute(predictions=p.argmax(axis=1), references=y)["accuracy"]
            == (stored["accuracy"][name])
        )
    groups = {"member": probs["retain"], "nonmember": probs["test"], "target": probs["forget"]}
    assert modules["mia"].compute(**_mia_inputs(groups), shadow_size=30, seed=4) == stored["mia"]
    members = {"member": probs["forget"], "nonmember": probs["test"]}
    assert modules["attacks"].compute(**_mia_inputs(members)) == stored["attacks"]


# ------------------------------------------------------------------------------------- a finished run's report
def test_report_json_equals_the_evaluate_modules(baseline, tmp_path, modules):
    """Every model of a finished run, loaded from its folder and scored through the modules alone, gives the
    accuracies, MIA, threshold attacks and ToW its report.json holds."""
    from hf_unlearn.models import load_reference_model
    from hf_unlearn.pipeline import Pipeline
    from hf_unlearn.recipe import load_recipe
    from hf_unlearn.recipe_schema import EvaluationSection

    out = copy_of(baseline, tmp_path)  # the forget set step may rewrite its files
    recipe = load_recipe(str(baseline.parent / "recipe.yaml"))
    settings = EvaluationSection.of(recipe)
    pipeline = Pipeline(recipe, out, use_cpu=True)
    run = pipeline.forget_set(pipeline.prepare_data())
    report = json.loads((baseline / "report.json").read_text(encoding="utf-8"))
    assert {"original", "retrain"} < set(report["models"])  # the reference and at least one compared model
    data = {"retain": run.splits.retain, "forget": run.splits.forget, "test": run.splits.test}
    for name, entry in report["models"].items():
        model = load_reference_model(str(out / "models" / name), run.splits.class_names)
        probs = {split: predict_probabilities(model, d, batch_size=settings.batch_size) for split, d in data.items()}
        measured = {
            split: modules["accuracy"].compute(predictions=p.argmax(axis=1), references=y)["accuracy"]
            for split, (p, y) in probs.items()
        }
        assert measured == entry["accuracy"], name
        groups = {"member": probs["retain"], "nonmember": probs["test"], "target": probs["forget"]}
        mia = modules["mia"].compute(
            **_mia_inputs(groups), shadow_size=settings.mia_shadow_size, seed=settings.mia_seed
        )
        assert mia == entry["mia"], name
        attacks = modules["attacks"].compute(**_mia_inputs({"member": probs["forget"], "nonmember": probs["test"]}))
        assert attacks == {attack: entry["attacks"][attack] for attack in THRESHOLD_ATTACKS}, name  # (LiRA aside)
        if name != "retrain":
            tow = modules["tow"].compute(**_tow_inputs(measured, report["models"]["retrain"]["accuracy"]))["tow"]
            assert tow == entry["tow"], name
