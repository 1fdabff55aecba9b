"""Training stages: the original (pretraining), the reference (retrained, or given) and one unlearning run.

Each step returns the stage's report entry (its ``stage.json`` record with its metrics), reusing a finished stage
whose fingerprint is unchanged and resuming an interrupted one from its checkpoints. A stage whose training
diverges is recorded with the weights of its last good checkpoint (or none) and ``status: diverged``.
"""

from __future__ import annotations

import copy
import logging
import time
from typing import Any

import numpy as np

from ..checkpoints import HistoryCheckpoint, StageCheckpoints, train_resumable
from ..console import use_stage_progress
from ..errors import DivergenceError, located
from ..models import build_model_from_config, fresh_model, load_reference_model, load_saved_model
from ..monitoring import selection_record
from ..recipe import recipe_augmentation
from .forget import ForgetSetRun, Splits
from .plan import StagePlan, fingerprint, given_reference_fingerprint, original_plan, split_key
from .score import NO_METRICS, Evaluator
from .store import StageStore
from .tracked import TrackedStages

logger = logging.getLogger(__name__)


class StageRunner(TrackedStages):
    """Runs the stages of one recipe: trains (or reuses) each into ``store``'s output folder, scoring them with
    ``evaluator``."""

    def __init__(self, recipe: dict[str, Any], store: StageStore, evaluator: Evaluator, *, force: bool, use_cpu: bool):
        self.recipe = recipe
        self.store = store
        self.evaluator = evaluator
        self.force = force
        self.use_cpu = use_cpu
        self.seed = int(recipe["seed"])
        self.augmentation = recipe_augmentation(recipe)  # training inputs only (data.augmentation)
        self._start_tracking()

    # ---------------------------------------------------------------------------------------------- original
    def new_model(self, splits: Splits) -> Any:
        """The model pretraining starts from: built from ``model.config`` (seeded) or loaded from the Hub."""
        from ..models import load_pretrained_model
        from ..validation import check_model_config, check_pretrained_model, pretrained_load_error

        spec = self.recipe["model"]
        if spec["config"] is not None:
            check_model_config(spec["config"], splits.class_names)
            with located("model.config"):
                return build_model_from_config(spec["config"], splits.class_names, self.seed, spec.get("stem"))
        check_pretrained_model(
            spec["name_or_path"],
            splits.class_names,
            trust_remote_code=spec["trust_remote_code"],
            ignore_mismatched_sizes=bool(spec.get("ignore_mismatched_sizes")),
        )
        try:
            return load_pretrained_model(
                spec["name_or_path"], splits.class_names, trust_remote_code=spec["trust_remote_code"]
            )
        except (OSError, ValueError) as error:
            raise pretrained_load_error(spec["name_or_path"], error) from error

    def original(self, splits: Splits) -> Any:
        """Pretrain on the whole training set, recording per-sample confidence (learning events); or load it."""
        from ..callbacks import ConfidenceRecorder

        plan = original_plan(self.recipe)
        key = fingerprint(self.recipe, plan, split=split_key(splits.prepared))
        if self.store.finished("original", key) is not None:
            return load_saved_model(str(self.store.stage_dir("original")))
        start = time.perf_counter()
        model = self.new_model(splits)
        recorder = ConfidenceRecorder(splits.train, batch_size=self.recipe["evaluation"]["batch_size"])
        evaluated = self.evaluated("original", splits)
        args = self.arguments(plan, self.store, evaluates=evaluated is not None)
        trainer = self._trainer(
            "pretrain", model, args, retain_dataset=splits.train, callbacks=[recorder], eval_dataset=evaluated
        )
        use_stage_progress(trainer, "original")
        if trainer.args.num_train_epochs or trainer.args.max_steps > 0:
            logger.info("Stage original: pretraining on %d samples", len(splits.train))
        else:
            logger.info("Stage original: the given model as it is (pretrain.epochs: 0)")
        history = HistoryCheckpoint(recorder)
        checkpoints = StageCheckpoints(args.output_dir, "original", key, extra_files=(history.filename,))
        # Its run ends with pretraining: its numbers on a forget set come much later (`original_entry`).
        logs = self.start_tracking(trainer, self.store.logs_dir("original"), checkpoints, defer=False)
        diverged = train_resumable(trainer, checkpoints, force=self.force, history=history)
        if diverged is not None:
            checkpoints.remove()
            raise DivergenceError(
                f"pretrain: {diverged} Every later stage starts from the pretrained model, so the recipe stops "
                "here; fix pretrain.learning_rate (or the data) and rerun.",
                step=diverged.step,
                epoch=diverged.epoch,
                loss=diverged.loss,
            )
        # pretrain.epochs: 0 keeps a loaded (Hub) model as the original: no epochs, so no learning events.
        extra = {"learning_events.npy": recorder.mean_confidence()} if recorder.history else {}
        if extra and not np.isfinite(extra["learning_events.npy"]).all():
            checkpoints.remove()
            raise DivergenceError(
                "pretrain: the pretrained model's predictions are not finite (its weights or BatchNorm statistics "
                "overflow); the run diverged. Every later stage starts from it: lower pretrain.learning_rate."
            )
        self.keep_original(trainer, logs)
        record = _record(args, time.perf_counter() - start, key, log_history=trainer.state.log_history)
        self.store.save("original", model, record, extra_arrays=extra)
        checkpoints.remove()
        return model

    def original_entry(self, run: ForgetSetRun) -> dict[str, Any]:
        """The original's report entry on one forget set (it is saved before any forget set exists)."""
        record = self.store.record("original")
        folder = str(self.store.stage_dir("original"))
        metrics = self.evaluator.scores(run, "original", record["fingerprint"], lambda: load_saved_model(folder))
        self.log_original(run, metrics)
        return {**record, **metrics}

    # -------------------------------------------------------------------------------------------- reference
    def given_reference(self, run: ForgetSetRun) -> dict[str, Any]:
        """``retrain: {from: ...}``: a reference retrained elsewhere, scored like a retrained one (not copied)."""
        source = self.recipe["retrain"]["from"]
        store = self.store.at(run.folder)
        key = given_reference_fingerprint(self.recipe, run.manifest.sha256, split_key(run.splits.prepared))
        record = store.finished("retrain", key)

        def load():
            with located("retrain.from"):
                return load_reference_model(
                    source, run.splits.class_names, trust_remote_code=self.recipe["model"]["trust_remote_code"]
                )

        if record is None:
            start = time.perf_counter()
            metrics = self.evaluator.metrics(load(), run.splits)  # every process predicts a shard (DDP)
            record = {
                "method": "retrain",
                "sharpness": "none",
                "hyperparameters": {},
                "reference": "given",
                "fingerprint": key,
                "status": "finished",
                "wall_seconds": round(time.perf_counter() - start, 3),  # loading and evaluating it
            }
            store.save_record("retrain", record)
            self.evaluator.remember(run, "retrain", key, metrics)
        else:
            metrics = self.evaluator.scores(run, "retrain", key, load)
        self.remember_reference(run, "retrain", metrics)
        return {**record, **metrics}

    def initial_reference(self, original: Any, splits: Splits, seed: int) -> Any:
        """The retrained reference's starting weights: never the original's.

        A model built from ``model.config`` is rebuilt exactly as the original was before pretraining (same config,
        same seed: the same initial weights, only the data differs); a loaded (Hub) model is rebuilt from its config
        with its architecture's own initialisation (`hf_unlearn.models.fresh_model`).
        """
        spec = self.recipe["model"]
        if spec["config"] is not None:
            with located("model.config"):
                return build_model_from_config(spec["config"], splits.class_names, seed, spec.get("stem"))
        return fresh_model(original.config, seed, trust_remote_code=spec["trust_remote_code"])

    # ------------------------------------------------------------------------------------- retrain, unlearn
    def stage(self, plan: StagePlan, run: ForgetSetRun, original: Any) -> dict[str, Any]:
        """Train stage ``plan`` (the retrain, or an unlearning run starting from ``original``) on ``run``'s
        forget set, or reuse it; its report entry."""
        store = self.store.at(run.folder)
        name = plan.stage
        key = fingerprint(self.recipe, plan, run.manifest.sha256, split_key(run.splits.prepared))
        record = store.finished(name, key)
        if record is not None:
            load = (lambda: load_saved_model(str(store.stage_dir(name)))) if store.has_weights(name) else (lambda: None)
            metrics = self.evaluator.scores(run, name, key, load)
            self.remember_reference(run, plan.method, metrics)
            return {**record, **metrics}
        start = time.perf_counter()
        evaluated = self.evaluated(name, run.splits)
        args = self.arguments(plan, store, evaluates=evaluated is not None, run=run)
        extra: dict[str, Any] = {"eval_dataset": evaluated}
        if plan.method == "retrain":
            model = self.initial_reference(original, run.splits, args.seed)
            extra["reinit"] = False
        else:
            model = copy.deepcopy(original)
        stopper = self._stopper(plan, run, original)
        extra["callbacks"] = [*([] if stopper is None else [stopper]), *self.early_stopping(plan)]
        trainer = self._trainer(
            plan.method, model, args, retain_dataset=run.splits.retain, forget_dataset=run.splits.forget, **extra
        )
        use_stage_progress(trainer, name)
        logger.info("Stage %s: %s (sharpness=%s)", name, plan.method, args.sharpness)
        checkpoints = StageCheckpoints(args.output_dir, name, key)
        logs = self.start_tracking(trainer, store.logs_dir(name), checkpoints)
        diverged = train_resumable(trainer, checkpoints, force=self.force)
        metrics: dict[str, Any] = {}
        if diverged is None:
            try:
                metrics = self.evaluator.metrics(model, run.splits)
            except DivergenceError as error:  # finite losses, but the predictions overflow (e.g. BatchNorm stats)
                diverged = error
        details: dict[str, Any] = {"log_history": trainer.state.log_history}
        details.update(selection_record(trainer, plan.early_stopping))
        if stopper is not None:
            details["early_stop"] = stopper.record(trainer.state.max_steps)
        if diverged is not None:
            model, metrics, details = self._last_good(name, run, checkpoints, diverged)
        self.finish_stage(trainer, logs, run, plan.method, metrics)
        record = _record(
            args,
            time.perf_counter() - start,
            key,
            status="finished" if diverged is None else "diverged",
            **details,
        )
        store.save(name, model, record)
        self.evaluator.remember(run, name, key, metrics)
        checkpoints.remove()
        return {**store.record(name), **metrics}

    def _stopper(self, plan: StagePlan, run: ForgetSetRun, original: Any) -> Any:
        """The run's ``early_stop`` callback, its reference-free target estimated from the original (docs/tuning.md,
        "Without a reference"); None when the run has none."""
        if plan.early_stop is None:
            return None
        from ..callbacks import StopWhenForgotten
        from ..forgetting import learning_events_of, original_target

        splits, batch_size = run.splits, self.recipe["evaluation"]["batch_size"]
        target = original_target(
            original,
            retain=splits.retain,
            forget=splits.forget,
            validation=splits.prepared.validation,
            batch_size=batch_size,
            learning_events=learning_events_of(self.store.learning_events_path, splits.manifest),
        )
        validation = splits.prepared.validation
        return StopWhenForgotten(
            target, forget=splits.forget, validation=validation, settings=plan.early_stop, batch_size=batch_size
        )

    def _last_good(
        self, name: str, run: ForgetSetRun, checkpoints: StageCheckpoints, diverged: DivergenceError
    ) -> tuple[Any, dict[str, Any], dict[str, Any]]:
        """A diverged run keeps the weights of its last checkpoint (saved before the divergence, checked finite)
        with their metrics, or, without a usable checkpoint, no weights and null metrics."""
        good = checkpoints.latest()
        divergence = {**diverged.record(), "weights_from_step": None if good is None else int(good.name.split("-")[-1])}
        model, metrics = None, dict(NO_METRICS)
        if good is not None:
            model = load_saved_model(str(good))
            try:
                metrics = self.evaluator.metrics(model, run.splits)
            except DivergenceError:  # the checkpoint's predictions are not finite either
                model, divergence["weights_from_step"] = None, None
        kept = divergence["weights_from_step"]
        logger.warning(
            "Stage %s diverged: %s %s",
            name,
            diverged,
            f"Its entry keeps the weights of step {kept}."
            if kept is not None
            else "It has no usable checkpoint: no weights, null metrics.",
        )
        return model, metrics, {"divergence": divergence}

    def _trainer(self, method: str, model: Any, args: Any, **kwargs: Any) -> Any:
        from ..trainers import get_trainer_class

        return get_trainer_class(method)(model=model, args=args, augmentation=self.augmentation, **kwargs)


def _record(args: Any, wall_seconds: float, key: str, status: str = "finished", **details: Any) -> dict[str, Any]:
    """A stage's ``stage.json``: method, settings, time, fingerprint, status and details (log history,
    divergence). Its metrics are kept by the evaluator."""
    return {
        "method": args.method,
        "sharpness": args.sharpness,
        "hyperparameters": args.hyperparameters(),
        "wall_seconds": round(wall_seconds, 3),
        "fingerprint": key,
        "status": status,
        **details,
    }
