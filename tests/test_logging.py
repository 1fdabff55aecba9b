"""Training logs carry each branch's loss and, with an evaluation, each evaluation set's accuracy; a pipeline stage
keeps its log_history and shows one bar per stage, without raw dict lines or per-checkpoint save bars."""

from __future__ import annotations

import pytest
import torch
from conftest import make_dataset, make_model

from hf_unlearn import get_trainer_class


def test_branch_losses_and_the_forget_sets_evaluation_are_logged(args_factory):
    model = make_model(seed=0)
    retain, forget = make_dataset(8, seed=1), make_dataset(4, seed=2)
    args = args_factory(
        method="sharp_minmax",
        sharpness="sam",
        max_steps=2,
        logging_strategy="steps",
        logging_steps=1,
        eval_strategy="steps",
        eval_steps=1,
        per_device_train_batch_size=4,
    )
    trainer = get_trainer_class("sharp_minmax")(
        model=model, args=args, retain_dataset=retain, forget_dataset=forget, eval_dataset={"forget": forget}
    )
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    evaluations = [entry for entry in trainer.state.log_history if "eval_forget_accuracy" in entry]
    assert len(logs) == 2 and len(evaluations) == 2
    for entry in logs:
        assert {"loss_retain", "loss_forget"} <= set(entry)
        # The step's loss is the sum of its branches' (alpha * CE_R and -(1 - alpha) * CE_F).
        assert entry["loss"] == pytest.approx(entry["loss_retain"] + entry["loss_forget"], abs=2e-4)
        assert entry["loss_retain"] > 0 > entry["loss_forget"]
    x, y = forget.subset(list(range(len(forget))))
    with torch.no_grad():
        expected = (model.eval()(pixel_values=x).logits.argmax(-1) == y).float().mean().item()
    assert evaluations[-1]["eval_forget_accuracy"] == pytest.approx(expected, abs=1e-4)  # on the final weights
