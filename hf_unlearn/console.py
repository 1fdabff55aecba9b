"""What a pipeline run shows on the terminal: one progress bar per training stage, named after it.

The Trainer's own `ProgressCallback` prints every log as a raw dict line (``{'loss': '-0.72', ...}``) and
`PrinterCallback` (``disable_tqdm``) prints them without a bar; a stage replaces both with `StageProgress`, which
prints those lines only when the stage's ``log_level`` asks for them (info, debug or detail). The metrics still go
to ``report_to`` and to the stage's ``log_history`` (stage.json). `quiet_library_bars` turns off transformers'
per-save "Writing model shards" and "Loading weights" bars (one per epoch checkpoint otherwise).

While a stage's bar is open, the console log lines of hf_unlearn (the root logger's handler) and of transformers
go through ``tqdm.write``, so a warning lands on a line of its own instead of being spliced into the bar, and
transformers' "mtime may not be reliable" notice is dropped (see `_drop_mtime_notice`). `format_settings` shows
searched settings with 4 significant digits (the files keep full precision).
"""

from __future__ import annotations

import logging
from typing import Any

from transformers.trainer_callback import PrinterCallback, ProgressCallback

VERBOSE_LEVELS = ("info", "debug", "detail")


class StageProgress(ProgressCallback):
    """One bar for the whole stage (``desc`` = the stage's name); log lines only when asked (module docstring)."""

    def __init__(self, stage: str, bar: bool = True) -> None:
        super().__init__()
        self.stage = stage
        self.bar = bar
        self._console_handlers: list[tuple[logging.Logger, list[logging.Handler]]] = []

    def on_train_begin(self, args, state, control, **kwargs):
        self.current_step = 0
        logging.getLogger(MTIME_LOGGER).addFilter(_drop_mtime_notice)  # (a no-op when it is there already)
        if state.is_world_process_zero and self.bar:
            from tqdm.auto import tqdm

            self.training_bar = tqdm(total=state.max_steps, desc=self.stage, dynamic_ncols=True, unit="step")
            self._console_handlers = _write_logs_above_bars()

    def on_step_end(self, args, state, control, **kwargs):
        if self.training_bar is not None:
            super().on_step_end(args, state, control, **kwargs)

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        pass  # one bar per stage, none per evaluation set (the Trainer evaluates retain, forget, validation in turn)

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
        for logger, handlers in self._console_handlers:
            logger.handlers = handlers
        self._console_handlers = []
        logging.getLogger(MTIME_LOGGER).removeFilter(_drop_mtime_notice)


# transformers' checkpoint rotation orders checkpoints by mtime and, when the newest two are less than a second
# apart, says the filesystem's mtime "may not be reliable" and orders them by step. A stage's epochs on small data
# are that short, and the step order is the right one: the notice says nothing about the user's filesystem.
MTIME_LOGGER = "transformers.trainer_utils"


def _drop_mtime_notice(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("mtime may not be reliable")


class _LineAboveBars(logging.StreamHandler):
    """A console handler that writes through ``tqdm.write``: the open bars are cleared, the line is written, the bars
    are drawn again below it."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=self.stream)
            self.flush()
        except Exception:
            self.handleError(record)


def _write_logs_above_bars() -> list[tuple[logging.Logger, list[logging.Handler]]]:
    """Swap the plain console handlers of the root logger (hf_unlearn's lines) and of transformers (which does not
    propagate) for `_LineAboveBars`; returns what to put back. Handlers of other kinds (files, pytest's capture) stay."""
    swapped = []
    for logger in (logging.getLogger(), logging.getLogger("transformers")):
        if not any(type(h) is logging.StreamHandler for h in logger.handlers):
            continue
        swapped.append((logger, logger.handlers))
        logger.handlers = [_above_bars(h) if type(h) is logging.StreamHandler else h for h in logger.handlers]
    return swapped


def _above_bars(handler: logging.StreamHandler) -> _LineAboveBars:
    out = _LineAboveBars(handler.stream)
    out.setLevel(handler.level)
    out.setFormatter(handler.formatter)
    out.filters = list(handler.filters)
    return out


def use_stage_progress(trainer: Any, stage: str) -> None:
    """Replace the Trainer's progress / printer callbacks by a `StageProgress` for ``stage``."""
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(StageProgress(stage, bar=not trainer.args.disable_tqdm))


def format_settings(params: dict[str, Any]) -> str:
    """``alpha=0.9296, epochs=3``: floats to 4 significant digits, for a line on the terminal."""
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


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
