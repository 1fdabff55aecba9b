"""Checks of bad input that the recipe schema cannot see (docs/reliability.md has the full table).

* `check_plans`: before anything trains, build every stage's `UnlearnArguments` (so an out-of-range alpha in
  the last run fails in a second, not after pretraining), check choice fields with a close-match suggestion, and
  refuse DeepSpeed / FSDP (from a recipe key or from ``accelerate launch``).
* `check_labels`: every label of the prepared splits lies in ``[0, number of classes)``.
* `diagnose_source`: when preparing the data fails, find the source row with a label outside the classes or an
  image that does not decode, and say so.
* `check_pretrained_model`: a Hub id or folder has safetensors weights and a head with as many labels as the data
  set has classes (or the recipe sets ``model.ignore_mismatched_sizes: true`` to replace the head).
* `check_manifest_file`: an existing split manifest in the output folder still passes its consistency checks.

Every failure is a `ValidationError` whose message starts with where the problem is and ends with the fix.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .errors import HfUnlearnError, ValidationError, did_you_mean
from .recipe_schema import TRAINING_ALIASES
from .recipe_training import scalar_fields
from .registry import REGISTRY, method_choices
from .sharpness import DIRECTION_CHOICES, SHARPNESS_CHOICES
from .steps.plan import StagePlan, arguments_for


def choice_fields() -> dict[str, tuple[str, ...]]:
    """The settings with a fixed list of values (methods: the registered ones, read when asked)."""
    return {"method": method_choices(), "sharpness": SHARPNESS_CHOICES, "forget_direction": DIRECTION_CHOICES}


USE_DDP_INSTEAD = (
    "Use DDP instead: accelerate launch --config_file accelerate_configs/multi_gpu.yaml -m hf_unlearn.cli run "
    "RECIPE (see docs/distributed.md)."
)


# --------------------------------------------------------------------------------------------- stage settings
def _is_a(value: Any, expected: type) -> bool:
    if value is None:
        return True
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def distributed_backend(settings: Mapping[str, Any]) -> tuple[str, str] | None:
    """(backend name, where it was asked for) when a stage would run under DeepSpeed or FSDP, else None."""
    if settings.get("deepspeed"):
        return "DeepSpeed", "deepspeed"
    if settings.get("fsdp"):
        return "FSDP", "fsdp"
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() in ("1", "true"):
        return "DeepSpeed", "accelerate launch (ACCELERATE_USE_DEEPSPEED=true)"
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true"):
        return "FSDP", "accelerate launch (ACCELERATE_USE_FSDP=true)"
    return None


def _distributed_error(plan: StagePlan, backend: str, source: str) -> ValidationError:
    sharpness = plan.settings.get("sharpness", "none")
    two_pass = REGISTRY[plan.method].two_pass(sharpness)
    what = f"{plan.method} with sharpness={sharpness!r}" if sharpness != "none" else plan.method
    where = plan.locate(source) if source in ("deepspeed", "fsdp") else f"{plan.where} (under {source})"
    why = (
        "SAM and masked methods need several backward passes per optimizer step over the full, unsharded gradient "
        "(DeepSpeed steps the optimizer inside every backward; FSDP shards the gradient and its norm)"
        if two_pass
        else f"hf_unlearn composes each step's gradient in p.grad and averages it across processes itself, and "
        f"{backend} owns (and shards) the gradients"
    )
    return ValidationError(f"{where}: {what} is not supported under {backend}: {why}. {USE_DDP_INSTEAD}")


def check_plans(plans: list[StagePlan], *, checkpoints: Path, use_cpu: bool, seed: int) -> None:
    """Validate every stage's settings before anything trains (see the module docstring): build every stage's
    arguments up front, so a bad value in the last run fails before pretraining, and a tracker that is not installed
    fails now, not after pretraining.

    Unlearning runs are checked first, so that a SAM run under FSDP is named rather than the reference training.
    """
    from .console import check_report_to

    ordered = [p for p in plans if p.stage not in ("original", "retrain")] + [
        p for p in plans if p.stage in ("original", "retrain")
    ]
    for plan in ordered:
        for key, choices in choice_fields().items():
            value = plan.method if key == "method" else plan.settings.get(key)
            if value is not None and value not in choices:
                raise ValidationError(
                    f"{plan.locate(key)}: unknown {key} {value!r}.{did_you_mean(value, choices)} "
                    f"Choose one of: {', '.join(choices)}."
                )
        backend = distributed_backend(plan.settings)
        if backend is not None:
            raise _distributed_error(plan, *backend)
    for plan in plans:
        for key, value in plan.settings.items():
            expected = scalar_fields().get(TRAINING_ALIASES.get(key, key))
            if expected is not None and not _is_a(value, expected):
                hint = (  # recipe files and --set read 1e-3 as a number; a recipe dict built in Python may not
                    " (a number written as text: give it as a number, e.g. 0.001 or 1e-3 unquoted)"
                    if isinstance(value, str) and expected is not bool
                    else ""
                )
                raise ValidationError(
                    f"{plan.locate(key)}: expected {'a number' if expected is float else expected.__name__}, got "
                    f"{value!r}{hint}."
                )
        try:
            args = arguments_for(plan, output_dir=checkpoints / plan.stage, use_cpu=use_cpu, seed=seed)
            check_report_to(args.report_to)
        except ValueError as error:
            cause = error.__cause__ if isinstance(error.__cause__, (ValueError, TypeError)) else error
            message = str(cause)
            key = message.split(" ", 1)[0]
            raise ValidationError(f"{plan.locate(key)}: {message}") from error


# ------------------------------------------------------------------------------------------------------ data
def _label_values(dataset: Any) -> np.ndarray | None:
    """Every label of a prepared split without decoding images (None when the type is unknown)."""
    labels = getattr(dataset, "labels", None)
    if labels is not None and hasattr(labels, "__len__") and not callable(labels):
        return np.asarray(labels.cpu() if hasattr(labels, "cpu") else labels).reshape(-1)
    columns = getattr(dataset, "column_names", None)
    if columns:
        for name in ("labels", "label"):
            if name in columns:
                return np.asarray(dataset.with_format("numpy")[name]).reshape(-1)
    return None


def _label_error(split: str, num_classes: int, count: int, row: int, value: int) -> ValidationError:
    unlabelled = " (-1 marks an unlabelled row in datasets' ClassLabel)" if value == -1 else ""
    return ValidationError(
        f"data: {count} rows of the {split} split have a label outside [0, {num_classes}) (e.g. row {row} has label "
        f"{value}{unlabelled}); the data set declares {num_classes} classes. Drop or relabel those rows (e.g. "
        "dataset.filter(lambda row: row['label'] >= 0)), or check data.label_column."
    )


def _check_values(values: np.ndarray, num_classes: int, split: str) -> None:
    bad = np.flatnonzero((values < 0) | (values >= num_classes))
    if bad.size:
        raise _label_error(split, num_classes, int(bad.size), int(bad[0]), int(values[bad[0]]))


def check_labels(
    splits: Mapping[str, Any], num_classes: int, load_sources: Callable[[], Mapping[str, Any]] | None = None
) -> None:
    """Every label of every prepared split is a class index in ``[0, num_classes)``.

    On a failure, ``load_sources`` (the raw source splits) is scanned to name the *source* row, which the user can
    find and fix; the prepared splits are shuffled, so their row numbers mean little outside hf_unlearn.
    """
    for split, dataset in splits.items():
        values = None if dataset is None else _label_values(dataset)
        if values is None or not values.size:
            continue
        try:
            _check_values(values, num_classes, split)
        except ValidationError:
            if load_sources is not None:
                for name, source in load_sources().items():
                    check_source_labels(source, name)
            raise


def check_source_labels(dataset: Any, split: str, column: str = "label") -> None:
    """The labels of a source split (a `ClassLabel` column) lie in ``[0, num_classes)``."""
    from datasets import ClassLabel

    feature = getattr(dataset, "features", {}).get(column)
    if isinstance(feature, ClassLabel):
        _check_values(
            np.asarray(dataset.with_format("numpy")[column]).reshape(-1), feature.num_classes, f"{split!r} source"
        )


def undecodable_image(dataset: Any, column: str = "image") -> tuple[int, str] | None:
    """(row, reason) of the first row whose image does not decode, or None. Reads raw bytes, decodes one by one."""
    from datasets import Image

    feature = getattr(dataset, "features", {}).get(column)
    if not isinstance(feature, Image):
        return None
    raw = dataset.with_format(None).cast_column(column, Image(decode=False))
    decoder = Image()
    for row, value in enumerate(raw[column]):
        try:
            image = decoder.decode_example(value)
            image.load()
        except Exception as error:  # PIL raises many types for a broken file; any of them means "does not decode"
            return row, f"{type(error).__name__}: {error}"
    return None


@contextlib.contextmanager
def diagnose_source(load_sources: Callable[[], Mapping[str, Any]], image_column: str = "image") -> Iterator[None]:
    """Around data preparation: when it fails, look for the source row that caused it and say so.

    ``load_sources`` returns the source's splits (name -> datasets.Dataset, image column named ``image_column``,
    labels in ``label``); it is only called after a failure. A label outside the declared classes (e.g. -1, an
    unlabelled row) or an image that does not decode becomes a `ValidationError` naming the split and row; any
    other failure passes through unchanged.
    """
    try:
        yield
    except HfUnlearnError:
        raise
    except Exception as error:
        try:
            sources = dict(load_sources())
        except Exception:
            raise error from None
        for split, dataset in sources.items():
            check_source_labels(dataset, split)
            found = undecodable_image(dataset, image_column)
            if found is not None:
                row, reason = found
                raise ValidationError(
                    f"data.image_column: row {row} of the {split!r} split of the source does not decode as an image "
                    f"({reason}). Fix or remove that row (e.g. dataset.filter), or set data.image_column to the "
                    "column that holds the images."
                ) from error
        raise


# ----------------------------------------------------------------------------------------------------- model
def check_pretrained_model(
    name_or_path: str, class_names: list[str], *, trust_remote_code: bool = False, ignore_mismatched_sizes: bool = False
) -> None:
    """The model's config loads and its head has ``len(class_names)`` labels (unless the head may be replaced)."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        raise ValidationError(
            f"model.name_or_path: cannot load the config of {name_or_path!r} ({error}). Give a local folder written "
            "by save_pretrained or a Hub id that is reachable (HF_HUB_OFFLINE unset, logged in for gated models)."
        ) from error
    num_labels = getattr(config, "num_labels", None)
    if num_labels is None and getattr(config, "num_classes", None) is not None:  # timm configs
        num_labels = int(config.num_classes)
    if num_labels is not None and num_labels != len(class_names) and not ignore_mismatched_sizes:
        raise ValidationError(
            f"model.name_or_path: {name_or_path!r} has a classification head with {num_labels} labels but the data "
            f"set has {len(class_names)} classes. If the model was trained on other classes, set "
            f"model.ignore_mismatched_sizes: true to replace its head with a new {len(class_names)}-class head "
            "(trained in the pretrain stage); otherwise check data.source and data.label_column."
        )


def check_model_config(config: Mapping[str, Any], class_names: list[str]) -> None:
    """``model.config`` must not set the label count: hf_unlearn sets it from the data set's classes."""
    for key in ("num_labels", "id2label", "label2id"):
        if key in config:
            raise ValidationError(
                f"model.config.{key}: the classification head is sized from the data set's classes "
                f"({len(class_names)}: {', '.join(class_names[:10])}{', ...' if len(class_names) > 10 else ''}); "
                f"remove {key} from the recipe."
            )


def pretrained_load_error(name_or_path: str, error: Exception) -> ValidationError:
    """A readable error for a model whose weights cannot be loaded (e.g. pickle-only checkpoints)."""
    return ValidationError(
        f"model.name_or_path: cannot load the weights of {name_or_path!r} ({type(error).__name__}: {error}). "
        "hf_unlearn loads safetensors weights only (a pickle file such as pytorch_model.bin can run code when "
        "loaded): convert a checkpoint you trust (from_pretrained, then save_pretrained(folder), which writes "
        "model.safetensors) or pick a "
        "repository that has model.safetensors."
    )


# --------------------------------------------------------------------------------------------- forget set
def check_forget_sizes(forget: Any, n_train: int) -> None:
    """Forget-set sizes resolve to 1 .. n_train - 1 samples: checked right after the data is prepared, so an empty
    or whole-training-set forget set fails before pretraining (the manifest checks the indices themselves)."""
    from .data.forget_sets import forget_size

    specs = forget if isinstance(forget, list) else [forget]
    for i, spec in enumerate(specs):
        if not isinstance(spec, Mapping) or spec.get("size") is None or spec.get("kind") == "file":
            continue
        where = "forget.size" if not isinstance(forget, list) else f"forget[{i}].size"
        try:
            forget_size(spec["size"], n_train)
        except ValueError as error:
            raise ValidationError(f"{where}: {error} (the training split has {n_train} samples)") from error


# ------------------------------------------------------------------------------------------------- manifest
def check_manifest_file(path: str | Path) -> None:
    """An existing split manifest must still pass its checks; a modified one is never silently replaced."""
    from .data.manifest import SplitManifest

    path = Path(path)
    if not path.is_file():
        return
    try:
        SplitManifest.from_json(path)
    except ValueError as error:
        raise ValidationError(
            f"forget: {error} Refusing to guess which samples to forget: restore {path.name}, or delete it (or rerun "
            "with --force) to rebuild the split from the recipe, which redoes every stage after pretraining."
        ) from error
