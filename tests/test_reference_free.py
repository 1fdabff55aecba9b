"""The reference-free objective (hf_unlearn.metrics.reference_free) on worked examples, the early stop that uses it
(`early_stop` on unlearning runs, hf_unlearn.callbacks.StopWhenForgotten) and the validation split it reads, carved
from retain samples only (hf_unlearn.data.prepare)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from conftest import make_dataset, make_model, tiny_recipe

from hf_unlearn.errors import ValidationError
from hf_unlearn.forgetting import early_stop_settings
from hf_unlearn.metrics.reference_free import (
    ForgetTarget,
    difficulty_quantiles,
    forget_target,
    forgotten,
    reference_free_score,
    tolerance,
)

# ------------------------------------------------------------------------------------------- worked example
# Training difficulty (true-class confidence; low = hard): six retain samples and two forget samples, the hardest
# two of the eight. Held-out: the original's confidence and correctness on eight validation samples.
RETAIN_SCORES = np.array([0.95, 0.9, 0.99, 0.8, 0.97, 0.6])
FORGET_SCORES = np.array([0.5, 0.7])
HELD_CONFIDENCE = np.array([0.9, 0.2, 0.99, 0.6, 0.95, 0.4, 0.85, 0.97])
HELD_CORRECT = np.array([1, 0, 1, 1, 1, 0, 1, 1], dtype=bool)


def worked_target(forget_labels=(1, 2)) -> ForgetTarget:
    return forget_target(
        forget_scores=FORGET_SCORES,
        retain_scores=RETAIN_SCORES,
        heldout_confidence=HELD_CONFIDENCE,
        heldout_correct=HELD_CORRECT,
        forget_labels=np.array(forget_labels),
        retain_labels=np.array([0, 1, 2, 1, 2, 0]),
        original_retain=1.0,
        original_validation=0.75,
    )


def test_worked_example_target() -> None:
    # Sorted training scores: 0.5 0.6 0.7 0.8 0.9 0.95 0.97 0.99. Mid-rank quantiles of the forget samples:
    # 0.5 -> (0 + 1) / 16, 0.7 -> (2 + 3) / 16.
    assert difficulty_quantiles(FORGET_SCORES, RETAIN_SCORES).tolist() == [1 / 16, 5 / 16]
    # Held-out by confidence: 0.2 (wrong), 0.4 (wrong), 0.6 (right), 0.85, 0.9, 0.95, 0.97, 0.99 (right).
    # floor(1/16 * 8) = 0 -> the 0.2 sample (wrong); floor(5/16 * 8) = 2 -> the 0.6 sample (right).
    target = worked_target()
    assert target.forget == pytest.approx(0.4)  # their mean confidence (0.2 + 0.6) / 2: far below held-out's 0.75
    assert target.matched_accuracy == pytest.approx(0.5)  # (0 + 1) / 2, recorded
    assert (target.retain, target.validation, target.forget_size) == (1.0, 0.75, 2)


def test_worked_example_scores() -> None:
    target = worked_target()
    # A model at the target on every count scores 1.
    at_target = {"forget": 0.4, "forget_confidence": 0.4, "retain": 1.0, "validation": 0.75}
    assert reference_free_score(at_target, target) == pytest.approx(1.0)
    # The original itself: forget 1.0, confidence 0.9; a 0.02 drop in retain; a gain in validation is not penalised:
    # (1 - 0.6) * (1 - 0.5) * (1 - 0.02) * 1 = 0.196.
    original = {"forget": 1.0, "forget_confidence": 0.9, "retain": 0.98, "validation": 0.8}
    assert reference_free_score(original, target) == pytest.approx(0.196)
    # Over-forgetting costs as much as under-forgetting: forget 0.0 and confidence 0.0 -> 0.6 * 0.6 = 0.36.
    assert reference_free_score({"forget": 0.0, "forget_confidence": 0.0}, target) == pytest.approx(0.36)
    # Early stopping measures no retain accuracy: its factor is left out. 0.9 * 1 * (1 - 0.05) = 0.855.
    assert reference_free_score({"forget": 0.5, "forget_confidence": 0.4, "validation": 0.7}, target) == pytest.approx(
        0.855
    )


def test_a_class_with_no_retain_sample_has_target_zero() -> None:
    # The second forget sample is of class 3, which retain no longer holds: a retrained model never predicts it.
    target = worked_target(forget_labels=(1, 3))
    assert target.forget == pytest.approx(0.1)  # (0.2 + 0) / 2
    assert target.matched_accuracy == pytest.approx(0.0)  # the first matched sample was wrong anyway


def test_a_random_forget_set_targets_the_held_out_accuracy() -> None:
    rng = np.random.default_rng(0)
    scores = rng.uniform(size=2000)
    forget = rng.choice(2000, 200, replace=False)
    retain = np.setdiff1d(np.arange(2000), forget)
    held = rng.uniform(0.5, 1.0, size=1000)
    correct = rng.uniform(size=1000) < held  # a calibrated original: right as often as it is confident
    target = forget_target(
        forget_scores=scores[forget],
        retain_scores=scores[retain],
        heldout_confidence=held,
        heldout_correct=correct,
        forget_labels=np.zeros(200),
        retain_labels=np.zeros(1800),
        original_retain=1.0,
        original_validation=float(correct.mean()),
    )
    assert target.forget == pytest.approx(correct.mean(), abs=0.04)
    # ... while the hardest 10% of the training samples match the least confident 10% of held-out.
    hardest = np.argsort(scores)[:200]
    rest = np.argsort(scores)[200:]
    hard = forget_target(
        forget_scores=scores[hardest],
        retain_scores=scores[rest],
        heldout_confidence=held,
        heldout_correct=correct,
        forget_labels=np.zeros(200),
        retain_labels=np.zeros(1800),
        original_retain=1.0,
        original_validation=float(correct.mean()),
    )
    assert hard.forget == pytest.approx(np.sort(held)[:100].mean(), abs=0.01) and hard.forget < 0.6
    assert hard.matched_accuracy == pytest.approx(correct[np.argsort(held)[:100]].mean(), abs=0.01)


def test_forgotten_within_one_standard_error() -> None:
    target = ForgetTarget(forget=0.8, matched_accuracy=0.7, retain=1.0, validation=0.9, forget_size=100)
    assert tolerance(target) == pytest.approx(math.sqrt(0.8 * 0.2 / 100))  # 0.04
    assert forgotten({"forget": 0.83}, target) and forgotten({"forget": 0.5}, target)
    assert not forgotten({"forget": 0.85}, target)


# ------------------------------------------------------------------------------------------- early stop
def test_early_stop_settings_normalise_and_refuse() -> None:
    assert early_stop_settings(True) == {"every": "epoch", "patience": 0}
    assert early_stop_settings(None) is None and early_stop_settings(False) is None
    assert early_stop_settings({"every": 5, "patience": 2}) == {"every": 5, "patience": 2}
    for bad, message in (
        ({"every": 0}, "every: expected 'epoch' or a number of steps"),
        ({"every": "step"}, "every: expected"),
        ({"patience": -1}, "patience: expected"),
        ({"patiense": 1}, "patiense: unknown key"),
        ("yes", "expected true, false or a mapping"),
    ):
        with pytest.raises(ValidationError, match=message):
            early_stop_settings(bad)


def test_recipe_refuses_a_bad_early_stop() -> None:
    from hf_unlearn.recipe import validate

    with pytest.raises(ValidationError, match=r"unlearn\.runs\[0\]\.early_stop\.every"):
        validate(tiny_recipe(**{"unlearn.runs.0.early_stop": {"every": 0}}))
    recipe = validate(tiny_recipe(**{"unlearn.runs.0.early_stop": True}))
    from hf_unlearn.steps.plan import unlearn_plan

    plan = unlearn_plan(recipe, recipe["unlearn"]["runs"][0], 0)
    assert plan.early_stop == {"every": "epoch", "patience": 0} and "early_stop" not in plan.settings


def stopping_trainer(tmp_path: Path, target_forget: float, every="epoch", epochs: int = 3):
    """A NegGrad trainer on tiny tensors (2 steps per epoch) with the early-stop callback and a chosen target."""
    from hf_unlearn.args import UnlearnArguments
    from hf_unlearn.callbacks import StopWhenForgotten
    from hf_unlearn.trainers import get_trainer_class

    retain, forget, validation = make_dataset(16, seed=1), make_dataset(8, seed=2), make_dataset(8, seed=3)
    target = ForgetTarget(forget=target_forget, matched_accuracy=0.3, retain=1.0, validation=0.5, forget_size=8)
    stop = StopWhenForgotten(
        target, forget=forget, validation=validation, settings={"every": every, "patience": 0}, batch_size=8
    )
    args = UnlearnArguments(
        output_dir=str(tmp_path),
        method="neggrad",
        use_cpu=True,
        report_to="none",
        disable_tqdm=True,
        save_strategy="no",
        logging_strategy="no",
        num_train_epochs=epochs,
        per_device_train_batch_size=8,
    )
    trainer = get_trainer_class("neggrad")(
        model=make_model(), args=args, retain_dataset=retain, forget_dataset=forget, callbacks=[stop]
    )
    return trainer, stop


def test_early_stop_stops_when_the_target_is_reached(tmp_path) -> None:
    trainer, stop = stopping_trainer(tmp_path, target_forget=1.0)  # any forget accuracy is at or below 1
    trainer.train()
    record = stop.record(trainer.state.max_steps)
    assert record["stopped"] and record["reason"] == "forgotten"
    assert (record["epoch"], record["step"], record["budget_steps"]) == (1.0, 2, 6)
    assert trainer.state.global_step == 2 and len(record["checks"]) == 1
    check = record["checks"][0]
    assert set(check) == {"step", "epoch", "forget", "forget_confidence", "validation", "score"}


def test_early_stop_every_n_steps(tmp_path) -> None:
    trainer, stop = stopping_trainer(tmp_path, target_forget=1.0, every=3)
    trainer.train()
    assert stop.record()["step"] == 3 and trainer.state.global_step == 3


def test_early_stop_trains_the_whole_budget_when_not_reached(tmp_path) -> None:
    trainer, stop = stopping_trainer(tmp_path, target_forget=-1.0)  # unreachable
    trainer.train()
    record = stop.record(trainer.state.max_steps)
    assert not record["stopped"] and record["reason"] is None
    assert trainer.state.global_step == 6 and [c["epoch"] for c in record["checks"]] == [1.0, 2.0, 3.0]


def test_patience_stops_after_checks_without_a_better_score(monkeypatch) -> None:
    from types import SimpleNamespace

    import hf_unlearn.forgetting as forgetting
    import hf_unlearn.metrics.reference_free as reference_free
    from hf_unlearn.callbacks import StopWhenForgotten

    target = ForgetTarget(forget=0.0, matched_accuracy=0.0, retain=1.0, validation=1.0, forget_size=4)
    stop = StopWhenForgotten(target, forget=None, validation=None, settings={"every": "epoch", "patience": 2})
    scores = iter([0.5, 0.7, 0.6, 0.7, 0.9])  # best 0.7 at check 2; checks 3 and 4 are no better
    monkeypatch.setattr(forgetting, "measure", lambda *args, **kwargs: {"forget": 0.5})  # never at target 0
    monkeypatch.setattr(reference_free, "reference_free_score", lambda measured, target: next(scores))
    control = SimpleNamespace(should_training_stop=False)
    epoch = 0
    while not control.should_training_stop:
        epoch += 1
        stop.on_epoch_end(None, SimpleNamespace(global_step=epoch, epoch=float(epoch)), control)
    assert stop.stopped == {"reason": "no_improvement", "step": 4, "epoch": 4.0}
    assert [c["score"] for c in stop.checks] == [0.5, 0.7, 0.6, 0.7]


def test_early_stop_needs_a_validation_split(tmp_path, capsys) -> None:
    from conftest import run_cli

    recipe = tiny_recipe(**{"unlearn.runs.0.early_stop": True})
    assert run_cli(tmp_path, recipe, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "early_stop: stopping needs held-out samples" in err and "data.validation_size" in err
    assert not (tmp_path / "out" / "models" / "original").exists()  # refused before pretraining


# ------------------------------------------------------------------------------------ validation from retain
def carved(forget: dict, size: float | None = 0.1):
    """(splits, manifest, validation rows) of the tiny recipe with ``forget`` and a validation carve."""
    from hf_unlearn.data.prepare import ROW_COLUMN
    from hf_unlearn.recipe import validate
    from hf_unlearn.steps.forget import make_manifest, prepare_data

    recipe = validate(tiny_recipe(**{"forget": forget, "data.validation_size": size}))
    splits = prepare_data(recipe)
    manifest = make_manifest(recipe, splits, recipe["forget"], Path("unused"))
    before = splits.prepared.raw_before_carve
    before_rows = splits.train_rows if before is None else np.asarray(before.with_format("numpy")[ROW_COLUMN])
    return splits, manifest, np.setdiff1d(before_rows, splits.train_rows)


@pytest.mark.parametrize(
    "forget",
    [{"kind": "classwise", "classes": [3]}, {"kind": "classwise", "classes": [3, "5"], "fraction": 0.5}],
    ids=["whole-class", "half-of-two-classes"],
)
def test_classwise_sets_are_the_same_with_a_carve_and_never_in_validation(forget) -> None:
    plain, plain_manifest, none = carved(forget, None)
    assert none.size == 0 and plain.prepared.raw_before_carve is None
    splits, manifest, validation_rows = carved(forget)
    forget_rows = splits.train_rows[manifest.forget_indices]
    assert np.array_equal(np.sort(forget_rows), np.sort(plain.train_rows[plain_manifest.forget_indices]))
    assert not np.isin(validation_rows, forget_rows).any()
    assert len(validation_rows) == len(splits.prepared.validation) > 0
    labels = np.asarray(splits.prepared.validation.labels)
    assert (3 in labels) == (forget.get("fraction", 1.0) < 1.0)  # a whole forgotten class has no held-out sample
    assert "retain samples only" in splits.prepared.description["validation"]


def test_band_sets_are_chosen_inside_the_carved_training_split() -> None:
    """Memorization and low-confidence bands are ranked within the training split left after the carve: disjoint
    from validation by construction (their size is a fraction of that split, so the set can differ slightly)."""
    forget = {"kind": "memorization", "band": "high", "size": 0.02, "scores": "digits"}
    splits, manifest, validation_rows = carved(forget)
    assert not np.isin(validation_rows, splits.train_rows[manifest.forget_indices]).any()
    assert "retain samples only" not in splits.prepared.description["validation"]


def test_a_file_forget_set_keeps_its_members_in_training(tmp_path) -> None:
    """``index: row`` and ``index: train`` (positions in the split without a carve) name the same samples whether or
    not a validation split is carved; none of them lands in validation."""
    plain, _, _ = carved({"kind": "random"}, None)
    positions = list(range(0, 200, 7))
    (tmp_path / "train.txt").write_text("\n".join(map(str, positions)))
    rows = plain.train_rows[positions]
    (tmp_path / "rows.txt").write_text("\n".join(map(str, rows)))
    for name, index in (("train.txt", "train"), ("rows.txt", "row")):
        spec = {"kind": "file", "path": str(tmp_path / name), "index": index}
        splits, manifest, validation_rows = carved(spec, 0.2)
        assert np.array_equal(np.sort(splits.train_rows[manifest.forget_indices]), np.sort(rows)), index
        assert not np.isin(validation_rows, rows).any()
        assert len(validation_rows) == pytest.approx(0.2 * (len(plain.train) - len(rows)), abs=1)  # of retain only


def test_the_objective_reads_retain_forget_and_validation_never_test() -> None:
    """The wiring (hf_unlearn.forgetting.original_target, hf_unlearn.tune.objective.trial_value) on spy data sets:
    each split it may read is read, and a test split that fails when touched never is."""
    from types import SimpleNamespace

    from hf_unlearn.forgetting import original_target
    from hf_unlearn.tune.objective import trial_value

    class Tripwire:
        def __len__(self) -> int:
            return 8

        def __getitem__(self, index):
            raise AssertionError("the test split was read")

    retain, forget, validation = make_dataset(16, seed=1), make_dataset(6, seed=2), make_dataset(8, seed=3)
    splits = SimpleNamespace(retain=retain, forget=forget, test=Tripwire())
    model = make_model()
    target = original_target(model, retain=retain, forget=forget, validation=validation, batch_size=4)
    assert target.forget_size == 6 and target.difficulty == "confidence"
    shared = SimpleNamespace(
        pipeline=SimpleNamespace(recipe={"evaluation": {"batch_size": 4}}),
        splits=splits,
        validation=validation,
        target=target,
        reference=None,
    )
    measured, value = trial_value(shared, model)
    assert set(measured) == {"retain", "forget", "forget_confidence", "validation"}
    assert value == pytest.approx(reference_free_score(measured, target))
    # The same model as the original: at its own retain and validation accuracy, only the forget factors count.
    assert measured["retain"] == pytest.approx(target.retain) and measured["validation"] == target.validation
    assert all(len(d.accessed) > 0 for d in (retain, forget, validation))
