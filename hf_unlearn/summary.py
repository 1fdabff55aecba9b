"""What a report says in plain words: per unlearning run, the forget and test accuracy, the change from the
original on each split, MIA-efficacy, and a warning when the forget set's accuracy did not move.

No verdict is made up: without a reference model there is no ToW, and the text says so; it only states what was
measured (report.md and the terminal print it).
"""

from __future__ import annotations

from typing import Any

REFERENCE_NAMES = ("original", "retrain")


def _acc(entry: dict[str, Any], split: str) -> float | None:
    return (entry.get("accuracy") or {}).get(split)


def _change(value: float | None, before: float | None) -> str:
    if value is None:
        return "—"
    if before is None:
        return f"{value:.3f}"
    return f"{value:.3f} (original {before:.3f}, {value - before:+.3f})"


def correct_count(accuracy: float, size: int) -> int:
    """The number of samples an accuracy over ``size`` samples counts as right."""
    return round(accuracy * size)


def run_summary(report: dict[str, Any], name: str) -> list[str]:
    """Plain sentences about one unlearning run of ``report``."""
    models = report["models"]
    entry, original = models[name], models.get("original", {})
    if entry.get("accuracy") is None:
        return [f"{name}: no metrics (the run diverged before its first checkpoint)."]
    lines = [
        f"{name}: forget accuracy {_change(_acc(entry, 'forget'), _acc(original, 'forget'))}; "
        f"test accuracy {_change(_acc(entry, 'test'), _acc(original, 'test'))}; "
        f"retain accuracy {_change(_acc(entry, 'retain'), _acc(original, 'retain'))}."
    ]
    mia, mia_before = entry.get("mia") or {}, original.get("mia") or {}
    if mia.get("confidence") is not None:
        before = mia_before.get("confidence")
        lines.append(
            f"{name}: MIA-efficacy {mia['confidence']:.3f}"
            + (f" (original {before:.3f})" if before is not None else "")
            + ": the fraction of forget samples a membership-inference attack calls unseen."
        )
    if entry.get("tow") is not None:
        lines.append(f"{name}: ToW {entry['tow']:.3f} against the reference model (1 = the same accuracies).")
    forget, forget_before = _acc(entry, "forget"), _acc(original, "forget")
    test, test_before = _acc(entry, "test"), _acc(original, "test")
    size = int(report.get("sizes", {}).get("forget") or 0)
    if forget is not None and forget_before is not None and size:
        after, before = correct_count(forget, size), correct_count(forget_before, size)
        if after == before:
            lines.append(
                f"Warning: {name} did not change the forget set's accuracy ({after} of {size} samples right, as in "
                "the original): by accuracy, nothing was forgotten. Typical samples can stay right in a model that "
                "never saw them; MIA-efficacy"
                + (" and ToW tell" if entry.get("tow") is not None else " and a reference model (retrain.from) tell")
                + " more. Otherwise train longer, with a higher learning rate, or with another method."
            )
        elif test is not None and test_before is not None and forget_before - forget <= max(test_before - test, 0):
            lines.append(
                f"Note: {name} lowered forget accuracy by {forget_before - forget:.3f}, no more than test accuracy "
                f"({test_before - test:.3f}): the model got worse in general rather than forgetting these samples."
            )
    return lines


def plain_summary(report: dict[str, Any]) -> list[str]:
    """Sentences for every unlearning run, preceded by what the reference is (or that there is none)."""
    reference = report.get("reference") or {}
    lines = []
    if reference.get("kind") == "none":
        lines.append(
            "No reference model (retrain: false): ToW is not computed. For samples a model never saw, its accuracy "
            "is about its test accuracy when they are typical ones (harder samples score lower), so compare the "
            "forget accuracy with the test accuracy."
        )
    elif reference.get("tow_unavailable"):
        lines.append(f"ToW is not computed: {reference['tow_unavailable']}.")
    for name in report["models"]:
        if name not in REFERENCE_NAMES:
            lines += run_summary(report, name)
    return lines
