"""Several seeds of a recipe, on top of the single-seed `Pipeline`.

``seeds: [0, 1, 2]`` in a recipe runs the whole recipe once per seed, each in ``OUTPUT/seed-<s>/`` with the
unchanged single-seed machinery (finished stages are reused there as usual), then writes an aggregate
``OUTPUT/report.json`` / ``report.md`` / ``tow[_<forget set>].png``: per forget set and per run, the mean, the
standard deviation (ddof 1) and the 95% t-interval over seeds of ToW, MIA (confidence and entropy) and the three
accuracies, and the environment they were measured in (`hf_unlearn.environment`). Tables show mean [95% interval]:
a result reproduced on another machine (other CPU, versions or thread count) should fall inside those intervals,
where one seed's exact numbers need not repeat.
"""

from __future__ import annotations

import copy
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_write_text
from .environment import environment, one_line

logger = logging.getLogger(__name__)

# Metrics summarised over seeds: name -> path in a report's model entry.
METRICS: dict[str, tuple[str, ...]] = {
    "tow": ("tow",),
    "mia_confidence": ("mia", "confidence"),
    "mia_entropy": ("mia", "entropy"),
    "retain_accuracy": ("accuracy", "retain"),
    "forget_accuracy": ("accuracy", "forget"),
    "test_accuracy": ("accuracy", "test"),
    "entanglement": ("analysis", "entanglement", "global"),
    "entanglement_classwise": ("analysis", "entanglement", "classwise"),
    "basin_ratio_test": ("analysis", "landscape", "test", "basin_ratio"),
    "basin_ratio_forget": ("analysis", "landscape", "forget", "basin_ratio"),
}
# Membership-inference attacks (hf_unlearn.metrics.attacks; LiRA with evaluation.lira): AUC and TPR at 1% FPR.
ATTACKS = ("loss", "confidence", "entropy", "lira", "lira_offline")
ATTACK_METRICS: dict[str, tuple[str, ...]] = {
    **{f"{name}_attack_auc": ("attacks", name, "auc") for name in ATTACKS},
    **{f"{name}_attack_tpr_at_1pct_fpr": ("attacks", name, "tpr_at_fpr", "0.01") for name in ATTACKS},
}
METRICS.update(ATTACK_METRICS)


# ------------------------------------------------------------------------------------------ statistics
def t_critical(n: int, confidence: float = 0.95) -> float:
    """Two-sided Student t quantile for ``n`` values (``n - 1`` degrees of freedom)."""
    from scipy import stats

    return float(stats.t.ppf(0.5 + confidence / 2.0, n - 1))


def summary(values: Sequence[float | None], confidence: float = 0.95) -> dict[str, Any]:
    """``{"n", "mean", "std", "ci95": [low, high], "values"}`` of the finite values (std with ddof 1).

    One value: std 0 and the interval is that value; none: nulls. Non-finite values (a diverged run) are left
    out and counted in ``"missing"``.
    """
    raw = [None if v is None else float(v) for v in values]
    finite = [v for v in raw if v is not None and math.isfinite(v)]
    out: dict[str, Any] = {"n": len(finite), "missing": len(raw) - len(finite), "values": raw}
    if not finite:
        return {**out, "mean": None, "std": None, "ci95": [None, None]}
    mean = float(np.mean(finite))
    if len(finite) == 1:
        return {**out, "mean": mean, "std": 0.0, "ci95": [mean, mean]}
    std = float(np.std(finite, ddof=1))
    half = t_critical(len(finite), confidence) * std / math.sqrt(len(finite))
    return {**out, "mean": mean, "std": std, "ci95": [mean - half, mean + half]}


def _get(entry: dict[str, Any], path: tuple[str, ...]) -> float | None:
    node: Any = entry
    for key in path:
        if not isinstance(node, dict) or node.get(key) is None:
            return None
        node = node[key]
    return float(node)


# ------------------------------------------------------------------------------------------ seeds
def seed_recipe(recipe: dict[str, Any], seed: int) -> dict[str, Any]:
    """The recipe of one seed: ``seed`` set, ``seeds`` removed (a plain single-seed recipe)."""
    out = copy.deepcopy(recipe)
    out.pop("seeds", None)
    out["seed"] = int(seed)
    return out


def per_set_reports(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{forget set name: report}`` of a `Pipeline.run` result (one forget set or several)."""
    if "forget_sets" in result:
        return result["forget_sets"]
    name = result["forget_set"].get("name") or result["forget_set"].get("band") or result["forget_set"]["kind"]
    return {name: result}


def aggregate_reports(name: str, reports: dict[int, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """The aggregate of per-seed reports ``{seed: {forget set: report}}``."""
    seeds = list(reports)
    set_names = list(next(iter(reports.values())))
    first = next(iter(reports.values()))[set_names[0]]
    out: dict[str, Any] = {
        "name": name,
        "dataset": first["dataset"],
        "seeds": seeds,
        "reports": {
            str(s): f"seed-{s}/report.json" if len(reports[s]) == 1 else f"seed-{s}/<forget set>/report.json"
            for s in seeds
        },
        "forget_sets": {},
    }
    for set_name in set_names:
        runs = list(reports[seeds[0]][set_name]["models"])
        models = {}
        for run in runs:
            entries = [reports[s][set_name]["models"].get(run) or {} for s in seeds]
            models[run] = {
                "method": entries[0].get("method"),
                "sharpness": entries[0].get("sharpness"),
                **{
                    metric: summary([_get(e, path) for e in entries])
                    for metric, path in METRICS.items()
                    if any(_get(e, path) is not None for e in entries) or metric in ("tow", "mia_confidence")
                },
            }
        forget = reports[seeds[0]][set_name]["forget_set"]
        out["forget_sets"][set_name] = {
            "kind": forget["kind"],
            "band": forget.get("band"),
            "size": summary([reports[s][set_name]["forget_set"]["size"] for s in seeds])["mean"],
            "models": models,
        }
    return out


def _cell(stat: dict[str, Any] | None, bounds: tuple[float, float] | None = None) -> str:
    """``mean [low, high]``: the mean over seeds and its 95% t-interval, clipped to ``bounds`` (the metric's range:
    with three seeds a t-interval of an accuracy may reach past 1; report.json keeps it unclipped)."""
    if not stat or stat.get("mean") is None:
        return "—"
    low, high = stat["ci95"]
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return f"{stat['mean']:.3f} [{low:.3f}, {high:.3f}]"


UNIT = (0.0, 1.0)  # the range of the accuracies, ToW and MIA-efficacy


# Table columns: header -> metric (the order of the single-seed table of hf_unlearn.report).
COLUMNS = {
    "retain acc": "retain_accuracy",
    "forget acc": "forget_accuracy",
    "test acc": "test_accuracy",
    "ToW": "tow",
    "MIA conf": "mia_confidence",
    "MIA ent": "mia_entropy",
}
AGG_HEADER = ["run", "method", "sharpness", *COLUMNS]


def aggregate_markdown(agg: dict[str, Any], plots: dict[str, str]) -> str:
    lines = [
        f"# hf_unlearn report: {agg['name']} over {len(agg['seeds'])} seeds ({', '.join(map(str, agg['seeds']))})",
        "",
        "Each cell: mean [95% t-interval] over seeds, the interval clipped to the metric's range [0, 1] (report.json "
        "has it unclipped, the standard deviation and each seed's value). Every seed reruns the whole recipe (data split, original, forget set, retrain, runs) in its own "
        "folder `seed-<s>/`; ToW compares each run with the retrained model of the same seed.",
        "",
        f"Environment: {one_line(agg.get('environment'))}.",
    ]
    for set_name, block in agg["forget_sets"].items():
        lines += [
            "",
            f"## Forget set {set_name}: {block['kind']}{' ' + block['band'] if block.get('band') else ''}, "
            f"{block['size']:.0f} samples (mean over seeds)",
            "",
            "| " + " | ".join(AGG_HEADER) + " |",
            "|" + "---|" * len(AGG_HEADER),
        ]
        for run, m in block["models"].items():
            lines.append(
                "| "
                + " | ".join(
                    [run, str(m["method"]), str(m["sharpness"]), *(_cell(m.get(k), UNIT) for k in COLUMNS.values())]
                )
                + " |"
            )
        extra = [
            k
            for k in ("entanglement", "entanglement_classwise", "basin_ratio_test", "basin_ratio_forget")
            if any(k in m for m in block["models"].values())
        ]
        if extra:
            lines += ["", "| run | " + " | ".join(extra) + " |", "|---|" + "---|" * len(extra)]
            for run, m in block["models"].items():
                lines.append(f"| {run} | " + " | ".join(_cell(m.get(k)) for k in extra) + " |")
        attacks = [name for name in ATTACKS if any(f"{name}_attack_auc" in m for m in block["models"].values())]
        if attacks:
            lines += [
                "",
                "Membership-inference attacks, forget (members) against test (non-members): AUC / TPR at 1% FPR "
                "(docs/privacy.md).",
                "",
                "| run | " + " | ".join(attacks) + " |",
                "|---|" + "---|" * len(attacks),
            ]
            for run, m in block["models"].items():
                cells = [
                    f"{_cell(m.get(f'{a}_attack_auc'), UNIT)} / {_cell(m.get(f'{a}_attack_tpr_at_1pct_fpr'), UNIT)}"
                    for a in attacks
                ]
                lines.append(f"| {run} | " + " | ".join(cells) + " |")
        if set_name in plots:
            lines += ["", f"![ToW over seeds, {set_name}]({plots[set_name]})"]
    return "\n".join(lines) + "\n"


def write_aggregate(agg: dict[str, Any], output_dir: Path) -> None:
    from . import plots as plotting

    output_dir = Path(output_dir)
    several = len(agg["forget_sets"]) > 1
    pictures = {}
    for set_name, block in agg["forget_sets"].items():
        tow = {
            run: [v for v in m["tow"]["values"] if v is not None]
            for run, m in block["models"].items()
            if m.get("tow", {}).get("n")
        }
        if tow:
            filename = f"tow_{set_name}.png" if several else "tow.png"
            plotting.plot_tow(tow, output_dir / filename, title=f"ToW over {len(agg['seeds'])} seeds ({set_name})")
            pictures[set_name] = filename
    atomic_write_text(output_dir / "report.json", json.dumps(agg, indent=2, default=str) + "\n")
    atomic_write_text(output_dir / "report.md", aggregate_markdown(agg, pictures))


def format_aggregate(agg: dict[str, Any]) -> str:
    """The terminal table per forget set: every run's metrics as mean [95% t-interval] over the seeds."""
    lines = []
    for set_name, block in agg["forget_sets"].items():
        width = max(len("run"), *(len(run) for run in block["models"])) + 2
        lines += [
            f"Forget set {set_name} ({len(agg['seeds'])} seeds {agg['seeds']}; mean [95% t-interval, within 0-1]):",
            "run".ljust(width) + "".join(h.ljust(22) for h in COLUMNS).rstrip(),
        ]
        for run, m in block["models"].items():
            lines.append(run.ljust(width) + "".join(_cell(m.get(k), UNIT).ljust(22) for k in COLUMNS.values()).rstrip())
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ running
def run_recipe(
    recipe: dict[str, Any], output_dir: str | Path, *, force: bool = False, use_cpu: bool = False
) -> dict[str, Any]:
    """Run a validated recipe: one `Pipeline`, or one per seed (each in ``seed-<s>/``) and the aggregate.

    Returns the `Pipeline.run` result for a single-seed recipe, else the aggregate (it has ``"seeds"``). The
    recipe's ``analysis`` section runs inside each `Pipeline.run` (`hf_unlearn.analysis`).
    """
    from .distributed import is_main_process
    from .pipeline import Pipeline

    output_dir = Path(output_dir)
    seeds = recipe.get("seeds")
    if not seeds:
        return Pipeline(recipe, output_dir, force=force, use_cpu=use_cpu).run()
    per_seed: dict[int, dict[str, dict[str, Any]]] = {}
    for seed in seeds:
        logger.info("Seed %s of %s", seed, list(seeds))
        result = Pipeline(seed_recipe(recipe, seed), output_dir / f"seed-{seed}", force=force, use_cpu=use_cpu).run()
        per_seed[int(seed)] = per_set_reports(result)
    agg = aggregate_reports(recipe["name"], per_seed)
    agg["environment"] = environment()
    if is_main_process():
        write_aggregate(agg, output_dir)
    return agg
