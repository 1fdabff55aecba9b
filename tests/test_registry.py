"""One method registry; arguments per method: a setting a method does not read is refused, never recorded.

`hf_unlearn.registry` pairs every method's Trainer with its config (`hf_unlearn.args`). These tests check that the
registry, the trainers and the configs agree, that ``UnlearnArguments(method=...)`` and a recipe refuse another
method's setting with one message, and that fingerprints and records carry the method's own settings only.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import make_dataset, make_model

from hf_unlearn import UnlearnArguments, get_trainer_class
from hf_unlearn.args import FinetuneConfig, NegGradConfig, RandomLabelConfig, ScrubConfig, SharpMinMaxConfig
from hf_unlearn.recipe import RecipeError, load_recipe
from hf_unlearn.recipe_training import training_arguments
from hf_unlearn.registry import METHOD_CHOICES, METHOD_FIELDS, REGISTRY, own_settings, unused_field_message
from hf_unlearn.trainers import TRAINERS, UnlearnTrainer

DOCS = Path(__file__).resolve().parents[1] / "docs" / "methods.md"


def documented_settings() -> dict[str, dict[str, str]]:
    """docs/methods.md's overview table: per method, its own settings and their defaults as the docs state them."""
    table = {}
    for line in DOCS.read_text().splitlines():
        cells = [cell.strip() for cell in line.split("|")[1:-1]]
        config = re.fullmatch(r"`\w+Config`: (.*)", cells[3]) if len(cells) == 5 else None
        if config:
            name = re.match(r"`(\w+)`", cells[0]).group(1)
            table[name] = dict(re.findall(r"`(\w+)` \(([^)]*)\)", config.group(1)))
    return table


def _args(tmp_path, **kwargs):
    return UnlearnArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none", **kwargs)


# ------------------------------------------------------------------------------------------------ registry
def test_every_fact_about_a_method_is_derived_from_its_config_and_trainer(tmp_path) -> None:
    assert tuple(REGISTRY) == METHOD_CHOICES and set(TRAINERS) == set(REGISTRY)
    model, items = make_model(seed=0), make_dataset(8, seed=0)
    for name, spec in REGISTRY.items():
        trainer = get_trainer_class(name)
        assert trainer is TRAINERS[name] is spec.trainer_class and issubclass(trainer, UnlearnTrainer)
        args = _args(tmp_path, method=name)
        assert type(args) is spec.config and spec.config.method_name() == spec.name == args.method == name
        assert spec.fields == spec.config.own_fields()
        assert spec.uses_mask == ("mask_ratio" in spec.fields)
        assert spec.reference == {"pretrain": "original", "retrain": "retrain"}.get(name)
        assert spec.two_pass("sam") and spec.two_pass("none") == spec.uses_mask
        # needs_forget is what the trainer does: it refuses an empty forget set exactly when the method reads one.
        empty = make_dataset(0, seed=0)
        if spec.needs_forget:
            with pytest.raises(ValueError, match="needs a non-empty forget_dataset"):
                trainer(model=model, args=args, retain_dataset=items, forget_dataset=empty)
        else:
            built = trainer(model=model, args=args, retain_dataset=items, forget_dataset=empty)
            assert built.method_name == name and built.train_on == spec.config.train_on
    assert {field for spec in REGISTRY.values() for field in spec.fields} == METHOD_FIELDS


def test_docs_list_each_methods_own_settings_with_their_defaults(tmp_path) -> None:
    documented = documented_settings()
    assert set(documented) == set(REGISTRY)
    for name, spec in REGISTRY.items():
        assert tuple(documented[name]) == spec.fields, name
        defaults = _args(tmp_path, method=name)
        for field, default in documented[name].items():
            value = getattr(defaults, field)
            documented_value = float(default) if isinstance(value, float) else default
            assert documented_value == (value if isinstance(value, float) else str(value)), (name, field)


def test_a_trainer_refuses_another_methods_arguments(tmp_path) -> None:
    from hf_unlearn.trainers import SalUnTrainer

    model, items = make_model(seed=0), make_dataset(8, seed=0)
    with pytest.raises(ValueError, match=r"args.method is 'random_label' but this is the 'salun' trainer"):
        SalUnTrainer(model=model, args=_args(tmp_path, method="random_label"), retain_dataset=items)

    class Unregistered(UnlearnTrainer):
        pass

    with pytest.raises(ValueError, match="Unregistered is no registered method's trainer; register it"):
        Unregistered(model=model, args=_args(tmp_path, method="finetune"), retain_dataset=items)


def test_unknown_method_suggests_the_closest_name(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"Unknown method 'neggrd'\. Did you mean 'neggrad'"):
        _args(tmp_path, method="neggrd")


# ---------------------------------------------------------------------------------- arguments per method
@pytest.mark.parametrize(
    ("method", "key", "value", "message"),
    [
        ("finetune", "kd_T", 3.0, "kd_T is not a setting of finetune (only scrub reads it); remove it."),
        ("finetune", "alpha", 0.9, "alpha is not a setting of finetune (only neggrad and sharp_minmax read it)"),
        ("neggrad", "mask_ratio", 0.5, "mask_ratio is not a setting of neggrad (only salun and sharp_minmax read"),
        (
            "scrub",
            "official",
            True,
            "official is not a setting of scrub (only random_label, salun and sharp_minmax read",
        ),
        ("retrain", "l1_weight", 1e-4, "l1_weight is not a setting of retrain (only l1_sparse reads it)"),
    ],
)
def test_a_setting_the_method_does_not_read_is_refused_with_the_recipes_message(
    tmp_path, method, key, value, message
) -> None:
    with pytest.raises(ValueError) as python_api:
        _args(tmp_path, method=method, **{key: value})
    assert str(python_api.value).startswith(message)
    assert str(python_api.value) == unused_field_message(key, [method])
    # The method's own config refuses it the same way (not with a bare "unexpected keyword argument").
    config = REGISTRY[method].config
    with pytest.raises(ValueError) as direct:
        config(output_dir=str(tmp_path), **{key: value})
    assert str(direct.value) == str(python_api.value)
    # A recipe run of that method: the same message, after where the key is.
    with pytest.raises(RecipeError) as recipe:
        load_recipe("digits", [f"unlearn.runs=[{{name: run, method: {method}, {key}: {value}}}]"])
    assert str(recipe.value) == f"unlearn.runs[0].{key}: {python_api.value}"


def test_pretrain_and_retrain_sections_refuse_method_settings() -> None:
    with pytest.raises(RecipeError, match=r"^pretrain\.alpha: alpha is not a setting of pretrain"):
        load_recipe("digits", ["pretrain.alpha=0.9"])
    with pytest.raises(RecipeError, match=r"^retrain\.kd_T: kd_T is not a setting of retrain"):
        load_recipe("digits", ["retrain.kd_T=2.0"])


def test_a_config_refuses_another_methods_name(tmp_path) -> None:
    with pytest.raises(ValueError, match="does not match FinetuneConfig"):
        FinetuneConfig(output_dir=str(tmp_path), method="scrub")


def test_a_config_is_built_directly_or_by_method_name(tmp_path) -> None:
    direct = ScrubConfig(output_dir=str(tmp_path), kd_T=2.0, use_cpu=True, report_to="none")
    by_name = _args(tmp_path, method="scrub", kd_T=2.0)
    assert type(direct) is type(by_name) is ScrubConfig and direct.method == "scrub"
    assert direct.to_dict() == by_name.to_dict()
    assert direct.kd_T == 2.0 and direct.msteps == 2  # SCRUB's defaults for the rest


def test_defaults_reach_only_the_runs_whose_method_reads_them() -> None:
    # unlearn.defaults.alpha: NegGrad reads it (where the run does not set its own), Finetune never sees it.
    recipe = load_recipe(
        "digits", ["unlearn.runs=[{method: finetune}, {method: neggrad}]", "unlearn.defaults.alpha=0.9"]
    )
    defaults = recipe["unlearn"]["defaults"]
    finetune = training_arguments(defaults, method="finetune", output_dir="out", use_cpu=True)
    neggrad = training_arguments(defaults, method="neggrad", output_dir="out", use_cpu=True)
    assert type(finetune) is FinetuneConfig and not hasattr(finetune, "alpha")
    assert type(neggrad) is NegGradConfig and neggrad.alpha == 0.9
    # A default that no run reads is refused, naming the runs' methods.
    with pytest.raises(RecipeError) as error:
        load_recipe("digits", ["unlearn.runs=[{method: finetune}, {method: neggrad}]", "unlearn.defaults.kd_T=3"])
    assert str(error.value) == (
        "unlearn.defaults.kd_T: kd_T is not a setting of finetune or neggrad (only scrub reads it); remove it."
    )


def test_fingerprints_cover_the_methods_own_settings_only(tmp_path) -> None:
    from hf_unlearn.steps.plan import fingerprint, stage_plans

    def fingerprints(*overrides: str) -> dict[str, str]:
        runs = "unlearn.runs=[{method: finetune}, {method: scrub}, {method: neggrad, sharpness: sam}]"
        recipe = load_recipe("digits", [runs, *overrides])
        return {plan.stage: fingerprint(recipe, plan, "0" * 64) for plan in stage_plans(recipe)}

    base = fingerprints("unlearn.defaults.kd_T=4.0", "unlearn.defaults.rho=0.1")
    kd_t = fingerprints("unlearn.defaults.kd_T=2.0", "unlearn.defaults.rho=0.1")
    rho = fingerprints("unlearn.defaults.kd_T=4.0", "unlearn.defaults.rho=0.2")
    assert kd_t["finetune"] == base["finetune"] and kd_t["neggrad_sam"] == base["neggrad_sam"]
    assert kd_t["scrub"] != base["scrub"]  # SCRUB reads kd_T
    # rho changes nothing without SAM: only the SAM run is redone.
    assert rho["finetune"] == base["finetune"] and rho["scrub"] == base["scrub"]
    assert rho["neggrad_sam"] != base["neggrad_sam"]


# ------------------------------------------------------------------------------------------------ records
def test_records_hold_the_methods_own_hyperparameters(tmp_path) -> None:
    shared = {
        "sharpness",
        "learning_rate",
        "num_train_epochs",
        "per_device_train_batch_size",
        "optim",
        "optim_args",
        "lr_scheduler_type",
        "weight_decay",
        "seed",
    }
    for name in METHOD_CHOICES:
        plain = _args(tmp_path, method=name).hyperparameters()
        assert set(plain) == shared | set(REGISTRY[name].fields), name
        sam = _args(tmp_path, method=name, sharpness="sam", rho=0.05).hyperparameters()
        assert set(sam) == set(plain) | {"rho", "sam_lambda", "sam_every"} and sam["rho"] == 0.05
    minmax = _args(tmp_path, method="sharp_minmax", alpha=0.97, official=True).hyperparameters()
    assert type(_args(tmp_path, method="sharp_minmax")) is SharpMinMaxConfig
    assert minmax["alpha"] == 0.97 and minmax["official"] is True and "kd_T" not in minmax
    # random_label reads official (random labels uniform over all classes): it is recorded.
    assert type(_args(tmp_path, method="random_label")) is RandomLabelConfig
    assert _args(tmp_path, method="random_label", official=True).hyperparameters()["official"] is True


def test_cards_of_old_reports_keep_the_methods_own_hyperparameters() -> None:
    # A report written before configs per method recorded every method's fields; its card shows the method's only.
    recorded = {"sharpness": "none", "rho": 0.1, "alpha": 0.97, "kd_T": 4.0, "mask_ratio": 0.5, "learning_rate": 0.01}
    assert own_settings("neggrad", recorded) == {"sharpness": "none", "alpha": 0.97, "learning_rate": 0.01}
    assert own_settings("neggrad", recorded, "sam") == {
        "sharpness": "none",
        "rho": 0.1,
        "alpha": 0.97,
        "learning_rate": 0.01,
    }
    assert json.dumps(own_settings("scrub", recorded)) == json.dumps(
        {"sharpness": "none", "kd_T": 4.0, "learning_rate": 0.01}
    )
