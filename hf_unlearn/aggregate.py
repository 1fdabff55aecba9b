"""Several seeds and the optional analysis section of a recipe, on top of the single-seed `Pipeline`.

``seeds: [0, 1, 2]`` in a recipe runs the whole recipe once per seed, each in ``OUTPUT/seed-<s>/`` with the
unchanged single-seed machinery (finished stages are reused there as usual), then writes an aggregate
``OUTPUT/report.json`` / ``report.md`` / ``tow[_<forget set>].png``: per forget set and per run, the mean, the
standard deviation (ddof 1) and the 95% t-interval over seeds of ToW, MIA confidence and the three accuracies.

``analysis: {entanglement: true, landscape: false, embedding: false}`` adds, after a (per-seed) run, for every
model of the report: the global and class-wise entanglement score of its penultimate features on retain vs forget
(``models.<run>.analysis.entanglement`` in report.json), and optionally the loss landscapes on test and forget
(basin ratio etc. in ``models.<run>.analysis.landscape``, contours in ``analysis/<run>_landscape.png``) and a 2-D
embedding of retain vs forget features (``analysis/<run>_embedding.png``), linked from report.md.
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

from .errors import PushFailedError
from .paths import inside
from .report import _fmt, atomic_write_text

logger = logging.getLogger(__name__)

# Metrics summarised over seeds: name -> path in a report's model entry.
METRICS: dict[str, tuple[str, ...]] = {
    "tow": ("tow",),
    "mia_confidence": ("mia", "confidence"),
    "retain_accuracy": ("accuracy", "retain"),
    "forget_accuracy": ("accuracy", "forget"),
    "test_accuracy": ("accuracy", "test"),
    "entanglement": ("analysis", "entanglement", "global"),
    "entanglement_classwise": ("analysis", "entanglement", "classwise"),
    "basin_ratio_test": ("analysis", "landscape", "test", "basin_ratio"),
    "basin_ratio_forget": ("analysis", "landscape", "forget", "basin_ratio"),
}
ANALYSIS_DEFAULTS: dict[str, Any] = {
    "entanglement": False,
    "landscape": False,
    "embedding": False,
    "landscape_steps": 11,
    "landscape_seed": 42,
    "max_samples": None,
}


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


def _cell(stat: dict[str, Any] | None) -> str:
    if not stat or stat.get("mean") is None:
        return "—"
    low, high = stat["ci95"]
    return f"{stat['mean']:.3f} ± {stat['std']:.3f} [{low:.3f}, {high:.3f}]"


AGG_HEADER = ["run", "method", "sharpness", "ToW", "MIA conf", "retain acc", "forget acc", "test acc"]


def aggregate_markdown(agg: dict[str, Any], plots: dict[str, str]) -> str:
    lines = [
        f"# hf_unlearn report: {agg['name']} over {len(agg['seeds'])} seeds ({', '.join(map(str, agg['seeds']))})",
        "",
        "Each cell: mean ± standard deviation [95% t-interval] over seeds. Every seed reruns the whole recipe "
        "(data split, original, forget set, retrain, runs) in its own folder `seed-<s>/`; ToW compares each run with "
        "the retrained model of the same seed.",
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
                    [
                        run,
                        str(m["method"]),
                        str(m["sharpness"]),
                        _cell(m.get("tow")),
                        _cell(m.get("mia_confidence")),
                        _cell(m.get("retain_accuracy")),
                        _cell(m.get("forget_accuracy")),
                        _cell(m.get("test_accuracy")),
                    ]
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
    lines = []
    for set_name, block in agg["forget_sets"].items():
        lines.append(f"Forget set {set_name} ({len(agg['seeds'])} seeds; mean ± std [95% t-interval]):")
        for run, m in block["models"].items():
            lines.append(f"  {run:28s} ToW {_cell(m.get('tow'))}   MIA conf {_cell(m.get('mia_confidence'))}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ running
def run_recipe(
    recipe: dict[str, Any], output_dir: str | Path, *, force: bool = False, use_cpu: bool = False
) -> dict[str, Any]:
    """Run a validated recipe: one `Pipeline` (plus the analysis section), or one per seed and the aggregate.

    Returns the `Pipeline.run` result for a single-seed recipe, else the aggregate (it has ``"seeds"``).
    """
    from .pipeline import Pipeline

    output_dir = Path(output_dir)
    seeds = recipe.get("seeds")
    if not seeds:
        failed = None
        try:
            result = Pipeline(recipe, output_dir, force=force, use_cpu=use_cpu).run()
        except PushFailedError as error:  # the run is complete: analyse it, then report the failed push
            result, failed = error.result, error
        if _analysis_wanted(recipe):
            result = analyze_run(recipe, output_dir, result, use_cpu=use_cpu)
        if failed is not None:
            failed.result = result
            raise failed
        return result
    per_seed: dict[int, dict[str, dict[str, Any]]] = {}
    for seed in seeds:
        logger.info("Seed %s of %s", seed, list(seeds))
        one = seed_recipe(recipe, seed)
        result = Pipeline(one, output_dir / f"seed-{seed}", force=force, use_cpu=use_cpu).run()
        if _analysis_wanted(one):
            result = analyze_run(one, output_dir / f"seed-{seed}", result, use_cpu=use_cpu)
        per_seed[int(seed)] = per_set_reports(result)
    agg = aggregate_reports(recipe["name"], per_seed)
    from .pipeline import _is_main_process

    if _is_main_process():
        write_aggregate(agg, output_dir)
    return agg


# ------------------------------------------------------------------------------------------ analysis
def analysis_settings(recipe: dict[str, Any]) -> dict[str, Any]:
    return {**ANALYSIS_DEFAULTS, **(recipe.get("analysis") or {})}


def _analysis_wanted(recipe: dict[str, Any]) -> bool:
    settings = analysis_settings(recipe)
    return bool(settings["entanglement"] or settings["landscape"] or settings["embedding"])


def model_analysis(
    model: Any, retain: Any, forget: Any, test: Any, settings: dict[str, Any], folder: Path, run: str
) -> dict[str, Any]:
    """Entanglement (global, class-wise) and optional landscape / embedding of one model; PNGs in ``folder``."""
    from . import plots as plotting
    from .metrics import classwise_entanglement_score, entanglement_score, loss_landscape, penultimate_features

    out: dict[str, Any] = {}
    features = None
    if settings["entanglement"] or settings["embedding"]:
        fr, yr = penultimate_features(model, retain)
        ff, yf = penultimate_features(model, forget)
        features = (fr, yr, ff, yf)
    if settings["entanglement"]:
        fr, yr, ff, yf = features
        out["entanglement"] = {
            "global": entanglement_score(fr, ff),
            "classwise": classwise_entanglement_score(fr, yr, ff, yf),
        }
    if settings["landscape"]:
        lands = {
            name: loss_landscape(
                model,
                data,
                steps=int(settings["landscape_steps"]),
                seed=int(settings["landscape_seed"]),
                max_samples=settings["max_samples"],
            )
            for name, data in (("test", test), ("forget", forget))
        }
        out["landscape"] = {name: land.stats() for name, land in lands.items()}
        folder.mkdir(parents=True, exist_ok=True)
        plotting.plot_loss_landscapes(lands, folder / f"{run}_landscape.png", title=f"{run}: loss landscape")
        out["landscape_png"] = f"analysis/{run}_landscape.png"
    if settings["embedding"]:
        fr, yr, ff, yf = features
        folder.mkdir(parents=True, exist_ok=True)
        plotting.plot_feature_embedding(fr, ff, folder / f"{run}_embedding.png", retain_labels=yr, forget_labels=yf)
        out["embedding_png"] = f"analysis/{run}_embedding.png"
    return out


def analyze_run(
    recipe: dict[str, Any], output_dir: str | Path, result: dict[str, Any], *, use_cpu: bool = False
) -> dict[str, Any]:
    """Add the recipe's ``analysis`` to a finished single-seed run: report.json entries, PNGs, a report.md section.

    The retain / forget / test splits are rebuilt from the recipe (deterministic, the same manifests) and each
    model is loaded from its ``models/<run>/`` folder; a run without weights (diverged early) is skipped.
    """
    from .models import load_saved_model
    from .pipeline import Pipeline, _is_main_process
    from .recipe import forget_sets
    from .report import write_report

    if not _is_main_process():  # evaluation only, no collectives: process 0 analyses and writes, alone
        return result
    settings = analysis_settings(recipe)
    pipeline = Pipeline(recipe, output_dir, use_cpu=use_cpu)
    splits = pipeline.prepare_data()
    reports = per_set_reports(result)
    for spec in forget_sets(recipe):
        pipeline.set_dir = pipeline.output_dir / spec["name"] if pipeline.several else pipeline.output_dir
        set_splits = pipeline.build_forget_set(splits, spec, shared=False)  # process 0 only: no collective
        report = reports[spec["name"]] if spec["name"] in reports else next(iter(reports.values()))
        for run, entry in report["models"].items():
            folder = pipeline.stage_dir(run)
            if not (folder / "config.json").is_file():
                continue
            model = load_saved_model(str(folder))
            if not pipeline.use_cpu:
                model.to("cuda")
            entry["analysis"] = model_analysis(
                model,
                set_splits.retain,
                set_splits.forget,
                set_splits.test,
                settings,
                inside(pipeline.set_dir / "analysis", pipeline.output_dir),
                run,
            )
        write_report(report, pipeline.set_dir)
        atomic_write_text(
            pipeline.set_dir / "report.md",
            (pipeline.set_dir / "report.md").read_text(encoding="utf-8") + analysis_markdown(report),
        )
    return result


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
            f"| {run} | {_fmt(ent.get('global'))} | {_fmt(ent.get('classwise'))} | "
            f"{_fmt((land.get('test') or {}).get('basin_ratio'), 1)} | "
            f"{_fmt((land.get('forget') or {}).get('basin_ratio'), 1)} | {' '.join(pictures) or '—'} |"
        )
    return "\n".join(lines) + "\n"
