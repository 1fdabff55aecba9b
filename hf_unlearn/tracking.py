"""Tracking a training stage as transformers users expect (docs/design.md, "Tracking").

* One named run per stage: ``run_name`` is ``<recipe>/seed-<seed>/<stage>`` (``<recipe>/seed-<seed>/<forget set>/
  <stage>`` when the recipe has several forget sets) unless the recipe sets one.
* Its files in ``logs/<stage>/`` of the output folder, beside ``models/``: TensorBoard's event files (the Trainer's
  own default, ``<output_dir>/runs/``, would be ``checkpoints/<stage>/``, which is deleted once the stage is done).
* Its final numbers, ``final_<split>_accuracy``, ``final_mia_<feature>`` and ``final_tow``, go to the trackers and
  to ``log_history`` at the stage's last step, and are saved with ``save_metrics`` beside the event files
  (``final_results.json``, ``train_results.json``, ``all_results.json``). A tracker's run ends only after them: the
  trackers' ``on_train_end`` waits for `finish` (`defer_run_end`). The original's numbers on a forget set exist only
  once the set's reference is trained, long after its run ended: its trackers reopen the run to log them (TensorBoard
  writes another event file into ``logs/original/``).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

FINAL = "final"
VERBOSE_LEVELS = ("info", "debug", "detail")


def run_name(recipe: Mapping[str, Any], stage: str, forget_set: str | None = None) -> str:
    """The tracker's name of a stage's run (module docstring)."""
    parts = [recipe["name"], f"seed-{int(recipe['seed'])}", *([forget_set] if forget_set else []), stage]
    return "/".join(parts)


def final_metrics(metrics: Mapping[str, Any], tow: float | None = None, prefix: str = FINAL) -> dict[str, float]:
    """A stage's report entry metrics (``{"accuracy": {...}, "mia": {...}, "attacks": {...}}``, of each attack its
    AUC) and ToW as flat ``<prefix>_*`` numbers; missing ones (a diverged stage without weights, no reference) are
    left out."""
    out = {f"{prefix}_{split}_accuracy": v for split, v in (metrics.get("accuracy") or {}).items() if v is not None}
    out.update({f"{prefix}_mia_{feature}": v for feature, v in (metrics.get("mia") or {}).items() if v is not None})
    attacks = metrics.get("attacks") or {}
    out.update(
        {f"{prefix}_attack_{name}_auc": a["auc"] for name, a in attacks.items() if a and a.get("auc") is not None}
    )
    if tow is not None:
        out[f"{prefix}_tow"] = tow
    return {key: float(value) for key, value in out.items()}


def _tracker_callbacks(trainer: Any) -> list[Any]:
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    kinds = tuple(INTEGRATION_TO_CALLBACK.values())
    return [callback for callback in trainer.callback_handler.callbacks if isinstance(callback, kinds)]


def start(trainer: Any, folder: Path, *, fresh: bool, defer: bool = True) -> None:
    """Before training: TensorBoard writes into ``folder``, emptied first when the stage trains from scratch (its
    earlier events belong to other settings); the trackers' end of run waits for `finish` (unless ``defer`` is off)."""
    from transformers.integrations import TensorBoardCallback

    if fresh and trainer.is_world_process_zero():
        shutil.rmtree(folder, ignore_errors=True)
    for callback in _tracker_callbacks(trainer):
        if isinstance(callback, TensorBoardCallback):
            root = os.environ.get("TENSORBOARD_LOGGING_DIR")  # the user's own folder: one sub-folder per run
            callback.logging_dir = str(Path(root).expanduser() / trainer.args.run_name if root else folder)
        if defer:
            _defer_run_end(callback)


def _defer_run_end(callback: Any) -> None:
    """The callback's ``on_train_end`` does nothing until `finish` calls the real one (an instance attribute hides
    the method; `finish` removes it)."""
    callback.on_train_end = lambda *args, **kwargs: None


def finish(
    trainer: Any,
    folder: Path,
    final: Mapping[str, float],
    *,
    split: str = FINAL,
    train: bool = True,
) -> None:
    """After the stage is scored: log ``final`` (trackers, ``log_history``; printed with ``log_level: info``), save
    it and the training metrics with ``save_metrics`` into ``folder``, then end the trackers' runs."""
    if final:
        trainer.log(dict(final))
    results = {split: dict(final)} if final else {}
    last = next((entry for entry in reversed(trainer.state.log_history) if "train_runtime" in entry), None)
    if train and last is not None:
        results = {"train": {k: v for k, v in last.items() if k != "step"}, **results}
    if results:
        save_results(trainer, folder, results)
    end_runs(trainer)


def save_results(trainer: Any, folder: Path, results: Mapping[str, Mapping[str, float]]) -> None:
    """``<split>_results.json`` and ``all_results.json`` in ``folder``, by the Trainer's own ``save_metrics``."""
    args = trainer.args
    if trainer.is_world_process_zero():
        Path(folder).mkdir(parents=True, exist_ok=True)
    kept = args.output_dir
    args.output_dir = str(folder)  # save_metrics writes into output_dir, which is the (deleted) checkpoint folder
    try:
        for split, metrics in results.items():
            if str(args.log_level) in VERBOSE_LEVELS:
                trainer.log_metrics(split, dict(metrics))
            trainer.save_metrics(split, dict(metrics))
    finally:
        args.output_dir = kept


def end_runs(trainer: Any) -> None:
    """End every tracker's run of this stage: its (deferred) ``on_train_end``; wandb keeps one run per process, so
    it is finished too, and the next stage starts its own."""
    for callback in _tracker_callbacks(trainer):
        callback.__dict__.pop("on_train_end", None)
        callback.on_train_end(
            trainer.args, trainer.state, trainer.control, model=trainer.model, processing_class=trainer.processing_class
        )
    wandb = sys.modules.get("wandb")
    if wandb is not None and "wandb" in (trainer.args.report_to or []) and getattr(wandb, "run", None) is not None:
        wandb.finish()
        for callback in _tracker_callbacks(trainer):
            if hasattr(callback, "_wandb"):
                callback._initialized = False  # a later log of this stage sets a run up again instead of failing


def release(trainer: Any) -> Any:
    """A trainer kept only to log later (the original's): without the optimizer, its schedule and accelerate's
    references to them, which hold as much memory as the weights."""
    trainer.accelerator.free_memory()
    trainer.optimizer = trainer.lr_scheduler = None
    handler = trainer.callback_handler
    handler.optimizer = handler.lr_scheduler = handler.train_dataloader = None
    return trainer
