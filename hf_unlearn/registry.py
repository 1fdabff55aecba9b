"""The one registry of methods: a method is its config, its trainer and one `register_method` line.

Every fact about a method is derived from its config class (`hf_unlearn.args`): its name, its own settings, whether
it needs a forget set, whether it trains through a mask, its role as a reference, its search space. The registry
adds the trainer: ``REGISTRY["scrub"]`` is a `MethodSpec`. The recipe's method names, `get_trainer_class`, the
refusal of a setting a method does not read and the record of a run's own hyperparameters all read this table.
Built-in trainers are named, not imported: reading a recipe does not load `transformers.Trainer`.

A method from outside the package registers the same way as the built-in ones::

    register_method(MyConfig, MyTrainer)  # or "my_package.my_module:MyTrainer"

and an installed package makes it known everywhere with an ``hf_unlearn.methods`` entry point (`hf_unlearn.plugins`):
the look-ups below (`method_choices`, `all_fields`, `method_spec`) import those the first time they are called.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import plugins
from .args import (
    SAM_ONLY_FIELDS,
    FinetuneConfig,
    GradientAscentConfig,
    L1SparseConfig,
    NegGradConfig,
    PretrainConfig,
    RandomLabelConfig,
    RetrainConfig,
    SalUnConfig,
    ScrubConfig,
    SharpMinMaxConfig,
    UnlearnArguments,
    method_fields,
    unknown_method_message,
    unused_field_message,
)
from .search_space import Range

# The training data a method reads from the forget set: anchored on it, paired with retain, or relabelled with it.
_READS_FORGET = ("forget", "paired", "union")


@dataclass(frozen=True)
class MethodSpec:
    """One method: its config class and its trainer (a class, or ``"package.module:Class"`` imported on first use)."""

    config: type[UnlearnArguments]
    trainer: type | str

    @property
    def name(self) -> str:
        return self.config.method_name()

    @property
    def trainer_class(self) -> type:
        if not isinstance(self.trainer, str):
            return self.trainer
        module, name = self.trainer.split(":")
        return getattr(importlib.import_module(module), name)

    @property
    def fields(self) -> tuple[str, ...]:
        """The settings this method reads beyond the shared ones (``("alpha",)`` for NegGrad)."""
        return self.config.own_fields()

    @property
    def needs_forget(self) -> bool:
        """Whether its training reads the forget set (``train_on`` forget, paired or union)."""
        return self.config.train_on in _READS_FORGET

    @property
    def uses_mask(self) -> bool:
        """Whether it trains through a forget-saliency mask: its config has ``mask_ratio``."""
        return "mask_ratio" in self.fields

    @property
    def reference(self) -> str | None:
        """The stage a reference method trains (``original`` / ``retrain``); None for unlearning methods."""
        return self.config.reference

    @property
    def search_space(self) -> Mapping[str, Range]:
        """`hf-unlearn tune`'s ranges for it (empty: not tunable)."""
        return self.config.search_space

    def two_pass(self, sharpness: str) -> bool:
        """Whether a step takes two forward/backward passes: SAM's, or a mask method's saliency pass."""
        return sharpness != "none" or self.uses_mask


REGISTRY: dict[str, MethodSpec] = {}


def register_method(config: type[UnlearnArguments], trainer: type | str) -> MethodSpec:
    """Make a method known under its config's ``method`` name; the name must be new (or the same pair again)."""
    if not (isinstance(config, type) and issubclass(config, UnlearnArguments) and "method" in vars(config)):
        raise TypeError(
            f"register_method needs a config class that subclasses UnlearnArguments and sets its own `method` "
            f"default (got {config!r})."
        )
    spec = MethodSpec(config, trainer)
    known = REGISTRY.get(spec.name)
    if known is not None and known != spec:
        raise ValueError(f"Method {spec.name!r} is already registered ({known.config.__name__}, {known.trainer}).")
    REGISTRY[spec.name] = spec
    return spec


register_method(PretrainConfig, "hf_unlearn.trainers.pretrain:PretrainTrainer")
register_method(RetrainConfig, "hf_unlearn.trainers.retrain:RetrainTrainer")
register_method(FinetuneConfig, "hf_unlearn.trainers.finetune:FinetuneTrainer")
register_method(GradientAscentConfig, "hf_unlearn.trainers.gradient_ascent:GradientAscentTrainer")
register_method(RandomLabelConfig, "hf_unlearn.trainers.random_label:RandomLabelTrainer")
register_method(NegGradConfig, "hf_unlearn.trainers.neggrad:NegGradTrainer")
register_method(SalUnConfig, "hf_unlearn.trainers.salun:SalUnTrainer")
register_method(L1SparseConfig, "hf_unlearn.trainers.l1_sparse:L1SparseTrainer")
register_method(ScrubConfig, "hf_unlearn.trainers.scrub:ScrubTrainer")
register_method(SharpMinMaxConfig, "hf_unlearn.trainers.sharp_minmax:SharpMinMaxTrainer")


def method_choices() -> tuple[str, ...]:
    """The registered method names, in registration order (the installed plugins' after the built-in ones)."""
    plugins.load_entry_points()
    return tuple(REGISTRY)


def all_fields() -> frozenset[str]:
    """Every argument of every method's config: the shared fields, TrainingArguments' and the methods' own."""
    plugins.load_entry_points()
    return frozenset(f.name for spec in REGISTRY.values() for f in dataclasses.fields(spec.config) if f.init)


def method_spec(name: str) -> MethodSpec:
    """The registry entry of ``name``; an unknown name is a ValueError with the closest known one."""
    if isinstance(name, str) and name not in REGISTRY:
        plugins.load_entry_points()  # a method of an installed package, not looked up yet
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(unknown_method_message(name, REGISTRY)) from None


def uses(method: str, key: str) -> bool:
    """Whether ``method`` reads setting ``key``: every shared or TrainingArguments field, and its own fields."""
    return key not in method_fields() or key in method_spec(method).fields


def method_settings(method: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` without the fields of other methods: merged ``unlearn.defaults`` reach only the runs whose
    method reads them (a recipe refuses a default that no run reads)."""
    return {key: value for key, value in settings.items() if uses(method, key)}


def own_settings(method: str, settings: Mapping[str, Any], sharpness: str | None = None) -> dict[str, Any]:
    """What the result of a ``method`` run depends on among ``settings``: `method_settings`, and without the SAM
    settings when ``sharpness`` (default: ``settings["sharpness"]``, else "none") is "none". Stage fingerprints
    and the hyperparameters of model cards read it: changing SCRUB's ``kd_T`` never redoes a Sharp MinMax run."""
    sharpness = settings.get("sharpness", "none") if sharpness is None else sharpness
    skip = SAM_ONLY_FIELDS if sharpness == "none" else ()
    return {key: value for key, value in method_settings(method, settings).items() if key not in skip}


def __getattr__(name: str) -> Any:
    # The constants of earlier releases, computed when read so that a method registered later is included.
    derived = {"METHOD_CHOICES": method_choices, "METHOD_FIELDS": method_fields, "ALL_FIELDS": all_fields}
    if name in derived:
        return derived[name]()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "REGISTRY",
    "MethodSpec",
    "all_fields",
    "method_choices",
    "method_fields",
    "method_settings",
    "method_spec",
    "own_settings",
    "register_method",
    "unused_field_message",
    "uses",
]
