"""`UnlearnArguments`: `TrainingArguments` plus the unlearning method, sharpness and mask settings."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from transformers import TrainingArguments

from .sharpness import DIRECTION_CHOICES, SHARPNESS_CHOICES

# The canonical method names. `hf_unlearn.trainers` registers one Trainer per name (a test checks they agree).
METHOD_CHOICES: tuple[str, ...] = (
    "pretrain",
    "retrain",
    "finetune",
    "gradient_ascent",
    "random_label",
    "neggrad",
    "salun",
    "l1_sparse",
    "scrub",
    "sharp_minmax",
)

# Fields of a run's settings worth recording as its hyperparameters in the report.
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

# Settings that only one family of methods reads; a run's record (report, model card) keeps only its own.
METHOD_ONLY_FIELDS: dict[str, tuple[str, ...]] = {
    "alpha": ("neggrad", "sharp_minmax"),
    "mask_ratio": ("salun", "sharp_minmax"),
    "forget_direction": ("sharp_minmax",),
    "official": ("salun", "sharp_minmax"),
    "l1_weight": ("l1_sparse",),
    "msteps": ("scrub",),
    "kd_T": ("scrub",),
    "beta": ("scrub",),
    "gamma": ("scrub",),
}
SAM_ONLY_FIELDS = ("rho", "sam_lambda", "sam_every")


def own_hyperparameters(method: str, sharpness: str, values: dict) -> dict:
    """``values`` without the settings ``method`` (with ``sharpness``) never reads, e.g. SCRUB's for Sharp MinMax."""
    return {
        key: value
        for key, value in values.items()
        if method in METHOD_ONLY_FIELDS.get(key, (method,)) and (sharpness != "none" or key not in SAM_ONLY_FIELDS)
    }


@dataclass
class UnlearnArguments(TrainingArguments):
    """Arguments for hf_unlearn's trainers.

    Parameters that control the method:
        method: which unlearning (or reference) method to run.
        sharpness: "none" (plain gradients), "sam" or "asam" (adaptive SAM) for every branch of the method.
        rho, sam_lambda: SAM radius and the combination weight lambda of ``g0 + sign * lambda * (g1 - g0)``.
        sam_every: the full SAM step every k optimizer steps, a one-pass LookSAM step in between (1: every step).
        alpha: retain weight of NegGrad / Sharp MinMax, ``alpha * CE_R - (1 - alpha) * CE_F``.
        mask_ratio: fraction of parameter elements in the forget-saliency mask (Sharp MinMax).
        forget_direction: sharpness direction of Sharp MinMax's forget branch ("max" in the paper).
        official: reproduce the official code (bottom-q mask, mask on g1 only, two sequential steps).
        l1_weight: initial L1 penalty weight of L1-sparse (decays linearly to 0 per optimizer step).
        msteps, kd_T, beta, gamma: SCRUB's max epochs, KL temperature, KL and CE weights of the min pass.

    Defaults that differ from `TrainingArguments` (the unlearning setting of the paper):
        optim="sgd" with optim_args="momentum=0.9", learning_rate=0.01, lr_scheduler_type="constant",
        weight_decay=5e-4, max_grad_norm=0.0 (no clipping), remove_unused_columns=False
        (nested retain/forget batches), label_names=["labels"], save_strategy="no", logging_strategy="epoch".

    Paper: Tang & Khanna, "Sharpness-Aware Machine Unlearning", ICLR 2026 (arXiv 2506.13715).
    """

    # Parameters that control the method
    method: str = field(
        default="finetune",
        metadata={"help": "Unlearning or reference method to run.", "choices": list(METHOD_CHOICES)},
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
    alpha: float = field(
        default=0.99,
        metadata={
            "help": "Retain weight in [0, 1] for NegGrad and Sharp MinMax: alpha*CE_retain - (1-alpha)*CE_forget "
            "(RUM used 0.99 for low-memorization and 0.97 for mid/high forget sets)."
        },
    )
    mask_ratio: float = field(
        default=0.5,
        metadata={
            "help": "Fraction in (0, 1] of parameter elements put in the forget-saliency mask: the top mask_ratio "
            "of |sum of forget-loss gradients|, ranked globally (SalUn; the paper uses 0.1-0.5)."
        },
    )
    forget_direction: str = field(
        default="max",
        metadata={
            "help": "Sharpness direction of Sharp MinMax's forget branch ('max' in the paper).",
            "choices": list(DIRECTION_CHOICES),
        },
    )
    official: bool = field(
        default=False,
        metadata={
            "help": "Reproduces the official code's behaviour (HaoranTang/sharp-unlearn) for sharp_minmax and salun: "
            "bottom-q saliency mask, mask applied to the perturbed gradient g1 only, perturbation and its norm over "
            "all parameters, (sharp_minmax) two sequential optimizer steps per step, and (random_label, salun) random "
            "labels uniform over all classes, the true one included. See docs/methods.md."
        },
    )
    l1_weight: float = field(
        default=5e-4,
        metadata={
            "help": "Initial weight of L1-sparse's penalty l1_weight * ||theta||_1; it decays linearly to 0 over the "
            "run, per optimizer step (Jia et al., 2023 'Model sparsity can simplify machine unlearning'; SalUn/RUM "
            "used 5e-4)."
        },
    )
    msteps: int = field(
        default=2,
        metadata={
            "help": "SCRUB: number of epochs (the first ones) that start with a max pass over the forget set "
            "(Kurmanji et al., 2023; exactly msteps max epochs)."
        },
    )
    kd_T: float = field(default=4.0, metadata={"help": "SCRUB: distillation temperature of the KL term (SCRUB, RUM)."})
    beta: float = field(
        default=0.001,
        metadata={"help": "SCRUB: weight of the KL(student || teacher) term in the min pass on retain (SCRUB: 0.001)."},
    )
    gamma: float = field(
        default=0.99,
        metadata={"help": "SCRUB: weight of the cross-entropy term in the min pass on retain (SCRUB: 0.99)."},
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

    def __post_init__(self) -> None:
        super().__post_init__()
        self._validate_unlearning_fields()

    def _validate_unlearning_fields(self) -> None:
        if self.method not in METHOD_CHOICES:
            raise ValueError(f"Unknown method {self.method!r}. Choose one of: {', '.join(METHOD_CHOICES)}.")
        if self.sharpness not in SHARPNESS_CHOICES:
            raise ValueError(f"Unknown sharpness {self.sharpness!r}. Choose one of: {', '.join(SHARPNESS_CHOICES)}.")
        if self.forget_direction not in DIRECTION_CHOICES:
            raise ValueError(
                f"Unknown forget_direction {self.forget_direction!r}. Choose one of: {', '.join(DIRECTION_CHOICES)}."
            )
        if not (math.isfinite(self.rho) and self.rho > 0):
            raise ValueError(f"rho must be a finite number > 0 (got {self.rho}); try 0.05-0.1 for SAM, 1.0 for ASAM.")
        if not (math.isfinite(self.sam_lambda) and self.sam_lambda >= 0):
            raise ValueError(f"sam_lambda must be a finite number >= 0 (got {self.sam_lambda}); 1.0 is standard SAM.")
        if isinstance(self.sam_every, bool) or not isinstance(self.sam_every, int) or self.sam_every < 1:
            raise ValueError(
                f"sam_every must be an integer >= 1 (got {self.sam_every!r}); 1 is SAM at every step, 5 a full SAM "
                "step every 5 steps."
            )
        if self.sam_every > 1 and self.official:
            raise ValueError(
                "sam_every > 1 is not available with official=True (the official code has no cheap SAM); "
                "set sam_every: 1 or official: false."
            )
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1] (got {self.alpha}); it weighs retain against forget loss.")
        if not 0.0 < self.mask_ratio <= 1.0:
            raise ValueError(f"mask_ratio must lie in (0, 1] (got {self.mask_ratio}); it is a fraction of weights.")
        if not (math.isfinite(self.l1_weight) and self.l1_weight >= 0):
            raise ValueError(f"l1_weight must be a finite number >= 0 (got {self.l1_weight}); try 5e-4.")
        if self.msteps < 0:
            raise ValueError(f"msteps must be >= 0 (got {self.msteps}); it counts SCRUB's max epochs.")
        if not (math.isfinite(self.kd_T) and self.kd_T > 0):
            raise ValueError(f"kd_T must be a finite number > 0 (got {self.kd_T}); SCRUB uses 4.0.")
        for name in ("beta", "gamma"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0 (got {value}).")
        if self.remove_unused_columns:
            raise ValueError(
                "remove_unused_columns=True drops the nested 'retain'/'forget' batch columns; set it to False."
            )
