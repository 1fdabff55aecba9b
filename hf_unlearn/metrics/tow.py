"""Tug-of-War (ToW): how close an unlearned model's accuracies are to a retrained one (method-spec E.2)."""

from __future__ import annotations

import math
from collections.abc import Mapping

TOW_KEYS = ("retain", "forget", "test")


def _checked(accuracies: Mapping[str, float], which: str) -> dict[str, float]:
    """Return the three accuracies as floats, rejecting missing keys and percentages."""
    values = {}
    for key in TOW_KEYS:
        if key not in accuracies:
            raise ValueError(f"{which} accuracies lack the key {key!r} (need {TOW_KEYS})")
        value = float(accuracies[key])
        # Written to catch NaN too; values above 1 are almost always percentages passed by mistake.
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{which} accuracy {key!r} = {value} is not a fraction in [0, 1]")
        values[key] = value
    return values


def tug_of_war(
    unlearned: Mapping[str, float],
    retrained: Mapping[str, float],
    *,
    signed: bool = False,
) -> float:
    """ToW of ``unlearned`` against ``retrained``; accuracies are fractions keyed retain/forget/test.

    Default: RUM's definition, prod over keys of ``1 - |a_u - a_r|`` (1 = matches retrain).
    ``signed=True``: the official sharp-unlearn variant
    ``(1 - (R_ref - A_R)) * (1 - (A_F - F_ref)) * (1 - (T_ref - A_T))``, which can exceed 1;
    keep it only to compare with their logs (method-spec G.6).
    """
    u = _checked(unlearned, "unlearned")
    r = _checked(retrained, "retrained")
    if signed:
        factors = (
            1.0 - (r["retain"] - u["retain"]),
            1.0 - (u["forget"] - r["forget"]),
            1.0 - (r["test"] - u["test"]),
        )
    else:
        factors = tuple(1.0 - abs(u[key] - r[key]) for key in TOW_KEYS)
    return math.prod(factors)
