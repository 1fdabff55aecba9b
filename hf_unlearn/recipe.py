"""YAML recipes: a validated description of a whole run (data, forget set, model, reference training, unlearning runs).

`validate` checks a raw recipe against the schema (`hf_unlearn.recipe_schema`) and merges it over the defaults;
`load_recipe` reads one (`hf_unlearn.recipe_yaml`: YAML, ``--set`` overrides) and validates it. Unknown keys are errors
with a suggestion (``unlearn.runs[2].alpah: unknown recipe key. Did you mean 'alpha'?``). Training sections accept any
`UnlearnArguments` field plus the aliases ``epochs`` and ``batch_size`` (`hf_unlearn.recipe_training`); a setting
that only some methods read (``alpha``, ``kd_T`` ...) is refused where no method of the section reads it.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from .data.defaults import BAD_IMAGE_CHOICES, DATA_DEFAULTS, DATA_TYPES, TRANSFORM_CHOICES
from .errors import RecipeError, ValidationError, did_you_mean
from .forgetting import early_stop_settings
from .hub_ids import RECIPE_LICENSE_KEYS, license_settings_problem, repo_id_problem
from .paths import safe_name
from .recipe_schema import (
    FORGET_CHOICES,
    FORGET_DEFAULT,
    FORGET_KEYS,
    FORGET_KINDS,
    FORGET_TYPES,
    REQUIRED,
    AnalysisSection,
    EvaluationSection,
    HubSection,
    LiraSection,
    ModelSection,
    default_run_name,
    reference_kind,
)
from .recipe_training import REFUSED_TRAINING_KEYS, UNLEARNING_ONLY_KEYS, shown_training_keys, training_keys
from .recipe_yaml import apply_overrides, read_recipe
from .registry import method_choices, method_fields, unknown_method_message, unused_field_message, uses

SCHEMA: dict[str, Any] = {
    "name": str,
    "seed": int,
    "data": DATA_TYPES,
    "forget": "forget",  # one forget set (a mapping) or several (a list of mappings); see _check_forget
    "model": ModelSection.types(),
    "pretrain": "training",
    "retrain": "reference",  # training settings, false (no reference) or {from: PATH_OR_HUB_ID}
    "unlearn": {"defaults": "training", "runs": "runs"},
    "evaluation": {**EvaluationSection.types(), "lira": LiraSection.types()},
    "hub": HubSection.types(),
    # hf-unlearn tune (hf_unlearn.tune): search-space overrides and the validation split it carves; run ignores it.
    "tune": {"space": dict, "validation_size": float, "chosen": dict},  # chosen: what best.yaml's runs came from
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


def _check_training(section: Any, where: str) -> None:
    if not isinstance(section, dict):
        raise RecipeError(f"{where.rstrip('.')}: expected a mapping of training settings, got {type(section).__name__}")
    for key in section:
        if key in REFUSED_TRAINING_KEYS or key.startswith("hub_"):
            reason = REFUSED_TRAINING_KEYS.get(key, REFUSED_TRAINING_KEYS["push_to_hub"])
            raise RecipeError(f"{where}{key}: not accepted in a training section: {reason}")
        unlearning = where.startswith("unlearn")  # unlearn.defaults, unlearn.runs[i]
        if key in UNLEARNING_ONLY_KEYS and not unlearning:
            raise RecipeError(f"{where}{key}: not accepted here: {UNLEARNING_ONLY_KEYS[key]}")
        known = training_keys(unlearning)
        if key not in known:
            raise _unknown(key, where, known, shown_training_keys(known))


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
        _check_training({k: v for k, v in run.items() if k not in ("name", "method", "early_stop")}, here)
        early_stop_settings(run.get("early_stop"), f"{here}early_stop")  # hf_unlearn.forgetting


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


def _safe(name: Any, where: str) -> str:
    """A name that becomes a path (`hf_unlearn.paths.safe_name`), as a `RecipeError`."""
    try:
        return safe_name(name, where)
    except ValidationError as error:
        raise RecipeError(str(error)) from None


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
    _check_lira(merged["evaluation"]["lira"])
    return merged


def _check_lira(lira: dict[str, Any] | None) -> None:
    """``evaluation.lira`` names its number of shadows (`hf_unlearn.shadows.ShadowModels` checks it against the
    data: at least one shadow per fold)."""
    if lira is None:
        return
    shadows = lira.get("shadows")
    if shadows is None:
        raise RecipeError(
            "evaluation.lira.shadows: LiRA needs the number of shadow models, e.g. evaluation.lira: {shadows: 16} "
            "(64 or more for per-sample variances; docs/privacy.md)"
        )
    if shadows < 2:
        raise RecipeError(
            f"evaluation.lira.shadows: {shadows} shadow models; LiRA needs shadows that trained on each sample and "
            "shadows that did not: give at least 2 (on digits at least 5, a shadow per fold), e.g. 16"
        )


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
    if problem := license_settings_problem(
        hub["license"], hub["license_name"], hub["license_link"], RECIPE_LICENSE_KEYS
    ):
        raise RecipeError(problem)
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
    if problem := repo_id_problem(hub["repo_id"]):  # huggingface_hub's own validator, and an owner
        raise RecipeError(f"hub.repo_id: hub.push needs a Hub repo id OWNER/NAME: {problem}")
    if hub["run"] is None and len(names) > 1:
        raise RecipeError(
            f"hub.run: the recipe has {len(names)} unlearning runs; name the one to push ({', '.join(names)})"
        )


def load_recipe(path_or_name: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """Read a YAML recipe (a path, or the name of a built-in recipe), apply overrides and validate it."""
    return validate(apply_overrides(read_recipe(path_or_name), overrides or []))
