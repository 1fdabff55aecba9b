"""`UnlearnTrainer`: a `transformers.Trainer` whose training step is a list of branches.

A branch is (batch, loss, sharpness direction, parameter partition). `training_step` computes each
branch's final gradient with the SAM machinery of `hf_unlearn.sharpness`, adds them into ``p.grad``
and leaves the Trainer's own loop to clip, step the optimizer and the scheduler, and zero the grads.
So every method runs with ``sharpness = none | sam | asam``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import ConcatDataset, Dataset, default_collate
from transformers import Trainer, TrainerCallback

from ..args import TrainOn, UnlearnArguments
from ..data.augment import Augmentation, AugmentedDataset
from ..data.pairing import PairedDataset
from ..errors import ValidationError
from ..registry import REGISTRY
from ..sharpness import (
    Direction,
    SharpnessConfig,
    SharpnessMemory,
    add_gradients,
    batchnorm_modules,
    branch_gradient,
    take_gradients,
)
from .branch_logs import BranchLogs
from .collective import CollectiveSteps
from .eval_loop import Evaluation
from .masking import ParameterMask, Partition
from .model_card import ModelCard

Batch = dict[str, Any]
LossFn = Callable[[nn.Module, Batch], torch.Tensor]


@dataclass(frozen=True)
class Branch:
    """One gradient computation of a training step.

    ``loss`` receives the (possibly DDP-wrapped) model and the nested batch ``{"retain": ..., "forget": ...}``
    and returns a scalar per-batch mean, or a tuple of scalar *terms* whose sum is the loss (NegGrad's retain and
    forget terms): each term is then backpropagated on its own and the gradients are added in one multi-tensor op,
    instead of autograd adding the two contributions tensor by tensor. ``partition`` says which parameter elements
    the branch may move.
    """

    name: str
    loss: LossFn
    direction: Direction = "min"
    partition: Partition = "all"
    # The official code's masking (``official=True``): eps over all parameters, the mask on g1 only.
    mask_g1_only: bool = False


def logits_of(model: nn.Module, batch: Batch) -> torch.Tensor:
    """Logits of an image classifier called as ``model(pixel_values=x)``, in float32 for a stable loss."""
    return model(pixel_values=batch["pixel_values"]).logits.float()


def cross_entropy(model: nn.Module, batch: Batch, labels: torch.Tensor | None = None) -> torch.Tensor:
    """Per-batch mean cross-entropy (computed here, never by the model: see `loss_is_scaled_for_ga`)."""
    return F.cross_entropy(logits_of(model, batch), batch["labels"] if labels is None else labels)


def retain_cross_entropy(model: nn.Module, batch: Batch) -> torch.Tensor:
    """Cross-entropy on the retain part of a nested batch (finetune, retrain, pretrain)."""
    return cross_entropy(model, batch["retain"])


class UnlearnTrainer(CollectiveSteps, ParameterMask, BranchLogs, Evaluation, ModelCard, Trainer):
    """Base class of every hf_unlearn method.

    A method's trainer implements `branches`; what it trains on and its name come from its config
    (``args``, `hf_unlearn.args`), and `hf_unlearn.registry.register_method` pairs the two. Items of the datasets are
    ``{"pixel_values": tensor, "labels": int}``; the model is any module called as ``model(pixel_values=x)``
    returning an object with ``.logits``.
    """

    # From the config (args): the method's name, what its batches are anchored on, whether it trains a mask.
    method_name: str
    train_on: TrainOn
    uses_mask: bool
    # Losses are per-batch means computed by hf_unlearn; the Trainer must not treat them as already
    # normalised for gradient accumulation (HF image models accept **kwargs, which fools its heuristic).
    loss_is_scaled_for_ga = False

    def __init__(
        self,
        model: nn.Module | None = None,
        args: UnlearnArguments | None = None,
        retain_dataset: Dataset | None = None,
        forget_dataset: Dataset | None = None,
        eval_dataset: Dataset | dict[str, Dataset] | None = None,
        data_collator: Callable | None = None,
        augmentation: Augmentation | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(args, UnlearnArguments):
            raise TypeError(f"hf_unlearn trainers need `args=UnlearnArguments(...)` (got {type(args).__name__}).")
        _check_trainer_of(type(self), args.method)
        self.method_name, self.train_on = args.method, args.train_on
        self.uses_mask = "mask_ratio" in args.own_fields()
        self.retain_dataset = retain_dataset
        self.forget_dataset = forget_dataset
        # build_train_dataset may need them (the seed of its draws, the class count of random labels).
        self._model_for_data, self._args_for_data = model, args
        # Augmentation reaches the training batches only; masks and evaluation read retain_dataset / forget_dataset.
        augmented = _augmented({"retain": retain_dataset, "forget": forget_dataset}, augmentation, model, args.seed)
        train_dataset = self.build_train_dataset(
            augmented.get("retain", retain_dataset), augmented.get("forget", forget_dataset)
        )
        del self._model_for_data, self._args_for_data
        epoch_aware = [d for d in (train_dataset, *augmented.values()) if getattr(d, "has_draws", False)]
        if epoch_aware:
            if args.dataloader_persistent_workers and args.dataloader_num_workers > 0:
                raise ValueError(
                    f"{self.method_name} redraws its random draws (forget partners, labels, augmentation) every epoch, "
                    "which persistent DataLoader workers would not see; set dataloader_persistent_workers: false."
                )
            callbacks = [*(kwargs.pop("callbacks", None) or []), _SetEpoch(epoch_aware)]
            kwargs["callbacks"] = callbacks
        super().__init__(
            model=model,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            data_collator=data_collator or default_collate,
            **kwargs,
        )
        self.sharpness_config = SharpnessConfig(args.sharpness, args.rho, args.sam_lambda)
        self._check_distributed_support()
        self.mask: dict[str, torch.Tensor] | None = None
        self._mask_cache: dict[tuple[Partition, torch.dtype], list[torch.Tensor | None]] = {}
        # (unwrapped model, its trainable (name, parameter) pairs, the parameters, its BatchNorm layers), built on
        # the first step of each `train()`.
        self._trainable: tuple[nn.Module, list[tuple[str, torch.Tensor]], list[torch.Tensor], list] | None = None
        # The cheap SAM (sam_every > 1): per (branch name, partition), what the last full SAM step measured.
        self._sharpness_memory: dict[tuple[str, Partition], SharpnessMemory] = {}
        # (loss, step, epoch) of the first non-finite loss this process saw, until it is raised.
        self._nonfinite_loss: tuple[float, int, float | None] | None = None

    # ------------------------------------------------------------------ data
    def build_train_dataset(self, retain: Dataset | None, forget: Dataset | None) -> Dataset:
        """The dataset the Trainer iterates: anchored on retain (or forget), nested by split name."""
        if self.train_on in ("retain", "paired", "union", "all") and (retain is None or len(retain) == 0):
            raise ValueError(f"{self.method_name} needs a non-empty retain_dataset.")
        if self.train_on in ("forget", "paired", "union") and (forget is None or len(forget) == 0):
            raise ValueError(
                f"{self.method_name} needs a non-empty forget_dataset: pass the samples to forget "
                "(an empty forget set has nothing to unlearn)."
            )
        if self.train_on == "all":
            anchor = retain if forget is None or len(forget) == 0 else ConcatDataset([retain, forget])
            return PairedDataset(anchor, anchor_key="retain")
        if self.train_on == "retain":
            return PairedDataset(retain, anchor_key="retain")
        if self.train_on == "forget":
            return PairedDataset(forget, anchor_key="forget")
        if self.train_on == "union":
            return self.build_union_dataset(retain, forget)
        return PairedDataset(
            retain, anchor_key="retain", partner=forget, partner_key="forget", seed=self._args_for_data.seed
        )

    def build_union_dataset(self, retain: Dataset, forget: Dataset) -> Dataset:
        """The dataset of ``train_on = "union"`` methods (`RelabelledUnion`, items ``{"union": ...}``)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- method
    def branches(self, inputs: Batch) -> list[Branch]:
        """The branches of one training step; called once per micro-batch."""
        raise NotImplementedError

    # ------------------------------------------------------------- the step
    def train(self, *args: Any, **kwargs: Any):
        self._trainable = None  # requires_grad may have changed since the last run
        self._sharpness_memory.clear()  # the cheap SAM starts each run with a full step
        self.check_labels()
        output = super().train(*args, **kwargs)
        # A schedule-free optimizer (optim: schedule_free_sgd ...) trains at one point and evaluates at another, its
        # running average; leave the model at the evaluation point, which hf_unlearn evaluates, saves and publishes.
        if callable(getattr(self.optimizer, "eval", None)):
            self.optimizer.eval()
        return output

    def check_labels(self) -> None:
        """Labels outside the head's range fail here, named, not inside the loss (raw IndexError / CUDA assert)."""
        from .labels import check_label_range, head_width_of

        self._batch_label_limit = None
        try:
            num_labels = head_width_of(self.model, self.retain_dataset, self.forget_dataset)
        except ValueError:
            return  # nothing declares the class count; methods that need it (random_label) say so themselves
        if not check_label_range(num_labels, retain_dataset=self.retain_dataset, forget_dataset=self.forget_dataset):
            self._batch_label_limit = num_labels  # labels not readable up front: check each batch instead

    def _trainable_parameters(
        self, base_model: nn.Module
    ) -> tuple[list[tuple[str, torch.Tensor]], list[torch.Tensor], list]:
        """The trainable (name, parameter) pairs of ``base_model``, the parameters alone and the BatchNorm layers
        that SAM's perturbed pass freezes (cached per run)."""
        if self._trainable is None or self._trainable[0] is not base_model:
            named = [(n, p) for n, p in base_model.named_parameters() if p.requires_grad]
            self._trainable = (base_model, named, [p for _, p in named], batchnorm_modules(base_model))
        return self._trainable[1], self._trainable[2], self._trainable[3]

    def full_sam_step(self) -> bool:
        """Whether this optimizer step runs the full two-pass SAM (always with ``sam_every=1``; else every k-th)."""
        return self.args.sam_every <= 1 or self.state.global_step % self.args.sam_every == 0

    def training_step(
        self, model: nn.Module, inputs: Batch, num_items_in_batch: torch.Tensor | int | None = None
    ) -> torch.Tensor:
        model.train()
        if callable(getattr(self.optimizer, "train", None)):  # schedule-free optimizers, as the stock Trainer
            self.optimizer.train()
        inputs = self._prepare_inputs(inputs)
        if getattr(self, "_batch_label_limit", None):
            from .labels import check_batch_labels

            check_batch_labels(inputs, self._batch_label_limit)
        branches = self.branches(inputs)
        base_model = self.accelerator.unwrap_model(model)
        named, params, batchnorms = self._trainable_parameters(base_model)
        # Gradients accumulated by earlier micro-batches must not mix with this step's g0 / g1.
        accumulated = take_gradients(params)
        scale = 1.0 / self.current_gradient_accumulation_steps
        cheap_sam = self.args.sam_every > 1 and self.sharpness_config.enabled
        full = self.full_sam_step()
        composed: list[torch.Tensor | None] | None = None
        total_loss: torch.Tensor | None = None
        # Every pass runs without DDP's all-reduce: each process perturbs with its own gradient
        # (per-worker SAM) and the composed gradient is averaged once per optimizer step below.
        with self._no_sync(model), _batch_of_one_explained(self.method_name, inputs):
            for branch in branches:
                masks = self._partition_masks(branch.partition, named)

                def backward(branch: Branch = branch) -> torch.Tensor:
                    with self.compute_loss_context_manager():
                        loss = branch.loss(model, inputs)
                    if not isinstance(loss, tuple):
                        self.accelerator.backward(loss * scale)
                        return loss.detach()
                    # Terms: one backward each, their gradients added by one multi-tensor op (see `Branch`).
                    grads = None
                    for term in loss:
                        self.accelerator.backward(term * scale)
                        grads = add_gradients(grads, take_gradients(params))
                    for p, g in zip(params, grads, strict=True):
                        p.grad = g
                    return sum(loss[1:], loss[0]).detach()

                key = (branch.name, branch.partition)
                # The cheap SAM's in-between steps reuse the last full step's direction; a branch without one
                # (the first step, a new branch) runs a full step and keeps what it measured.
                kept = self._sharpness_memory.get(key) if cheap_sam else None
                memory = kept if not full else None
                grads, loss, _ = branch_gradient(
                    base_model,
                    params,
                    masks,
                    backward,
                    self.sharpness_config,
                    branch.direction,
                    mask_g1_only=branch.mask_g1_only,
                    batchnorms=batchnorms,
                    memory=memory,
                    remember=partial(self._sharpness_memory.__setitem__, key) if cheap_sam and memory is None else None,
                    reuse=kept,  # a full step refills the branch's buffers
                )
                total_loss = loss.float() if total_loss is None else total_loss + loss.float()
                self._record_branch_loss(branch.name, loss)
                composed = add_gradients(composed, grads)
        if total_loss is None:
            raise RuntimeError(f"{self.method_name} returned no branches for this batch.")
        self._check_loss(total_loss)  # one process: stops here, before any gradient reaches p.grad
        for p, g in zip(params, add_gradients(accumulated, composed), strict=True):
            p.grad = g
        if self.accelerator.sync_gradients and self.accelerator.num_processes > 1:
            diverged = self._average_gradients_across_processes(params)
            self._broadcast_buffers_from_main_process(model, base_model)
            if diverged:  # some process saw a non-finite loss: every process stops at the same step
                self._raise_diverged()
        return total_loss * scale

    def compute_loss(
        self,
        model: nn.Module,
        inputs: Batch,
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ):
        """Plain cross-entropy on flat ``{"pixel_values", "labels"}`` batches (used by evaluation)."""
        outputs = model(pixel_values=inputs["pixel_values"])
        loss = F.cross_entropy(outputs.logits.float(), inputs["labels"])
        return (loss, outputs) if return_outputs else loss

    def prediction_step(
        self,
        model: nn.Module,
        inputs: Batch,
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """Evaluation on flat batches for any classifier returning ``.logits`` (not only HF ModelOutputs)."""
        inputs = self._prepare_inputs(inputs)
        labels = inputs.get("labels")
        with torch.no_grad(), self.compute_loss_context_manager():
            logits = model(pixel_values=inputs["pixel_values"]).logits
            loss = None if labels is None else F.cross_entropy(logits.float(), labels).detach()
        if prediction_loss_only:
            return loss, None, None
        return loss, logits.detach(), labels


_BATCHNORM_BATCH_OF_ONE = "Expected more than 1 value per channel when training"


def _augmented(
    datasets: dict[str, Dataset | None], augmentation: Augmentation | None, model: nn.Module | None, seed: int
) -> dict[str, AugmentedDataset]:
    """The non-empty training splits wrapped in ``augmentation`` (by split name); none without augmentation."""
    if augmentation is None:
        return {}
    if model is not None:
        augmentation = augmentation.for_model(model)  # the timm preset reads the model's data config
    return {
        name: AugmentedDataset(dataset, augmentation, seed, stream=name)
        for name, dataset in datasets.items()
        if dataset is not None and len(dataset) > 0
    }


def _check_trainer_of(trainer: type, method: str) -> None:
    """``trainer`` is the registered trainer of ``method`` (or a subclass of it that is not another method's)."""
    registered = {spec.trainer_class: name for name, spec in REGISTRY.items()}
    own = next((registered[cls] for cls in trainer.__mro__ if cls in registered), None)
    if own is None:
        raise ValueError(
            f"{trainer.__name__} is no registered method's trainer; register it with "
            f"hf_unlearn.registry.register_method(YourConfig, {trainer.__name__})."
        )
    if own != method:
        raise ValueError(
            f"args.method is {method!r} but this is the {own!r} trainer; use get_trainer_class(args.method)."
        )


@contextlib.contextmanager
def _batch_of_one_explained(method: str, inputs: Batch) -> Iterator[None]:
    """Name the cause and the fix when a one-sample batch reaches a BatchNorm layer in training mode.

    torch's own message ("Expected more than 1 value per channel") does not say that the culprit is the last,
    short batch of an epoch, which a dataset of ``k * batch_size + 1`` samples per process produces.
    """
    try:
        yield
    except ValueError as error:
        if _BATCHNORM_BATCH_OF_ONE not in str(error):
            raise
        sizes = {
            name: len(part["labels"]) for name, part in inputs.items() if isinstance(part, dict) and "labels" in part
        }
        shown = ", ".join(f"{name} {size}" for name, size in sizes.items())
        raise ValidationError(
            f"{method}: a training batch of one sample ({shown}) reached a BatchNorm layer, which needs more than one "
            "value per channel in training mode. The last batch of an epoch holds the samples left over after full "
            "batches; set `dataloader_drop_last: true` in the run's settings (or choose a batch size that leaves "
            "more than one sample over)."
        ) from error


class _SetEpoch(TrainerCallback):
    """Tell the training dataset the epoch at its start, so its draws depend on (seed, epoch, item) only.

    accelerate's ``DataLoaderShard.set_epoch`` reaches the dataset only when the sampler has no ``set_epoch`` of its
    own, which is not the case under DDP; a callback runs before the epoch's DataLoader iterator (and its workers)
    is created, in one process and in several alike.
    """

    def __init__(self, datasets: list[Any]) -> None:
        self.datasets = datasets

    def on_epoch_begin(self, args, state, control, **kwargs):
        # state.epoch is the number of epochs done (fractional when resumed inside an epoch).
        epoch = math.floor(state.epoch + 1e-9) if state.epoch else 0
        for dataset in self.datasets:
            dataset.set_epoch(epoch)
