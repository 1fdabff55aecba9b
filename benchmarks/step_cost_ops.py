"""Issue 12's kernel-op quantities per ``training_step`` for step_cost.py (``--op-count-models``), counted with
benchmarks/kernel_ops.py on the trainer's model."""

from __future__ import annotations

import copy
import os
from typing import Any

import torch

from benchmarks.kernel_ops import count_training_step, derived_counts
from benchmarks.step_cost_setup import ALPHA, OP_COUNT_SETUPS, RHO, build_models, random_data, random_masks


def kernel_op_counts(name: str, workdir: str) -> dict[str, Any]:
    """Issue 12's kernel-op quantities for the trainer's model ``name`` (benchmarks/kernel_ops.py), from whole-step
    counts (``kernel_ops``) and from the ops outside the model's forward and backward passes
    (``kernel_ops_outside_passes``); the counts do not depend on the batch size, so 8 samples do."""
    from hf_unlearn.args import UnlearnArguments
    from hf_unlearn.data import TensorImageDataset
    from hf_unlearn.registry import method_settings
    from hf_unlearn.trainers import get_trainer_class

    pair = build_models(name)
    retain, forget = random_data(8, pair.input_shape, seed=10), random_data(8, pair.input_shape, seed=11)
    inputs = {
        "retain": {"pixel_values": retain[0], "labels": retain[1]},
        "forget": {"pixel_values": forget[0], "labels": forget[1]},
    }
    whole, outside, syncs = {}, {}, {}
    for method, sharpness in OP_COUNT_SETUPS:
        model = copy.deepcopy(pair.trainer)
        args = UnlearnArguments(
            output_dir=os.path.join(workdir, f"{name}-ops"),
            method=method,
            sharpness=sharpness,
            rho=RHO,
            **method_settings(method, {"alpha": ALPHA}),  # NegGrad and Sharp MinMax read alpha
            use_cpu=True,
            report_to="none",
            disable_tqdm=True,
            log_level="error",
        )
        kwargs: dict[str, Any] = {}
        if method == "sharp_minmax":
            names = [n for n, p in model.named_parameters() if p.requires_grad]
            masks = random_masks(model, torch.device("cpu"))
            kwargs["mask"] = {n: m.bool() for n, m in zip(names, masks, strict=True)}
        trainer = get_trainer_class(method)(
            model=model,
            args=args,
            retain_dataset=TensorImageDataset(*retain),
            forget_dataset=TensorImageDataset(*forget),
            **kwargs,
        )
        key = f"{method}/{sharpness}"
        counted = count_training_step(trainer, inputs)
        whole[key], syncs[key] = counted.kernels, counted.syncs
        outside[key] = count_training_step(trainer, inputs, outside_passes=True).kernels
    return {
        "kernel_ops": derived_counts(whole),
        "kernel_ops_outside_passes": derived_counts(outside),
        "kernel_ops_raw": whole,
        "host_syncs_per_step": syncs,
        "parameter_tensors": sum(1 for p in pair.trainer.parameters() if p.requires_grad),
    }
