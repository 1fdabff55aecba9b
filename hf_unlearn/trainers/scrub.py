"""SCRUB (Kurmanji et al., NeurIPS 2023, "Towards Unbounded Machine Unlearning"): a student moves away from a
frozen teacher on the forget set and stays close to it (and to the labels) on the retain set.

Schedule, per epoch ``e`` (0-based):

1. if ``e < msteps``: a *max pass*, one pass over the forget set, loss ``-KL_T(student(x_f), teacher(x_f))``;
2. always a *min pass*, one pass over the retain set, loss ``gamma * CE(student(x_r), y_r) + beta * KL_T(...)``.

So exactly ``msteps`` epochs start with a max pass. (The official Sharp MinMax / RUM code tests ``epoch <= msteps``
with 0-based epochs and runs ``msteps + 1`` of them, method-spec.md G.8; SCRUB's own code counts epochs from 1 and
runs ``msteps``, as here.) ``KL_T`` is RepDistiller's ``DistillKL``:
``sum softmax(t/T) * (log softmax(t/T) - log softmax(s/T)) * T^2 / batch``.

How the schedule fits the Trainer
---------------------------------
The Trainer iterates a fixed number of update steps per epoch, but a SCRUB epoch is longer while it still has a
max pass. `ScrubTrainer` therefore

* trains on `ScrubPhaseDataset` (index ``i < |F|`` is ``{"forget": F[i]}``, the rest ``{"retain": R[i - |F|]}``)
  through `PhaseBatchSampler`, which the Trainer's ``set_epoch`` tells which epoch it is: it yields the shuffled
  forget batches (max epochs only), then the shuffled retain batches. Every batch holds one phase only, and the
  number of batches of each phase is rounded up to a multiple of ``world_size * gradient_accumulation_steps``
  (samples spread evenly over the batches), so no optimizer step and no DDP step ever mixes the two phases;
* overrides the public `set_initial_training_values` (its tuple read and rebuilt by name, `TrainingValues`) so
  that ``max_steps`` is the exact number of optimizer steps of the whole schedule (a linear LR schedule ends at
  zero, the progress bar is right), ``num_train_epochs`` stays the user's, and the per-epoch step count is that of
  the longest (max) epoch. In the shorter min-only epochs the Trainer's loop finds the data exhausted and idles
  through the remaining update slots without stepping.

Everything else is ordinary Trainer machinery: each step is one `Branch`, so ``sharpness = sam | asam`` applies to both
passes (direction ``min``, as the official code's ``--sam min``), gradient clipping, schedulers and DDP work as for
every method. The teacher is a deep copy of the model taken when the trainer is built, in eval mode, with
``requires_grad=False``; it is not handed to the optimizer or to ``accelerator.prepare`` (no DDP wrapper), and it
only follows the student to its device. Resuming from a checkpoint is exact: `ScrubTrainer._init_training_state`
finds the epoch (hence the phase) and the position in it from the real epoch lengths, where the Trainer would
assume epochs of equal length. That private Trainer hook has no public alternative (the epoch to resume is a local
of the Trainer's loop); tests/test_trainer_hooks.py fails loudly when transformers changes it.
"""

from __future__ import annotations

import copy
import math
from functools import partial
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from transformers import TrainerCallback
from transformers.trainer_utils import seed_worker

from .base import Batch, Branch, UnlearnTrainer, logits_of

FORGET, RETAIN = "forget", "retain"


class TrainingValues(NamedTuple):
    """What `Trainer.set_initial_training_values` returns, by name, in its order (tests/test_trainer_hooks.py
    checks the names against the Trainer's own unpacking of the tuple)."""

    num_train_epochs: int
    num_update_steps_per_epoch: int
    num_examples: int
    num_train_samples: int
    total_train_batch_size: int
    steps_in_epoch: int | None
    max_steps: int


def distill_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """RepDistiller's DistillKL: ``KL(softmax(t/T) || softmax(s/T)) * T^2``, summed over classes, batch mean."""
    log_p_s = F.log_softmax(student_logits.float() / temperature, dim=1)
    log_p_t = F.log_softmax(teacher_logits.float() / temperature, dim=1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum()
    return kl * temperature**2 / student_logits.shape[0]


class ScrubPhaseDataset(Dataset):
    """Forget items first (``{"forget": item}``), then retain items (``{"retain": item}``)."""

    def __init__(self, forget: Dataset, retain: Dataset) -> None:
        self.forget = forget
        self.retain = retain
        self.num_forget = len(forget)

    def __len__(self) -> int:
        return self.num_forget + len(self.retain)

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        if index < self.num_forget:
            return {FORGET: self.forget[index]}
        return {RETAIN: self.retain[index - self.num_forget]}

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        """Batched fetch (a `datasets.Dataset` formats a whole batch at once, ~20x faster than row by row)."""
        out: list[dict[str, Any]] = [{} for _ in indices]
        for key, source, offset, inside in (
            (FORGET, self.forget, 0, lambda i: i < self.num_forget),
            (RETAIN, self.retain, self.num_forget, lambda i: i >= self.num_forget),
        ):
            positions = [k for k, i in enumerate(indices) if inside(int(i))]
            for k, item in zip(positions, _fetch(source, [int(indices[k]) - offset for k in positions]), strict=True):
                out[k] = {key: item}
        return out


def _fetch(dataset: Dataset, indices: list[int]) -> list[Any]:
    if not indices:
        return []
    getitems = getattr(dataset, "__getitems__", None)
    return list(getitems(indices)) if callable(getitems) else [dataset[i] for i in indices]


class PhaseBatchSampler:
    """Per epoch: the forget batches (while ``epoch < max_epochs``), then the retain batches.

    Batches never mix phases. Each phase gets ``ceil(n / batch_size)`` batches rounded up to a multiple of
    ``multiple`` (= world size x gradient accumulation steps); when no rounding is needed the batches are the usual
    ``batch_size, ..., remainder``, otherwise the shuffled samples are spread evenly over them (a phase with fewer
    samples than batches repeats samples). The shuffle is seeded by ``seed`` and the epoch, so every DDP process
    draws the same order and `accelerate`'s shard picks its own batches. ``batch_size`` is deliberately not exposed
    as an attribute: batches may differ in size, and `accelerate` treats a batch sampler without it as such.
    """

    def __init__(
        self, num_forget: int, num_retain: int, batch_size: int, max_epochs: int, multiple: int = 1, seed: int = 0
    ) -> None:
        if batch_size < 1 or multiple < 1:
            raise ValueError("batch_size and multiple must be >= 1")
        self.num_forget = num_forget
        self.num_retain = num_retain
        self.per_batch = batch_size
        self.max_epochs = max_epochs
        self.multiple = multiple
        self.seed = seed
        self.epoch = 0
        self.completed_epoch: int | None = None  # the last epoch iterated to its end

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def is_max_epoch(self, epoch: int) -> bool:
        return epoch < self.max_epochs and self.num_forget > 0

    def phase_batches(self, n: int) -> int:
        if n == 0:
            return 0
        return math.ceil(math.ceil(n / self.per_batch) / self.multiple) * self.multiple

    def num_batches(self, epoch: int) -> tuple[int, int]:
        """(forget batches, retain batches) of ``epoch``, over all processes."""
        forget = self.phase_batches(self.num_forget) if self.is_max_epoch(epoch) else 0
        return forget, self.phase_batches(self.num_retain)

    def __len__(self) -> int:
        return sum(self.num_batches(self.epoch))

    def _split(self, order: torch.Tensor, count: int) -> list[list[int]]:
        if count == math.ceil(len(order) / self.per_batch):
            return [chunk.tolist() for chunk in order.split(self.per_batch)]
        if count > len(order):  # fewer samples than batches: repeat the order
            order = order.repeat(math.ceil(count / len(order)))[:count]
        return [chunk.tolist() for chunk in torch.tensor_split(order, count)]

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        forget_order = torch.randperm(self.num_forget, generator=generator)
        retain_order = torch.randperm(self.num_retain, generator=generator) + self.num_forget
        n_forget, n_retain = self.num_batches(self.epoch)
        if n_forget:
            yield from self._split(forget_order, n_forget)
        yield from self._split(retain_order, n_retain)
        self.completed_epoch = self.epoch


class _WholeEpochCounter(TrainerCallback):
    """The Trainer measures ``state.epoch`` against the longest epoch; a completed shorter epoch still counts as one."""

    def __init__(self, trainer: ScrubTrainer) -> None:
        self.trainer = trainer

    def on_epoch_end(self, args, state, control, **kwargs):
        sampler = self.trainer.phase_sampler
        if sampler is not None and sampler.completed_epoch == sampler.epoch and state.epoch is not None:
            state.epoch = float(math.floor(state.epoch - 1e-9) + 1)


class ScrubTrainer(UnlearnTrainer):
    """SCRUB with a frozen teacher; see the module docstring for the schedule and how it fits the Trainer."""

    def __init__(self, *args: Any, teacher: nn.Module | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The model as it was before unlearning (the Trainer has already moved it to its device).
        self.teacher = copy.deepcopy(self.model) if teacher is None else teacher
        self.teacher.eval()
        self.teacher.requires_grad_(False)
        self.phase_sampler: PhaseBatchSampler | None = None
        self.add_callback(_WholeEpochCounter(self))

    # ------------------------------------------------------------------ data
    def build_train_dataset(self, retain: Dataset | None, forget: Dataset | None) -> Dataset:
        super().build_train_dataset(retain, forget)  # the non-empty checks
        return ScrubPhaseDataset(forget, retain)

    def get_train_dataloader(self) -> DataLoader:
        args = self.args
        dataset = self.train_dataset
        self.phase_sampler = PhaseBatchSampler(
            dataset.num_forget,
            len(dataset.retain),
            self._train_batch_size,
            args.msteps,
            multiple=self.accelerator.num_processes * args.gradient_accumulation_steps,
            seed=args.seed,
        )
        params: dict[str, Any] = {
            "batch_sampler": self.phase_sampler,
            "collate_fn": self.data_collator,
            "num_workers": args.dataloader_num_workers,
            "pin_memory": args.dataloader_pin_memory,
            "persistent_workers": args.dataloader_persistent_workers,
            "worker_init_fn": partial(seed_worker, num_workers=args.dataloader_num_workers, rank=args.process_index),
        }
        if args.dataloader_num_workers > 0 and args.dataloader_prefetch_factor is not None:
            params["prefetch_factor"] = args.dataloader_prefetch_factor
        return self.accelerator.prepare(DataLoader(dataset, **params))

    def epoch_steps(self, epoch: int) -> int:
        """Optimizer steps of ``epoch`` on each process."""
        per_step = self.accelerator.num_processes * self.args.gradient_accumulation_steps
        return sum(self.phase_sampler.num_batches(epoch)) // per_step

    def set_initial_training_values(self, args, dataloader) -> TrainingValues:
        """The Trainer's values with SCRUB's step counts: ``max_steps`` exact, the longest epoch as the epoch."""
        # A wrong arity raises here, at once, instead of shifting every value by one.
        values = TrainingValues(*super().set_initial_training_values(args, dataloader))
        if args.max_steps > 0:
            max_steps, epochs, done = args.max_steps, 0, 0
            while done < max_steps:
                done += self.epoch_steps(epochs)
                epochs += 1
        else:
            full = math.floor(args.num_train_epochs)
            max_steps = sum(self.epoch_steps(e) for e in range(full))
            fraction = args.num_train_epochs - full
            if fraction > 0:
                max_steps += math.ceil(fraction * self.epoch_steps(full))
            epochs = math.ceil(args.num_train_epochs)
        longest = max(self.epoch_steps(e) for e in range(max(epochs, 1)))
        return values._replace(
            num_train_epochs=epochs,
            num_update_steps_per_epoch=longest,
            steps_in_epoch=longest * args.gradient_accumulation_steps,
            max_steps=max_steps,
        )

    def _init_training_state(
        self, max_steps, num_update_steps_per_epoch, num_train_epochs, resume_from_checkpoint, trial
    ) -> tuple[int, int]:
        """Where a resumed run restarts. The Trainer divides the global step by one epoch length; SCRUB's epochs
        differ in length (max epochs are longer), so walk the real epoch lengths instead: the phase (max / min) and
        the position in the epoch then follow from the checkpoint's global step, and the resumed run is exact.

        A private Trainer hook (returns ``(epochs_trained, steps_trained_in_current_epoch)``), kept because the
        Trainer offers no public one; tests/test_trainer_hooks.py checks its signature and its call."""
        epochs, skipped = super()._init_training_state(
            max_steps, num_update_steps_per_epoch, num_train_epochs, resume_from_checkpoint, trial
        )
        if resume_from_checkpoint is None or self.state.global_step == 0:
            return epochs, skipped
        epoch, done = 0, 0
        while epoch < num_train_epochs and done + self.epoch_steps(epoch) <= self.state.global_step:
            done += self.epoch_steps(epoch)
            epoch += 1
        return epoch, (self.state.global_step - done) * self.args.gradient_accumulation_steps

    # ---------------------------------------------------------------- method
    def teacher_logits(self, batch: Batch) -> torch.Tensor:
        device = batch["pixel_values"].device
        if next(self.teacher.parameters()).device != device:
            self.teacher.to(device)
        with torch.no_grad():
            return logits_of(self.teacher, batch)

    def max_loss(self, model: nn.Module, batch: Batch, teacher: torch.Tensor) -> torch.Tensor:
        return -distill_kl(logits_of(model, batch[FORGET]), teacher, self.args.kd_T)

    def min_loss(self, model: nn.Module, batch: Batch, teacher: torch.Tensor) -> torch.Tensor:
        retain = batch[RETAIN]
        logits = logits_of(model, retain)
        ce = F.cross_entropy(logits, retain["labels"])
        return self.args.gamma * ce + self.args.beta * distill_kl(logits, teacher, self.args.kd_T)

    def branches(self, inputs: Batch) -> list[Branch]:
        # The teacher's logits do not depend on the student: computed once, shared by both SAM passes.
        if FORGET in inputs:
            teacher = self.teacher_logits(inputs[FORGET])
            return [Branch("max", lambda model, batch: self.max_loss(model, batch, teacher))]
        teacher = self.teacher_logits(inputs[RETAIN])
        return [Branch("min", lambda model, batch: self.min_loss(model, batch, teacher))]


__all__ = ["PhaseBatchSampler", "ScrubPhaseDataset", "ScrubTrainer", "distill_kl"]
