"""The membership-inference attacks of a report, as a table: one row per model and attack (docs/privacy.md).

Every attack under a model's ``attacks`` is shown, whatever its name (the threshold attacks, LiRA when the recipe
trains shadow models), as long as it carries the fields of `hf_unlearn.metrics.attacks.attack_summary`.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

FPRS = ("0.01", "0.001")  # the keys of ``tpr_at_fpr``
HEADER = ["run", "attack", "AUC", "TPR @ 1% FPR", "TPR @ 0.1% FPR"]


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def attack_rows(report: dict[str, Any]) -> list[list[str]]:
    """``[run, attack, AUC, TPR at 1% FPR, TPR at 0.1% FPR]`` for every attack of every model that has them."""
    rows = []
    for run, entry in report["models"].items():
        for attack, summary in (entry.get("attacks") or {}).items():
            summary = summary or {}  # an attack that could not run (e.g. no shadows for it) is kept, as "—"
            tpr = summary.get("tpr_at_fpr") or {}
            rows.append([run, attack, _fmt(summary.get("auc")), *(_fmt(tpr.get(fpr)) for fpr in FPRS)])
    return rows


def loss_auc(entry: dict[str, Any]) -> float | None:
    """The loss attack's AUC of a model's entry (the console table's column), None without it."""
    return ((entry.get("attacks") or {}).get("loss") or {}).get("auc")


def false_positive_budget(nonmembers: int) -> str:
    """How many false positives the low-FPR columns allow on ``nonmembers`` test samples, in words."""
    # Exact decimal fractions: a float product can land just below its integer and floor one too low.
    allowed = [f"{math.floor(Fraction(fpr) * nonmembers)} at {float(fpr):.1%}" for fpr in FPRS]
    return f"on {nonmembers} test samples a threshold may flag {' and '.join(allowed)} of them falsely"


def attacks_markdown(report: dict[str, Any], heading: str = "##") -> str:
    """The attacks' section of report.md (empty when no model has attacks)."""
    rows = attack_rows(report)
    if not rows:
        return ""
    sizes = report.get("sizes") or {}
    budget = f" ({false_positive_budget(sizes['test'])})" if sizes.get("test") else ""
    lira = (
        " lira, lira_offline: LiRA, each sample against shadow models that did and did not train on it (online) "
        "or that did not (offline); a model that never saw the forget set should score near 0.5 there, however "
        "hard its samples."
        if any(row[1].startswith("lira") for row in rows)
        else ""
    )
    return (
        "\n".join(
            [
                "",
                f"{heading} Membership inference: error rates (docs/privacy.md)",
                "",
                "Each attack scores every forget sample (trained on by the original: members) and every test sample "
                "(never trained on: non-members); AUC 0.5 = the scores do not tell them apart, 1 = they separate "
                "them perfectly. TPR @ x% FPR: the fraction of forget samples caught at a threshold that flags at "
                f"most x% of test samples{budget}. Threshold attacks: loss, top-1 confidence, entropy. The retrained "
                "model never saw the forget set: its rows are what forgetting looks like (below 0.5 when the forget "
                f"samples are harder than test samples).{lira}",
                "",
                "| " + " | ".join(HEADER) + " |",
                "|" + "---|" * len(HEADER),
                *("| " + " | ".join(row) + " |" for row in rows),
            ]
        )
        + "\n"
    )
