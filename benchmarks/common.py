"""What the benchmark scripts share: CUDA synchronisation, a per-step timer callback, the quiet SGD training
arguments, whole cycles of the cheap SAM, and classifiers built from an hf_unlearn ``model.config``."""

from __future__ import annotations

import time
from typing import Any, Protocol

import torch
from torch import nn


class Sync:
    """``torch.cuda.synchronize()`` on CUDA, nothing elsewhere: every timed span starts and ends with one."""

    def __init__(self, device: torch.device | str) -> None:
        self.cuda = torch.device(device).type == "cuda"

    def __call__(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()


class Probe(Protocol):
    """Measures something over one step (step_cost_memory.MemoryProbe)."""

    def begin(self) -> None: ...

    def end(self) -> None: ...


def step_timer(sync: Sync, probe: Probe | None = None):
    """A `TrainerCallback` timing every optimizer step from ``on_step_begin`` to ``on_step_end`` (``durations``)
    and the time between steps (``gaps``: data loading and collation); ``probe`` brackets each step."""
    from transformers import TrainerCallback  # here: `--help` should not wait for transformers

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.durations: list[float] = []
            self.gaps: list[float] = []
            self._start = 0.0
            self._last_end: float | None = None

        def on_train_begin(self, args, state, control, **kwargs):
            self._last_end = None

        def on_step_begin(self, args, state, control, **kwargs):
            if probe is not None:
                probe.begin()
            sync()
            self._start = time.perf_counter()
            if self._last_end is not None:
                self.gaps.append(self._start - self._last_end)

        def on_step_end(self, args, state, control, **kwargs):
            sync()
            self._last_end = time.perf_counter()
            self.durations.append(self._last_end - self._start)
            if probe is not None:
                probe.end()

    return StepTimer()


def sgd_arguments(
    *,
    batch_size: int,
    max_steps: int,
    learning_rate: float,
    use_cpu: bool,
    seed: int = 0,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
) -> dict[str, Any]:
    """`TrainingArguments` keywords of a timed run: SGD with momentum, constant lr, no clipping, no logging,
    checkpoints, reporting or progress bar, data loaded in the main process."""
    return {
        "per_device_train_batch_size": batch_size,
        "max_steps": max_steps,
        "learning_rate": learning_rate,
        "lr_scheduler_type": "constant",
        "optim": "sgd",
        "optim_args": f"momentum={momentum}",
        "weight_decay": weight_decay,
        "max_grad_norm": 0.0,
        "logging_strategy": "no",
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "use_cpu": use_cpu,
        "seed": seed,
    }


def quiet(trainer) -> None:
    """No metrics line at the end of ``train()`` and no progress bar: the scripts print their own tables."""
    from transformers import PrinterCallback, ProgressCallback

    for callback in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(callback)


def whole_cycles(steps: int, every: int) -> int:
    """``steps`` rounded up to whole cycles of the cheap SAM (one full step and ``every - 1`` one-pass steps)."""
    return -(-steps // every) * every


def build_classifier(config: dict[str, Any], num_labels: int, seed: int) -> nn.Module:
    """An hf_unlearn model from its recipe ``model.config``, with classes named "0" .. "num_labels - 1"."""
    from hf_unlearn.models import build_model_from_config

    return build_model_from_config(dict(config), [str(i) for i in range(num_labels)], seed)
