"""Recipe -> stage plans: every training stage with its merged settings, where each setting came from, and the
fingerprint of what its result depends on. This is the only place stage settings are merged; `check_plans`
validates them before anything trains, and `arguments_for` turns a plan into the stage's training arguments.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..forgetting import early_stop_settings
from ..monitoring import argument_defaults, pop_early_stopping, untracked_keys
from ..recipe_schema import REFERENCE_DEFAULTS, UNLEARN_DEFAULTS
from ..recipe_schema import TRAINING_ALIASES as _ALIASES
from ..registry import own_settings

# Bumped when a stage's result changes for the same settings, so old outputs are redone, not reused.
# 2: retrain starts from the model's own initialisation; random_label / salun train on one shuffled union; forget
# draws and random labels are per item from (seed, epoch) streams.
SEMANTICS = 2
_FIELD_ALIASES = {name: alias for alias, name in _ALIASES.items()}


@dataclass
class StagePlan:
    """One training stage as the recipe describes it: its name, method and merged training settings.

    ``layers`` are the recipe sections the settings came from, most specific first, e.g.
    ``[("unlearn.runs[1]", run), ("unlearn.defaults", defaults)]``; they locate a bad value in the recipe.
    """

    stage: str
    where: str
    method: str
    settings: dict[str, Any]
    layers: list[tuple[str, Mapping[str, Any]]] = field(default_factory=list)
    early_stop: dict[str, Any] | None = None  # a run's `early_stop` (hf_unlearn.forgetting): not an argument
    # early_stopping_patience / _threshold: arguments of transformers' EarlyStoppingCallback (monitoring)
    early_stopping: dict[str, Any] | None = None

    def locate(self, key: str) -> str:
        """``unlearn.runs[1].alpha`` when the run sets alpha, ``unlearn.defaults.alpha`` when the defaults do."""
        for prefix, layer in self.layers:
            for name in (key, _FIELD_ALIASES.get(key)):
                if name is not None and name in layer:
                    return f"{prefix}.{name}"
        return self.where


def original_plan(recipe: dict[str, Any]) -> StagePlan:
    """Pretraining of the original model on the whole training set."""
    section = recipe["pretrain"]
    return StagePlan("original", "pretrain", "pretrain", {**REFERENCE_DEFAULTS, **section}, [("pretrain", section)])


def retrain_plan(recipe: dict[str, Any]) -> StagePlan:
    """The reference retrained on retain only: pretraining's settings, with the ``retrain`` section's on top."""
    settings = {**REFERENCE_DEFAULTS, **recipe["pretrain"], **recipe["retrain"]}
    return StagePlan(
        "retrain", "retrain", "retrain", settings, [("retrain", recipe["retrain"]), ("pretrain", recipe["pretrain"])]
    )


def unlearn_plan(recipe: dict[str, Any], run: Mapping[str, Any], index: int | None = None) -> StagePlan:
    """One unlearning run (``{"method": ..., "name": ..., settings}``) over ``unlearn.defaults`` and the defaults;
    ``index``: its place in ``unlearn.runs`` (None for a run the recipe does not list, e.g. a tuning trial)."""
    defaults = recipe["unlearn"]["defaults"]
    name = run.get("name") or run["method"]
    prefix = f"unlearn.runs[{index}]" if index is not None else f"unlearn ({name})"
    settings = {k: v for k, v in {**UNLEARN_DEFAULTS, **defaults, **run}.items() if k not in ("method", "name")}
    where = f"{prefix} ({name})" if index is not None else prefix
    early_stop = early_stop_settings(settings.pop("early_stop", None), f"{prefix}.early_stop")
    layers = [(prefix, run), ("unlearn.defaults", defaults)]
    plan = StagePlan(name, where, run["method"], settings, layers, early_stop)
    plan.early_stopping = pop_early_stopping(plan)
    return plan


def stage_plans(recipe: dict[str, Any]) -> list[StagePlan]:
    """Every training stage of a recipe: the original, the retrained reference (when it has one), every run."""
    from ..recipe_schema import reference_kind

    plans = [original_plan(recipe)]
    if reference_kind(recipe) == "retrain":
        plans.append(retrain_plan(recipe))
    for i, run in enumerate(recipe["unlearn"]["runs"]):
        plans.append(unlearn_plan(recipe, run, i))
    return plans


def arguments_for(
    plan: StagePlan,
    *,
    output_dir: str | Path,
    use_cpu: bool,
    seed: int,
    defaults: Mapping[str, Any] | None = None,
):
    """The stage's `UnlearnArguments`: a checkpoint per epoch (to resume after a crash), and ``report_to`` /
    ``log_level`` from the recipe when it sets them (tracking: tensorboard, trackio, wandb ... when installed),
    else no tracking and quiet logs. ``defaults``: what the stage runner knows (run name, evaluation schedule and
    batch size), below the recipe's own settings."""
    from ..checkpoints import CHECKPOINT_SETTINGS
    from ..recipe_training import training_arguments

    base = {**CHECKPOINT_SETTINGS, "report_to": "none", "log_level": "warning"}
    return training_arguments(
        {**base, **argument_defaults(plan.settings, plan.early_stopping), **(defaults or {}), **plan.settings},
        method=plan.method,
        output_dir=str(output_dir),
        use_cpu=use_cpu,
        seed=plan.settings.get("seed", seed),
    )


def fingerprint(
    recipe: dict[str, Any], plan: StagePlan, forget_sha256: str | None = None, split: str | None = None
) -> str:
    """What a stage's weights depend on; a finished stage with another fingerprint is redone. Tracking and console
    settings are left out (changing them reuses finished stages), and so is the ``evaluation`` section: metrics
    are cached on their own (`hf_unlearn.steps.score`). ``split``: `split_key` of the data, when a validation
    carve kept forget samples in training (the training split then depends on the forget sets too)."""
    untracked = untracked_keys(plan.settings, plan.early_stopping)
    inputs = {
        "semantics": SEMANTICS,
        "stage": plan.stage,
        "method": plan.method,
        # Nor do other methods' settings (unlearn.defaults.kd_T for a NegGrad run) or SAM's without sharpness.
        "settings": {k: v for k, v in own_settings(plan.method, plan.settings).items() if k not in untracked},
        "seed": int(recipe["seed"]),
        "data": recipe["data"],
        "model": recipe["model"],
        "pretrain": recipe["pretrain"],
        "forget_sha256": forget_sha256,
    }
    if plan.stage == "original":  # the learning events are predicted in evaluation batches
        inputs["confidence_batch_size"] = recipe["evaluation"]["batch_size"]
    if split is not None:  # absent otherwise: earlier outputs keep their fingerprints
        inputs["split"] = split
    if plan.early_stop is not None:
        inputs["early_stop"] = plan.early_stop
    if plan.early_stopping is not None:
        inputs["early_stopping"] = plan.early_stopping
    return digest(inputs)


def split_key(prepared: Any) -> str | None:
    """The digest of the forget samples a validation carve kept in training (`hf_unlearn.data.prepare`), or None."""
    return None if prepared is None else prepared.description.get("validation_kept")


def given_reference_fingerprint(recipe: dict[str, Any], forget_sha256: str, split: str | None = None) -> str:
    """A reference retrained elsewhere (``retrain: {from: ...}``): its source and the forget set."""
    inputs = {"semantics": SEMANTICS, "stage": "retrain", "from": recipe["retrain"]["from"], "forget": forget_sha256}
    return digest(inputs if split is None else {**inputs, "split": split})


def digest(inputs: Any) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()
