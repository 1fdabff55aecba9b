"""What an `UnlearnTrainer` adds to its training logs: each branch's mean loss and the forget set's accuracy."""

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
        """Training logs get each branch's mean loss since the last log (``loss_retain``, ``loss_forget`` ...) and
        the accuracy on the forget set (``forget_accuracy``), for ``report_to`` and ``log_history``."""
        if "loss" in logs:
            sums = self.__dict__.pop("_branch_losses", {})
            for name, (total, count) in sums.items():
                logs[f"loss_{name}"] = round(float(total) / max(count, 1), 4)
            if self.log_forget_accuracy and self.forget_dataset is not None and len(self.forget_dataset):
                from ..metrics import accuracy, predict_probabilities

                with torch.random.fork_rng(devices=[]):  # the loader draws a seed: leave training's stream alone
                    probs = predict_probabilities(
                        self.model, self.forget_dataset, batch_size=self.args.per_device_eval_batch_size
                    )
                logs["forget_accuracy"] = round(accuracy(*probs), 4)
        super().log(logs, *args, **kwargs)
