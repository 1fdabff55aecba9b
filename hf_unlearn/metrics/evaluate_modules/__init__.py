"""``evaluate`` wrappers of the plain metric functions; load one with ``evaluate.load(metric_path("tow"))``.

Each module's ``_compute`` calls the function report.json's numbers come from (``accuracy``, ``threshold_attacks``,
``sampled_mia_efficacy``, ``tug_of_war``), so there is one implementation; each folder's README.md is its metric
card.
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def available_metrics() -> list[str]:
    """Names of the wrapped metrics (each a folder holding ``<name>/<name>.py``)."""
    return sorted(p.name for p in _HERE.iterdir() if (p / f"{p.name}.py").is_file())


def metric_path(name: str) -> str:
    """Absolute folder of the ``evaluate`` module ``name`` ("accuracy", "attacks", "mia" or "tow")."""
    if name not in available_metrics():
        raise ValueError(f"unknown metric {name!r}; available: {available_metrics()}")
    return str(_HERE / name)
