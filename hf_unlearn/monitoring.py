"""What a pipeline stage watches while it trains (its evaluation sets and schedule), and what that may decide.

Every stage gives its Trainer an ``eval_dataset`` dict (`eval_datasets`): the original ``{"validation"}`` when the
data has a validation split, the reference and every unlearning run ``{"retain", "forget", "validation"}``. Never the
test split: only the final scores read it. With ``eval_strategy`` (``epoch`` unless a section sets it, when a stage has
something to evaluate) the Trainer logs ``eval_<split>_accuracy`` and ``eval_<split>_loss``.

An unlearning section may let that evaluation decide, as in any Trainer run: ``load_best_model_at_end`` with
``metric_for_best_model`` (default ``validation_loss``) keeps the best checkpoint, and ``early_stopping_patience`` /
``early_stopping_threshold`` stop the run (transformers' `EarlyStoppingCallback`); both need a validation split. The
original and the reference always train for their whole budget.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import ValidationError
from .recipe_schema import TRACKING_KEYS

# Settings that only schedule the evaluation: they change a stage's weights only when the evaluation decides.
EVALUATION_KEYS = frozenset({"eval_strategy", "eval_steps", "eval_delay", "eval_on_start"})
# Settings that let the evaluation choose the stage's result (unlearning sections only).
SELECTION_KEYS = frozenset({"load_best_model_at_end", "metric_for_best_model", "greater_is_better"})
# Recipe keys of transformers' EarlyStoppingCallback (its own argument names), unlearning sections only.
EARLY_STOPPING_KEYS: dict[str, type] = {"early_stopping_patience": int, "early_stopping_threshold": float}
UNLEARNING_ONLY = "the original and the reference train for their whole budget; only an unlearning run's evaluation "
UNLEARNING_ONLY += "may choose its checkpoint or stop it (unlearn.defaults or unlearn.runs)"
EVALUATED_SPLITS = ("retain", "forget", "validation")
DEFAULT_METRIC = "validation_loss"
_NEEDS_VALIDATION = (
    "and the data has no validation split; set data.validation_size (e.g. 0.1, carved from the retain samples) or "
    "give the source a validation split. The test split is never evaluated while a stage trains."
)


def decides(settings: Mapping[str, Any], early_stopping: Mapping[str, Any] | None) -> bool:
    """Whether the stage's evaluation chooses its weights (the best checkpoint, or where it stops)."""
    return bool(settings.get("load_best_model_at_end")) or early_stopping is not None


def untracked_keys(settings: Mapping[str, Any], early_stopping: Mapping[str, Any] | None) -> frozenset[str]:
    """Settings a stage's fingerprint leaves out: tracking, and the evaluation schedule unless it decides."""
    return TRACKING_KEYS if decides(settings, early_stopping) else TRACKING_KEYS | EVALUATION_KEYS


def pop_early_stopping(plan: Any) -> dict[str, Any] | None:
    """Take ``early_stopping_patience`` / ``early_stopping_threshold`` out of ``plan.settings`` (they are callback
    arguments, not training arguments): None, or ``{"patience", "threshold"}``."""
    values = {key: plan.settings.pop(key) for key in EARLY_STOPPING_KEYS if key in plan.settings}
    for key, value in values.items():
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0
        if key == "early_stopping_patience":
            ok = ok and isinstance(value, int) and value >= 1
        if not ok:
            wanted = "a whole number of evaluations >= 1" if key == "early_stopping_patience" else "a number >= 0"
            raise ValidationError(f"{plan.locate(key)}: expected {wanted}, got {value!r}.")
    if not values:
        return None
    if "early_stopping_patience" not in values:
        raise ValidationError(
            f"{plan.locate('early_stopping_threshold')}: early_stopping_threshold needs early_stopping_patience (how "
            "many evaluations without an improvement larger than the threshold stop the run)."
        )
    return {"patience": values["early_stopping_patience"], "threshold": values.get("early_stopping_threshold", 0.0)}


def argument_defaults(settings: Mapping[str, Any], early_stopping: Mapping[str, Any] | None) -> dict[str, Any]:
    """Training-argument defaults of a stage whose evaluation decides: evaluate every epoch (as checkpoints are
    saved), on the validation loss unless ``metric_for_best_model`` says otherwise."""
    if not decides(settings, early_stopping):
        return {}
    out: dict[str, Any] = {"eval_strategy": "epoch"}
    if not settings.get("metric_for_best_model"):
        out["metric_for_best_model"] = DEFAULT_METRIC
    return out


def eval_datasets(stage: str, *, validation: Any, retain: Any = None, forget: Any = None) -> dict[str, Any] | None:
    """The ``eval_dataset`` dict of a stage (module docstring), None when it has nothing to evaluate."""
    named = {} if stage == "original" else {"retain": retain, "forget": forget}
    named["validation"] = validation
    out = {name: data for name, data in named.items() if data is not None and len(data) > 0}
    return out or None


def check_monitoring(plans: list[Any], validation: Any) -> None:
    """Before anything trains (the data is known): a stage's evaluation reads only what exists, and one that decides
    reads a validation split and names one of its own metrics."""
    held_out = validation is not None and len(validation) > 0
    for plan in plans:
        if plan.stage == "original" and not held_out and plan.settings.get("eval_strategy", "no") != "no":
            raise ValidationError(
                f"{plan.locate('eval_strategy')}: the original is evaluated on the validation split while it trains "
                + _NEEDS_VALIDATION
            )
        if not decides(plan.settings, plan.early_stopping):
            continue
        key = "load_best_model_at_end" if plan.settings.get("load_best_model_at_end") else "early_stopping_patience"
        if not held_out:
            raise ValidationError(f"{plan.locate(key)}: {key} chooses by the run's evaluation " + _NEEDS_VALIDATION)
        metric = plan.settings.get("metric_for_best_model") or DEFAULT_METRIC
        known = [f"{split}_{kind}" for split in EVALUATED_SPLITS for kind in ("accuracy", "loss")]
        if metric.removeprefix("eval_") not in known:
            raise ValidationError(
                f"{plan.locate('metric_for_best_model')}: {metric!r} is not a metric of the run's evaluation; choose "
                f"one of {', '.join(known)} (the test split is never evaluated while a stage trains)."
            )


def selection_record(trainer: Any, early_stopping: Mapping[str, Any] | None) -> dict[str, Any]:
    """What stage.json keeps of a deciding evaluation: the metric, the best value and step, where training stopped."""
    args, state = trainer.args, trainer.state
    if not args.load_best_model_at_end and early_stopping is None:
        return {}
    return {
        "selection": {
            "metric": args.metric_for_best_model,
            "greater_is_better": args.greater_is_better,
            "best_metric": state.best_metric,
            "best_step": state.best_global_step,
            "load_best_model_at_end": bool(args.load_best_model_at_end),
            "early_stopping": dict(early_stopping) if early_stopping is not None else None,
            "stopped_at_step": state.global_step,
            "budget_steps": state.max_steps,
        }
    }
