"""Write a run's report: ``report.json`` (the public schema of design.md), ``report.md`` and a PNG plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .atomic import atomic_write_text

PLOT_NAME = "accuracy_tow.png"


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
                fmt(m.get("wall_seconds"), 1),
            ]
        )
    return rows


HEADER = ["run", "method", "sharpness", "retain acc", "forget acc", "test acc", "ToW", "MIA conf", "MIA ent", "wall s"]


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
    from .summary import plain_summary

    forget = report["forget_set"]
    lines = [
        f"# hf_unlearn report: {report['name']}",
        "",
        f"- data set: `{report['dataset']}`, seed {report['seed']}",
        f"- forget set: {forget['kind']}{' (' + forget['band'] + ' band)' if forget.get('band') else ''}, "
        f"{forget['size']} samples, commitment `{forget['commitment']}`",
        tow_line(report),
        "- MIA: MIA-efficacy on the forget set (fraction predicted non-member by an SVC trained on retain vs test "
        "confidence / entropy).",
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
    return "\n".join(lines) + analysis_markdown(report)


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
    return "\n".join(lines) + "\n"


def write_combined_markdown(name: str, reports: dict[str, dict[str, Any]], output_dir: Path) -> None:
    atomic_write_text(Path(output_dir) / "report.md", combined_markdown(name, reports))
