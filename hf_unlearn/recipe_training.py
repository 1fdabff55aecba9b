"""A recipe's training sections (``pretrain``, ``retrain``, ``unlearn.defaults``, each run): the keys they accept
or refuse, and the `UnlearnArguments` a stage's merged settings build.

`hf_unlearn.recipe` checks the sections' keys against these; `hf_unlearn.steps.plan` builds every stage's arguments
with `training_arguments`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from transformers import TrainingArguments

from .args import UnlearnArguments
from .errors import RecipeError
from .monitoring import EARLY_STOPPING_KEYS, SELECTION_KEYS, UNLEARNING_ONLY
from .recipe_schema import TRAINING_ALIASES
from .registry import REGISTRY, all_fields, method_choices, method_settings

# Set by the pipeline for every stage; a recipe must not set them.
MANAGED_FIELDS = {"output_dir", "method"}
# The keys an unknown-key error names when nothing is close, beside hf_unlearn's own fields: the usual Trainer ones
# (listing all ~130 TrainingArguments fields, most irrelevant here, helps nobody).
USUAL_TRAINER_KEYS = {
    *TRAINING_ALIASES,
    "learning_rate",
    "optim",
    "optim_args",
    "lr_scheduler_type",
    "weight_decay",
    "warmup_steps",
    "max_steps",
    "gradient_accumulation_steps",
    "max_grad_norm",
    "seed",
    "bf16",
    "fp16",
    "report_to",
    "logging_steps",
}
# TrainingArguments fields a training section refuses, with the reason (every other field is passed on).
REFUSED_TRAINING_KEYS: dict[str, str] = {
    "push_to_hub": "a training stage must not publish itself (the original still knows the forget set); publishing "
    "goes through `hf-unlearn push` or the recipe's hub: section",
    "resume_from_checkpoint": "hf_unlearn resumes an interrupted stage from its own checkpoints on a rerun of the "
    "same output folder (docs/reliability.md)",
    "label_smoothing_factor": "hf_unlearn computes each method's losses itself, so the Trainer's label smoothing "
    "would never be applied",
    "per_device_eval_batch_size": "evaluation batches are set by evaluation.batch_size",
    "use_cpu": "give --cpu on the command line (it applies to every stage)",
    "local_rank": "the launcher (accelerate launch / torchrun) sets it",
    "average_tokens_across_devices": "hf_unlearn's losses are per-batch means, never token counts",
}
_NO_EVALUATION = (
    "a stage's evaluation is set by eval_strategy (eval_steps, eval_delay, eval_on_start): its eval_dataset dict "
    "(retain, forget, validation) and its accuracy metric are hf_unlearn's (docs/design.md, Tracking)"
)
_TEXT_ONLY = "it applies to language models only, not to image classifiers"
REFUSED_TRAINING_KEYS.update(
    {
        key: _NO_EVALUATION
        for key in (
            "do_eval",
            "do_predict",
            "eval_do_concat_batches",
            "eval_use_gather_object",
            "batch_eval_metrics",
            "include_for_metrics",
            "prediction_loss_only",
        )
    }
)
REFUSED_TRAINING_KEYS.update(
    {
        key: _TEXT_ONLY
        for key in (
            "neftune_noise_alpha",
            "use_liger_kernel",
            "liger_kernel_config",
            "length_column_name",
            "include_num_input_tokens_seen",
            "use_cache",
            "train_sampling_strategy",
        )
    }
)


# Keys only an unlearning section (unlearn.defaults, unlearn.runs) accepts, with the reason the others refuse them.
UNLEARNING_ONLY_KEYS: dict[str, str] = {key: UNLEARNING_ONLY for key in (*sorted(SELECTION_KEYS), *EARLY_STOPPING_KEYS)}


def training_keys(unlearning: bool = False) -> set[str]:
    """The keys a training section accepts: every registered method's config field (read when asked, so a method
    registered after import counts) and the recipe's aliases, less the fields the pipeline sets; an unlearning
    section also takes transformers' early-stopping arguments (`hf_unlearn.monitoring`)."""
    keys = (all_fields() - MANAGED_FIELDS) | set(TRAINING_ALIASES)
    return keys | set(EARLY_STOPPING_KEYS) if unlearning else keys


def shown_training_keys(known: set[str]) -> set[str]:
    """The keys an unknown-key error lists when nothing is close: hf_unlearn's own and the usual Trainer ones."""
    return known - set(TrainingArguments.__dataclass_fields__) | USUAL_TRAINER_KEYS


def scalar_fields() -> dict[str, type]:
    """Fields of the methods' configs typed exactly bool / int / float (optionally ``| None``): their recipe values
    are type-checked, since TrainingArguments does not (a string learning rate fails deep inside the optimizer)."""
    return _scalar_fields(tuple(REGISTRY))  # a method registered later (a plugin) counts


@functools.cache
def _scalar_fields(methods: tuple[str, ...]) -> dict[str, type]:
    out: dict[str, type] = {}
    for f in (f for method in methods for f in dataclasses.fields(REGISTRY[method].config)):
        name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        name = name.replace(" | None", "").replace("Optional[", "").rstrip("]")
        if name in ("bool", "int", "float"):
            out[f.name] = {"bool": bool, "int": int, "float": float}[name]
    return out


def float_setting(key: str) -> bool:
    """Whether a training section's ``key`` (or its alias: ``epochs``) holds a float field."""
    return scalar_fields().get(TRAINING_ALIASES.get(key, key)) is float


# The settings of a model trained in a loop and never looked at on its own (shadow, memorization and U-LiRA models):
# nothing saved, logged or shown per model; the caller reports progress over the loop.
BACKGROUND_TRAINING: dict[str, Any] = {
    "report_to": "none",
    "disable_tqdm": True,
    "save_strategy": "no",
    "logging_strategy": "no",
    "log_level": "error",
}


def training_arguments(settings: dict[str, Any], **managed: Any) -> UnlearnArguments:
    """The method's config (`UnlearnArguments`) from a stage's merged settings plus the fields the pipeline manages;
    other methods' settings (from ``unlearn.defaults``) are left out."""
    kwargs = {TRAINING_ALIASES.get(k, k): v for k, v in settings.items()}
    if managed.get("method") in method_choices():
        kwargs = method_settings(managed["method"], kwargs)
    kwargs.update(managed)
    try:
        return UnlearnArguments(**kwargs)
    except (TypeError, ValueError) as error:
        raise RecipeError(f"Invalid training settings for {managed.get('method')}: {error}") from error
