"""claims.py's pure functions: the selected settings per group, the summaries over seeds, the six claims and
their verdicts, and the number formats the evidence uses. No training, no files."""

from __future__ import annotations

import math
from typing import Any

from benchmarks.claims_setup import BASELINES, run_name
from hf_unlearn.seeds import summary


def number(value: float | None, digits: int = 3) -> str:
    """``value`` with ``digits`` decimals, or a dash when it is missing or NaN."""
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def interval(stat: dict[str, Any], digits: int = 3) -> str:
    """A summary as ``mean [low, high]`` (its 95% t-interval), or a dash when it has no mean."""
    if not stat or stat.get("mean") is None:
        return "—"
    low, high = stat["ci95"]
    return f"{stat['mean']:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def select(tuning: list[dict[str, Any]], set_name: str, group_table: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per group, the grid value with the highest mean ToW over the tuning seeds (a diverged run counts as ToW 0)."""
    chosen = {}
    for group, (fixed, knob, grid) in group_table.items():
        scores = {}
        for value in grid:
            tows = [r["runs"].get(f"{set_name}/{run_name(group, knob, value)}", {}).get("tow") for r in tuning]
            scores[value] = float(sum(0.0 if t is None else t for t in tows) / max(len(tows), 1))
        best = max(grid, key=lambda v: (scores[v], -grid.index(v)))
        chosen[group] = {
            "knob": knob,
            "value": best,
            "tuning_tow": scores,
            "run": run_name(group, knob, best),
            "settings": {**fixed, knob: best},
        }
    return chosen


def tuned_selection(results: list[dict[str, Any]], set_name: str, group_table: dict[str, Any]) -> dict[str, Any]:
    """``select``'s structure from the studies: the knob's tuned value, the best settings, the study's numbers."""
    chosen = {}
    for r in results:
        if r["set"] != set_name:
            continue
        fixed, knob, _grid = group_table[r["group"]]
        value = r["params"].get(knob, fixed.get(knob))
        chosen[r["group"]] = {
            "knob": knob,
            "value": value,
            "tuning_tow": {value: r["value"]},  # the best trial's mean validation ToW
            "run": f"{r['group']}__tuned",
            "settings": {**fixed, **r["params"]},
            "study": {k: r[k] for k in ("params", "value", "trial", "trial_0", "trials", "pruned", "space")},
        }
    return {g: chosen[g] for g in group_table if g in chosen}


def paired_difference(a: list[float | None], b: list[float | None]) -> dict[str, Any]:
    """Summary (mean, std, 95% t-interval) of a - b over the seeds where both are defined."""
    return summary([x - y for x, y in zip(a, b, strict=False) if x is not None and y is not None])


def verdict(flags: list[bool]) -> str:
    """'holds here' when the claim holds on a strict majority of the forget sets (or cases), else 'does not hold here'."""
    return "holds here" if flags and sum(flags) * 2 > len(flags) else "does not hold here"


def claims(
    evaluation: dict[str, Any], selection: dict[str, Any], analysis_runs: list[dict[str, Any]], sets: list[str]
) -> list[dict[str, Any]]:
    """The six claims with per-set evidence and a verdict. ``evaluation[set][group]`` holds the summaries."""
    out = []

    def tow(s, g):
        return evaluation[s][g]["tow"]

    # 1. SAM improves NegGrad's ToW.
    flags, lines = [], []
    for s in sets:
        d = paired_difference(tow(s, "neggrad_sam")["values"], tow(s, "neggrad")["values"])
        flags.append(d["mean"] is not None and d["mean"] > 0)
        lines.append(
            f"{s}: NegGrad+SAM {interval(tow(s, 'neggrad_sam'))} vs NegGrad {interval(tow(s, 'neggrad'))}; "
            f"paired difference {interval(d)} ({significance(d)})"
        )
    out.append({"claim": "SAM improves NegGrad's ToW", "verdict": verdict(flags), "flags": flags, "evidence": lines})
    # 2. SAM tolerates a smaller alpha (relies less on the retain signal).
    flags, lines = [], []
    for s in sets:
        a_sam, a_sgd = selection[s]["neggrad_sam"]["value"], selection[s]["neggrad"]["value"]
        flags.append(a_sam < a_sgd)

        def curve(g: str, s: str = s) -> str:
            return ", ".join(f"{k:g}: {v:.3f}" for k, v in selection[s][g]["tuning_tow"].items())

        lines.append(
            f"{s}: tuned alpha SAM {a_sam:g} vs SGD {a_sgd:g}; tuning ToW by alpha, SAM [{curve('neggrad_sam')}]"
            f", SGD [{curve('neggrad')}]"
        )
    out.append({"claim": "SAM tolerates a smaller alpha", "verdict": verdict(flags), "flags": flags, "evidence": lines})
    # 3. Sharp MinMax is best.
    flags, lines = [], []
    for s in sets:
        ranked = sorted(
            (g for g in evaluation[s] if g not in ("retrain", "original")),
            key=lambda g: -(tow(s, g)["mean"] if tow(s, g)["mean"] is not None else -1),
        )
        best = ranked[0]
        flags.append(best.startswith("sharp_minmax"))
        rank_i = ranked.index("sharp_minmax_sam") + 1
        rank_o = ranked.index("sharp_minmax_official_sam") + 1
        lines.append(
            f"{s}: best {best} {interval(tow(s, best))}; Sharp MinMax intended {interval(tow(s, 'sharp_minmax_sam'))} "
            f"(rank {rank_i}/{len(ranked)}), official {interval(tow(s, 'sharp_minmax_official_sam'))} "
            f"(rank {rank_o})"
        )
    out.append({"claim": "Sharp MinMax is best", "verdict": verdict(flags), "flags": flags, "evidence": lines})
    # 4. SAM lowers entanglement (SAM- vs SGD-pretrained originals, same split).
    flags, lines, significant = [], [], []
    for s in sets:
        sgd = [a["sgd"][s]["entanglement"] for a in analysis_runs]
        sam = [a["sam"][s]["entanglement"] for a in analysis_runs]
        sgd_c = [a["sgd"][s]["entanglement_classwise"] for a in analysis_runs]
        sam_c = [a["sam"][s]["entanglement_classwise"] for a in analysis_runs]
        d = paired_difference(sam, sgd)
        flags.append(d["mean"] is not None and d["mean"] < 0)
        significant.append(flags[-1] and significance(d) == "significant")
        lines.append(
            f"{s}: ES SAM {interval(summary(sam))} vs SGD {interval(summary(sgd))}, paired SAM - SGD {interval(d)} ({significance(d)}); "
            f"class-wise SAM {interval(summary(sam_c))} vs SGD {interval(summary(sgd_c))}"
        )
    weak = ""
    if verdict(flags) == "holds here" and not any(significant):
        weak = " (weakly: no paired interval excludes 0)"
    out.append(
        {"claim": "SAM lowers entanglement", "verdict": verdict(flags) + weak, "flags": flags, "evidence": lines}
    )
    # 5. SAM's landscape is flatter (basin ratio of the test loss, mean over two direction seeds).
    sgd = [sum(a["sgd"]["basin_test"]) / len(a["sgd"]["basin_test"]) for a in analysis_runs]
    sam = [sum(a["sam"]["basin_test"]) / len(a["sam"]["basin_test"]) for a in analysis_runs]
    d = paired_difference(sam, sgd)
    lines = [
        f"test: basin ratio SAM {interval(summary(sam), 1)} vs SGD {interval(summary(sgd), 1)}, paired SAM - SGD {interval(d, 1)} ({significance(d)})"
    ]
    for s in sets:
        f_sgd = [a["sgd"][s]["basin_forget"] for a in analysis_runs]
        f_sam = [a["sam"][s]["basin_forget"] for a in analysis_runs]
        lines.append(
            f"forget {s} (not in the verdict): SAM {interval(summary(f_sam), 1)} vs SGD {interval(summary(f_sgd), 1)}"
        )
    flag = d["mean"] is not None and d["mean"] > 0
    weak = " (weakly: the paired interval includes 0)" if flag and significance(d) != "significant" else ""
    out.append(
        {"claim": "SAM's landscape is flatter", "verdict": verdict([flag]) + weak, "flags": [flag], "evidence": lines}
    )
    # 6. SAM resists MIA: after unlearning, SAM's MIA-efficacy is closer to the retrained model's, per method.
    flags, lines = [], []
    for s in sets:
        closer = []
        for m in [b for b in BASELINES if b in evaluation[s] and f"{b}_sam" in evaluation[s]]:
            ref = evaluation[s]["retrain"]["mia"]["mean"]
            g_sam, g_sgd = evaluation[s][f"{m}_sam"]["mia"]["mean"], evaluation[s][m]["mia"]["mean"]
            if None not in (ref, g_sam, g_sgd):
                closer.append((m, abs(g_sam - ref) < abs(g_sgd - ref), g_sgd, g_sam))
        flags.append(sum(c for _, c, _, _ in closer) * 2 > len(closer))
        mia_o = [(a["sgd"][s]["mia"], a["sam"][s]["mia"]) for a in analysis_runs]
        lines.append(
            f"{s}: SAM closer to retrain's MIA ({number(evaluation[s]['retrain']['mia']['mean'])}) for "
            f"{sum(c for _, c, _, _ in closer)}/{len(closer)} methods ("
            + ", ".join(f"{m} {a:.3f}->{b:.3f}" for m, _, a, b in closer)
            + "); originals' MIA SGD "
            f"{interval(summary([x for x, _ in mia_o]))} vs SAM-pretrained {interval(summary([y for _, y in mia_o]))}"
        )
    out.append({"claim": "SAM resists MIA", "verdict": verdict(flags), "flags": flags, "evidence": lines})
    return out


def significance(stat: dict[str, Any]) -> str:
    """Whether a paired difference's 95% interval excludes 0."""
    low, high = stat.get("ci95") or (None, None)
    if low is None or stat.get("n", 0) < 2:
        return "n/a"
    return "significant" if low > 0 or high < 0 else "not significant: the interval includes 0"


def evaluate_table(runs: list[dict[str, Any]], selection: dict[str, Any], sets: list[str]) -> dict[str, Any]:
    """``{set: {group or retrain/original: {"tow", "mia", "retain", "forget", "test"}}}`` summaries over seeds."""
    table: dict[str, Any] = {}
    for s in sets:
        table[s] = {}
        for ref in ("retrain", "original"):
            entries = [r["reference"][s][ref] for r in runs]
            table[s][ref] = _summaries(entries, with_tow=False)
        for group, chosen in selection[s].items():
            entries = [r["runs"].get(f"{s}/{chosen['run']}", {}) for r in runs]
            table[s][group] = _summaries(entries)
    return table


def _summaries(entries: list[dict[str, Any]], with_tow: bool = True) -> dict[str, Any]:
    out = {"mia": summary([e.get("mia") for e in entries])}
    out["tow"] = summary([e.get("tow") for e in entries]) if with_tow else {"mean": None, "values": []}
    for split in ("retain", "forget", "test"):
        out[split] = summary([(e.get("accuracy") or {}).get(split) for e in entries])
    return out
