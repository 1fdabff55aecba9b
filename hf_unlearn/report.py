"""A forget set's report: assembled from each model's entry (the public schema of docs/design.md), said in plain
words, and written as ``report.json``, ``report.md`` and a PNG plot.

The plain words make no verdict up: without a reference model there is no ToW, and the text says so; it only
states what was measured (report.md and the terminal print it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .atomic import atomic_write_text
from .environment import environment, one_line
from .metrics.tow import tug_of_war
from .recipe_schema import reference_kind
from .report_attacks import attacks_markdown, loss_auc

if TYPE_CHECKING:
    from .steps.forget import ForgetSetRun

PLOT_NAME = "accuracy_tow.png"


# ---------------------------------------------------------------------------------------------------- assembly
def assemble_report(
    recipe: dict[str, Any], run: ForgetSetRun, results: dict[str, dict[str, Any]], *, several: bool = False
) -> dict[str, Any]:
    """The report of one forget set (the public schema of docs/design.md) from each model's entry (its stage
    record and metrics): the original and the reference first, then the runs, each with its ToW."""
    splits = run.splits
    # None without a reference, or when the retrain diverged before a checkpoint
    reference = results["retrain"].get("accuracy") if "retrain" in results else None
    models = {}
    chosen = (recipe.get("tune") or {}).get("chosen") or {}  # runs whose settings came from hf-unlearn tune
    for name in ["original", "retrain", *[n for n in results if n not in ("original", "retrain")]]:
        if name not in results:
            continue
        entry = dict(results[name])
        entry.pop("log_history", None)  # kept in the stage's stage.json; the report stays a summary
        entry.setdefault("status", "finished")
        comparable = name != "retrain" and reference is not None and entry.get("accuracy") is not None
        entry["tow"] = tug_of_war(entry["accuracy"], reference) if comparable else None
        if name in chosen:
            entry["tuned"] = chosen[name]
        models[name] = entry
    return {
        "name": recipe["name"],
        "dataset": recipe["data"]["source"],
        "seed": int(recipe["seed"]),
        "forget_set": {
            **splits.manifest.summary(),
            "band": splits.manifest.details.get("band"),
            "name": run.spec.get("name") if several else None,
        },
        "base_model": recipe["model"]["name_or_path"],  # Hub id or folder; None when built from a config
        **(
            {"skipped_images": splits.prepared.description["skipped_images"]}  # data.on_bad_image: skip
            if splits.prepared is not None and "skipped_images" in splits.prepared.description
            else {}
        ),
        "sizes": {
            "train": len(splits.train),
            "retain": len(splits.retain),
            "forget": len(splits.forget),
            "test": len(splits.test),
        },
        "reference": reference_summary(recipe, results),
        "preprocessing": splits.prepared.description.get("transform") if splits.prepared else None,
        "models": models,
        "environment": environment(),  # versions, CPU / GPU, threads: what these numbers came from
    }


def reference_summary(recipe: dict[str, Any], results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What ToW was measured against (``kind``: retrain | given | none), and why it is null when it is."""
    kind = reference_kind(recipe)
    source = recipe["retrain"]["from"] if kind == "given" else None
    reason = None
    if kind == "none":
        reason = "no reference model (retrain: false): ToW compares with a model retrained without the forget set"
    elif (results.get("retrain") or {}).get("accuracy") is None:
        reason = "the reference has no metrics (its training diverged before a checkpoint)"
    return {"kind": kind, "from": source, "tow_unavailable": reason}


# ------------------------------------------------------------------------------------------------ plain words
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
    auc, auc_before = loss_auc(entry), loss_auc(original)
    if auc is not None:
        lines.append(
            f"{name}: loss-attack AUC {auc:.3f}"
            + (f" (original {auc_before:.3f})" if auc_before is not None else "")
            + ": how well the loss tells forget samples from test samples (0.5 = not at all)."
        )
    if entry.get("tow") is not None:
        lines.append(f"{name}: ToW {entry['tow']:.3f} against the reference model (1 = the same accuracies).")
    lines += provenance(name, entry)
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
        elif after > before:
            lines.append(
                f"Warning: {name} raised the forget set's accuracy ({before} -> {after} of {size} samples right): "
                "it learned these samples instead of forgetting them. Check the method's settings (for NegGrad and "
                "Sharp MinMax, a lower alpha weighs the forget term more)."
            )
        elif test is not None and test_before is not None and forget_before - forget <= max(test_before - test, 0):
            lines.append(
                f"Note: {name} lowered forget accuracy by {forget_before - forget:.3f}, no more than test accuracy "
                f"({test_before - test:.3f}): the model got worse in general rather than forgetting these samples."
            )
    return lines


def provenance(name: str, entry: dict[str, Any]) -> list[str]:
    """Where a run's settings came from (``hf-unlearn tune``'s best.yaml) and where its early stop ended it."""
    lines = []
    tuned = entry.get("tuned")
    if tuned:
        objective = tuned.get("objective") or {}
        lines.append(
            f"{name}: settings chosen by hf-unlearn tune, objective {objective.get('name')} on the "
            f"{objective.get('split')} split (trial {tuned.get('trial')}, value {tuned.get('value', float('nan')):.4f})."
        )
    stop = entry.get("early_stop")
    if stop:
        target = stop["target"]["forget"]
        if stop["stopped"]:
            why = (
                f"the forget accuracy reached the reference-free target {target:.3f}"
                if stop["reason"] == "forgotten"
                else f"{stop['settings']['patience']} checks without a better reference-free score (target {target:.3f})"
            )
            lines.append(
                f"{name}: stopped early at epoch {stop['epoch']:g} (step {stop['step']} of {stop['budget_steps']}): "
                f"{why}."
            )
        else:
            last = (stop["checks"] or [{}])[-1].get("forget")
            lines.append(
                f"{name}: trained its whole budget ({stop['budget_steps']} steps); the forget accuracy "
                f"({'—' if last is None else f'{last:.3f}'}) never reached the reference-free target {target:.3f}."
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


# ------------------------------------------------------------------------------------ table, markdown, plot
def fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def table_rows(report: dict[str, Any]) -> list[list[str]]:
    rows = []
    for name, m in report["models"].items():
        # A diverged run keeps its last good checkpoint's metrics, or null ones (docs/reliability.md).
        acc, mia = m.get("accuracy") or {}, m.get("mia") or {}
        label = name if m.get("status", "finished") == "finished" else f"{name} ({m['status']})"
        rows.append(
            [
                label,
                m["method"],
                m["sharpness"],
                fmt(acc.get("retain")),
                fmt(acc.get("forget")),
                fmt(acc.get("test")),
                fmt(m["tow"]),
                fmt(mia.get("confidence")),
                fmt(mia.get("entropy")),
                fmt(loss_auc(m)),
                fmt(m.get("wall_seconds"), 1),
            ]
        )
    return rows


HEADER = [
    "run",
    "method",
    "sharpness",
    "retain acc",
    "forget acc",
    "test acc",
    "ToW",
    "MIA conf",
    "MIA ent",
    "loss AUC",
    "wall s",
]


def format_table(report: dict[str, Any]) -> str:
    """A plain-text table for the terminal."""
    rows = [HEADER, *table_rows(report)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def tow_line(report: dict[str, Any]) -> str:
    """What ToW was measured against, or why it was not."""
    reference = report.get("reference") or {"kind": "retrain"}
    definition = "product of (1 - |accuracy difference|) on retain, forget and test (RUM's definition)"
    if reference["kind"] == "none":
        return "- ToW: not computed (no reference model: retrain: false)."
    if reference["kind"] == "given":
        return f"- ToW: {definition} against the given reference `{reference.get('from')}` (1 = identical to it)."
    return f"- ToW: {definition} against the retrained model (1 = identical to retraining)."


def markdown(report: dict[str, Any]) -> str:
    forget = report["forget_set"]
    lines = [
        f"# hf_unlearn report: {report['name']}",
        "",
        f"- data set: `{report['dataset']}`, seed {report['seed']}",
        f"- forget set: {forget['kind']}{' (' + forget['band'] + ' band)' if forget.get('band') else ''}, "
        f"{forget['size']} samples, commitment `{forget['commitment']}`",
        tow_line(report),
        "- MIA: MIA-efficacy on the forget set (fraction predicted non-member by an SVC trained on retain vs test "
        "confidence / entropy); loss AUC: the loss attack on forget vs test samples (0.5 = chance; all attacks "
        "below).",
        f"- environment: {one_line(report.get('environment'))}",
        "",
        "## What happened",
        "",
        *[f"- {line}" for line in plain_summary(report)],
        "",
        "## Table",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(report)]
    lines += ["", f"![accuracy and ToW]({PLOT_NAME})", ""]
    return "\n".join(lines) + attacks_markdown(report) + analysis_markdown(report)


def analysis_markdown(report: dict[str, Any]) -> str:
    rows = [(run, m["analysis"]) for run, m in report["models"].items() if m.get("analysis")]
    if not rows:
        return ""
    lines = [
        "",
        "## Analysis (docs/analysis.md)",
        "",
        "Entanglement: within-set spread over between-set separation of penultimate features, retain vs forget "
        "(raw ratio; higher = forget set more entangled with retain). Basin ratio: % of an 11 x 11 grid within "
        "0.5 std of the centre loss (higher = flatter).",
        "",
        "| run | entanglement | class-wise | basin test | basin forget | pictures |",
        "|---|---|---|---|---|---|",
    ]
    for run, a in rows:
        ent = a.get("entanglement") or {}
        land = a.get("landscape") or {}
        pictures = []
        if a.get("landscape_png"):
            pictures.append(f"[landscape]({a['landscape_png']})")
        if a.get("embedding_png"):
            pictures.append(f"[embedding]({a['embedding_png']})")
        lines.append(
            f"| {run} | {fmt(ent.get('global'))} | {fmt(ent.get('classwise'))} | "
            f"{fmt((land.get('test') or {}).get('basin_ratio'), 1)} | "
            f"{fmt((land.get('forget') or {}).get('basin_ratio'), 1)} | {' '.join(pictures) or '—'} |"
        )
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> None:
    """Accuracy triplets per run next to ToW per run."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .plots import save_figure

    names = list(report["models"])
    tow_names = [n for n in names if report["models"][n]["tow"] is not None]
    fig = Figure(figsize=(12, 4.5) if tow_names else (6.5, 4.5))
    FigureCanvasAgg(fig)  # no pyplot: no global backend, safe on headless machines
    # Without a reference model there is no ToW: the accuracy panel alone.
    ax_acc, ax_tow = fig.subplots(1, 2) if tow_names else (fig.subplots(1, 1), None)
    width = 0.27
    for i, split in enumerate(("retain", "forget", "test")):
        values = [(report["models"][n].get("accuracy") or {}).get(split, float("nan")) for n in names]
        ax_acc.bar([x + (i - 1) * width for x in range(len(names))], values, width, label=split)
    ax_acc.set_xticks(range(len(names)), names, rotation=35, ha="right")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_ylim(0, 1.05)
    ax_acc.legend(loc="lower left")
    ax_acc.set_title("Accuracy on retain / forget / test")
    if ax_tow is None:
        ax_acc.set_title("Accuracy on retain / forget / test (no reference: no ToW)")
        fig.tight_layout()
        save_figure(fig, path, dpi=110)
        return
    ax_tow.bar(tow_names, [report["models"][n]["tow"] for n in tow_names], color="tab:purple")
    ax_tow.set_xticks(range(len(tow_names)), tow_names, rotation=35, ha="right")
    lowest = min((report["models"][n]["tow"] for n in tow_names), default=0.0)
    ax_tow.set_ylim(max(0.0, lowest - 0.05), 1.0)
    ax_tow.set_title("ToW against the retrained model (higher is better)")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def write_report(report: dict[str, Any], output_dir: Path) -> None:
    output_dir = Path(output_dir)
    atomic_write_text(output_dir / "report.json", json.dumps(report, indent=2, default=str) + "\n")
    plot(report, output_dir / PLOT_NAME)
    atomic_write_text(output_dir / "report.md", markdown(report))


def combined_markdown(name: str, reports: dict[str, dict[str, Any]]) -> str:
    """One report.md for a recipe with several forget sets: a section per set, linking its own folder."""
    lines = [
        f"# hf_unlearn report: {name} ({len(reports)} forget sets)",
        "",
        "The original model is shared; the retrained reference and every unlearning run are per forget set, and ToW "
        "compares each run with the retrained model of its own forget set. Each forget set's folder holds its "
        "report.json, report.md and plot.",
        "",
        "| forget set | kind | band | size | retrain forget acc | original forget acc |",
        "|---|---|---|---|---|---|",
    ]
    for set_name, report in reports.items():
        forget, models = report["forget_set"], report["models"]
        retrain_acc = ((models.get("retrain") or {}).get("accuracy") or {}).get("forget")
        original_acc = (models["original"].get("accuracy") or {}).get("forget")
        lines.append(
            f"| [{set_name}]({set_name}/report.md) | {forget['kind']} | {forget.get('band') or '—'} | {forget['size']} "
            f"| {fmt(retrain_acc)} | {fmt(original_acc)} |"
        )
    for set_name, report in reports.items():
        forget = report["forget_set"]
        lines += [
            "",
            f"## {set_name}: {forget['kind']}{' ' + forget['band'] if forget.get('band') else ''}, {forget['size']} "
            f"samples (commitment `{forget['commitment'][:16]}...`)",
            "",
            "| " + " | ".join(HEADER) + " |",
            "|" + "---|" * len(HEADER),
        ]
        lines += ["| " + " | ".join(row) + " |" for row in table_rows(report)]
        lines += ["", f"![accuracy and ToW, {set_name}]({set_name}/{PLOT_NAME})"]
        attacks = attacks_markdown(report, heading="###")
        lines += attacks.rstrip("\n").split("\n") if attacks else []
    return "\n".join(lines) + "\n"


def write_combined_markdown(name: str, reports: dict[str, dict[str, Any]], output_dir: Path) -> None:
    atomic_write_text(Path(output_dir) / "report.md", combined_markdown(name, reports))
