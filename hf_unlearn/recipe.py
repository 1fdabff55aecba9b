"""YAML recipes: a validated description of a whole run (data, forget set, model, reference training, unlearning runs).

Unknown keys are errors with a suggestion (``unlearn.runs[2].alpah: unknown key; did you mean 'alpha'?``).
Training sections accept any `UnlearnArguments` field plus the aliases ``epochs`` and ``batch_size``.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .args import METHOD_CHOICES, UnlearnArguments

TRAINING_ALIASES = {"epochs": "num_train_epochs", "batch_size": "per_device_train_batch_size"}
# Set by the pipeline for every stage; a recipe must not set them.
MANAGED_FIELDS = {"output_dir", "method"}
TRAINING_KEYS = ({f.name for f in dataclasses.fields(UnlearnArguments) if f.init} - MANAGED_FIELDS) | set(
    TRAINING_ALIASES
)

FORGET_KINDS = ("random", "low_confidence")

SCHEMA: dict[str, Any] = {
    "name": str,
    "seed": int,
    "data": {
        "source": str,
        "test_size": float,
        "image_size": int,
        "num_channels": int,
        "mean": list,
        "std": list,
    },
    "forget": {"kind": str, "size": float, "seed": int},
    "model": {"config": dict, "name_or_path": str, "trust_remote_code": bool},
    "pretrain": "training",
    "retrain": "training",
    "unlearn": {"defaults": "training", "runs": "runs"},
    "evaluation": {"batch_size": int, "mia_shadow_size": int, "mia_seed": int},
}

DEFAULTS: dict[str, Any] = {
    "name": "run",
    "seed": 0,
    "data": {"source": "digits", "test_size": 0.2, "image_size": 16, "num_channels": 1, "mean": [0.5], "std": [0.5]},
    "forget": {"kind": "low_confidence", "size": 0.1, "seed": None},
    "model": {"config": None, "name_or_path": None, "trust_remote_code": False},
    "pretrain": {},
    "retrain": {},
    "unlearn": {"defaults": {}, "runs": []},
    "evaluation": {"batch_size": 256, "mia_shadow_size": None, "mia_seed": 0},
}


class RecipeError(ValueError):
    """A recipe that cannot run; the message says which key and how to fix it."""


def _unknown(key: str, where: str, known: set[str] | list[str]) -> RecipeError:
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(sorted(known))}"
    return RecipeError(f"{where}{key}: unknown recipe key{hint}")


def _check_training(section: Any, where: str) -> None:
    if not isinstance(section, dict):
        raise RecipeError(f"{where.rstrip('.')}: expected a mapping of training settings, got {type(section).__name__}")
    for key in section:
        if key not in TRAINING_KEYS:
            raise _unknown(key, where, TRAINING_KEYS)


def _check_runs(runs: Any, where: str) -> None:
    if not isinstance(runs, list):
        raise RecipeError(f"{where.rstrip('.')}: expected a list of runs")
    names = set()
    for i, run in enumerate(runs):
        here = f"{where}[{i}]."
        if not isinstance(run, dict) or "method" not in run:
            raise RecipeError(f"{here.rstrip('.')}: every run needs at least a 'method' (one of {', '.join(METHOD_CHOICES)})")
        if run["method"] not in METHOD_CHOICES:
            raise _unknown(str(run["method"]), f"{here}method=", METHOD_CHOICES)
        name = run.get("name") or default_run_name(run)
        if name in names or name in ("original", "retrain"):
            raise RecipeError(f"{here}name: run name {name!r} is used twice (or reserved); give each run a unique name")
        names.add(name)
        _check_training({k: v for k, v in run.items() if k not in ("name", "method")}, here)


def _check(node: Any, schema: Any, where: str) -> None:
    if schema == "training":
        _check_training(node, where)
    elif schema == "runs":
        _check_runs(node, where)
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


def default_run_name(run: dict[str, Any]) -> str:
    sharpness = run.get("sharpness", "none")
    return run["method"] if sharpness == "none" else f"{run['method']}_{sharpness}"


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key not in ("config",):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def validate(recipe: dict[str, Any]) -> dict[str, Any]:
    """Check a raw recipe and return it merged over the defaults."""
    _check(recipe, SCHEMA, "")
    merged = _merge(DEFAULTS, recipe)
    if merged["forget"]["kind"] not in FORGET_KINDS:
        raise _unknown(merged["forget"]["kind"], "forget.kind=", FORGET_KINDS)
    if merged["model"]["config"] is None and merged["model"]["name_or_path"] is None:
        raise RecipeError("model: give either model.config (build from scratch) or model.name_or_path (Hub id or folder)")
    if not merged["unlearn"]["runs"]:
        raise RecipeError("unlearn.runs: the recipe lists no unlearning run; add at least one {method: ...}")
    for run in merged["unlearn"]["runs"]:
        run.setdefault("name", default_run_name(run))
    return merged


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b.0.c=value`` -> (["a", "b", "0", "c"], parsed YAML value)."""
    if "=" not in text:
        raise RecipeError(f"--set {text!r}: expected KEY=VALUE, e.g. --set pretrain.epochs=5")
    key, raw = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(raw)


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
                node = node.setdefault(part, {})
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
        if isinstance(item, dict) and (item.get("name") or default_run_name(item)) == part:
            return i
    raise RecipeError(f"--set {where}: no list entry {part!r} (use an index below {len(items)} or a run name)")


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
            raise RecipeError(f"Recipe {str(path_or_name)!r} not found: give a YAML file path or a built-in name (digits).")
        path = builtin
    with open(path, encoding="utf-8") as handle:
        raw = yaml.safe_load(handle) or {}
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe is a YAML mapping at top level")
    return validate(apply_overrides(raw, overrides or []))


def training_arguments(settings: dict[str, Any], **managed: Any) -> UnlearnArguments:
    """`UnlearnArguments` from a recipe training section plus the fields the pipeline manages."""
    kwargs = {TRAINING_ALIASES.get(k, k): v for k, v in settings.items()}
    kwargs.update(managed)
    try:
        return UnlearnArguments(**kwargs)
    except (TypeError, ValueError) as error:
        raise RecipeError(f"Invalid training settings for {managed.get('method')}: {error}") from error
