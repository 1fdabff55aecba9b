"""What a stage runner adds for tracking and evaluation (`hf_unlearn.tracking`, `hf_unlearn.monitoring`): a
stage's run name, evaluation sets and schedule, its early-stopping callback, and its final numbers with ToW against
the reference of its forget set, logged into its run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import tracking
from ..monitoring import eval_datasets
from .forget import ForgetSetRun, Splits
from .plan import StagePlan, arguments_for
from .store import StageStore


class TrackedStages:
    """Mixin of `hf_unlearn.steps.train.StageRunner` (which sets ``recipe``, ``seed``, ``use_cpu`` and ``force``)."""

    recipe: dict[str, Any]
    seed: int
    use_cpu: bool
    force: bool

    def _start_tracking(self) -> None:
        self.references: dict[Path, Any] = {}  # the reference's accuracies per forget-set folder (ToW when logged)
        # The original's trainer when it trained here, kept (without its optimizer) to log its numbers on each forget
        # set into its run once the set's reference exists (`log_original`); the forget-set folders logged.
        self._original_run: tuple[Any, Path] | None = None
        self._original_logged: set[Path] = set()

    def arguments(
        self, plan: StagePlan, store: StageStore, *, evaluates: bool = False, run: ForgetSetRun | None = None
    ):
        """The stage's training arguments: the recipe's settings over the run name, the evaluation batch size and,
        when the stage has something to evaluate, an evaluation every epoch."""
        several = run is not None and isinstance(self.recipe["forget"], list)
        defaults = {
            "run_name": tracking.run_name(self.recipe, plan.stage, run.name if several else None),
            "per_device_eval_batch_size": self.recipe["evaluation"]["batch_size"],
            **({"eval_strategy": "epoch"} if evaluates else {}),
        }
        return arguments_for(
            plan, output_dir=store.checkpoint_dir(plan.stage), use_cpu=self.use_cpu, seed=self.seed, defaults=defaults
        )

    @staticmethod
    def evaluated(stage: str, splits: Splits) -> dict[str, Any] | None:
        """The stage's ``eval_dataset`` dict (never the test split), or None."""
        validation = None if splits.prepared is None else splits.prepared.validation
        if stage == "original":
            return eval_datasets(stage, validation=validation)
        return eval_datasets(stage, validation=validation, retain=splits.retain, forget=splits.forget)

    @staticmethod
    def early_stopping(plan: StagePlan) -> list[Any]:
        """transformers' early stopping for a run with ``early_stopping_patience``."""
        if plan.early_stopping is None:
            return []
        from ..callbacks import BestMetricStopping

        return [BestMetricStopping(plan.early_stopping["patience"], plan.early_stopping["threshold"])]

    def start_tracking(self, trainer: Any, logs: Path, checkpoints: Any, *, defer: bool = True) -> Path:
        """`hf_unlearn.tracking.start` for a stage about to train (from scratch unless it resumes a checkpoint)."""
        tracking.start(trainer, logs, fresh=self.force or checkpoints.latest() is None, defer=defer)
        return logs

    def remember_reference(self, run: ForgetSetRun, method: str, metrics: dict[str, Any]) -> None:
        if method == "retrain":
            self.references[run.folder] = metrics.get("accuracy")

    def tow(self, run: ForgetSetRun, method: str, metrics: dict[str, Any]) -> float | None:
        """ToW of a stage's metrics against the reference of ``run`` (as the report computes it), when there is one."""
        from ..metrics.tow import tug_of_war

        reference = self.references.get(run.folder)
        if method == "retrain" or reference is None or metrics.get("accuracy") is None:
            return None
        return tug_of_war(metrics["accuracy"], reference)

    def finish_stage(self, trainer: Any, logs: Path, run: ForgetSetRun, method: str, metrics: dict[str, Any]) -> None:
        """A retrain or unlearning stage is scored: its final numbers go to its run, which then ends."""
        self.remember_reference(run, method, metrics)
        tracking.finish(trainer, logs, tracking.final_metrics(metrics, self.tow(run, method, metrics)))

    def keep_original(self, trainer: Any, logs: Path) -> None:
        """The original trained here: its run ended with pretraining; keep its trainer to log its forget-set numbers."""
        tracking.finish(trainer, logs, {})  # its training metrics
        self._original_run = (tracking.release(trainer), logs)

    def log_original(self, run: ForgetSetRun, metrics: dict[str, Any]) -> None:
        """The original's numbers on ``run``'s forget set (with ToW once the set's reference exists), into its run:
        ``final_*``, or ``final_<set>_*`` when the recipe has several forget sets."""
        if self._original_run is None or run.folder in self._original_logged:
            return
        trainer, logs = self._original_run
        prefix = f"{tracking.FINAL}_{run.name}" if isinstance(self.recipe["forget"], list) else tracking.FINAL
        final = tracking.final_metrics(metrics, self.tow(run, "original", metrics), prefix)
        tracking.finish(trainer, logs, final, split=prefix, train=False)
        self._original_logged.add(run.folder)
