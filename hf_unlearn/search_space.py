"""Search-space primitives: the ranges a method's config declares for `hf-unlearn tune`.

A leaf module (it imports nothing of hf_unlearn): configs (`hf_unlearn.args`) declare their ``search_space`` with
these types, and the optional tuning engine (`hf_unlearn.tune`) reads them, so the core never depends on Optuna.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Range:
    """A numeric range: ``low`` to ``high`` inclusive; ``log`` samples uniformly in log space; ``integer`` rounds."""

    low: float
    high: float
    log: bool = False
    integer: bool = False

    def describe(self) -> str:
        kind = "int" if self.integer else "log-uniform" if self.log else "uniform"
        return f"{self.low:g}..{self.high:g} ({kind})"


def log_range(low: float, high: float) -> Range:
    """A range sampled uniformly in log space (learning rates, penalty weights)."""
    return Range(low, high, log=True)


EPOCHS = Range(1, 10, integer=True)
# The SAM radius: the official code's default 0.1 for SAM, its README's 1.0 for ASAM, inside each range.
RHO: dict[str, Range] = {"sam": log_range(0.01, 1.0), "asam": log_range(0.1, 4.0)}
