"""Recipe keys that cannot work are refused before anything runs: exit 2, one line naming the key and the reason."""

from __future__ import annotations

import pytest

from hf_unlearn.cli import main
from hf_unlearn.recipe import load_recipe


def _refused(capsys, *overrides: str) -> str:
    args = ["run", "digits", "--cpu", "--output-dir", "/nonexistent/never-written"]
    for override in overrides:
        args += ["--set", override]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hf-unlearn: error: ") and "\n" not in err
    return err


@pytest.mark.parametrize(
    ("override", "key", "reason"),
    [
        ("pretrain.push_to_hub=true", "pretrain.push_to_hub", "hf-unlearn push"),
        ("unlearn.defaults.hub_model_id=me/x", "unlearn.defaults.hub_model_id", "hub: section"),
        ("unlearn.runs.0.hub_strategy=end", "unlearn.runs[0].hub_strategy", "hf-unlearn push"),
        ("retrain.push_to_hub=true", "retrain.push_to_hub", "hf-unlearn push"),
        ("pretrain.load_best_model_at_end=true", "pretrain.load_best_model_at_end", "whole budget"),
        ("pretrain.resume_from_checkpoint=true", "pretrain.resume_from_checkpoint", "resumes an interrupted stage"),
        ("unlearn.defaults.label_smoothing_factor=0.1", "unlearn.defaults.label_smoothing_factor", "losses itself"),
    ],
)
def test_training_sections_refuse_keys_that_cannot_work(capsys, override, key, reason):
    err = _refused(capsys, override)
    assert key in err and reason in err


def test_retrain_epochs_zero_explains_both_options(capsys):
    err = _refused(capsys, "retrain.epochs=0")
    assert "retrain.epochs" in err and "retrain: false" in err and "retrain: {from:" in err


def test_given_reference_takes_no_training_settings(capsys):
    err = _refused(capsys, "retrain={from: some/model, epochs: 3}")
    assert "retrain.epochs" in err and "not trained" in err


def test_reference_forms_validate():
    assert load_recipe("digits", ["retrain=false"])["retrain"] is False
    assert load_recipe("digits", ["retrain={from: me/retrained}"])["retrain"] == {"from": "me/retrained"}
    assert load_recipe("digits", ["retrain=true"])["retrain"] == {}
    assert load_recipe("digits", ["retrain=false", "retrain.epochs=3"])["retrain"] == {"epochs": 3}


def test_unknown_training_key_suggests_the_close_match_and_names_only_relevant_keys(capsys):
    err = _refused(capsys, "unlearn.defaults.learning_rat=0.1")
    assert "unlearn.defaults.learning_rat" in err and "Did you mean 'learning_rate'" in err
    err = _refused(capsys, "unlearn.defaults.qqqqq=1")
    assert "unlearn.defaults.qqqqq" in err and "mask_ratio" in err
    assert "neftune_noise_alpha" not in err and "use_cache" not in err
    assert err.count(",") < 45


def test_report_to_a_tracker_that_is_not_installed_is_refused(capsys, monkeypatch):
    import transformers.integrations

    monkeypatch.setattr(transformers.integrations, "get_available_reporting_integrations", lambda: [])
    err = _refused(capsys, "unlearn.defaults.report_to=tensorboard")
    assert "unlearn.defaults.report_to" in err and "tensorboard, which is not installed" in err


def test_report_to_and_log_level_are_the_recipes(tmp_path):
    from hf_unlearn.steps.plan import arguments_for, fingerprint, unlearn_plan

    recipe = load_recipe("digits")

    def plan(**settings):
        return unlearn_plan(recipe, {"method": "neggrad", **settings})

    args = arguments_for(plan(report_to="tensorboard", log_level="info"), output_dir=tmp_path, use_cpu=True, seed=0)
    assert args.report_to == ["tensorboard"] and args.log_level == "info"
    quiet = arguments_for(plan(), output_dir=tmp_path, use_cpu=True, seed=0)
    assert quiet.report_to == [] or quiet.report_to == ["none"]
    assert quiet.log_level == "warning"
    # Tracking settings do not change what is trained: the stage's fingerprint stays; a training setting does not.
    assert fingerprint(recipe, plan(alpha=0.9)) == fingerprint(recipe, plan(alpha=0.9, report_to="wandb"))
    assert fingerprint(recipe, plan(alpha=0.9)) != fingerprint(recipe, plan(alpha=0.8))


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ("unlearn.defaults.neftune_noise_alpha=5", "language models only"),
        ("pretrain.use_cpu=true", "--cpu"),
        ("unlearn.runs.0.prediction_loss_only=true", "eval_dataset dict"),
    ],
)
def test_keys_that_would_be_ignored_are_refused_with_the_reason(capsys, override, reason):
    err = _refused(capsys, override)
    assert override.split("=")[0].replace("runs.0", "runs[0]") in err and reason in err
