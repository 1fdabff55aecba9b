"""What a pipeline run shows on the terminal: one progress bar per training stage, named after it.

The Trainer's own `ProgressCallback` prints every log as a raw dict line (``{'loss': '-0.72', ...}``) and
`PrinterCallback` (``disable_tqdm``) prints them without a bar; a stage replaces both with `StageProgress`, which
prints those lines only when the stage's ``log_level`` asks for them (info, debug or detail). The metrics still go
to ``report_to`` and to the stage's ``log_history`` (stage.json). `quiet_library_bars` turns off transformers'
per-save "Writing model shards" and "Loading weights" bars (one per epoch checkpoint otherwise).
"""

from __future__ import annotations

from typing import Any

from transformers.trainer_callback import PrinterCallback, ProgressCallback

VERBOSE_LEVELS = ("info", "debug", "detail")


class StageProgress(ProgressCallback):
    """One bar for the whole stage (``desc`` = the stage's name); log lines only when asked (module docstring)."""

    def __init__(self, stage: str, bar: bool = True) -> None:
        super().__init__()
        self.stage = stage
        self.bar = bar

    def on_train_begin(self, args, state, control, **kwargs):
        self.current_step = 0
        if state.is_world_process_zero and self.bar:
            from tqdm.auto import tqdm

            self.training_bar = tqdm(total=state.max_steps, desc=self.stage, dynamic_ncols=True, unit="step")

    def on_step_end(self, args, state, control, **kwargs):
        if self.training_bar is not None:
            super().on_step_end(args, state, control, **kwargs)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if args.log_level not in VERBOSE_LEVELS or not state.is_world_process_zero:
            return
        if self.training_bar is not None:
            super().on_log(args, state, control, logs=logs, **kwargs)
        else:
            print({k: v for k, v in (logs or {}).items() if k != "total_flos"})

    def on_train_end(self, args, state, control, **kwargs):
        if self.training_bar is not None:
            super().on_train_end(args, state, control, **kwargs)


def use_stage_progress(trainer: Any, stage: str) -> None:
    """Replace the Trainer's progress / printer callbacks by a `StageProgress` for ``stage``."""
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(StageProgress(stage, bar=not trainer.args.disable_tqdm))


def quiet_library_bars() -> None:
    """No transformers progress bars for saving or loading weights (the CLI calls this once)."""
    from transformers.utils import logging

    logging.disable_progress_bar()


def check_report_to(report_to: list[str] | str | None) -> None:
    """Every tracker named in ``report_to`` is installed (the Trainer would fail only when the stage starts)."""
    from transformers.integrations import get_available_reporting_integrations

    names = [report_to] if isinstance(report_to, str) else list(report_to or [])
    available = set(get_available_reporting_integrations())
    missing = [n for n in names if n not in ("none", "all") and n not in available]
    if missing:
        raise ValueError(
            f"report_to names {', '.join(missing)}, which is not installed here (pip install {missing[0]}); installed "
            "trackers: "
            f"{', '.join(sorted(available)) or 'none'}. Leave report_to out (or none) to track nothing."
        )
