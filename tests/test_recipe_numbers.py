"""``1e-3`` is a number: in ``--set`` values (YAML 1.2's reading; PyYAML's YAML 1.1 reads it as text) and in a
recipe file's float training settings, where the schema knows a number is expected."""

from __future__ import annotations

import pytest
import yaml

from hf_unlearn.recipe import load_recipe
from hf_unlearn.recipe_yaml import exponent_number, parse_override


@pytest.mark.parametrize(
    "text, value",
    [("1e-3", 0.001), ("1E-3", 0.001), ("5e2", 500.0), ("-2.5e-4", -2.5e-4), (".5e1", 5.0), ("+1e0", 1.0)],
)
def test_set_reads_scientific_notation_as_a_number(text, value):
    _, parsed = parse_override(f"pretrain.learning_rate={text}")
    assert isinstance(parsed, float) and parsed == pytest.approx(value)


def test_set_leaves_other_text_alone():
    assert parse_override("name=e5")[1] == "e5"
    assert parse_override("data.revision='1e5x'")[1] == "1e5x"
    assert exponent_number(["1e-4", "x", {"a": "2e1"}]) == [1e-4, "x", {"a": 20.0}]


def test_set_learning_rate_in_scientific_notation_is_accepted(tmp_path):
    from hf_unlearn.pipeline import Pipeline

    recipe = load_recipe("digits", ["pretrain.learning_rate=1e-3", "unlearn.runs.neggrad.alpha=9.5e-1"])
    assert recipe["pretrain"]["learning_rate"] == 0.001
    assert next(r for r in recipe["unlearn"]["runs"] if r["name"] == "neggrad")["alpha"] == 0.95
    Pipeline(recipe, tmp_path / "out", use_cpu=True).check()  # every stage's arguments build (what `run` checks)
    assert not (tmp_path / "out").exists()


def test_recipe_file_reads_exponents_in_float_training_settings(tmp_path):
    text = (
        "name: sci\n"
        "data: {source: digits, revision: 1e5}\n"
        "model: {config: {model_type: resnet}}\n"
        "pretrain: {learning_rate: 1e-3, weight_decay: 5e-4, epochs: 2}\n"
        "unlearn:\n"
        "  defaults: {learning_rate: 2E-2}\n"
        "  runs: [{method: neggrad, alpha: 9.5e-1}]\n"
    )
    assert yaml.safe_load(text)["pretrain"]["learning_rate"] == "1e-3"  # what PyYAML alone reads
    path = tmp_path / "sci.yaml"
    path.write_text(text)
    recipe = load_recipe(str(path))
    assert recipe["pretrain"]["learning_rate"] == 0.001 and recipe["pretrain"]["weight_decay"] == 0.0005
    assert recipe["unlearn"]["defaults"]["learning_rate"] == 0.02
    assert recipe["unlearn"]["runs"][0]["alpha"] == 0.95
    assert recipe["data"]["revision"] == "1e5"  # text where the schema expects text


def test_unquoted_no_is_a_strategy_not_false(tmp_path):
    """YAML 1.1 reads ``no`` as false; a Trainer ``*_strategy`` setting gets the text "no", from --set and files."""
    _, value = parse_override("unlearn.defaults.eval_strategy=no")
    assert value == "no"
    assert parse_override("retrain=no")[1] is False  # other keys keep YAML's reading (retrain: false)
    path = tmp_path / "strategy.yaml"
    path.write_text(
        "name: strategy\ndata: {source: digits}\nmodel: {config: {model_type: resnet}}\n"
        "pretrain: {save_strategy: no}\nunlearn:\n  runs: [{method: neggrad, eval_strategy: no}]\n"
    )
    recipe = load_recipe(str(path), ["unlearn.defaults.eval_strategy=no"])
    assert recipe["pretrain"]["save_strategy"] == "no"
    assert recipe["unlearn"]["runs"][0]["eval_strategy"] == "no"
    assert recipe["unlearn"]["defaults"]["eval_strategy"] == "no"
