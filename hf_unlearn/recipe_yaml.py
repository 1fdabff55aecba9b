"""Reading a recipe's text: safe YAML (no Python tags), ``--set KEY=VALUE`` overrides and the built-in recipes.

Nothing here checks what the keys mean: `hf_unlearn.recipe.validate` does, after the overrides. One reading differs
from PyYAML's YAML 1.1: ``1e-3`` (an exponent without a dot or sign) is a number, as in YAML 1.2, in every ``--set``
value and in a recipe file's float training settings (``learning_rate: 1e-3``); YAML 1.1 reads it as text. And
an unquoted ``no`` stays the text ``"no"`` where a Trainer ``*_strategy`` setting expects it (YAML 1.1: false).
"""

from __future__ import annotations

import copy
import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .errors import RecipeError
from .recipe_schema import default_run_name
from .recipe_training import float_setting

# YAML 1.2's float with an exponent; YAML 1.1 (PyYAML) needs a dot and a signed exponent (1.0e-3) to read one.
EXPONENT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)[eE][-+]?[0-9]+")


def read_recipe(path_or_name: str | Path) -> dict[str, Any]:
    """The raw mapping of a YAML recipe: a file path, or the name of a built-in recipe (not validated yet)."""
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
    return read_exponents(raw)


def exponent_number(value: Any) -> Any:
    """``"1e-3"`` -> 0.001 (YAML 1.2's reading), in lists and mappings too; any other value unchanged."""
    if isinstance(value, str) and EXPONENT.fullmatch(value.strip()):
        return float(value)
    if isinstance(value, list):
        return [exponent_number(v) for v in value]
    if isinstance(value, dict):
        return {k: exponent_number(v) for k, v in value.items()}
    return value


def read_exponents(raw: dict[str, Any]) -> dict[str, Any]:
    """A raw recipe with ``1e-3``-style text read as a number where a training section expects a float (the
    schema knows those fields; other text, e.g. a revision ``1e5``, stays text)."""
    unlearn = raw.get("unlearn") if isinstance(raw.get("unlearn"), dict) else {}
    runs = unlearn.get("runs") if isinstance(unlearn.get("runs"), list) else []
    for section in (raw.get("pretrain"), raw.get("retrain"), unlearn.get("defaults"), *runs):
        if isinstance(section, dict):
            for key, value in section.items():
                if isinstance(value, str) and float_setting(key):
                    section[key] = exponent_number(value)
                section[key] = strategy_text(key, section[key])
    return raw


def strategy_text(key: str, value: Any) -> Any:
    """``eval_strategy: no`` -> ``"no"``: YAML 1.1 reads an unquoted ``no`` (or ``off``) as false, and the Trainer's
    ``*_strategy`` settings want the text ``"no"``."""
    return "no" if value is False and key.endswith("_strategy") else value


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b.0.c=value`` -> (["a", "b", "0", "c"], parsed YAML value)."""
    if "=" not in text:
        raise RecipeError(f"--set {text!r}: expected KEY=VALUE, e.g. --set pretrain.epochs=5")
    key, raw = text.split("=", 1)
    path = key.strip().split(".")
    return path, strategy_text(path[-1], exponent_number(safe_load_yaml(raw, f"--set {key.strip()}")))


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
