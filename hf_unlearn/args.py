"""`UnlearnArguments` and one config per method: `TrainingArguments` plus the unlearning settings.

`UnlearnArguments` holds what every method shares (method, sharpness, rho, sam_lambda, sam_every and the unlearning
defaults of the paper). A method's config is the one declaration of what the method is: a subclass that sets its
own ``method`` default, adds the fields the method reads (`NegGradConfig.alpha`, `ScrubConfig.kd_T` ...) with their
checks, and says what it trains on and which settings `hf-unlearn tune` searches. Everything else (the recipe's
method names, the refusal of a setting a method does not read, the registry's facts) is derived from these classes,
the way TRL pairs `DPOConfig` with `DPOTrainer`. ``UnlearnArguments(method=NAME, ...)`` returns NAME's config.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from transformers import TrainingArguments

from .config_fields import (
    ALPHA_CHECK,
    MASK_RATIO_CHECK,
    OFFICIAL_LABELS,
    OFFICIAL_MASK,
    FieldCheck,
    alpha_field,
    at_least,
    mask_ratio_field,
    method_field,
    official_field,
)
from .errors import did_you_mean
from .search_space import EPOCHS, Range, log_range
from .sharpness import DIRECTION_CHOICES, SHARPNESS_CHOICES

DEFAULT_METHOD = "finetune"
# What a method's training batches are anchored on: "retain" / "forget" (one split), "paired" (a forget item drawn
# beside each retain item), "union" (both splits as one relabelled set), "all" (every training sample: pretraining).
TrainOn = Literal["all", "retain", "forget", "paired", "union"]
# The shared settings a run's record (stage.json, report.json, model card) keeps, in this order; a method's own
# fields follow in the order its config declares them.
RECORDED = (
    "sharpness",
    "rho",
    "sam_lambda",
    "sam_every",
    "learning_rate",
    "num_train_epochs",
    "per_device_train_batch_size",
    "optim",
    "optim_args",
    "lr_scheduler_type",
    "weight_decay",
    "seed",
)
# Read only by the SAM update: a record with sharpness "none" leaves them out (they change nothing there).
SAM_ONLY_FIELDS = ("rho", "sam_lambda", "sam_every")


def method_configs() -> dict[str, type[UnlearnArguments]]:
    """Every config that declares a method (sets its own ``method`` default), by method name: the built-in ones and
    any a user defines, found by walking the subclasses of `UnlearnArguments` (a parent's declaration wins)."""
    found: dict[str, type[UnlearnArguments]] = {}
    queue = list(UnlearnArguments.__subclasses__())
    while queue:
        config = queue.pop(0)
        if "method" in vars(config):
            found.setdefault(config.method_name(), config)
        queue.extend(config.__subclasses__())
    return found


def method_fields() -> frozenset[str]:
    """The settings some methods read and others do not (alpha, mask_ratio, kd_T ...)."""
    return frozenset(name for config in method_configs().values() for name in config.own_fields())


def unknown_method_message(name: Any, known: Iterable[str]) -> str:
    """``Unknown method 'negrad'. Did you mean 'neggrad'? Known methods: ...``: the one message for a bad name."""
    known = list(known)
    return f"Unknown method {name!r}.{did_you_mean(name, known)} Known methods: {', '.join(known)}."


def unused_field_message(key: str, methods: Iterable[str]) -> str:
    """``kd_T is not a setting of finetune (only scrub reads it); remove it.``: the one message for a setting a
    method does not read, from a recipe (prefixed with where it is) and from ``UnlearnArguments(...)``."""
    readers = [name for name, config in method_configs().items() if key in config.own_fields()]
    verb = "reads" if len(readers) == 1 else "read"
    return (
        f"{key} is not a setting of {_join(list(methods), 'or')} (only {_join(readers, 'and')} {verb} it); remove it."
    )


def _join(words: list[str], last: str) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} {last} {words[-1]}"


@dataclass
class UnlearnArguments(TrainingArguments):
    """Arguments for hf_unlearn's trainers: the settings every method shares.

    ``UnlearnArguments(method=NAME, ...)`` builds NAME's config, a subclass with NAME's own fields (`NegGradConfig`,
    `ScrubConfig` ...), and refuses a field NAME does not read (``finetune`` with ``kd_T``).

    A new method subclasses it once: its own ``method`` default, its own fields, and the class attributes below.

    Class attributes a method's config declares (not settings; derived facts in `hf_unlearn.registry` read them):
        train_on: what its training batches are anchored on (`TrainOn`); "forget", "paired" and "union" need a
            forget set.
        reference: the reference stage it trains ("original" for pretrain, "retrain" for retrain), else None.
        search_space: ``{setting: Range}`` that `hf-unlearn tune` searches (empty: not tunable).
        field_checks: ``{own field: (valid, message)}`` checked when the config is built.

    Parameters that control every method:
        method: which unlearning (or reference) method to run.
        sharpness: "none" (plain gradients), "sam" or "asam" (adaptive SAM) for every branch of the method.
        rho, sam_lambda: SAM radius and the combination weight lambda of ``g0 + sign * lambda * (g1 - g0)``.
        sam_every: the full SAM step every k optimizer steps, a one-pass LookSAM step in between (1: every step).

    Defaults that differ from `TrainingArguments` (the unlearning setting of the paper):
        optim="sgd" with optim_args="momentum=0.9", learning_rate=0.01, lr_scheduler_type="constant",
        weight_decay=5e-4, max_grad_norm=0.0 (no clipping), remove_unused_columns=False
        (nested retain/forget batches), label_names=["labels"], save_strategy="no", logging_strategy="epoch".

    Paper: Tang & Khanna, "Sharpness-Aware Machine Unlearning", ICLR 2026 (arXiv 2506.13715).
    """

    train_on: ClassVar[TrainOn] = "retain"
    reference: ClassVar[str | None] = None
    search_space: ClassVar[Mapping[str, Range]] = {}
    field_checks: ClassVar[Mapping[str, FieldCheck]] = {}

    # Parameters that control the method
    method: str = field(
        default=DEFAULT_METHOD,
        metadata={"help": "Unlearning or reference method to run (hf_unlearn.registry lists them)."},
    )
    sharpness: str = field(
        default="none",
        metadata={
            "help": "Sharpness-aware update for every branch: 'none' (plain gradient), 'sam' (Foret et al., 2021) "
            "or 'asam' (Kwon et al., 2021, perturbation scaled by |w|).",
            "choices": list(SHARPNESS_CHOICES),
        },
    )
    rho: float = field(
        default=0.1,
        metadata={
            "help": "SAM perturbation radius (the official code's default is 0.1; its README uses 1.0 with ASAM)."
        },
    )
    sam_lambda: float = field(
        default=1.0,
        metadata={
            "help": "Lambda of the combination rule g0 + sign*lambda*(g1 - g0); 1.0 gives standard SAM for 'min' "
            "and 2*g0 - g1 for 'max'."
        },
    )
    sam_every: int = field(
        default=1,
        metadata={
            "help": "Cheap SAM: the full two-pass SAM step every sam_every optimizer steps and, in between, one pass "
            "that reuses the sharpness direction the last full step measured (LookSAM, Liu et al., 2022; "
            "docs/methods.md). 1 (default) is SAM at every step; no effect with sharpness='none'."
        },
    )

    # Defaults that differ from TrainingArguments: the unlearning setting of the paper.
    optim: str = field(default="sgd", metadata={"help": "Optimizer (TrainingArguments.optim); SGD by default."})
    optim_args: str | None = field(
        default="momentum=0.9", metadata={"help": "Extra optimizer arguments, e.g. 'momentum=0.9' for SGD."}
    )
    learning_rate: float = field(default=0.01, metadata={"help": "Learning rate of the optimizer."})
    lr_scheduler_type: str = field(default="constant", metadata={"help": "Learning-rate schedule."})
    weight_decay: float = field(
        default=5e-4,
        metadata={
            "help": "Weight decay, on every weight but biases and LayerNorm weights (transformers' rule: also names "
            "with 'layernorm', 'rmsnorm', '.norm.' or '_norm'); BatchNorm weights are decayed, as in the official code."
        },
    )
    max_grad_norm: float = field(
        default=0.0, metadata={"help": "Gradient clipping norm; 0 disables clipping (the paper does not clip)."}
    )
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Must stay False: unlearning batches are nested {'retain', 'forget'} dicts."}
    )
    label_names: list[str] | None = field(
        default_factory=lambda: ["labels"], metadata={"help": "Names of the label keys in evaluation batches."}
    )
    save_strategy: str = field(default="no", metadata={"help": "Checkpoint strategy (TrainingArguments)."})
    logging_strategy: str = field(default="epoch", metadata={"help": "Logging strategy (TrainingArguments)."})

    def __new__(cls, *args: Any, **kwargs: Any) -> UnlearnArguments:
        # UnlearnArguments(method=NAME) is NAME's config; Python then runs that config's __init__ with these kwargs.
        if cls is UnlearnArguments:
            configs = method_configs()
            method = kwargs.get("method", DEFAULT_METHOD)
            if method not in configs:
                raise ValueError(unknown_method_message(method, configs))
            cls = configs[method]
        shared_by_others = method_fields()
        for key in kwargs:
            if key not in cls.__dataclass_fields__ and key in shared_by_others:
                raise ValueError(unused_field_message(key, [cls.method_name()]))
        return super().__new__(cls)

    @classmethod
    def method_name(cls) -> str:
        """The method this config belongs to (its ``method`` default)."""
        return cls.__dataclass_fields__["method"].default

    @classmethod
    def own_fields(cls) -> tuple[str, ...]:
        """The fields this method reads beyond the shared ones (``("alpha",)`` for NegGrad), in declaration order."""
        return tuple(name for name in cls.__dataclass_fields__ if name not in UnlearnArguments.__dataclass_fields__)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._validate_unlearning_fields()
        import torch

        if self.dataloader_pin_memory and not torch.accelerator.is_available():
            self.dataloader_pin_memory = False  # nothing to pin for: torch would warn at every data loader

    def hyperparameters(self) -> dict[str, Any]:
        """What a run's record (stage.json, report.json, model card) keeps: the `RECORDED` settings this config has,
        without the SAM settings when ``sharpness`` is "none"."""
        names = [name for name in RECORDED if name in self.__dataclass_fields__]
        names += list(self.own_fields())
        skip = SAM_ONLY_FIELDS if self.sharpness == "none" else ()
        return {name: getattr(self, name) for name in names if name not in skip}

    def _validate_unlearning_fields(self) -> None:
        if self.method != self.method_name():
            raise ValueError(
                f"method={self.method!r} does not match {type(self).__name__}, the config of "
                f"{self.method_name()!r} (methods: {', '.join(method_configs())}); build the arguments with "
                f"UnlearnArguments(method={self.method!r}, ...)."
            )
        if self.sharpness not in SHARPNESS_CHOICES:
            raise ValueError(f"Unknown sharpness {self.sharpness!r}. Choose one of: {', '.join(SHARPNESS_CHOICES)}.")
        if not (math.isfinite(self.rho) and self.rho > 0):
            raise ValueError(f"rho must be a finite number > 0 (got {self.rho}); try 0.05-0.1 for SAM, 1.0 for ASAM.")
        if not (math.isfinite(self.sam_lambda) and self.sam_lambda >= 0):
            raise ValueError(f"sam_lambda must be a finite number >= 0 (got {self.sam_lambda}); 1.0 is standard SAM.")
        if isinstance(self.sam_every, bool) or not isinstance(self.sam_every, int) or self.sam_every < 1:
            raise ValueError(
                f"sam_every must be an integer >= 1 (got {self.sam_every!r}); 1 is SAM at every step, 5 a full SAM "
                "step every 5 steps."
            )
        if self.sam_every > 1 and getattr(self, "official", False):
            raise ValueError(
                "sam_every > 1 is not available with official=True (the official code has no cheap SAM); "
                "set sam_every: 1 or official: false."
            )
        for name, (valid, message) in self.field_checks.items():
            value = getattr(self, name)
            if not valid(value):
                raise ValueError(message.format(v=value))
        if self.remove_unused_columns:
            raise ValueError(
                "remove_unused_columns=True drops the nested 'retain'/'forget' batch columns; set it to False."
            )


# ------------------------------------------------------------------------------------------ one config per method
# search_space: hf-unlearn tune's ranges, around the values the literature and the digits recipes use; a run with
# sharpness sam / asam also searches rho (hf_unlearn.search_space.RHO).
@dataclass
class PretrainConfig(UnlearnArguments):
    """Pretraining on the whole training set (the original model); SGD or SAM (``sharpness``)."""

    reference: ClassVar[str | None] = "original"
    train_on: ClassVar[TrainOn] = "all"

    method: str = method_field("pretrain")


@dataclass
class RetrainConfig(UnlearnArguments):
    """Retraining on the retain set from the model's own initialisation (the reference)."""

    reference: ClassVar[str | None] = "retrain"

    method: str = method_field("retrain")


@dataclass
class FinetuneConfig(UnlearnArguments):
    """Fine-tuning on the retain set (FT)."""

    search_space: ClassVar[Mapping[str, Range]] = {"learning_rate": log_range(1e-3, 0.3), "epochs": EPOCHS}

    method: str = method_field("finetune")


@dataclass
class GradientAscentConfig(UnlearnArguments):
    """Gradient ascent on the forget set (GA)."""

    train_on: ClassVar[TrainOn] = "forget"
    search_space: ClassVar[Mapping[str, Range]] = {"learning_rate": log_range(1e-4, 0.02), "epochs": EPOCHS}

    method: str = method_field("gradient_ascent")


@dataclass
class RandomLabelConfig(UnlearnArguments):
    """Random labels on the forget set, trained together with the retain set (RL)."""

    train_on: ClassVar[TrainOn] = "union"
    search_space: ClassVar[Mapping[str, Range]] = {"learning_rate": log_range(1e-3, 0.05), "epochs": EPOCHS}

    method: str = method_field("random_label")
    official: bool = official_field(OFFICIAL_LABELS)


@dataclass
class NegGradConfig(UnlearnArguments):
    """NegGrad+: ``alpha * CE_retain - (1 - alpha) * CE_forget``."""

    train_on: ClassVar[TrainOn] = "paired"
    search_space: ClassVar[Mapping[str, Range]] = {
        "learning_rate": log_range(1e-3, 0.05),
        "epochs": EPOCHS,
        "alpha": Range(0.85, 0.995),
    }
    field_checks: ClassVar[Mapping[str, FieldCheck]] = {"alpha": ALPHA_CHECK}

    method: str = method_field("neggrad")
    alpha: float = alpha_field()


@dataclass
class SalUnConfig(UnlearnArguments):
    """SalUn: random labels, only the forget-salient weights move."""

    train_on: ClassVar[TrainOn] = "union"
    search_space: ClassVar[Mapping[str, Range]] = {
        "learning_rate": log_range(1e-3, 0.05),
        "epochs": EPOCHS,
        "mask_ratio": Range(0.1, 0.9),
    }
    field_checks: ClassVar[Mapping[str, FieldCheck]] = {"mask_ratio": MASK_RATIO_CHECK}

    method: str = method_field("salun")
    mask_ratio: float = mask_ratio_field()
    official: bool = official_field(f"{OFFICIAL_MASK}, and {OFFICIAL_LABELS}")


@dataclass
class L1SparseConfig(UnlearnArguments):
    """L1-sparse fine-tuning: ``CE + l1_weight_t * ||theta||_1`` on the retain set."""

    search_space: ClassVar[Mapping[str, Range]] = {
        "learning_rate": log_range(1e-3, 0.1),
        "epochs": EPOCHS,
        "l1_weight": log_range(1e-5, 1e-3),
    }
    field_checks: ClassVar[Mapping[str, FieldCheck]] = {
        "l1_weight": (at_least(0.0), "l1_weight must be a finite number >= 0 (got {v}); try 5e-4.")
    }

    method: str = method_field("l1_sparse")
    l1_weight: float = field(
        default=5e-4,
        metadata={
            "help": "Initial weight of the penalty l1_weight * ||theta||_1; it decays linearly to 0 over the run, per "
            "optimizer step (Jia et al., 2023 'Model sparsity can simplify machine unlearning'; SalUn/RUM used 5e-4)."
        },
    )


@dataclass
class ScrubConfig(UnlearnArguments):
    """SCRUB: max epochs on the forget set, min passes on the retain set, against a frozen teacher."""

    train_on: ClassVar[TrainOn] = "paired"  # needs both sets; the trainer builds its own phase dataset
    search_space: ClassVar[Mapping[str, Range]] = {
        "learning_rate": log_range(1e-3, 0.05),
        "epochs": EPOCHS,
        "msteps": Range(1, 5, integer=True),
    }
    field_checks: ClassVar[Mapping[str, FieldCheck]] = {
        "msteps": (lambda v: v >= 0, "msteps must be >= 0 (got {v}); it counts SCRUB's max epochs."),
        "kd_T": (at_least(0.0, strict=True), "kd_T must be a finite number > 0 (got {v}); SCRUB uses 4.0."),
        "beta": (at_least(0.0), "beta must be a finite number >= 0 (got {v})."),
        "gamma": (at_least(0.0), "gamma must be a finite number >= 0 (got {v})."),
    }

    method: str = method_field("scrub")
    msteps: int = field(
        default=2,
        metadata={
            "help": "Number of epochs (the first ones) that start with a max pass over the forget set (Kurmanji et "
            "al., 2023; exactly msteps max epochs)."
        },
    )
    kd_T: float = field(default=4.0, metadata={"help": "Distillation temperature of the KL term (SCRUB, RUM)."})
    beta: float = field(
        default=0.001,
        metadata={"help": "Weight of the KL(student || teacher) term in the min pass on retain (SCRUB: 0.001)."},
    )
    gamma: float = field(
        default=0.99,
        metadata={"help": "Weight of the cross-entropy term in the min pass on retain (SCRUB: 0.99)."},
    )


@dataclass
class SharpMinMaxConfig(UnlearnArguments):
    """Sharp MinMax (Tang & Khanna, 2026): SAM-min on the retain half of the mask, SAM-max on the forget half."""

    train_on: ClassVar[TrainOn] = "paired"
    search_space: ClassVar[Mapping[str, Range]] = {
        "learning_rate": log_range(1e-3, 0.05),
        "epochs": EPOCHS,
        "alpha": Range(0.85, 0.995),
        "mask_ratio": Range(0.1, 0.9),
    }
    field_checks: ClassVar[Mapping[str, FieldCheck]] = {
        "alpha": ALPHA_CHECK,
        "mask_ratio": MASK_RATIO_CHECK,
        "forget_direction": (
            lambda v: v in DIRECTION_CHOICES,
            "Unknown forget_direction {v!r}. Choose one of: " + ", ".join(DIRECTION_CHOICES) + ".",
        ),
    }

    method: str = method_field("sharp_minmax")
    alpha: float = alpha_field()
    mask_ratio: float = mask_ratio_field()
    forget_direction: str = field(
        default="max",
        metadata={
            "help": "Sharpness direction of the forget branch ('max' in the paper).",
            "choices": list(DIRECTION_CHOICES),
        },
    )
    official: bool = official_field(f"{OFFICIAL_MASK}, and two sequential optimizer steps per step.")
