"""The recipe's schema as typed sections: one home for every key's type, default and choice list.

`hf_unlearn.recipe` builds its schema and its defaults from these and checks recipes against them; the pipeline
reads a validated recipe through them (``EvaluationSection.of(recipe)``, `reference_kind`, `forget_sets`). The data
section's keys live in `hf_unlearn.data.defaults`. Imports nothing heavy.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, ClassVar

# ------------------------------------------------------------------------------------------ training sections
# Recipe names of two `UnlearnArguments` fields (training sections accept both spellings).
TRAINING_ALIASES = {"epochs": "num_train_epochs", "batch_size": "per_device_train_batch_size"}
# Settings of the reference (pretrain / retrain) training when a recipe leaves them out.
REFERENCE_DEFAULTS: dict[str, Any] = {
    "epochs": 20,
    "batch_size": 64,
    "learning_rate": 0.1,
    "lr_scheduler_type": "cosine",
    "optim": "sgd",
    "optim_args": "momentum=0.9",
    "weight_decay": 5e-4,
}
# Unlearning defaults: SGD with momentum and a constant learning rate (docs/design.md: AdamW made Sharp MinMax
# collapse).
UNLEARN_DEFAULTS: dict[str, Any] = {
    "epochs": 5,
    "batch_size": 64,
    "learning_rate": 0.01,
    "lr_scheduler_type": "constant",
    "optim": "sgd",
    "optim_args": "momentum=0.9",
    "weight_decay": 5e-4,
}
# Training settings that only change what is logged or shown, not what is trained.
TRACKING_KEYS = frozenset(
    {"report_to", "log_level", "logging_steps", "logging_strategy", "logging_first_step", "run_name", "disable_tqdm"}
)

# ------------------------------------------------------------------------------------------ forget sets
FORGET_KINDS = ("random", "classwise", "memorization", "low_confidence", "file")
BANDS = ("low", "mid", "high")
FILE_INDEX_CHOICES = ("row", "train", "id")
REQUIRED = "<required>"
# The keys of each forget-set kind (besides kind, name and seed) with their defaults; see docs/forget-sets.md.
FORGET_KEYS: dict[str, dict[str, Any]] = {
    "random": {"size": 0.1},
    "classwise": {"classes": None, "fraction": 1.0},
    "memorization": {"band": REQUIRED, "size": 0.1, "scores": REQUIRED, "scores_key": None, "midpoint": 0.5},
    "low_confidence": {"band": "high", "size": 0.1},
    "file": {"path": REQUIRED, "index": "row", "id_column": None},
}
FORGET_TYPES: dict[str, Any] = {
    "kind": str,
    "name": str,
    "seed": int,
    "size": float,
    "classes": list,
    "fraction": float,
    "band": str,
    "scores": str,
    "scores_key": str,
    "midpoint": float,
    "path": str,
    "index": str,
    "id_column": str,
}
FORGET_CHOICES = {"band": BANDS, "index": FILE_INDEX_CHOICES}
FORGET_DEFAULT: dict[str, Any] = {"kind": "low_confidence", "size": 0.1, "seed": None}


# ------------------------------------------------------------------------------------------ typed sections
class Section:
    """A recipe section as a frozen dataclass: its fields are the keys, their annotations the recipe types (a
    ``| None`` default means the key may be null), their defaults the recipe defaults."""

    key: ClassVar[str]

    @classmethod
    def types(cls) -> dict[str, Any]:
        """The recipe type of each field, read from its annotation (what recipe._check accepts): ``int | None``
        gives ``int`` (None is accepted where the default is None), ``dict[str, Any]`` gives ``dict``."""
        hints = typing.get_type_hints(cls)
        out = {}
        for field in dataclasses.fields(cls):  # type: ignore[arg-type]
            (kind,) = [a for a in typing.get_args(hints[field.name]) if a is not type(None)] or [hints[field.name]]
            out[field.name] = typing.get_origin(kind) or kind
        return out

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {f.name: f.default for f in dataclasses.fields(cls)}  # type: ignore[arg-type]

    @classmethod
    def of(cls, recipe: dict[str, Any]):
        """The section of a validated recipe (a missing section: the defaults)."""
        return cls(**{**cls.defaults(), **(recipe.get(cls.key) or {})})


@dataclass(frozen=True)
class ModelSection(Section):
    """``model``: built from ``config`` (a transformers config as a mapping) or loaded from ``name_or_path``.

    ``ignore_mismatched_sizes`` replaces a pretrained head whose label count differs from the data set's classes;
    ``stem: cifar`` gives a from-scratch transformers ResNet the CIFAR stem (3x3 stride-1 convolution, no max-pool).
    """

    key: ClassVar[str] = "model"
    config: dict[str, Any] | None = None
    name_or_path: str | None = None
    trust_remote_code: bool = False
    ignore_mismatched_sizes: bool = False
    stem: str | None = None


@dataclass(frozen=True)
class LiraSection(Section):
    """``evaluation.lira``: LiRA against ``shadows`` shadow models (at least one per fold), trained by the run into
    ``OUTPUT/shadows/`` or read from ``path`` (`hf-unlearn shadows`); ``fixed_variance`` (default: below
    `LIRA_PER_SAMPLE_VARIANCE_FROM` shadows) pools one variance over all samples (`hf_unlearn.shadows`)."""

    key: ClassVar[str] = "lira"
    shadows: int | None = None
    path: str | None = None
    fixed_variance: bool | None = None

    @property
    def use_fixed_variance(self) -> bool:
        return self.fixed_variance if self.fixed_variance is not None else self.shadows < LIRA_PER_SAMPLE_VARIANCE_FROM


# Carlini et al. (2022) fit per-sample variances from 64 shadows on; with fewer, one variance pooled over all samples
# is steadier (their fixed-variance variant), so that is the default below 64.
LIRA_PER_SAMPLE_VARIANCE_FROM = 64


@dataclass(frozen=True)
class EvaluationSection(Section):
    """``evaluation``: batch size, the MIA shadow sample (size: the test split's by default; seed), the
    DataLoader workers of evaluation (under DDP each process predicts a shard: docs/distributed.md) and LiRA
    (``lira``: `LiraSection`; none by default)."""

    key: ClassVar[str] = "evaluation"
    batch_size: int = 256
    mia_shadow_size: int | None = None
    mia_seed: int = 0
    num_workers: int = 0
    lira: dict[str, Any] | None = None

    @property
    def lira_settings(self) -> LiraSection | None:
        return None if self.lira is None else LiraSection(**{**LiraSection.defaults(), **self.lira})

    def scored(self) -> dict[str, Any]:
        """The settings that change a metric (DataLoader workers change none): what the score cache keys on. LiRA's
        appear only when set, so that recipes without it keep their cached scores."""
        out = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("num_workers", "lira")}
        lira = self.lira_settings
        if lira is not None:
            out["lira"] = {**dataclasses.asdict(lira), "fixed_variance": lira.use_fixed_variance}
        return out


@dataclass(frozen=True)
class HubSection(Section):
    """``hub``: after the report, push one unlearning run (``run``, or the only one) with a model card; ``license``
    (a Hub license id, `hf_unlearn.hub_ids.HUB_LICENSES`) goes into the card's metadata, and with ``license: other``
    also ``license_name`` (required) and ``license_link`` (default ``LICENSE``)."""

    key: ClassVar[str] = "hub"
    push: bool = False
    repo_id: str | None = None
    run: str | None = None
    private: bool = False
    license: str | None = None
    license_name: str | None = None
    license_link: str | None = None


@dataclass(frozen=True)
class AnalysisSection(Section):
    """``analysis``: entanglement, loss landscapes and a feature embedding of every model (docs/analysis.md)."""

    key: ClassVar[str] = "analysis"
    entanglement: bool = False
    landscape: bool = False
    embedding: bool = False
    landscape_steps: int = 11
    landscape_seed: int = 42
    max_samples: int | None = None

    @property
    def wanted(self) -> bool:
        return bool(self.entanglement or self.landscape or self.embedding)


# ------------------------------------------------------------------------------- reading a validated recipe
def reference_kind(recipe: dict[str, Any]) -> str:
    """How the recipe gets its reference: ``retrain`` (from scratch, the default), ``given`` (``retrain.from``) or
    ``none`` (``retrain: false``)."""
    section = recipe["retrain"]
    if section is False:
        return "none"
    return "given" if isinstance(section, dict) and "from" in section else "retrain"


def forget_sets(recipe: dict[str, Any]) -> list[dict[str, Any]]:
    """The recipe's forget sets as a list (one for a mapping)."""
    node = recipe["forget"]
    return list(node) if isinstance(node, list) else [node]


def default_run_name(run: dict[str, Any]) -> str:
    """A run's name when the recipe gives none: its method, with ``_<sharpness>`` when sharpness is on."""
    sharpness = run.get("sharpness", "none")
    return run["method"] if sharpness == "none" else f"{run['method']}_{sharpness}"
