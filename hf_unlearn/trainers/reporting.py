"""What an `UnlearnTrainer` reports: per-branch losses and forget accuracy in its logs, and its model card."""

from __future__ import annotations

from typing import Any

import torch


class TrainerReporting:
    """Mixin of `UnlearnTrainer`: its ``log`` and ``create_model_card`` (kept apart from the training step)."""

    # --------------------------------------------------------------- logging
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

    # ------------------------------------------------------------ model card
    def create_model_card(
        self,
        language: str | None = None,
        license: str | None = None,
        tags: str | list[str] | None = None,
        model_name: str | None = None,
        finetuned_from: str | None = None,
        tasks: str | list[str] | None = None,
        dataset_tags: str | list[str] | None = None,
        dataset: str | list[str] | None = None,
        dataset_args: str | list[str] | None = None,
        **unlearning: Any,
    ) -> None:
        """Write the unlearning model card of ``hf-unlearn push`` to ``output_dir/README.md`` (so `push_to_hub`
        publishes it). Extra keywords: ``run`` (the run's name, default method[_sharpness]) and those of
        `hf_unlearn.trainers.card.trainer_report`: ``test_dataset``, ``forget_set`` ({kind, size, commitment}),
        ``references`` (report entries), ``mia_shadow_size``, ``mia_seed``."""
        if not self.is_world_process_zero():
            return
        from pathlib import Path

        from ..hub import build_model_card
        from ..models import is_timm_model
        from .card import trainer_report

        name = self.hub_model_id or self.args.hub_model_id or model_name or Path(self.args.output_dir).name
        base = finetuned_from or getattr(getattr(self.model, "config", None), "_name_or_path", None) or None
        data = dataset[0] if isinstance(dataset, list) else dataset
        method, sharpness = self.args.method, self.args.sharpness
        run = unlearning.pop("run", None) or (method if sharpness == "none" else f"{method}_{sharpness}")
        report = trainer_report(self, run=run, dataset=data, finetuned_from=base, **unlearning)
        library = "timm" if is_timm_model(self.model) else "transformers"
        stem = getattr(getattr(self.model, "config", None), "stem", None)
        card = build_model_card(report, run, model_name=name, base_model=base, library_name=library, stem=stem)
        card.save(Path(self.args.output_dir) / "README.md")
