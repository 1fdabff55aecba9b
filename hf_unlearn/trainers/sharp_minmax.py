"""Sharp MinMax (Tang & Khanna, ICLR 2026): split the model by forget saliency.

The retain branch minimises ``alpha * CE_R`` with sharpness *minimisation* on the parameters outside the
mask; the forget branch minimises ``-(1 - alpha) * CE_F`` with sharpness *maximisation* on the mask. The
mask (top ``mask_ratio`` of |sum of forget gradients|) confines each branch's perturbation, its norm
and its final gradient, and both branches feed one optimizer step over disjoint partitions.

``official=True`` reproduces the official code (method-spec.md C.2-C.4): the mask marks the *bottom*
``mask_ratio`` of the saliency; each branch perturbs every parameter with the norm over every parameter and
masks only its perturbed gradient g1 (retain: ``g1 * (1 - m)``; forget, sign -1, lambda 1: ``2 * g0 - g1 * m``,
so the forget branch moves every weight); and the branches are two sequential optimizer updates: the retain
update is applied inside `training_step` by a second optimizer (``retain_optimizer``, built like the Trainer's
and with its own state: momentum / Adam moments), then the forget branch is computed at the updated weights and
the Trainer's own optimizer applies it. Both optimizers apply weight decay, so every weight is decayed twice per
step, as in the official code; the retain optimizer copies the Trainer optimizer's learning rate before each
update, so both follow the Trainer's schedule (stepped once per Trainer step); gradient clipping
(``max_grad_norm``) applies to each update. Without SAM each branch's gradient is masked (``g0 * partition``).
It needs ``gradient_accumulation_steps=1`` and no fp16 loss scaling. ``retain_optimizer``'s state is saved with
every checkpoint (``retain_optimizer.pt``, beside the Trainer's ``optimizer.pt``) and restored on resume, so a
resumed run continues bit-identically; a callback does both (`RetainOptimizerCheckpoint`, public Trainer hooks only).
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

from ..atomic import atomic_write_bytes
from .base import Batch, Branch, UnlearnTrainer, cross_entropy

logger = logging.getLogger(__name__)

RETAIN_OPTIMIZER_NAME = "retain_optimizer.pt"


class RetainOptimizerCheckpoint(TrainerCallback):
    """Saves the official run's retain optimizer into every full checkpoint and restores it when training resumes.

    ``on_save`` comes after the Trainer has written the checkpoint, ``trainer_state.json`` included, so a process
    killed in between leaves a checkpoint without the file: ``checkpoint_files`` names it, and hf_unlearn's stages
    count such a checkpoint as incomplete (`hf_unlearn.checkpoints.train_resumable`). The file is written
    atomically, so it is never truncated.
    """

    checkpoint_files = (RETAIN_OPTIMIZER_NAME,)

    def __init__(self, trainer: SharpMinMaxTrainer) -> None:
        self.trainer = trainer

    def on_save(self, args, state, control, **kwargs):
        optimizer = self.trainer.retain_optimizer
        # As the Trainer's optimizer.pt: not with save_only_model; one writer (every replica holds the same state).
        if optimizer is None or args.save_only_model or not args.should_save:
            return
        folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        buffer = io.BytesIO()
        torch.save(optimizer.state_dict(), buffer)
        atomic_write_bytes(folder / RETAIN_OPTIMIZER_NAME, buffer.getvalue())

    def on_train_begin(self, args, state, control, **kwargs):
        # Called after the Trainer restored its own optimizer (and built this one), before the first step.
        checkpoint, optimizer = self.trainer.resumed_from, self.trainer.retain_optimizer
        if checkpoint is None or optimizer is None:
            return
        path = Path(checkpoint) / RETAIN_OPTIMIZER_NAME
        if not path.is_file():
            logger.warning(
                "%s has no %s: the retain optimizer starts afresh, so the resumed run is not exact.",
                checkpoint,
                RETAIN_OPTIMIZER_NAME,
            )
            return
        # The run's own file, read like the Trainer reads optimizer.pt: a restricted unpickler, no code.
        optimizer.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))


class SharpMinMaxTrainer(UnlearnTrainer):
    def __init__(self, *args: Any, mask: dict | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.args.official and self.args.gradient_accumulation_steps != 1:
            raise ValueError(
                "sharp_minmax with official=True steps once per micro-batch: use gradient_accumulation_steps=1."
            )
        if self.args.official and self.args.fp16:
            raise ValueError("sharp_minmax with official=True does not support fp16 loss scaling; use bf16 or fp32.")
        self.retain_optimizer: torch.optim.Optimizer | None = None
        self.resumed_from: str | None = None  # the checkpoint `train` resumes from, for RetainOptimizerCheckpoint
        self._official_branch: str | None = None
        if self.args.official:
            self.add_callback(RetainOptimizerCheckpoint(self))
        self.set_mask(mask if mask is not None else self.forget_saliency_mask())

    def retain_loss(self, model, batch: Batch):
        return self.args.alpha * cross_entropy(model, batch["retain"])

    def forget_loss(self, model, batch: Batch):
        return -(1.0 - self.args.alpha) * cross_entropy(model, batch["forget"])

    def branches(self, inputs: Batch) -> list[Branch]:
        official = self.args.official
        branches = [
            Branch("retain", self.retain_loss, direction="min", partition="complement", mask_g1_only=official),
            Branch(
                "forget",
                self.forget_loss,
                direction=self.args.forget_direction,
                partition="mask",
                mask_g1_only=official,
            ),
        ]
        if self._official_branch is not None:  # official: one branch per optimizer update
            return [b for b in branches if b.name == self._official_branch]
        return branches

    # ----------------------------------------------- official: two sequential optimizer updates
    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        optimizer = super().create_optimizer(model)
        if self.args.official and self.retain_optimizer is None:
            main, self.optimizer = self.optimizer, None
            try:  # a second optimizer built exactly like the Trainer's, with its own state
                self.retain_optimizer = super().create_optimizer(model)
            finally:
                self.optimizer = main
        return optimizer

    def train(self, resume_from_checkpoint: str | bool | None = None, *args: Any, **kwargs: Any) -> Any:
        """`Trainer.train`, remembering the checkpoint it resumes from (callbacks are not told), resolved as the
        Trainer resolves it."""
        if resume_from_checkpoint is True:
            self.resumed_from = get_last_checkpoint(self.args.output_dir)
        else:
            self.resumed_from = resume_from_checkpoint or None
        try:
            return super().train(resume_from_checkpoint, *args, **kwargs)
        finally:
            self.resumed_from = None

    def training_step(self, model: nn.Module, inputs: Batch, num_items_in_batch: Any = None) -> torch.Tensor:
        if not self.args.official:
            return super().training_step(model, inputs, num_items_in_batch)
        try:
            self._official_branch = "retain"
            retain_loss = super().training_step(model, inputs, num_items_in_batch)
            self._step_retain_optimizer()
            # The forget branch at the updated weights; the Trainer's loop applies it with its own optimizer.
            self._official_branch = "forget"
            forget_loss = super().training_step(model, inputs, num_items_in_batch)
        finally:
            self._official_branch = None
        return retain_loss + forget_loss

    def _step_retain_optimizer(self) -> None:
        if self.retain_optimizer is None:
            raise RuntimeError("official sharp_minmax: the retain optimizer was not built (create_optimizer).")
        for main_group, group in zip(self.optimizer.param_groups, self.retain_optimizer.param_groups, strict=True):
            group["lr"] = main_group["lr"]
        if self.args.max_grad_norm and self.args.max_grad_norm > 0:
            params = [p for group in self.retain_optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.args.max_grad_norm)
        self.retain_optimizer.step()
        self.retain_optimizer.zero_grad(set_to_none=True)
