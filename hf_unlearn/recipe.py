"""YAML recipes: a validated description of a whole run (data, forget set, model, reference training, unlearning runs).

Unknown keys are errors with a suggestion (``unlearn.runs[2].alpah: unknown recipe key. Did you mean 'alpha'?``).
Training sections accept any `UnlearnArguments` field plus the aliases ``epochs`` and ``batch_size``; a setting that
only some methods read (``alpha``, ``kd_T`` ...) is refused where no method of the section reads it.
"""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from transformers import TrainingArguments

from .args import UnlearnArguments
from .data.defaults import BAD_IMAGE_CHOICES, DATA_DEFAULTS, DATA_TYPES, TRANSFORM_CHOICES
from .errors import ValidationError, did_you_mean
from .paths import safe_name
from .recipe_schema import (
    FORGET_CHOICES,
    FORGET_DEFAULT,
    FORGET_KEYS,
    FORGET_KINDS,
    FORGET_TYPES,
    REQUIRED,
    TRAINING_ALIASES,
    AnalysisSection,
    EvaluationSection,
    HubSection,
    ModelSection,
)
from .registry import (
    all_fields,
    method_choices,
    method_fields,
    method_settings,
    unknown_method_message,
    unused_field_message,
    uses,
)

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
    "eval_strategy": "stages have no evaluation set during training; hf_unlearn evaluates every finished stage on "
    "retain, forget and test itself (report.json)",
    "resume_from_checkpoint": "hf_unlearn resumes an interrupted stage from its own checkpoints on a rerun of the "
    "same output folder (docs/reliability.md)",
    "label_smoothing_factor": "hf_unlearn computes each method's losses itself, so the Trainer's label smoothing "
    "would never be applied",
    "load_best_model_at_end": "stages have no evaluation set during training, so there is no best checkpoint",
    "metric_for_best_model": "stages have no evaluation set during training, so there is no best checkpoint",
    "eval_steps": "stages have no evaluation set during training",
    "per_device_eval_batch_size": "evaluation batches are set by evaluation.batch_size",
    "use_cpu": "give --cpu on the command line (it applies to every stage)",
    "local_rank": "the launcher (accelerate launch / torchrun) sets it",
    "average_tokens_across_devices": "hf_unlearn's losses are per-batch means, never token counts",
}
_NO_EVALUATION = "stages have no evaluation set during training; hf_unlearn evaluates every finished stage itself"
_TEXT_ONLY = "it applies to language models only, not to image classifiers"
REFUSED_TRAINING_KEYS.update(
    {
        key: _NO_EVALUATION
        for key in (
            "do_eval",
            "do_predict",
            "eval_accumulation_steps",
            "eval_delay",
            "eval_do_concat_batches",
            "eval_on_start",
            "eval_use_gather_object",
            "batch_eval_metrics",
            "include_for_metrics",
            "prediction_loss_only",
            "bf16_full_eval",
            "fp16_full_eval",
            "greater_is_better",
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

SCHEMA: dict[str, Any] = {
    "name": str,
    "seed": int,
    "data": DATA_TYPES,
    "forget": "forget",  # one forget set (a mapping) or several (a list of mappings); see _check_forget
    "model": ModelSection.types(),
    "pretrain": "training",
    "retrain": "reference",  # training settings, false (no reference) or {from: PATH_OR_HUB_ID}
    "unlearn": {"defaults": "training", "runs": "runs"},
    "evaluation": EvaluationSection.types(),
    "hub": HubSection.types(),
    # hf-unlearn tune (hf_unlearn.tune): search-space overrides and the validation split it carves; run ignores it.
    "tune": {"space": dict, "validation_size": float},
    # Several seeds (hf_unlearn.seeds) and the analysis hook (hf_unlearn.analysis); absent = one seed, none.
    "seeds": list,
    "analysis": AnalysisSection.types(),
}

DEFAULTS: dict[str, Any] = {
    "name": "run",
    "seed": 0,
    # Data: hf_unlearn.data.defaults (docs/datasets.md).
    "data": copy.deepcopy(DATA_DEFAULTS),
    "forget": dict(FORGET_DEFAULT),
    "model": ModelSection.defaults(),  # hf_unlearn.recipe_schema describes every section's keys
    "pretrain": {},
    "retrain": {},
    "unlearn": {"defaults": {}, "runs": []},
    "evaluation": EvaluationSection.defaults(),
    "hub": HubSection.defaults(),
}


class RecipeError(ValidationError):
    """A recipe that cannot run; the message says which key and how to fix it (a ValueError, as before)."""


def _unknown(
    key: str, where: str, known: set[str] | list[str], shown: set[str] | list[str] | None = None
) -> RecipeError:
    """An unknown key: the close match among ``shown`` (else ``known``), or the list of ``shown`` keys."""
    shown = known if shown is None else shown
    hint = did_you_mean(key, shown) or did_you_mean(key, known)
    if not hint:
        more = " (and any other TrainingArguments field)" if len(shown) < len(known) else ""
        hint = f" Known keys: {', '.join(sorted(shown))}{more}."
    return RecipeError(f"{where}{key}: unknown recipe key.{hint}")


def training_keys() -> set[str]:
    """The keys a training section accepts: every registered method's config field (read when asked, so a method
    registered after import counts) and the recipe's aliases, less the fields the pipeline sets."""
    return (all_fields() - MANAGED_FIELDS) | set(TRAINING_ALIASES)


def _check_training(section: Any, where: str) -> None:
    if not isinstance(section, dict):
        raise RecipeError(f"{where.rstrip('.')}: expected a mapping of training settings, got {type(section).__name__}")
    for key in section:
        if key in REFUSED_TRAINING_KEYS or key.startswith("hub_"):
            reason = REFUSED_TRAINING_KEYS.get(key, REFUSED_TRAINING_KEYS["push_to_hub"])
            raise RecipeError(f"{where}{key}: not accepted in a training section: {reason}")
        known = training_keys()
        if key not in known:
            shown = known - set(TrainingArguments.__dataclass_fields__) | USUAL_TRAINER_KEYS
            raise _unknown(key, where, known, shown)


def _check_reference(section: Any, where: str) -> None:
    """``retrain``: training settings (retrain from scratch), ``false`` (no reference) or ``{from: ...}``."""
    if section is False or section is True:
        return
    if isinstance(section, dict) and "from" in section:
        if not isinstance(section["from"], str) or not section["from"]:
            raise RecipeError(f"{where}from: expected a model folder or Hub id, got {section['from']!r}")
        extra = sorted(k for k in section if k != "from")
        if extra:
            raise RecipeError(
                f"{where}{extra[0]}: a given reference (retrain.from) is evaluated, not trained; remove "
                f"{', '.join(extra)}"
            )
        return
    _check_training(section, where)
    epochs = section.get("epochs", section.get("num_train_epochs"))
    if epochs is not None and not isinstance(epochs, bool) and epochs == 0 and not section.get("max_steps"):
        raise RecipeError(
            f"{where}epochs: 0 would evaluate an untrained model as the reference and report a meaningless ToW. "
            "Use retrain: false (no reference: no ToW, the report compares with the original) or "
            "retrain: {from: PATH_OR_HUB_ID} (a model retrained without the forget set elsewhere)"
        )


def _check_runs(runs: Any, where: str) -> None:
    if not isinstance(runs, list):
        raise RecipeError(f"{where.rstrip('.')}: expected a list of runs")
    names = set()
    for i, run in enumerate(runs):
        here = f"{where.rstrip('.')}[{i}]."  # unlearn.runs[2].alpha
        if not isinstance(run, dict) or "method" not in run:
            raise RecipeError(
                f"{here.rstrip('.')}: every run needs at least a 'method' (one of {', '.join(method_choices())})"
            )
        if run["method"] not in method_choices():
            raise RecipeError(f"{here}method: {unknown_method_message(run['method'], method_choices())}")
        name = run.get("name") or default_run_name(run)
        _safe(name, f"{here}name")  # run names become folder names (models/<run>, checkpoints/<run>)
        if name in names or name in ("original", "retrain"):
            raise RecipeError(f"{here}name: run name {name!r} is used twice (or reserved); give each run a unique name")
        names.add(name)
        _check_training({k: v for k, v in run.items() if k not in ("name", "method")}, here)


def _check(node: Any, schema: Any, where: str) -> None:
    if schema == "training":
        _check_training(node, where)
    elif schema == "reference":
        _check_reference(node, where)
    elif schema == "runs":
        _check_runs(node, where)
    elif schema == "forget":
        _check_forget(node, where)
    elif isinstance(schema, dict):
        if not isinstance(node, dict):
            raise RecipeError(f"{where.rstrip('.') or 'recipe'}: expected a mapping")
        for key, value in node.items():
            if key not in schema:
                raise _unknown(key, where, set(schema))
            if value is not None:
                _check(value, schema[key], f"{where}{key}.")
    elif schema is float:
        if not isinstance(node, (int, float)) or isinstance(node, bool):
            raise RecipeError(f"{where.rstrip('.')}: expected a number, got {node!r}")
    elif not isinstance(node, schema) or (schema is int and isinstance(node, bool)):
        raise RecipeError(f"{where.rstrip('.')}: expected {schema.__name__}, got {node!r}")


def _check_forget(node: Any, where: str) -> None:
    """A forget set is a mapping with a kind and that kind's keys; several forget sets are a list of them."""
    items = node if isinstance(node, list) else [node]
    if isinstance(node, list) and not node:
        raise RecipeError("forget: the list of forget sets is empty; give at least one {kind: ...}")
    for i, item in enumerate(items):
        here = f"forget[{i}]." if isinstance(node, list) else "forget."
        if not isinstance(item, dict):
            raise RecipeError(f"{here.rstrip('.')}: a forget set is a mapping such as {{kind: random, size: 0.1}}")
        kind = item.get("kind", DEFAULTS["forget"]["kind"])
        if kind not in FORGET_KINDS:
            raise _unknown(str(kind), f"{here}kind=", FORGET_KINDS)
        allowed = {"kind", "name", "seed", *FORGET_KEYS[kind]}
        for key, value in item.items():
            if key not in allowed:
                if key in FORGET_TYPES:
                    raise RecipeError(
                        f"{here}{key}: a {kind} forget set does not take {key!r}; its keys are "
                        f"{', '.join(sorted(allowed))}"
                    )
                raise _unknown(key, here, allowed)
            if value is not None:
                _check(value, FORGET_TYPES[key], f"{here}{key}.")
            if key in FORGET_CHOICES and value is not None and value not in FORGET_CHOICES[key]:
                raise _unknown(str(value), f"{here}{key}=", FORGET_CHOICES[key])
        for key, default in FORGET_KEYS[kind].items():
            if default == REQUIRED and item.get(key) is None:
                raise RecipeError(f"{here}{key}: a {kind} forget set needs {key!r} (see docs/forget-sets.md)")


def normalize_forget(node: dict[str, Any] | list[dict[str, Any]]) -> dict[str, Any] | list[dict[str, Any]]:
    """Fill each forget set's defaults and name; a list stays a list (several forget sets), a mapping a mapping.

    A set's name defaults to its band (memorization, low_confidence) or its kind; names are folder names.
    """
    items = node if isinstance(node, list) else [node]
    out = []
    for item in items:
        kind = item.get("kind", DEFAULTS["forget"]["kind"])
        spec = {"kind": kind, "seed": None, **FORGET_KEYS[kind], **item}
        if kind == "classwise" and spec["classes"] is None and float(spec["fraction"]) >= 1.0:
            raise RecipeError(
                "forget.classes: a class-wise forget set of every class is the whole training set; "
                "name the classes to forget, or give a fraction below 1"
            )
        spec.setdefault("name", spec.get("band") or kind)
        where = f"forget[{len(out)}].name" if isinstance(node, list) else "forget.name"
        spec["name"] = _safe(spec["name"], where)  # a forget set's folder, with several sets
        if spec["name"] in ("models", "checkpoints", "manifests", "analysis"):
            raise RecipeError(f"{where}: {spec['name']!r} is a folder hf_unlearn uses itself; choose another name")
        out.append(spec)
    names = [spec["name"] for spec in out]
    if len(set(names)) != len(names):
        raise RecipeError(f"forget: two forget sets are named alike ({', '.join(names)}); give each a unique 'name'")
    return out if isinstance(node, list) else out[0]


def reference_kind(recipe: dict[str, Any]) -> str:
    """How the recipe gets its reference: ``retrain`` (from scratch, the default), ``given`` (``retrain.from``) or
    ``none`` (``retrain: false``)."""
    section = recipe["retrain"]
    if section is False:
        return "none"
    return "given" if isinstance(section, dict) and "from" in section else "retrain"


def _safe(name: Any, where: str) -> str:
    """A name that becomes a path (`hf_unlearn.paths.safe_name`), as a `RecipeError`."""
    try:
        return safe_name(name, where)
    except ValidationError as error:
        raise RecipeError(str(error)) from None


def forget_sets(recipe: dict[str, Any]) -> list[dict[str, Any]]:
    """The recipe's forget sets as a list (one for a mapping)."""
    node = recipe["forget"]
    return list(node) if isinstance(node, list) else [node]


def default_run_name(run: dict[str, Any]) -> str:
    sharpness = run.get("sharpness", "none")
    return run["method"] if sharpness == "none" else f"{run['method']}_{sharpness}"


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key not in ("config", "forget"):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def validate(recipe: dict[str, Any]) -> dict[str, Any]:
    """Check a raw recipe and return it merged over the defaults."""
    _check(recipe, SCHEMA, "")
    merged = _merge(DEFAULTS, recipe)
    if merged["retrain"] is True:  # retrain: true is the default, retraining from scratch
        merged["retrain"] = {}
    _safe(merged["name"], "name")  # the default output folder is runs/<name>
    merged["forget"] = normalize_forget(merged["forget"])
    if merged["data"]["on_bad_image"] not in BAD_IMAGE_CHOICES:
        raise _unknown(str(merged["data"]["on_bad_image"]), "data.on_bad_image=", BAD_IMAGE_CHOICES)
    if merged["data"]["transforms"] not in TRANSFORM_CHOICES:
        raise _unknown(merged["data"]["transforms"], "data.transforms=", TRANSFORM_CHOICES)
    if merged["model"]["config"] is not None and merged["model"]["name_or_path"] is not None:
        raise RecipeError(
            "model: give model.config (build from scratch) or model.name_or_path (start from a Hub id or folder), "
            "not both: with both, the report would name a base model the run did not start from; remove one "
            "(on the command line: --set model.config=null)"
        )
    if merged["model"]["config"] is None and merged["model"]["name_or_path"] is None:
        raise RecipeError(
            "model: give either model.config (build from scratch) or model.name_or_path (Hub id or folder)"
        )
    if not merged["unlearn"]["runs"]:
        raise RecipeError("unlearn.runs: the recipe lists no unlearning run; add at least one {method: ...}")
    for run in merged["unlearn"]["runs"]:
        run["name"] = str(run.get("name") or default_run_name(run))
    _check_method_settings(merged)
    _check_hub(merged)
    _check_seeds(merged)
    _check_augmentation(merged)
    _check_stem(merged["model"])
    return merged


def _check_method_settings(recipe: dict[str, Any]) -> None:
    """A setting only some methods read (alpha, mask_ratio, kd_T ...; `hf_unlearn.registry`) must be read by the
    section's method: pretrain's, retrain's, the run's, or for ``unlearn.defaults`` at least one run's."""
    runs = recipe["unlearn"]["runs"]
    sections = [("pretrain.", recipe["pretrain"], ["pretrain"])]
    if reference_kind(recipe) == "retrain":
        sections.append(("retrain.", recipe["retrain"], ["retrain"]))
    sections += [(f"unlearn.runs[{i}].", run, [run["method"]]) for i, run in enumerate(runs)]
    sections.append(("unlearn.defaults.", recipe["unlearn"]["defaults"], sorted({run["method"] for run in runs})))
    for where, section, methods in sections:
        for key in section:
            if key in method_fields() and not any(uses(method, key) for method in methods):
                raise RecipeError(f"{where}{key}: {unused_field_message(key, methods)}")


def _check_stem(model: dict[str, Any]) -> None:
    stem = model.get("stem")
    if stem is None or stem == "imagenet":
        return
    if stem != "cifar":
        raise RecipeError(f"model.stem: expected imagenet or cifar, got {stem!r}")
    if model["config"] is None or model["config"].get("model_type") != "resnet":
        raise RecipeError(
            "model.stem: cifar applies to a ResNet built from scratch (model.config with model_type: resnet); "
            "a loaded model keeps its own stem"
        )


def recipe_augmentation(recipe: dict[str, Any]):
    """The recipe's training augmentation (`hf_unlearn.data.augment.Augmentation`), or None."""
    from .data.augment import build_augmentation

    data = {**DEFAULTS["data"], **(recipe.get("data") or {})}
    return build_augmentation(
        data.get("augmentation", "none"),
        image_size=data["image_size"],
        mean=data["mean"],
        std=data["std"],
        num_channels=data["num_channels"],
    )


def _check_augmentation(recipe: dict[str, Any]) -> None:
    try:
        recipe_augmentation(recipe)
    except ValueError as error:
        raise RecipeError(str(error)) from None
    data = recipe.get("data") or {}
    if data.get("augmentation") == "timm" and data.get("precompute"):
        raise RecipeError(
            "data.precompute: true cannot go with data.augmentation: timm, which transforms the decoded images; "
            "leave precompute unset (timm then decodes the images per batch)"
        )


def _check_seeds(recipe: dict[str, Any]) -> None:
    """``seeds``: a non-empty list of distinct integers; each runs the whole recipe (hf_unlearn.seeds)."""
    seeds = recipe.get("seeds")
    if seeds is None:
        return
    if not seeds or any(not isinstance(s, int) or isinstance(s, bool) for s in seeds) or len(set(seeds)) != len(seeds):
        raise RecipeError(f"seeds: expected a non-empty list of distinct integers such as [0, 1, 2], got {seeds!r}")
    if recipe["hub"]["push"]:
        raise RecipeError(
            "hub.push: a recipe with several seeds has one run per seed; push one of them after the "
            "run with hf-unlearn push OUTPUT/seed-<s> --repo-id OWNER/NAME"
        )


def _check_hub(recipe: dict[str, Any]) -> None:
    """Fail before any training when ``hub.push`` cannot go ahead at the end."""
    hub = recipe["hub"]
    names = [run["name"] for run in recipe["unlearn"]["runs"]]
    if hub["run"] is not None and hub["run"] not in names:
        hint = did_you_mean(hub["run"], names)
        raise RecipeError(f"hub.run: no unlearning run is named {hub['run']!r} (runs: {', '.join(names)}).{hint}")
    if not hub["push"]:
        return
    if isinstance(recipe["forget"], list):
        raise RecipeError(
            "hub.push: the recipe has several forget sets; push one of them after the run with "
            "hf-unlearn push OUTPUT/<forget set> --repo-id OWNER/NAME"
        )
    if not hub["repo_id"] or "/" not in hub["repo_id"]:
        raise RecipeError("hub.repo_id: hub.push needs a Hub repo id OWNER/NAME, e.g. my-user/resnet18-unlearned")
    if hub["run"] is None and len(names) > 1:
        raise RecipeError(
            f"hub.run: the recipe has {len(names)} unlearning runs; name the one to push ({', '.join(names)})"
        )


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b.0.c=value`` -> (["a", "b", "0", "c"], parsed YAML value)."""
    if "=" not in text:
        raise RecipeError(f"--set {text!r}: expected KEY=VALUE, e.g. --set pretrain.epochs=5")
    key, raw = text.split("=", 1)
    return key.strip().split("."), safe_load_yaml(raw, f"--set {key.strip()}")


def apply_overrides(recipe: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``--set`` overrides; a run inside ``unlearn.runs`` is addressed by index or by name."""
    recipe = copy.deepcopy(recipe)
    for text in overrides:
        path, value = parse_override(text)
        node: Any = recipe
        for i, part in enumerate(path[:-1]):
            if isinstance(node, list):
                node = node[_list_index(node, part, ".".join(path[: i + 1]))]
            else:
                if node.get(part) is None or node.get(part) is False:  # retrain: false, then --set retrain.epochs=3
                    node[part] = {}
                node = node[part]
        last = path[-1]
        if isinstance(node, list):
            node[_list_index(node, last, ".".join(path))] = value
        else:
            node[last] = value
    return recipe


def _list_index(items: list[Any], part: str, where: str) -> int:
    if part.isdigit() and int(part) < len(items):
        return int(part)
    for i, item in enumerate(items):
        if isinstance(item, dict) and _entry_name(item) == part:
            return i
    raise RecipeError(f"--set {where}: no list entry {part!r} (use an index below {len(items)} or a run name)")


def _entry_name(item: dict[str, Any]) -> str | None:
    """A list entry's name: a run's (method[_sharpness]) or a forget set's (band or kind)."""
    if item.get("name"):
        return item["name"]
    if "method" in item:
        return default_run_name(item)
    return item.get("band") or item.get("kind")


def safe_load_yaml(text: str, where: str) -> Any:
    """``yaml.safe_load`` (no Python tags: a recipe cannot run code); a syntax error or an unknown tag becomes a
    one-line `RecipeError` with the file (or ``--set`` key), line and column."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        place = f"{where}:{mark.line + 1}:{mark.column + 1}" if mark is not None else where
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        context = getattr(error, "context", None)
        what = f"{context}, {problem}" if context else problem
        hint = (
            " Recipes are plain YAML: Python tags such as !!python/object are refused (they could run code)."
            if "tag" in str(problem)
            else " Fix the YAML syntax there (indentation, a missing ':' or quote)."
        )
        raise RecipeError(f"{place}: {what}.{hint}") from None


def builtin_recipe_path(name: str) -> Path | None:
    """A recipe shipped with hf_unlearn (``digits`` -> recipes/digits.yaml)."""
    candidate = resources.files("hf_unlearn") / "recipes" / f"{name}.yaml"
    return Path(str(candidate)) if candidate.is_file() else None


def load_recipe(path_or_name: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """Read a YAML recipe (a path, or the name of a built-in recipe), apply overrides and validate it."""
    path = Path(path_or_name)
    if not path.is_file():
        builtin = builtin_recipe_path(str(path_or_name))
        if builtin is None:
            raise RecipeError(
                f"Recipe {str(path_or_name)!r} not found: give a YAML file path or a built-in name (digits)."
            )
        path = builtin
    with open(path, encoding="utf-8") as handle:
        raw = safe_load_yaml(handle.read(), str(path)) or {}
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe is a YAML mapping at top level")
    return validate(apply_overrides(raw, overrides or []))


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
