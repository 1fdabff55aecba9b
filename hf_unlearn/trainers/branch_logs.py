"""What an `UnlearnTrainer` adds to its training logs: each branch's mean loss.

Accuracies (on retain, forget, validation) come from the Trainer's own evaluation (`hf_unlearn.trainers.eval_loop`,
``eval_dataset`` and ``eval_strategy``) as ``eval_<name>_accuracy``, not from the training logs.
"""

from __future__ import annotations

from typing import Any

import torch


class BranchLogs:
    """Mixin of `UnlearnTrainer`: its ``log`` (kept apart from the training step)."""

    def _record_branch_loss(self, name: str, loss: torch.Tensor) -> None:
        """Sum each branch's loss between logging steps (on the device: no synchronisation per step)."""
        sums = self.__dict__.setdefault("_branch_losses", {})
        total, count = sums.get(name, (0.0, 0))
        sums[name] = (total + loss.detach().float(), count + 1)

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """Training logs get each branch's mean loss since the last log (``loss_retain``, ``loss_forget`` ...), for
        ``report_to`` and ``log_history``."""
        if "loss" in logs:
            sums = self.__dict__.pop("_branch_losses", {})
            for name, (total, count) in sums.items():
                logs[f"loss_{name}"] = round(float(total) / max(count, 1), 4)
        super().log(logs, *args, **kwargs)
