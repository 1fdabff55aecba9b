"""Checkpoints of a training stage: resume after a crash, stop on divergence, clean up when done.

A stage trains with the Trainer's own checkpoints (``CHECKPOINT_SETTINGS``: one full checkpoint per epoch, only
the newest kept) in ``DIR/checkpoints/<stage>/``:

```
DIR/checkpoints/<stage>/hf_unlearn_stage.json   written by hf_unlearn before training: {"stage", "fingerprint"}
DIR/checkpoints/<stage>/checkpoint-<step>/      the Trainer's: model.safetensors, optimizer.pt, scheduler.pt,
                                                rng_state*.pth, trainer_state.json, training_args.bin
```

Rules (see docs/reliability.md):

* A stage resumes only from a checkpoint inside a folder whose ``hf_unlearn_stage.json`` names the stage's current
  fingerprint (the folder was made by hf_unlearn for exactly these settings and this forget set). Any other
  ``checkpoint-*`` folder is deleted, never loaded.
* A checkpoint is complete when its ``trainer_state.json`` (the Trainer writes it last) parses and the model,
  optimizer, scheduler and RNG files are present, and so are the files callbacks add to every checkpoint
  (``extra_files``: the pretraining's confidence history, the official Sharp MinMax's retain optimizer); an
  incomplete one (killed while saving) is deleted.
* The Trainer loads a checkpoint's weights from safetensors and its optimizer / scheduler / RNG pickles with
  ``torch.load(weights_only=True)`` (transformers 5), which cannot run code; ``training_args.bin`` is never loaded.
* Once the stage is finished (or diverged) its checkpoint folder is deleted; finished results live in
  ``DIR/models/<stage>/`` (safetensors only).

`DivergenceGuard` checks that the weights are finite before every save and at the end of training, so a saved
checkpoint is always a good one; `UnlearnTrainer.training_step` checks the loss of every step.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import TrainerCallback

from .atomic import atomic_save_npy, atomic_write_text
from .errors import DivergenceError

logger = logging.getLogger(__name__)

# Trainer settings of every hf_unlearn training stage unless the recipe sets them (checkpoint once per epoch,
# with optimizer, scheduler and RNG state so that a resumed stage continues exactly; keep only the newest).
CHECKPOINT_SETTINGS: dict[str, Any] = {"save_strategy": "epoch", "save_only_model": False, "save_total_limit": 1}
MARKER = "hf_unlearn_stage.json"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
_REQUIRED = ("trainer_state.json", "model.safetensors", "optimizer.pt", "scheduler.pt")


def nonfinite_parameters(model: torch.nn.Module) -> list[str]:
    """Names of parameters and floating-point buffers (BatchNorm statistics) holding NaN or infinite values."""
    tensors = [*model.named_parameters(), *((n, b) for n, b in model.named_buffers() if b.is_floating_point())]
    with torch.no_grad():
        return [name for name, t in tensors if not bool(torch.isfinite(t).all())]


class DivergenceGuard(TrainerCallback):
    """Stops training (`DivergenceError`) when the weights became non-finite, before they are checkpointed.

    The loss of every step is checked in `UnlearnTrainer.training_step`; this callback covers the weights the
    last optimizer step produced, at the two moments they matter: right before a checkpoint is saved (so every
    checkpoint holds good weights) and at the end of training (so a finished stage never saves NaN weights).
    Every process holds the same weights, so every process reaches the same verdict.
    """

    def _check(self, state, model, when: str) -> None:
        if model is None:
            return
        bad = nonfinite_parameters(model)
        if bad:
            raise DivergenceError(
                f"the weights became non-finite ({len(bad)} tensors, e.g. {bad[0]}) by step {state.global_step} "
                f"({when}); the run diverged. Lower the learning rate.",
                step=state.global_step,
                epoch=state.epoch,
                loss=None,
            )

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if control.should_save:
            self._check(state, model, "before saving a checkpoint")

    on_epoch_end = on_step_end  # a save can be decided at either point

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self._check(state, model, "at the end of training")


class HistoryCheckpoint(TrainerCallback):
    """Saves ``recorder.history`` (a list of per-sample arrays, one per epoch) with every checkpoint.

    Pretraining records per-sample confidence each epoch (`hf_unlearn.memorization.ConfidenceRecorder`); a
    resumed pretraining must continue that history, not restart it. Stored as ``.npy`` (read without pickle).
    """

    filename = "confidence_history.npy"

    def __init__(self, recorder: Any) -> None:
        self.recorder = recorder

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        history = np.stack(self.recorder.history) if self.recorder.history else np.zeros((0, 0))
        atomic_save_npy(folder / self.filename, history)

    def restore(self, checkpoint: Path) -> None:
        history = np.load(Path(checkpoint) / self.filename, allow_pickle=False)
        self.recorder.history = [row for row in history]


class StageCheckpoints:
    """The checkpoint folder of one stage (``DIR/checkpoints/<stage>``) and its rules (module docstring)."""

    def __init__(self, folder: str | Path, stage: str, fingerprint: str, extra_files: tuple[str, ...] = ()) -> None:
        self.folder = Path(folder)
        self.stage = stage
        self.fingerprint = fingerprint
        self.extra_files = tuple(extra_files)

    # ---------------------------------------------------------------- queries
    def checkpoints(self) -> list[Path]:
        """``checkpoint-<step>`` folders, newest (highest step) first."""
        if not self.folder.is_dir():
            return []
        found = [
            (int(m.group(1)), p) for p in self.folder.iterdir() if p.is_dir() and (m := _CHECKPOINT_RE.match(p.name))
        ]
        return [p for _, p in sorted(found, reverse=True)]

    def is_complete(self, checkpoint: Path) -> bool:
        if any(not (checkpoint / name).is_file() for name in (*_REQUIRED, *self.extra_files)):
            return False
        if not any(checkpoint.glob("rng_state*.pth")):
            return False
        try:
            state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return isinstance(state, dict) and "global_step" in state

    def owned(self) -> bool:
        """Whether this folder was made by hf_unlearn for this stage with these exact settings."""
        try:
            marker = json.loads((self.folder / MARKER).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return marker == {"stage": self.stage, "fingerprint": self.fingerprint}

    def latest(self) -> Path | None:
        """The newest complete checkpoint of this stage's current settings, or None."""
        if not self.owned():
            return None
        for checkpoint in self.checkpoints():
            if self.is_complete(checkpoint):
                return checkpoint
        return None

    # --------------------------------------------------------------- actions
    def best_of(self, checkpoint: Path) -> Path | None:
        """The best checkpoint so far that ``checkpoint``'s trainer state names (``load_best_model_at_end``), when
        it is in this folder: resuming keeps it, since the end of training loads it."""
        try:
            state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
            best = state.get("best_model_checkpoint")
        except (OSError, ValueError, AttributeError):
            return None
        path = self.folder / Path(best).name if isinstance(best, str) and best else None
        return path if path is not None and _CHECKPOINT_RE.match(path.name) and path.is_dir() else None

    def prepare(self, *, force: bool = False) -> Path | None:
        """Before training: the checkpoint to resume from (or None), after removing everything unusable."""
        resume = None if force else self.latest()
        keep = set() if resume is None else {resume, self.best_of(resume)}
        for checkpoint in self.checkpoints():
            if checkpoint not in keep:
                why = "--force" if force else ("incomplete or older" if self.owned() else "not made for these settings")
                logger.info("Stage %s: removing checkpoint %s (%s)", self.stage, checkpoint.name, why)
                shutil.rmtree(checkpoint, ignore_errors=True)
        self.folder.mkdir(parents=True, exist_ok=True)
        if not self.owned():
            atomic_write_text(self.folder / MARKER, json.dumps({"stage": self.stage, "fingerprint": self.fingerprint}))
        if resume is not None:
            logger.info("Stage %s: resuming from %s", self.stage, resume.name)
        return resume

    def remove(self) -> None:
        """After the stage is finished: its checkpoints (with their pickles) are no longer needed.

        Under DDP every process calls this; process 0 removes while the others wait at a barrier, so that none
        lists a folder another one is deleting.
        """
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        if not distributed or torch.distributed.get_rank() == 0:
            shutil.rmtree(self.folder, ignore_errors=True)
            parent = self.folder.parent
            with contextlib.suppress(OSError):  # checkpoints/ goes when its last stage is done
                if parent.is_dir() and not any(parent.iterdir()):
                    parent.rmdir()
        if distributed:
            torch.distributed.barrier()


def train_resumable(
    trainer: Any, checkpoints: StageCheckpoints, *, force: bool = False, history: HistoryCheckpoint | None = None
) -> DivergenceError | None:
    """``trainer.train()``, resuming from the stage's last checkpoint; returns the divergence, if any.

    On divergence the stage's last checkpoint (saved before the divergence, with finite weights) is kept: the
    caller takes its weights (``checkpoints.latest()``), records the run as diverged, then calls ``remove()``.
    A file that one of the trainer's callbacks writes into every checkpoint (its ``checkpoint_files``, e.g. the
    official Sharp MinMax's retain optimizer) becomes part of a complete checkpoint: callbacks write at ``on_save``,
    after the Trainer's ``trainer_state.json``, so a kill in between must not leave a checkpoint that looks whole.
    """
    for callback in trainer.callback_handler.callbacks:
        extra = [name for name in getattr(callback, "checkpoint_files", ()) if name not in checkpoints.extra_files]
        checkpoints.extra_files = (*checkpoints.extra_files, *extra)
    is_main = getattr(trainer.args, "process_index", 0) == 0
    resume = checkpoints.prepare(force=force) if is_main else None
    if getattr(trainer.args, "world_size", 1) > 1:
        trainer.accelerator.wait_for_everyone()
        resume = checkpoints.latest()
    trainer.add_callback(DivergenceGuard())
    if history is not None:
        trainer.add_callback(history)
        if resume is not None:
            history.restore(resume)
    try:
        trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
    except DivergenceError as error:
        return error
    return None
