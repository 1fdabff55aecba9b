"""The timed Trainers of step_cost.py: hf_unlearn's trainer doing one update per step, and a stock
`transformers.Trainer` doing the SGD update (how much of the cost is the Trainer's own loop)."""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks.common import Sync, quiet, sgd_arguments, step_timer
from benchmarks.step_cost_memory import MemoryProbe
from benchmarks.step_cost_setup import (
    ALPHA,
    BATCH,
    LR,
    MASK_RATIO,
    MOMENTUM,
    RHO,
    TRAINER_SETUP,
    WEIGHT_DECAY,
    ModelPair,
)


def _arguments(steps_per_chunk: int, device: torch.device) -> dict[str, Any]:
    return sgd_arguments(
        batch_size=BATCH,
        max_steps=steps_per_chunk,
        learning_rate=LR,
        use_cpu=device.type == "cpu",
        seed=0,
        momentum=MOMENTUM,
        weight_decay=WEIGHT_DECAY,
    )


class TrainerLoop:
    def __init__(
        self,
        pair: ModelPair,
        update: str,
        retain: tuple[torch.Tensor, torch.Tensor],
        forget: tuple[torch.Tensor, torch.Tensor],
        masks: list[torch.Tensor] | None,
        device: torch.device,
        sync: Sync,
        memory: MemoryProbe,
        steps_per_chunk: int,
        workdir: str,
    ) -> None:
        from hf_unlearn.args import UnlearnArguments
        from hf_unlearn.data import TensorImageDataset
        from hf_unlearn.registry import method_settings
        from hf_unlearn.trainers import get_trainer_class

        method, sharpness, sam_every = TRAINER_SETUP[update]
        args = UnlearnArguments(
            output_dir=os.path.join(workdir, f"{pair.name}-{update}"),
            method=method,
            sharpness=sharpness,
            sam_every=sam_every,
            rho=RHO,
            **method_settings(method, {"alpha": ALPHA, "mask_ratio": MASK_RATIO}),  # where the method reads them
            **_arguments(steps_per_chunk, device),
            log_level="error",
        )
        self.timer = step_timer(sync, memory)
        kwargs: dict[str, Any] = {}
        if update == "sharp_minmax":
            names = [n for n, p in pair.trainer.named_parameters() if p.requires_grad]
            kwargs["mask"] = {n: m.bool().cpu() for n, m in zip(names, masks, strict=True)}
        self.trainer = get_trainer_class(method)(
            model=pair.trainer,
            args=args,
            retain_dataset=TensorImageDataset(*retain),
            forget_dataset=TensorImageDataset(*forget),
            callbacks=[self.timer],
            **kwargs,
        )
        quiet(self.trainer)  # no per-chunk metrics printout

    def run(self, warmup: int, steps: int) -> tuple[list[float], list[float]]:
        n_before, g_before = len(self.timer.durations), len(self.timer.gaps)
        self.trainer.args.max_steps = warmup + steps
        self.trainer.train()
        durations = self.timer.durations[n_before:]
        gaps = self.timer.gaps[g_before:]
        assert len(durations) == warmup + steps, (len(durations), warmup, steps)
        return durations[warmup:], gaps[max(0, warmup - 1) :]


class VanillaLoop:
    """Reference: a stock `transformers.Trainer` doing the SGD update (retain CE), timed the same way.

    It shows how much of the trainer's per-step cost is the Trainer's own loop (callbacks, NaN check, grad norm,
    scheduler) rather than hf_unlearn's ``training_step``.
    """

    def __init__(
        self,
        pair: ModelPair,
        retain,
        device: torch.device,
        sync: Sync,
        memory: MemoryProbe,
        steps_per_chunk: int,
        workdir: str,
    ) -> None:
        from torch.utils.data import default_collate
        from transformers import Trainer, TrainingArguments

        from hf_unlearn.data import TensorImageDataset

        class CETrainer(Trainer):
            def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
                logits = model(pixel_values=inputs["pixel_values"]).logits
                return F.cross_entropy(logits.float(), inputs["labels"])

        args = TrainingArguments(
            output_dir=os.path.join(workdir, f"{pair.name}-vanilla"),
            **_arguments(steps_per_chunk, device),
            log_level="error",
            remove_unused_columns=False,
        )
        self.timer = step_timer(sync, memory)
        self.trainer = CETrainer(
            model=pair.trainer,
            args=args,
            train_dataset=TensorImageDataset(*retain),
            data_collator=default_collate,
            callbacks=[self.timer],
        )
        quiet(self.trainer)

    run = TrainerLoop.run


def decay_parameter_names(loop: TrainerLoop, prefix: str) -> set[str]:
    """The Trainer's weight-decay group, in the plain model's parameter names."""
    names = loop.trainer.get_decay_parameter_names(loop.trainer.model)
    return {n[len(prefix) :] if prefix and n.startswith(prefix) else n for n in names}
