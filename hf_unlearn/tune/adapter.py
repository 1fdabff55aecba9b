"""The one place `hf-unlearn tune` meets the pipeline: train (or reuse) the shared stages, then build trial trainers.

The original and the reference are the pipeline's own stages in the tuning folder (``models/original``,
``models/retrain``), so a second call, or a study resumed later, reuses them by fingerprint as ``hf-unlearn run``
does. Trials never write stages: each trains a copy of the original and is scored in memory.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ValidationError


@dataclass
class SharedStages:
    """What every trial shares on one seed and forget set: the pipeline, the forget set's splits, the original and
    the reference's accuracies, or, without a reference, the reference-free target estimated from the original."""

    name: str  # "<forget set>" or "seed-<s>/<forget set>"
    pipeline: Any
    splits: Any  # hf_unlearn.pipeline.Splits with retain / forget; splits.prepared.validation is the held-out split
    original: Any
    reference: dict[str, float] | None  # the reference's accuracy on retain, forget and validation (None: none)
    settings: dict[str, Any]  # the tuned run's merged settings (pipeline defaults, unlearn.defaults, the run)
    folder: Path  # the forget set's folder (trial trainers name their unused checkpoint folder after it)
    target: Any = None  # hf_unlearn.metrics.reference_free.ForgetTarget when the recipe has no reference

    @property
    def validation(self) -> Any:
        return self.splits.prepared.validation


def shared_stages(
    recipe: dict[str, Any], run: dict[str, Any], output_dir: Path, *, use_cpu: bool, label: str = ""
) -> list[SharedStages]:
    """Train or reuse the original (once) and the reference of every forget set of a one-seed ``recipe``.

    Several forget sets share the original and get a subfolder each, as in ``hf-unlearn run``."""
    from transformers import set_seed

    from ..forgetting import learning_events_of, original_target
    from ..models import load_reference_model, load_saved_model
    from ..pipeline import Pipeline
    from ..recipe_schema import forget_sets, reference_kind
    from ..steps.plan import unlearn_plan
    from .objective import accuracies

    pipe = Pipeline(recipe, output_dir, use_cpu=use_cpu)
    pipe.check()
    output_dir.mkdir(parents=True, exist_ok=True)
    pipe.check_existing_outputs()
    set_seed(pipe.seed)
    splits = pipe.prepare_data()
    if splits.prepared.validation is None or len(splits.prepared.validation) == 0:
        raise ValidationError("tune: the data has no validation split to score trials on; set data.validation_size.")
    pipe.check_forget_sets(splits)
    original = pipe.original_model(splits)
    plan = unlearn_plan(recipe, run)  # the run's merged settings (steps/plan.py: the one place they merge)
    settings = {**plan.settings, "method": plan.method, "name": plan.stage}
    batch_size = recipe["evaluation"]["batch_size"]
    out = []
    for spec in forget_sets(recipe):
        forget_run = pipe.forget_set(splits, spec)
        set_splits = forget_run.splits
        target = None
        if reference_kind(recipe) == "none":  # retrain: false: the target is estimated from the original
            events = learning_events_of(pipe.store.learning_events_path, set_splits.manifest)
            validation = splits.prepared.validation
            target = original_target(
                original,
                retain=set_splits.retain,
                forget=set_splits.forget,
                validation=validation,
                batch_size=batch_size,
                learning_events=events,
            )
            reference_model = None
        elif reference_kind(recipe) == "retrain":
            pipe.reference(forget_run, original)
            reference_model = load_reference_model_folder(
                load_saved_model, pipe.store.at(forget_run.folder).stage_dir("retrain")
            )
        else:  # given: evaluated, never trained
            reference_model = load_reference_model(
                recipe["retrain"]["from"], splits.class_names, trust_remote_code=recipe["model"]["trust_remote_code"]
            )
        reference = None
        if reference_model is not None:
            reference = accuracies(
                reference_model, set_splits.retain, set_splits.forget, splits.prepared.validation, batch_size
            )
        name = f"{label}{spec['name']}"
        out.append(SharedStages(name, pipe, set_splits, original, reference, settings, forget_run.folder, target))
    return out


def load_reference_model_folder(load: Any, folder: Path) -> Any:
    """The retrained reference's saved weights (a diverged retrain without weights cannot be tuned against)."""
    if not (folder / "config.json").is_file():
        raise ValidationError(
            f"tune: the reference in {folder} has no weights (its training diverged); fix the retrain settings."
        )
    return load(str(folder))


def trial_trainer(shared: SharedStages, settings: dict[str, Any], callbacks: list[Any]) -> Any:
    """A trainer for one trial: a copy of the original, the run's method, the trial's settings; nothing saved."""
    from transformers import PrinterCallback

    from ..checkpoints import DivergenceGuard
    from ..monitoring import EVALUATION_KEYS, SELECTION_KEYS
    from ..steps.plan import StagePlan, arguments_for
    from ..trainers import get_trainer_class

    settings = dict(settings)
    method = settings.pop("method")
    name = settings.pop("name")
    # Trials keep no checkpoint and log nothing: the objective reads the model itself at each epoch's end, and
    # scores the last epoch's weights (no Trainer evaluation choosing a checkpoint).
    for key in (*EVALUATION_KEYS, *SELECTION_KEYS):
        settings.pop(key, None)
    settings.update(save_strategy="no", logging_strategy="no", disable_tqdm=True, report_to="none")
    plan = StagePlan(f"tune-{name}", f"tune ({name})", method, settings)
    pipeline = shared.pipeline
    args = arguments_for(
        plan, output_dir=shared.folder / "checkpoints" / plan.stage, use_cpu=pipeline.use_cpu, seed=pipeline.seed
    )
    trainer = get_trainer_class(method)(
        model=copy.deepcopy(shared.original),
        args=args,
        retain_dataset=shared.splits.retain,
        forget_dataset=shared.splits.forget,
        augmentation=pipeline.runner.augmentation,
        callbacks=[DivergenceGuard(), *callbacks],
    )
    trainer.remove_callback(PrinterCallback)  # the Trainer would print its final metrics line per trial
    return trainer
