"""`UnlearnArguments` and one config per method: `TrainingArguments` plus the unlearning settings.

`UnlearnArguments` holds what every method shares (method, sharpness, rho, sam_lambda, sam_every and the unlearning
defaults of the paper); each method's config adds the fields that method reads (`NegGradConfig.alpha`,
`ScrubConfig.kd_T` ...), the way TRL pairs `DPOConfig` with `DPOTrainer`. ``UnlearnArguments(method=NAME, ...)``
returns NAME's config (`hf_unlearn.registry` maps names to configs and trainers) and refuses a field that NAME does
not read, with the message a recipe gets for the same key.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from transformers import TrainingArguments

from .sharpness import DIRECTION_CHOICES, SHARPNESS_CHOICES

DEFAULT_METHOD = "finetune"
# The settings a run's record (stage.json, report.json, model card) keeps, in this order, where its config has them.
RECORDED = (
    "sharpness",
    "rho",
    "sam_lambda",
    "sam_every",
    "alpha",
    "mask_ratio",
    "forget_direction",
    "learning_rate",
    "num_train_epochs",
    "per_device_train_batch_size",
    "optim",
    "optim_args",
    "lr_scheduler_type",
    "weight_decay",
    "seed",
    "official",
    "l1_weight",
    "msteps",
    "kd_T",
    "beta",
    "gamma",
)
# Read only by the SAM update: a record with sharpness "none" leaves them out (they change nothing there).
SAM_ONLY_FIELDS = ("rho", "sam_lambda", "sam_every")


def _finite_at_least(low: float, *, strict: bool = False) -> Callable[[Any], bool]:
    return lambda v: math.isfinite(v) and (v > low if strict else v >= low)


# Checks of the method fields, wherever a config has them: (valid, message naming the field and a good value).
_FIELD_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "alpha": (lambda v: 0.0 <= v <= 1.0, "alpha must lie in [0, 1] (got {v}); it weighs retain against forget loss."),
    "mask_ratio": (
        lambda v: 0.0 < v <= 1.0,
        "mask_ratio must lie in (0, 1] (got {v}); it is a fraction of weights.",
    ),
    "forget_direction": (
        lambda v: v in DIRECTION_CHOICES,
        "Unknown forget_direction {v!r}. Choose one of: " + ", ".join(DIRECTION_CHOICES) + ".",
    ),
    "l1_weight": (_finite_at_least(0.0), "l1_weight must be a finite number >= 0 (got {v}); try 5e-4."),
    "msteps": (lambda v: v >= 0, "msteps must be >= 0 (got {v}); it counts SCRUB's max epochs."),
    "kd_T": (_finite_at_least(0.0, strict=True), "kd_T must be a finite number > 0 (got {v}); SCRUB uses 4.0."),
    "beta": (_finite_at_least(0.0), "beta must be a finite number >= 0 (got {v})."),
    "gamma": (_finite_at_least(0.0), "gamma must be a finite number >= 0 (got {v})."),
}


@dataclass
class UnlearnArguments(TrainingArguments):
    """Arguments for hf_unlearn's trainers: the settings every method shares.

    ``UnlearnArguments(method=NAME, ...)`` builds NAME's config, a subclass with NAME's own fields (`NegGradConfig`,
    `ScrubConfig` ...; `hf_unlearn.registry`), and refuses a field NAME does not read (``finetune`` with ``kd_T``).

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
        from .registry import METHOD_FIELDS, method_spec, unused_field_message

        if cls is UnlearnArguments:
            cls = method_spec(kwargs.get("method", DEFAULT_METHOD)).config
        for key in kwargs:
            if key not in cls.__dataclass_fields__ and key in METHOD_FIELDS:
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

    def hyperparameters(self) -> dict[str, Any]:
        """What a run's record (stage.json, report.json, model card) keeps: the `RECORDED` settings this config has,
        without the SAM settings when ``sharpness`` is "none"."""
        names = [name for name in RECORDED if name in self.__dataclass_fields__]
        names += [name for name in self.own_fields() if name not in RECORDED]
        skip = SAM_ONLY_FIELDS if self.sharpness == "none" else ()
        return {name: getattr(self, name) for name in names if name not in skip}

    def _validate_unlearning_fields(self) -> None:
        from .registry import METHOD_CHOICES

        if self.method != self.method_name():
            raise ValueError(
                f"method={self.method!r} does not match {type(self).__name__}, the config of "
                f"{self.method_name()!r} (methods: {', '.join(METHOD_CHOICES)}); build the arguments with "
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
        for name in self.own_fields():
            valid, message = _FIELD_CHECKS.get(name, (None, ""))
            value = getattr(self, name)
            if valid is not None and not valid(value):
                raise ValueError(message.format(v=value))
        if self.remove_unused_columns:
            raise ValueError(
                "remove_unused_columns=True drops the nested 'retain'/'forget' batch columns; set it to False."
            )


# ------------------------------------------------------------------------------------------ one config per method
def _method(name: str) -> Any:
    return field(default=name, metadata={"help": f"The method: {name!r} (this config's own)."})


def _alpha() -> Any:
    return field(
        default=0.99,
        metadata={
            "help": "Retain weight in [0, 1]: alpha*CE_retain - (1-alpha)*CE_forget (RUM used 0.99 for "
            "low-memorization and 0.97 for mid/high forget sets)."
        },
    )


def _mask_ratio() -> Any:
    return field(
        default=0.5,
        metadata={
            "help": "Fraction in (0, 1] of parameter elements put in the forget-saliency mask: the top mask_ratio "
            "of |sum of forget-loss gradients|, ranked globally (SalUn; the paper uses 0.1-0.5)."
        },
    )


def _official(what: str) -> Any:
    return field(
        default=False,
        metadata={"help": f"Reproduces the official code (HaoranTang/sharp-unlearn): {what} See docs/methods.md."},
    )


_OFFICIAL_LABELS = "random labels uniform over all classes, the true one included."
_OFFICIAL_MASK = (
    "bottom-q saliency mask, mask applied to the perturbed gradient g1 only, perturbation and its norm over all "
    "parameters"
)


@dataclass
class PretrainConfig(UnlearnArguments):
    """Pretraining on the whole training set (the original model); SGD or SAM (``sharpness``)."""

    method: str = _method("pretrain")


@dataclass
class RetrainConfig(UnlearnArguments):
    """Retraining on the retain set from the model's own initialisation (the reference)."""

    method: str = _method("retrain")


@dataclass
class FinetuneConfig(UnlearnArguments):
    """Fine-tuning on the retain set (FT)."""

    method: str = _method("finetune")


@dataclass
class GradientAscentConfig(UnlearnArguments):
    """Gradient ascent on the forget set (GA)."""

    method: str = _method("gradient_ascent")


@dataclass
class RandomLabelConfig(UnlearnArguments):
    """Random labels on the forget set, trained together with the retain set (RL)."""

    method: str = _method("random_label")
    official: bool = _official(_OFFICIAL_LABELS)


@dataclass
class NegGradConfig(UnlearnArguments):
    """NegGrad+: ``alpha * CE_retain - (1 - alpha) * CE_forget``."""

    method: str = _method("neggrad")
    alpha: float = _alpha()


@dataclass
class SalUnConfig(UnlearnArguments):
    """SalUn: random labels, only the forget-salient weights move."""

    method: str = _method("salun")
    mask_ratio: float = _mask_ratio()
    official: bool = _official(f"{_OFFICIAL_MASK}, and {_OFFICIAL_LABELS}")


@dataclass
class L1SparseConfig(UnlearnArguments):
    """L1-sparse fine-tuning: ``CE + l1_weight_t * ||theta||_1`` on the retain set."""

    method: str = _method("l1_sparse")
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

    method: str = _method("scrub")
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

    method: str = _method("sharp_minmax")
    alpha: float = _alpha()
    mask_ratio: float = _mask_ratio()
    forget_direction: str = field(
        default="max",
        metadata={
            "help": "Sharpness direction of the forget branch ('max' in the paper).",
            "choices": list(DIRECTION_CHOICES),
        },
    )
    official: bool = _official(f"{_OFFICIAL_MASK}, and two sequential optimizer steps per step.")
