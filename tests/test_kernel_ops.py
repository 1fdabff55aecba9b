"""The SAM / mask / composition bookkeeping launches a constant number of kernels, whatever the model's depth.

Counted with `benchmarks/kernel_ops.py` (a TorchDispatchMode over one `training_step`) on a small and a deeper
ResNet: the ops outside the model's forward and backward passes must be the same for both, and the issue-12
quantities from whole-step counts must stay small. A per-tensor loop anywhere in the step makes the deeper model
count more, so a regression shows here (on a GPU each op is a kernel launch).
"""

from __future__ import annotations

from pathlib import Path

import torch
from conftest import make_args, make_dataset, tiny_resnet_config

from benchmarks.kernel_ops import count_training_step, derived_counts
from hf_unlearn.models import build_model_from_config
from hf_unlearn.registry import method_settings
from hf_unlearn.trainers import get_trainer_class

CASES = [
    ("finetune", "none", {}),
    ("finetune", "sam", {}),
    ("finetune", "asam", {}),
    ("neggrad", "none", {}),
    ("neggrad", "sam", {}),
    ("sharp_minmax", "sam", {}),
    ("sharp_minmax", "sam", {"sam_lambda": 0.5}),
    ("salun", "sam", {}),
    ("neggrad", "sam", {"sam_every": 5}),  # the counted step is the second: a cheap one-pass step
    ("sharp_minmax", "sam", {"sam_every": 5}),
]


def _counts(depths: list[int], tmp_path: Path) -> tuple[dict[str, int], dict[str, int], dict[str, int], int]:
    retain, forget = make_dataset(8, seed=1, shape=(1, 8, 8)), make_dataset(8, seed=2, shape=(1, 8, 8))
    inputs = {
        "retain": {"pixel_values": retain.x, "labels": retain.y},
        "forget": {"pixel_values": forget.x, "labels": forget.y},
        # random_label / salun train on one shuffled union of relabelled forget and retain items.
        "union": {"pixel_values": torch.cat([retain.x, forget.x]), "labels": torch.cat([retain.y, forget.y])},
    }
    whole, outside, syncs = {}, {}, {}
    num_tensors = 0
    for method, sharpness, extra in CASES:
        model = build_model_from_config({**tiny_resnet_config(), "depths": depths}, ["0", "1", "2"], seed=0)
        num_tensors = sum(1 for _ in model.parameters())
        kwargs = {}
        if method in ("sharp_minmax", "salun"):
            g = torch.Generator().manual_seed(3)
            kwargs["mask"] = {n: torch.rand(p.shape, generator=g) < 0.5 for n, p in model.named_parameters()}
        alpha = method_settings(method, {"alpha": 0.9})  # NegGrad and Sharp MinMax read alpha
        args = make_args(tmp_path / "out", method=method, sharpness=sharpness, **alpha, **extra)
        trainer = get_trainer_class(method)(
            model=model, args=args, retain_dataset=retain, forget_dataset=forget, **kwargs
        )
        key = f"{method}/{sharpness}" + "".join(f"/{k}={v}" for k, v in extra.items())
        counted = count_training_step(trainer, inputs)
        whole[key], syncs[key] = counted.kernels, counted.syncs
        outside[key] = count_training_step(trainer, inputs, outside_passes=True).kernels
    return whole, outside, syncs, num_tensors


def test_bookkeeping_kernels_do_not_grow_with_depth(tmp_path: Path) -> None:
    small_whole, small_outside, small_syncs, small_n = _counts([1, 1], tmp_path)
    deep_whole, deep_outside, deep_syncs, deep_n = _counts([3, 4], tmp_path)
    assert deep_n > 2 * small_n  # the deeper model really has many more parameter tensors
    assert deep_whole["finetune/none"] > small_whole["finetune/none"] + 50  # and many more ops in its passes
    # Outside the model's passes the step does exactly the same work on both.
    assert deep_outside == small_outside
    # Issue 12's whole-step quantities: small, and no larger on the deeper model.
    small, deep = derived_counts(small_whole), derived_counts(deep_whole)
    for name in ("sam_bookkeeping", "compose", "mask_bookkeeping"):
        assert deep[name] <= small[name] <= 40, (name, small, deep)
    # The cheap SAM's one-pass step costs what the plain step costs, plus a handful of ops.
    for whole in (small_whole, deep_whole):
        assert whole["neggrad/sam/sam_every=5"] <= whole["neggrad/none"] + 10
        assert whole["sharp_minmax/sam/sam_every=5"] <= 2 * whole["finetune/none"] + 40
    # One host synchronisation per step (the non-finite loss check, as the stock Trainer's NaN filter has).
    assert set(small_syncs.values()) == set(deep_syncs.values()) == {1}
