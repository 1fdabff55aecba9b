"""Tracking as transformers users expect: the Trainer's own evaluation (an eval_dataset dict, accuracy and loss) that
never changes what is trained, event files under the run's logs/<stage>/ read back from real TensorBoard files, one
named run per stage, the final accuracies / MIA / ToW logged and saved per stage, and best checkpoints and early
stopping in unlearning runs, on a validation split only."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_RECIPE, TinyClassifier, make_dataset, make_model, run_cli, tiny_recipe
from torch import nn

from hf_unlearn import get_trainer_class, tracking
from hf_unlearn.errors import RecipeError, ValidationError
from hf_unlearn.monitoring import check_monitoring
from hf_unlearn.recipe import load_recipe
from hf_unlearn.steps.plan import arguments_for, fingerprint, original_plan, stage_plans, unlearn_plan


class DropoutClassifier(TinyClassifier):
    """TinyClassifier with BatchNorm and dropout: training draws from torch's global generator (dropout) and moves
    BatchNorm statistics, the two things an evaluation inside training must leave alone."""

    def __init__(self) -> None:
        super().__init__(batchnorm=True)
        self.drop = nn.Dropout(0.5)
        self.config = None  # a bare module (TensorBoard's callback records a transformers config as JSON)

    def forward(self, pixel_values, labels=None):
        out = super().forward(pixel_values)
        out.logits = self.drop(out.logits)
        return out


def _trainer(args_factory, *, evaluate: bool, **overrides):
    torch.manual_seed(0)
    model = DropoutClassifier()
    retain, forget = make_dataset(16, seed=1), make_dataset(8, seed=2)
    settings = dict(
        method="neggrad",
        max_steps=-1,
        num_train_epochs=3,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=4,
        logging_strategy="epoch",
    )
    settings.update(overrides)
    if evaluate:
        settings["eval_strategy"] = "epoch"
    args = args_factory(**settings)
    evaluated = {"retain": retain, "forget": forget} if evaluate else None
    trainer = get_trainer_class("neggrad")(
        model=model, args=args, retain_dataset=retain, forget_dataset=forget, eval_dataset=evaluated
    )
    return trainer, retain, forget


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_evaluation_inside_training_changes_no_weight_or_batchnorm_statistic(args_factory, monkeypatch):
    plain, _, _ = _trainer(args_factory, evaluate=False)
    plain.train()
    evaluated, _, _ = _trainer(args_factory, evaluate=True)
    evaluated.train()
    assert any("eval_forget_accuracy" in entry for entry in evaluated.state.log_history)
    expected, got = _state(plain.model), _state(evaluated.model)
    assert all(torch.equal(expected[k], got[k]) for k in expected)  # weights and BatchNorm running statistics
    # Without the fork, the eval DataLoader's seed draw shifts dropout's masks and the weights differ: the check bites.
    import contextlib

    from hf_unlearn.trainers import eval_loop

    monkeypatch.setattr(eval_loop.torch.random, "fork_rng", lambda **kwargs: contextlib.nullcontext())
    unforked, _, _ = _trainer(args_factory, evaluate=True)
    unforked.train()
    assert any(not torch.equal(expected[k], v) for k, v in _state(unforked.model).items())


def test_eval_metrics_are_each_sets_accuracy_and_loss_on_the_current_weights(args_factory):
    trainer, retain, forget = _trainer(args_factory, evaluate=True)
    trainer.train()
    model = trainer.model.eval()
    last = {}
    for entry in trainer.state.log_history:
        last.update({k: v for k, v in entry.items() if k.startswith("eval_")})
    with torch.no_grad():
        for name, data in (("retain", retain), ("forget", forget)):
            x, y = data.subset(list(range(len(data))))
            logits = model(pixel_values=x).logits
            assert last[f"eval_{name}_accuracy"] == pytest.approx((logits.argmax(-1) == y).float().mean().item())
            assert last[f"eval_{name}_loss"] == pytest.approx(F.cross_entropy(logits, y).item(), abs=1e-5)
    assert not any(k.startswith("eval_test") for k in last)


def test_a_stage_run_writes_its_events_and_results_where_asked_and_ends_after_the_final_numbers(args_factory, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from transformers.integrations import TensorBoardCallback

    trainer, _, _ = _trainer(args_factory, evaluate=True, report_to="tensorboard", run_name="tiny/seed-0/neggrad")
    folder = tmp_path / "logs" / "neggrad"
    tracking.start(trainer, folder, fresh=True)
    trainer.train()
    (board,) = [c for c in trainer.callback_handler.callbacks if isinstance(c, TensorBoardCallback)]
    assert board.tb_writer is not None  # its run has not ended: the final numbers are still to come
    final = tracking.final_metrics({"accuracy": {"forget": 0.25, "test": None}, "mia": {"confidence": 0.5}}, tow=0.75)
    assert final == {"final_forget_accuracy": 0.25, "final_mia_confidence": 0.5, "final_tow": 0.75}
    tracking.finish(trainer, folder, final)
    assert board.tb_writer is None  # ended once, after them
    results = json.loads((folder / "all_results.json").read_text())
    assert results["final_tow"] == 0.75 and "train_runtime" in results
    assert json.loads((folder / "final_results.json").read_text()) == final
    events = EventAccumulator(str(folder))
    events.Reload()
    step = trainer.state.global_step
    assert [(e.step, e.value) for e in events.Scalars("train/final_tow")] == [(step, 0.75)]
    assert [e.step for e in events.Scalars("eval/forget_accuracy")] == [4, 8, 12]
    assert not any(p.name == "runs" for p in Path(trainer.args.output_dir).glob("*"))


# ------------------------------------------------------------------------------------------- recipe rules
def test_reference_sections_refuse_checkpoint_choice_and_early_stopping():
    for key in ("pretrain.load_best_model_at_end=true", "retrain.early_stopping_patience=2"):
        with pytest.raises(RecipeError, match="whole budget"):
            load_recipe("digits", ["seeds=null", key])


def test_unlearning_runs_take_best_checkpoints_and_early_stopping_with_checked_values(tmp_path):
    recipe = load_recipe(
        "digits",
        [
            "seeds=null",
            "unlearn.defaults.eval_strategy=epoch",  # explicit: this test must not depend on the recipe default
            "unlearn.defaults.early_stopping_patience=2",
            "unlearn.runs.neggrad.load_best_model_at_end=true",
            "unlearn.runs.neggrad.metric_for_best_model=validation_accuracy",
        ],
    )
    plans = {plan.stage: plan for plan in stage_plans(recipe)}
    neggrad = plans["neggrad"]
    assert neggrad.early_stopping == {"patience": 2, "threshold": 0.0}
    assert "early_stopping_patience" not in neggrad.settings  # a callback argument, not a training argument
    args = arguments_for(neggrad, output_dir=tmp_path, use_cpu=True, seed=0)
    assert args.load_best_model_at_end and args.eval_strategy == "epoch" and args.greater_is_better
    finetune = arguments_for(plans["finetune"], output_dir=tmp_path, use_cpu=True, seed=0)
    assert finetune.metric_for_best_model == "validation_loss" and finetune.greater_is_better is False
    with pytest.raises(ValidationError, match=r"data\.validation_size"):
        check_monitoring(list(plans.values()), validation=None)
    check_monitoring(list(plans.values()), validation=make_dataset(4, seed=0))
    for override, message in [
        ("unlearn.runs.0.early_stopping_patience=0", r"unlearn.runs\[0\].early_stopping_patience: expected a whole"),
        ("unlearn.runs.0.early_stopping_threshold=0.1", "needs early_stopping_patience"),
    ]:
        with pytest.raises(ValidationError, match=message):
            stage_plans(load_recipe("digits", ["seeds=null", override]))
    wrong = load_recipe("digits", ["seeds=null", "unlearn.runs.0.load_best_model_at_end=true"])
    wrong["unlearn"]["runs"][0]["metric_for_best_model"] = "test_accuracy"
    with pytest.raises(ValidationError, match="never evaluated while a stage trains"):
        check_monitoring(stage_plans(wrong), validation=make_dataset(4, seed=0))


def test_the_original_is_evaluated_on_a_validation_split_only():
    recipe = load_recipe("digits", ["seeds=null", "pretrain.eval_strategy=epoch"])
    with pytest.raises(ValidationError, match=r"pretrain.eval_strategy: the original is evaluated on the validation"):
        check_monitoring([original_plan(recipe)], validation=None)


def test_the_evaluation_schedule_changes_a_fingerprint_only_when_it_decides():
    recipe = load_recipe("digits", ["seeds=null"])

    def key(**settings):
        return fingerprint(recipe, unlearn_plan(recipe, {"method": "neggrad", **settings}))

    assert key() == key(eval_strategy="steps", eval_steps=3) == key(report_to="tensorboard", run_name="x")
    assert key(load_best_model_at_end=True) != key(load_best_model_at_end=True, eval_strategy="steps", eval_steps=3)
    assert key(early_stopping_patience=2) not in (key(), key(early_stopping_patience=3))


def test_resuming_keeps_the_best_checkpoint_the_end_of_training_loads(tmp_path):
    from hf_unlearn.checkpoints import MARKER, StageCheckpoints

    folder = tmp_path / "checkpoints" / "neggrad"
    checkpoints = StageCheckpoints(folder, "neggrad", "key")
    for step in (2, 3, 4):
        path = folder / f"checkpoint-{step}"
        path.mkdir(parents=True)
        for name in ("model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth"):
            (path / name).write_text("x")
        if step != 3:  # checkpoint-3 is incomplete (killed while saving)
            state = {"global_step": step, "best_model_checkpoint": str(folder / "checkpoint-2")}
            (path / "trainer_state.json").write_text(json.dumps(state))
    (folder / MARKER).write_text(json.dumps({"stage": "neggrad", "fingerprint": "key"}))
    assert checkpoints.prepare() == folder / "checkpoint-4"
    assert sorted(p.name for p in folder.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]


# ------------------------------------------------------------------------------------------ end to end
def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def _run_name(folder: Path) -> str:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    args = events.Tensors("args/text_summary")[0].tensor_proto.string_val[0].decode()
    return json.loads(args)["run_name"]


@pytest.mark.slow
def test_tensorboard_runs_per_stage_hold_the_reports_numbers_and_leave_the_weights_alone(baseline, tmp_path):
    tracked = {f"{section}.report_to": "tensorboard" for section in ("pretrain", "retrain", "unlearn.defaults")}
    out = tmp_path / "out"
    assert run_cli(tmp_path, tiny_recipe(**tracked), out) == 0
    assert not (out / "checkpoints").exists()
    report = json.loads((out / "report.json").read_text())
    for stage in ("original", "retrain", "neggrad_sam"):
        # Tracking never changes what is trained: the same weights as the untracked baseline.
        assert _sha(out / "models" / stage / "model.safetensors") == _sha(
            baseline / "models" / stage / "model.safetensors"
        )
        logs = out / "logs" / stage
        assert _run_name(logs) == f"tiny/seed-0/{stage}"
        scalars, entry = _scalars(logs), report["models"][stage]
        for split in ("retain", "forget", "test"):
            ((_, value),) = scalars[f"train/final_{split}_accuracy"]
            assert value == pytest.approx(entry["accuracy"][split], abs=1e-6)
        assert scalars["train/final_mia_confidence"][0][1] == pytest.approx(entry["mia"]["confidence"], abs=1e-6)
        if entry["tow"] is not None:
            assert scalars["train/final_tow"][0][1] == pytest.approx(entry["tow"], abs=1e-6)
        results = json.loads((logs / "all_results.json").read_text())
        assert (
            results["final_forget_accuracy"] == pytest.approx(entry["accuracy"]["forget"])
            and "train_runtime" in results
        )
    neggrad = _scalars(out / "logs" / "neggrad_sam")
    steps = TINY_RECIPE["unlearn"]["defaults"]["epochs"]
    for split in ("retain", "forget"):
        assert [s for s, _ in neggrad[f"eval/{split}_accuracy"]] == [4 * (e + 1) for e in range(steps)]
        assert f"eval/{split}_loss" in neggrad
    # The last epoch's evaluation is the final model's: the report's accuracies.
    assert neggrad["eval/forget_accuracy"][-1][1] == pytest.approx(
        report["models"]["neggrad_sam"]["accuracy"]["forget"]
    )
    assert not any(tag.startswith("eval/test") for tag in neggrad)
    assert report["models"]["neggrad_sam"]["tow"] == pytest.approx(neggrad["train/final_tow"][0][1])


@pytest.mark.slow
def test_an_unlearning_run_keeps_its_best_checkpoint_and_stops_early_on_validation(tmp_path):
    import numpy as np

    from hf_unlearn.metrics import predict_probabilities
    from hf_unlearn.models import load_saved_model
    from hf_unlearn.pipeline import Pipeline
    from hf_unlearn.recipe import validate

    # NegGrad at alpha 0.5 pushes the validation loss up after its first epoch: the best checkpoint is an early one.
    run = {"method": "neggrad", "alpha": 0.5, "learning_rate": 0.05, "epochs": 6, "early_stopping_patience": 1}
    run.update(load_best_model_at_end=True, metric_for_best_model="validation_loss")
    recipe = tiny_recipe(**{"data.validation_size": 0.1, "unlearn.runs": [run]})
    out = tmp_path / "out"
    assert run_cli(tmp_path, recipe, out) == 0
    stage = json.loads((out / "models" / "neggrad" / "stage.json").read_text())
    selection = stage["selection"]
    assert selection["metric"] == "validation_loss" and selection["greater_is_better"] is False
    losses = [e["eval_validation_loss"] for e in stage["log_history"] if "eval_validation_loss" in e]
    assert selection["best_metric"] == min(losses) != losses[-1]
    # Patience 1: it stopped at the first evaluation without a lower validation loss, before its budget.
    assert losses.index(min(losses)) == len(losses) - 2
    assert selection["best_step"] < selection["stopped_at_step"] < selection["budget_steps"]
    # The saved model is the best checkpoint's, not the last epoch's: it has the best validation loss.
    splits = Pipeline(validate(recipe), tmp_path / "scratch").prepare_data()
    model = load_saved_model(str(out / "models" / "neggrad"))
    probs, labels = predict_probabilities(model, splits.prepared.validation)
    loss = float(-np.log(probs[np.arange(len(labels)), labels]).mean())
    assert loss == pytest.approx(selection["best_metric"], rel=1e-4)
    assert not (out / "checkpoints").exists()


def test_a_best_checkpoint_without_a_validation_split_is_refused_before_training(tmp_path, capsys):
    recipe = tiny_recipe(**{"unlearn.runs.0.load_best_model_at_end": True})
    assert run_cli(tmp_path, recipe, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "unlearn.runs[0].load_best_model_at_end" in err and "data.validation_size" in err
    assert not (tmp_path / "out" / "models").exists()


def test_the_python_api_evaluates_only_when_asked_with_accuracy_by_default(args_factory):
    from hf_unlearn.trainers.eval_loop import accuracy_metrics, predicted_classes

    trainer = get_trainer_class("finetune")(
        model=make_model(seed=0), args=args_factory(method="finetune"), retain_dataset=make_dataset(8, seed=1)
    )
    assert trainer.args.eval_strategy == "no"  # transformers' default
    assert trainer.compute_metrics is accuracy_metrics and trainer.preprocess_logits_for_metrics is predicted_classes
