"""claims.py's report: docs/results.md from a run's result, compared with an earlier run's claims.json when
``--previous`` names one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.claims_analysis import interval
from benchmarks.claims_setup import RHO
from hf_unlearn.seeds import summary

# What the grid version of docs/results.md changed against the version of 2026-11-26 (written when no --previous
# run is given).
_GRID_CHANGES = [
    "## What changed since the previous version (2026-11-26)",
    "",
    "The previous numbers rested on references and methods that departed from the paper's code; these are fixed "
    "(docs/methods.md): (1) the retrained reference starts from the model's own initialisation, the original's "
    "initial weights (before, `reset_parameters` on a copy of the original: PyTorch's default init, not the "
    "model's); (2) random_label and SalUn train on one shuffled loader over the relabelled forget set and the "
    "retain set, so each forget item is drawn once per epoch (before, every retain item was paired with a forget "
    "item: half of each batch was relabelled forget data, which over-forgot), with their learning-rate grids "
    "moved up accordingly; (3) forget partners and random labels are drawn per item from (seed, epoch) streams "
    "instead of torch's global generator, which changes the draws of neggrad and Sharp MinMax too. Every table "
    "below is regenerated.",
    "",
]


def previous_run(path: Path) -> dict[str, Any]:
    """What the report compares with from an earlier run's claims.json: how it searched, its verdicts and mean ToWs."""
    earlier = json.loads(path.read_text())
    return {
        "date": earlier["date"],
        "search": earlier.get("search", "grid"),
        "eval_seeds": earlier["args"]["eval_seeds"],
        "references": {s: per_set["retrain"]["forget"]["values"] for s, per_set in earlier["evaluation"].items()},
        "verdicts": {c["claim"]: c["verdict"] for c in earlier["claims"]},
        "tow": {
            s: {g: row["tow"]["mean"] for g, row in per_set.items() if row["tow"]["mean"] is not None}
            for s, per_set in earlier["evaluation"].items()
        },
    }


def _changes_since(result: dict[str, Any]) -> list[str]:
    """The opening of the section comparing this run with ``result["previous"]`` (`previous_run`)."""
    previous = result["previous"]
    searched = {
        "grid": "a 3-value grid of one knob per group, selected on the tuning seeds' test ToW",
        "tune": "an `hf-unlearn tune` study per group and forget set",
    }
    same_seeds = previous["eval_seeds"] == result["args"]["eval_seeds"]
    # The retrained references' forget accuracies, seed by seed: equal when both runs trained the same references.
    same_references = same_seeds and all(
        previous["references"].get(s) == result["evaluation"][s]["retrain"]["forget"]["values"] for s in result["sets"]
    )
    basis = (
        "Same evaluation seeds, and the retrained references score the same forget accuracy seed by seed."
        if same_references
        else "Same evaluation seeds, but the retrained references differ (the code changed between the runs)."
        if same_seeds
        else f"The evaluation seeds differ (previous {previous['eval_seeds']})."
    )
    return [
        f"## What changed since the previous version ({previous['date']})",
        "",
        f"The previous version searched with {searched[previous['search']]}; this one with the search described "
        f"under Protocol. {basis} Mean ToW over the evaluation seeds, previous -> now:",
        "",
    ]


def _tow_changes(result: dict[str, Any]) -> list[str]:
    previous = result["previous"]
    sets = [s for s in result["sets"] if s in previous["tow"]]
    lines = ["| group | " + " | ".join(sets) + " |", "|---|" + "---|" * len(sets)]
    moves = []
    for group in result["groups"]:
        cells = []
        for s in sets:
            before, now = previous["tow"][s].get(group), result["evaluation"][s][group]["tow"]["mean"]
            if before is None or now is None:
                cells.append("—")
                continue
            moves.append(now - before)
            cells.append(f"{before:.3f} -> {now:.3f}")
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    if moves:
        better = sum(m > 0 for m in moves)
        lines += [
            "",
            f"ToW rose in {better} of {len(moves)} (group, forget set) cells, by {sum(moves) / len(moves):+.3f} on "
            "average. Verdicts then -> now: "
            + "; ".join(
                f"{c['claim']}: {previous['verdicts'].get(c['claim'], '—')} -> {c['verdict']}" for c in result["claims"]
            )
            + ".",
        ]
    return [*lines, ""]


def markdown(result: dict[str, Any]) -> str:
    a = result["args"]
    lines = [
        "# Results: the paper's claims on digits",
        "",
        f"Generated by `{result['command']}` ({result['date']}); wall time {result['wall_seconds'] / 60:.1f} min on "
        f"the shared 2-core development machine ({a['workers']} worker processes, 1 torch thread each). "
        "Numbers: mean [95% t-interval] over the evaluation seeds.",
        "",
        *(_changes_since(result) + _tow_changes(result) if result.get("previous") else _GRID_CHANGES),
        "## Protocol",
        "",
        "- Data: the embedded digits set (1,437 train / 360 test), the small ResNet of recipes/digits.yaml, SGD "
        "pretraining (20 epochs), a retrained reference per seed and forget set; unlearning with SGD (momentum 0.9, "
        "constant lr 0.01 unless tuned, 5 epochs) as in recipes/digits-all-methods.yaml.",
        f"- Forget sets: {', '.join(result['sets'])} (lowconf = 10% lowest pretraining confidence; high / mid / low "
        "= 2% memorization bands of recipes/digits-memorization.yaml).",
        f"- Seeds: tuning {a['tune_seeds']}, evaluation {a['eval_seeds']} (disjoint). A seed changes the train/test "
        "split, the original, the forget set (lowconf depends on the original), the retrained reference and the runs.",
        *(
            [
                f"- Tuning: per forget set and group, one `hf-unlearn tune` study of {result['trials']} trials (docs/"
                "tuning.md): the group's method space (table below), a seeded TPE sampler, median pruning; trial 0 is "
                "the group's settings of recipes/digits-all-methods.yaml. The objective is the mean ToW over the tuning "
                "seeds on retain, forget and a validation split carved from each tuning seed's training split (10%, "
                "stratified): the test split is never read (a diverged run scores 0). The best trial's settings are "
                "then evaluated on the evaluation seeds, whose data, originals and references the tuning never saw."
            ]
            if result.get("search") == "tune"
            else [
                "- Tuning budget: 3 values of one main knob per group (table below), the same for every method; other "
                f"settings fixed; SAM runs use rho {RHO}. Per forget set and group the value with the best mean ToW "
                "over the tuning seeds is selected (a diverged run counts as ToW 0), then evaluated on the evaluation "
                "seeds."
            ]
        ),
        "- Sharp MinMax: intended (top-q mask confining both branches) and `official: true` (the official code's "
        "logic), both with SAM"
        + (
            ", starting from mask_ratio 0.5 (the study tunes it)."
            if result.get("search") == "tune"
            else ", mask_ratio 0.5."
        ),
        "- Analysis claims: per evaluation seed, a SAM-pretrained original (rho 0.05, same split and settings) vs the "
        "SGD original: global and class-wise entanglement of penultimate features (retain vs forget of each forget "
        "set), basin ratio of the 11 x 11 test loss landscape (direction seeds 42 and 43, averaged), paired by seed.",
        "- Verdicts: a claim 'holds here' when its condition holds on a strict majority of the forget sets. "
        "SAM improves NegGrad: mean ToW of NegGrad+SAM above NegGrad's. Smaller alpha: tuned alpha of NegGrad+SAM "
        "below NegGrad's. Sharp MinMax best: a Sharp MinMax variant has the highest mean ToW of all groups. "
        "Entanglement: mean paired ES difference SAM - SGD < 0. Flatter: mean paired basin-ratio difference > 0. "
        "MIA: for most of the six baselines, SAM's mean MIA-efficacy (confidence) is closer to the retrained "
        "model's than SGD's (the RUM reading: the ideal MIA is the retrained model's).",
        "",
    ]
    if result.get("search") == "tune":
        lines += [
            "| group | trial 0 (besides the unlearning defaults) | search space | trials (pruned) per forget set |",
            "|---|---|---|---|",
        ]
        for group, (fixed, _knob, _grid) in result["groups"].items():
            runs = [r for r in result["studies"] if r["group"] == group]
            space = ", ".join(f"{k} {lo:g}..{hi:g}" for k, (lo, hi) in (runs[0]["space"] if runs else {}).items())
            counts = ", ".join(f"{r['set']} {r['trials']} ({r['pruned']})" for r in runs)
            settings = ", ".join(f"{k} {v}" for k, v in fixed.items() if k != "method")
            lines.append(f"| {group} | {settings or '—'} | {space} | {counts} |")
        seconds = [x for r in result["studies"] for x in r["trial_seconds"]]
        if seconds:
            lines += [
                "",
                f"{len(seconds)} trials in all, {sum(seconds) / len(seconds):.1f} s of training per trial on average "
                "(all tuning seeds of a trial together; pruned trials stop early).",
            ]
    else:
        lines += ["| group | knob | grid |", "|---|---|---|"]
        for group, (_fixed, knob, grid) in result["groups"].items():
            lines.append(f"| {group} | {knob} | {', '.join(f'{v:g}' for v in grid)} |")
    if result.get("reduced"):
        lines += ["", "**Reduced run.** " + result["reduced"]]
    lines += ["", "## Verdicts", "", "| claim | verdict | evidence |", "|---|---|---|"]
    for c in result["claims"]:
        lines.append(f"| {c['claim']} | **{c['verdict']}** | " + "<br>".join(c["evidence"]) + " |")
    lines += ["", "The MIA claim judged by the per-example attacks (LiRA, U-LiRA) as well: docs/results-privacy.md."]
    lines += [
        "",
        "The same claims on CIFAR-10, where a retrained model forgets 0.4 of a random set: docs/results-cifar10.md.",
    ]
    for s in result["sets"]:
        lines += [
            "",
            f"## Forget set {s}",
            "",
            "| group | selected | ToW | MIA conf | retain acc | forget acc | test acc |",
            "|---|---|---|---|---|---|---|",
        ]
        ev = result["evaluation"][s]
        for group, row in ev.items():
            chosen = result["selection"][s].get(group)
            sel = f"{chosen['knob']} {chosen['value']:g}" if chosen else "—"
            lines.append(
                f"| {group} | {sel} | {interval(row['tow'])} | {interval(row['mia'])} | {interval(row['retain'])} | "
                f"{interval(row['forget'])} | {interval(row['test'])} |"
            )
        if result.get("search") == "tune":
            lines += [
                "",
                "Tuned settings (best trial: mean validation ToW over the tuning seeds; trial 0 = the "
                "recipe's settings):",
                "",
            ]
            for g, c in result["selection"][s].items():
                st = c["study"]
                params = ", ".join(
                    f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in st["params"].items()
                )
                first = "—" if st["trial_0"] is None else f"{st['trial_0']:.3f}"
                lines.append(f"- {g}: {params} (trial {st['trial']}, {st['value']:.3f}; trial 0 {first})")
            continue
        edge = [
            g
            for g, c in result["selection"][s].items()
            if c["value"] in (result["groups"][g][2][0], result["groups"][g][2][-1])
        ]
        if edge:
            lines += [
                "",
                f"Selected at an end of its grid ({len(edge)} of {len(result['selection'][s])} groups: "
                f"{', '.join(edge)}): a wider grid might find a better setting for these.",
            ]
        lines += [
            "",
            "Tuning (mean ToW over the tuning seeds per grid value): "
            + "; ".join(
                f"{g} " + ", ".join(f"{k:g}: {v:.3f}" for k, v in c["tuning_tow"].items())
                for g, c in result["selection"][s].items()
            ),
        ]
    lines += [
        "",
        "## Analysis: SGD- vs SAM-pretrained originals",
        "",
        "| forget set | ES SGD | ES SAM | class-wise ES SGD | class-wise ES SAM | basin forget SGD | basin forget SAM |",
        "|---|---|---|---|---|---|---|",
    ]
    an = result["analysis"]
    for s in result["sets"]:
        cells = [
            interval(summary([x[k][s][m] for x in an]), 1 if m == "basin_forget" else 3)
            for m in ("entanglement", "entanglement_classwise", "basin_forget")
            for k in ("sgd", "sam")
        ]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    basin = {k: summary([sum(x[k]["basin_test"]) / 2 for x in an]) for k in ("sgd", "sam")}
    lines += [
        "",
        f"Basin ratio of the test loss: SGD {interval(basin['sgd'], 1)}, SAM {interval(basin['sam'], 1)}.",
        "",
    ]
    return "\n".join(lines)
