"""Search spaces of `hf-unlearn tune`: per method, the settings it is tuned over and their ranges.

A space is data: ``{setting: Range}`` (`hf_unlearn.search_space`), declared by each method's config
(``NegGradConfig.search_space``), keyed by the recipe's own names (``epochs``, ``learning_rate``, ``alpha`` ...), so a trial's parameters drop into a run's settings as they are. A run with ``sharpness: sam`` or ``asam``
also searches ``rho``. A recipe narrows or widens a range with ``tune: {space: {alpha: [0.9, 0.99]}}`` and fixes a
setting at the run's own value with ``tune: {space: {epochs: null}}``; a name outside the method's space or an
empty range is refused before anything trains.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..errors import ValidationError
from ..search_space import RHO, Range

# Recipe names of settings that have an alias (a trial's parameter replaces either spelling in the run).
ALIASES = {"epochs": "num_train_epochs", "batch_size": "per_device_train_batch_size"}


def spaces() -> dict[str, dict[str, Range]]:
    """Every tunable method's declared space: the ``search_space`` of its config (`hf_unlearn.registry`)."""
    from ..registry import REGISTRY

    return {name: dict(spec.search_space) for name, spec in REGISTRY.items() if spec.search_space}


def default_space(method: str, sharpness: str = "none") -> dict[str, Range]:
    """The declared space of ``method`` (with ``rho`` when the run is sharpness-aware)."""
    declared = spaces()
    if method not in declared:
        raise ValidationError(
            f"tune: method {method!r} has no search space (tunable methods: {', '.join(declared)}); the reference "
            "stages (pretrain, retrain) are trained once and shared by every trial, not tuned."
        )
    space = dict(declared[method])
    if sharpness in RHO:
        space["rho"] = RHO[sharpness]
    return space


def resolve_space(method: str, sharpness: str, overrides: dict[str, Any] | None) -> dict[str, Range]:
    """The method's space with the recipe's ``tune.space`` applied; every problem is a `ValidationError`."""
    space = default_space(method, sharpness)
    for name, value in (overrides or {}).items():
        where = f"tune.space.{name}"
        if name not in space:
            raise ValidationError(
                f"{where}: {method}{'' if sharpness == 'none' else f' (sharpness {sharpness})'} is not tuned over "
                f"{name!r}; its space has {', '.join(space)}. Remove it, or tune another run."
            )
        if value is None:  # fixed at the run's own value
            del space[name]
            continue
        space[name] = _range(value, space[name], where)
    if not space:
        raise ValidationError("tune.space: every setting is fixed (null); leave at least one to search over.")
    return space


def _range(value: Any, default: Range, where: str) -> Range:
    if isinstance(value, list) and len(value) == 2:
        low, high, log = value[0], value[1], default.log
    elif isinstance(value, dict) and {"low", "high"} <= set(value) and set(value) <= {"low", "high", "log"}:
        low, high, log = value["low"], value["high"], bool(value.get("log", default.log))
    else:
        raise ValidationError(
            f"{where}: expected a range [low, high] or {{low: ..., high: ..., log: true|false}}, got {value!r}; "
            "null fixes it at the run's own value."
        )
    for bound in (low, high):
        if isinstance(bound, bool) or not isinstance(bound, (int, float)):
            raise ValidationError(f"{where}: the bounds must be numbers, got {value!r}")
        if default.integer and int(bound) != bound:
            raise ValidationError(f"{where}: this setting is an integer; give integer bounds, got {value!r}")
    if not low < high:
        raise ValidationError(
            f"{where}: the range [{low:g}, {high:g}] is empty (low must be below high); to fix a setting, set it "
            "in the run and give null here."
        )
    if log and low <= 0:
        raise ValidationError(f"{where}: a log-uniform range needs low > 0, got {low:g}; or give log: false.")
    cast = int if default.integer else float
    return replace(default, low=cast(low), high=cast(high), log=log)


def setting_value(settings: dict[str, Any], name: str) -> Any:
    """A run's value of ``name``, under either spelling (``epochs`` / ``num_train_epochs``)."""
    if name in settings:
        return settings[name]
    return settings.get(ALIASES.get(name, name))


def apply_params(settings: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """``settings`` with each tuned parameter replacing the run's value (and its alias, so none is left behind)."""
    out = dict(settings)
    for name, value in params.items():
        out.pop(ALIASES.get(name, name), None)
        out[name] = value
    return out
