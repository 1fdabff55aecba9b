"""The one registry of methods: name -> trainer, config, the data it trains on, its mask, its role.

Every method pairs a Trainer with a config (`hf_unlearn.args`), as TRL pairs `DPOTrainer` with `DPOConfig`.
``REGISTRY["scrub"]`` is a `MethodSpec`; the recipe's method names, `get_trainer_class`, ``UnlearnArguments(
method=...)``, the refusal of a setting a method does not read and the record of a run's own hyperparameters all
read this table. Trainers are named, not imported: reading a recipe does not load `transformers.Trainer`.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

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
)
from .tune.space import EPOCHS, Range, log_range


@dataclass(frozen=True)
class MethodSpec:
    """One method. ``trainer`` is ``"module:Class"`` under `hf_unlearn.trainers` (`trainer_class` imports it);
    ``reference`` is the stage a reference method trains (``original`` / ``retrain``), None for unlearning methods;
    ``search_space`` is the tuning engine's (`hf-unlearn tune`): the method's settings and their ranges."""

    name: str
    config: type[UnlearnArguments]
    trainer: str
    needs_forget: bool
    reference: str | None = None
    search_space: Mapping[str, Any] | None = None

    @property
    def trainer_class(self) -> type:
        module, name = self.trainer.split(":")
        return getattr(importlib.import_module(f"hf_unlearn.trainers.{module}"), name)

    @property
    def fields(self) -> tuple[str, ...]:
        """The settings this method reads beyond the shared ones (``("alpha",)`` for NegGrad)."""
        return self.config.own_fields()

    @property
    def uses_mask(self) -> bool:
        """Whether it trains through a forget-saliency mask: its config has ``mask_ratio``."""
        return "mask_ratio" in self.fields


REGISTRY: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec("pretrain", PretrainConfig, "pretrain:PretrainTrainer", needs_forget=False, reference="original"),
        MethodSpec("retrain", RetrainConfig, "retrain:RetrainTrainer", needs_forget=False, reference="retrain"),
        # search_space: hf-unlearn tune's ranges (hf_unlearn.tune.space), around the values the literature and the
        # digits recipes use; a run with sharpness sam / asam also searches rho.
        MethodSpec(
            "finetune",
            FinetuneConfig,
            "finetune:FinetuneTrainer",
            needs_forget=False,
            search_space={"learning_rate": log_range(1e-3, 0.3), "epochs": EPOCHS},
        ),
        MethodSpec(
            "gradient_ascent",
            GradientAscentConfig,
            "gradient_ascent:GradientAscentTrainer",
            needs_forget=True,
            search_space={"learning_rate": log_range(1e-4, 0.02), "epochs": EPOCHS},
        ),
        MethodSpec(
            "random_label",
            RandomLabelConfig,
            "random_label:RandomLabelTrainer",
            needs_forget=True,
            search_space={"learning_rate": log_range(1e-3, 0.05), "epochs": EPOCHS},
        ),
        MethodSpec(
            "neggrad",
            NegGradConfig,
            "neggrad:NegGradTrainer",
            needs_forget=True,
            search_space={"learning_rate": log_range(1e-3, 0.05), "epochs": EPOCHS, "alpha": Range(0.85, 0.995)},
        ),
        MethodSpec(
            "salun",
            SalUnConfig,
            "salun:SalUnTrainer",
            needs_forget=True,
            search_space={"learning_rate": log_range(1e-3, 0.05), "epochs": EPOCHS, "mask_ratio": Range(0.1, 0.9)},
        ),
        MethodSpec(
            "l1_sparse",
            L1SparseConfig,
            "l1_sparse:L1SparseTrainer",
            needs_forget=False,
            search_space={
                "learning_rate": log_range(1e-3, 0.1),
                "epochs": EPOCHS,
                "l1_weight": log_range(1e-5, 1e-3),
            },
        ),
        MethodSpec(
            "scrub",
            ScrubConfig,
            "scrub:ScrubTrainer",
            needs_forget=True,
            search_space={
                "learning_rate": log_range(1e-3, 0.05),
                "epochs": EPOCHS,
                "msteps": Range(1, 5, integer=True),
            },
        ),
        MethodSpec(
            "sharp_minmax",
            SharpMinMaxConfig,
            "sharp_minmax:SharpMinMaxTrainer",
            needs_forget=True,
            search_space={
                "learning_rate": log_range(1e-3, 0.05),
                "epochs": EPOCHS,
                "alpha": Range(0.85, 0.995),
                "mask_ratio": Range(0.1, 0.9),
            },
        ),
    )
}
METHOD_CHOICES: tuple[str, ...] = tuple(REGISTRY)
# Settings that some methods read and others do not (alpha, mask_ratio, kd_T ...).
METHOD_FIELDS: frozenset[str] = frozenset(name for spec in REGISTRY.values() for name in spec.fields)
# Every argument of every method's config: the shared fields, TrainingArguments' and the methods' own.
ALL_FIELDS: frozenset[str] = frozenset(
    f.name for spec in REGISTRY.values() for f in dataclasses.fields(spec.config) if f.init
)


def method_spec(name: str) -> MethodSpec:
    """The registry entry of ``name``; an unknown name is a ValueError with the closest known one."""
    try:
        return REGISTRY[name]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(name), METHOD_CHOICES, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"Unknown method {name!r}.{hint} Known methods: {', '.join(METHOD_CHOICES)}.") from None


def unused_field_message(key: str, methods: Iterable[str]) -> str:
    """``kd_T is not a setting of finetune (only scrub reads it); remove it.``: the one message for a setting a
    method does not read, from a recipe (prefixed with where it is) and from ``UnlearnArguments(...)``."""
    readers = [name for name, spec in REGISTRY.items() if key in spec.fields]
    verb = "reads" if len(readers) == 1 else "read"
    return (
        f"{key} is not a setting of {_join(list(methods), 'or')} (only {_join(readers, 'and')} {verb} it); remove it."
    )


def _join(words: list[str], last: str) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} {last} {words[-1]}"


def uses(method: str, key: str) -> bool:
    """Whether ``method`` reads setting ``key``: every shared or TrainingArguments field, and its own fields."""
    return key not in METHOD_FIELDS or key in method_spec(method).fields


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
