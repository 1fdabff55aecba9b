"""Building blocks of a method's config: fields that several methods share, and checks of their values.

A config (`hf_unlearn.args`) declares ``alpha: float = alpha_field()`` and ``field_checks = {"alpha": ALPHA_CHECK}``;
a method added from outside the package can reuse them the same way. A leaf module: it imports nothing of hf_unlearn.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import field
from typing import Any

# A check of one of a method's own fields: (valid, message naming the field and a good value, with {v} the value).
FieldCheck = tuple[Callable[[Any], bool], str]


def at_least(low: float, *, strict: bool = False) -> Callable[[Any], bool]:
    """A check that a value is a finite number ``>= low`` (``> low`` when ``strict``)."""
    return lambda v: math.isfinite(v) and (v > low if strict else v >= low)


ALPHA_CHECK: FieldCheck = (
    lambda v: 0.0 <= v <= 1.0,
    "alpha must lie in [0, 1] (got {v}); it weighs retain against forget loss.",
)
MASK_RATIO_CHECK: FieldCheck = (
    lambda v: 0.0 < v <= 1.0,
    "mask_ratio must lie in (0, 1] (got {v}); it is a fraction of weights.",
)
OFFICIAL_LABELS = "random labels uniform over all classes, the true one included."
OFFICIAL_MASK = (
    "bottom-q saliency mask, mask applied to the perturbed gradient g1 only, perturbation and its norm over all "
    "parameters"
)


def method_field(name: str) -> Any:
    """A config's ``method`` field: its default is the method's name (the declaration that makes it a method)."""
    return field(default=name, metadata={"help": f"The method: {name!r} (this config's own)."})


def alpha_field() -> Any:
    return field(
        default=0.99,
        metadata={
            "help": "Retain weight in [0, 1]: alpha*CE_retain - (1-alpha)*CE_forget (RUM used 0.99 for "
            "low-memorization and 0.97 for mid/high forget sets)."
        },
    )


def mask_ratio_field() -> Any:
    return field(
        default=0.5,
        metadata={
            "help": "Fraction in (0, 1] of parameter elements put in the forget-saliency mask: the top mask_ratio "
            "of |sum of forget-loss gradients|, ranked globally (SalUn; the paper uses 0.1-0.5)."
        },
    )


def official_field(what: str) -> Any:
    return field(
        default=False,
        metadata={"help": f"Reproduces the official code (HaoranTang/sharp-unlearn): {what} See docs/methods.md."},
    )
