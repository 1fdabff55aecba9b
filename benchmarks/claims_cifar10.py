#!/usr/bin/env python
"""The paper's unlearning claims on CIFAR-10 (recipes/cifar10-cpu.yaml), from a finished reference_free.py run.

    python benchmarks/reference_free.py --recipe cifar10-cpu --data DIR --sets random --tune-seeds 100 \\
        --trials 4 --root ROOT                      # tuning (both objectives), then evaluation seeds 0-2
    python benchmarks/claims_cifar10.py ROOT/reference_free.json --write-docs    # docs/results-cifar10.md

The reference-based arm of that run is claims.py's protocol: per group an `hf-unlearn tune` study on tuning seeds
(mean validation ToW against a retrained reference; the test split is never read), its best settings evaluated on
evaluation seeds no study saw. The groups are the three the claims turn on (NegGrad, NegGrad+SAM, Sharp MinMax with
SAM); the recipe's shipped settings (``defaults``) are judged beside them. The digits verdicts come from claims.py's
last full run (benchmarks/results/claims_tune_2026-11-29.json).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/claims_cifar10.py`: make `benchmarks.*` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.claims_analysis import interval, number, paired_difference, significance
from hf_unlearn.seeds import summary

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "benchmarks" / "results" / "claims_tune_2026-11-29.json"
GROUPS = {"neggrad": "NegGrad", "neggrad_sam": "NegGrad+SAM", "sharp_minmax_sam": "Sharp MinMax (SAM)"}
ARMS = {"reference": "tuned (claims protocol)", "defaults": "recipe's settings"}
NOT_RUN = {
    "SAM lowers entanglement": "not run: needs a SAM-pretrained original per seed",
    "SAM's landscape is flatter": "not run: needs a SAM-pretrained original per seed",
}


def values(result: dict[str, Any], key: str, field: str = "tow") -> list[float | None]:
    """``field`` of the entry ``key`` (``set/run/arm``, ``set/retrain``) on every evaluation seed, in seed order."""
    out = []
    for seed in result["eval"]:
        entry = result["eval"][seed].get(key) or {}
        if field == "tow":
            out.append(entry.get("tow"))
        elif field == "mia":
            out.append(entry.get("mia"))
        else:
            out.append((entry.get("accuracy") or {}).get(field))
    return out


def claims(result: dict[str, Any], arm: str, set_name: str = "random") -> list[dict[str, Any]]:
    """The claims judged on one arm's settings: per claim a verdict and its evidence (paired over seeds)."""

    def tow(group: str) -> list[float | None]:
        return values(result, f"{set_name}/{group}/{arm}")

    out = []
    gain = paired_difference(tow("neggrad_sam"), tow("neggrad"))
    out.append(
        {
            "claim": "SAM improves NegGrad's ToW",
            "verdict": _verdict(gain),
            "evidence": f"NegGrad+SAM {interval(summary(tow('neggrad_sam')))} vs NegGrad "
            f"{interval(summary(tow('neggrad')))}; paired difference {interval(gain)} ({significance(gain)})",
        }
    )
    if arm == "reference":
        chosen = result["chosen"]
        a_sam = chosen[f"{set_name}/neggrad_sam/reference"]["params"].get("alpha")
        a_sgd = chosen[f"{set_name}/neggrad/reference"]["params"].get("alpha")
        held = a_sam is not None and a_sgd is not None and a_sam < a_sgd
        out.append(
            {
                "claim": "SAM tolerates a smaller alpha",
                # Two best trials, no interval: with few trials each is close to a random draw.
                "verdict": f"holds here (weakly: two values, {result['trials']} trials each)"
                if held
                else "does not hold here",
                "evidence": f"tuned alpha: SAM {number(a_sam)} vs SGD {number(a_sgd)} (best of "
                f"{result['trials']} trials each, one study per group)",
            }
        )
    others = [g for g in GROUPS if g != "sharp_minmax_sam"]
    best_other = max(others, key=lambda g: summary(tow(g))["mean"] or -1.0)
    lead = paired_difference(tow("sharp_minmax_sam"), tow(best_other))
    out.append(
        {
            "claim": "Sharp MinMax is best",
            "verdict": _verdict(lead),
            "evidence": f"Sharp MinMax {interval(summary(tow('sharp_minmax_sam')))} vs the better of the others, "
            f"{GROUPS[best_other]} {interval(summary(tow(best_other)))}; paired difference {interval(lead)} "
            f"({significance(lead)})",
        }
    )
    target = values(result, f"{set_name}/retrain", "mia")
    gaps = {
        g: [
            None if m is None or t is None else abs(m - t)
            for m, t in zip(values(result, f"{set_name}/{g}/{arm}", "mia"), target, strict=True)
        ]
        for g in ("neggrad", "neggrad_sam")
    }
    closer = paired_difference(gaps["neggrad"], gaps["neggrad_sam"])  # > 0: SAM's MIA is nearer the reference's
    out.append(
        {
            "claim": "SAM resists MIA",
            "verdict": _verdict(closer),
            "evidence": f"distance to the retrained model's MIA-efficacy ({interval(summary(target))}): NegGrad "
            f"{interval(summary(gaps['neggrad']))}, NegGrad+SAM {interval(summary(gaps['neggrad_sam']))}; paired "
            f"NegGrad - NegGrad+SAM {interval(closer)} ({significance(closer)})",
        }
    )
    return out


def _verdict(stat: dict[str, Any]) -> str:
    """'holds here' when the paired mean is positive; 'weakly' when its 95% interval includes 0."""
    if stat.get("mean") is None or stat["mean"] <= 0:
        return "does not hold here"
    return "holds here" if significance(stat) == "significant" else "holds here (weakly: the interval includes 0)"


LEFT_OUT = [
    "Forget sets: only the random 10% set. The class-wise set and the confidence bands that recipes/cifar10-cpu.yaml "
    "supports were not run, so each verdict rests on one forget set (on digits, a claim must hold on most of four).",
    "Groups: only NegGrad, NegGrad+SAM and Sharp MinMax with SAM. Fine-tune, gradient ascent, random label, SalUn and "
    'SCRUB (each with and without SAM) and the official Sharp MinMax variant were left out, so "Sharp MinMax is best" '
    'is judged against the two NegGrad groups only, and "SAM resists MIA" on NegGrad only.',
    "Tuning: one tuning seed and a few trials per study (digits: two seeds, 30 trials). With so few trials the tuned "
    "settings are close to a random draw around the recipe's; the claims may change with a longer search.",
    "The entanglement and flatness claims: they compare SGD- and SAM-pretrained originals on each seed (one more "
    "pretraining and an 11 x 11 loss landscape per seed), which did not fit.",
]


def markdown(result: dict[str, Any], digits: dict[str, Any], source: str, wall: str) -> str:
    """docs/results-cifar10.md."""
    seeds = ", ".join(result["eval"])
    verdicts = {arm: {c["claim"]: c for c in claims(result, arm)} for arm in ARMS}
    lines = [
        "# The paper's claims on CIFAR-10",
        "",
        "Generated by `benchmarks/claims_cifar10.py` from one run of `benchmarks/reference_free.py` (commands below). "
        "The digits verdicts beside them are docs/results.md's. Read it with what is left out (last section) in mind.",
        "",
        "## Protocol",
        "",
        "- **Data and model**: `recipes/cifar10-cpu.yaml`: 10,000 CIFAR-10 training images (1,000 per class), a "
        "ResNet with the CIFAR stem (0.31M parameters), 12 epochs of SGD; the official 10,000 test images. The original "
        "memorizes (train accuracy about 1.0, test about 0.62).",
        "- **Forget set**: a random 10% of the pool (1,000 images). A model retrained without them gets only about "
        "0.6 of them right, so there is real forgetting to do (on digits a retrained model still gets a random set "
        "right).",
        f"- **Tuning** (the claims protocol): per group, one `hf-unlearn tune` study on tuning seed(s) "
        f"{result['tune_seeds']} with {result['trials']} trials (trial 0 is the recipe's settings; the others "
        "sampled by TPE from the method's declared space, epochs fixed at the recipe's 2), objective the validation "
        "ToW against a retrained reference (validation carved from the retain samples; the test split is never read).",
        f"- **Evaluation**: the best trial's settings on evaluation seeds {seeds}, which no study saw; each seed has "
        "its own split, original, forget set and retrained reference. ToW against that reference on retain, forget "
        "and test. Intervals are 95% t-intervals over seeds; differences are paired by seed.",
        "- **Also judged**: the recipe's shipped settings (tuned on digits), the setting a user gets without tuning.",
        f"- **Machine**: {source}",
        "",
        "## Verdicts",
        "",
        "| claim | CIFAR-10, tuned | CIFAR-10, recipe's settings | digits (docs/results.md) |",
        "|---|---|---|---|",
    ]
    for claim in [c["claim"] for c in digits["claims"]]:
        cells = []
        for arm in ARMS:
            found = verdicts[arm].get(claim)
            cells.append(f"**{found['verdict']}**" if found else NOT_RUN.get(claim, "not judged on these settings"))
        digit = next(c["verdict"] for c in digits["claims"] if c["claim"] == claim)
        lines.append(f"| {claim} | " + " | ".join(cells) + f" | {digit} |")
    lines += ["", "Evidence:", ""]
    for arm, title in ARMS.items():
        for claim in verdicts[arm].values():
            lines.append(f"- {claim['claim']}, {title}: {claim['evidence']}")
    lines += [
        "",
        "## Results",
        "",
        "Mean [95% interval] over the evaluation seeds.",
        "",
        "| model | settings | ToW | retain | forget | test | MIA-efficacy |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, key in (("retrained reference", "random/retrain"), ("original (no unlearning)", "random/original")):
        lines.append(f"| {label} | — | " + " | ".join(_cells(result, key)) + " |")
    for group, title in GROUPS.items():
        for arm, arm_title in ARMS.items():
            lines.append(f"| {title} | {arm_title} | " + " | ".join(_cells(result, f"random/{group}/{arm}")) + " |")
    lines += [
        "",
        "MIA-efficacy: the SVC attack on true-class confidence (docs/privacy.md), the share of the forget set it calls non-members.",
        "",
    ]
    lines += ["## Reading the verdicts", ""] + [f"- {note}" for note in reading(result)]
    lines += ["", "Tuned settings (best trial of each study, validation ToW on the tuning seed):", ""]
    for group in GROUPS:
        best = result["chosen"][f"random/{group}/reference"]
        params = ", ".join(f"{k} {number(v, 4) if isinstance(v, float) else v}" for k, v in best["params"].items())
        lines.append(f"- {GROUPS[group]}: {params} (validation ToW {number(best['value'])}, trial {best['number']})")
    lines += ["", "## Commands and time", "", f"{wall}", "", "```bash"]
    common = f"--recipe cifar10-cpu --data DIR --sets random --root ROOT --tune-seeds {' '.join(map(str, result['tune_seeds']))}"
    lines += [
        f"python benchmarks/reference_free.py {common} --trials {result['trials']} --tune-only    # the studies",
        f"python benchmarks/reference_free.py {common} --eval-seeds {' '.join(result['eval'])} --defaults-only  # beside it",
        f"python benchmarks/reference_free.py {common} --eval-seeds {' '.join(result['eval'])} "
        "--chosen-from ROOT/chosen.json",
    ]
    lines += [
        "python benchmarks/claims_cifar10.py ROOT/reference_free.json --write-docs",
        "```",
        "",
        "The run's JSON (per seed and setting: accuracies, MIA-efficacy, ToW; the chosen settings) is "
        "benchmarks/results/rf_cifar10_2026-12-06.json; `benchmarks/reference_free.py --from-json` renders its "
        "three-way comparison, which docs/tuning.md discusses.",
        "",
        "## What is left out",
        "",
    ]
    lines += [f"- {item}" for item in LEFT_OUT]
    return "\n".join(lines) + "\n"


def reading(result: dict[str, Any]) -> list[str]:
    """What the tuned settings make of the SAM comparisons, read from the chosen settings (not fixed prose)."""
    chosen, notes = result["chosen"], []
    sam, sgd = chosen["random/neggrad_sam/reference"], chosen["random/neggrad/reference"]
    rho, lr_sam, lr_sgd = (
        sam["params"].get("rho"),
        sam["params"].get("learning_rate"),
        sgd["params"].get("learning_rate"),
    )
    if rho is not None and lr_sam is not None and lr_sgd is not None:
        notes.append(
            f"The tuned NegGrad+SAM uses rho {rho:.3g} and learning rate {lr_sam:.3g}, the tuned NegGrad learning rate "
            f"{lr_sgd:.3g}: the tuned pair differs in more than SAM, so its SAM verdicts do not isolate SAM"
            + (" (a rho this small makes SAM's step nearly SGD's)." if rho < 0.05 else ".")
            + " The recipe's settings (rho 0.95) are the closer test of SAM itself."
        )
    for group, title in GROUPS.items():
        if chosen[f"random/{group}/reference"]["number"] == 0:
            notes.append(
                f"{title}: the study's best trial was trial 0, the recipe's settings: both rows are one setting."
            )
    same = [
        g for g in GROUPS if chosen[f"random/{g}/reference"]["params"] == chosen[f"random/{g}/reference_free"]["params"]
    ]
    if same:
        notes.append(
            "The reference-free studies (no retrained model; docs/tuning.md) chose the same settings as these for "
            + ", ".join(GROUPS[g] for g in same)
            + "."
        )
    return notes


def _cells(result: dict[str, Any], key: str) -> list[str]:
    tow = values(result, key)
    cells = ["—" if all(t is None for t in tow) else interval(summary(tow))]
    cells += [interval(summary(values(result, key, split))) for split in ("retain", "forget", "test")]
    return [*cells, interval(summary(values(result, key, "mia")))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("result", type=Path, help="A cifar10-cpu run's reference_free.json.")
    parser.add_argument("--digits", type=Path, default=DIGITS, help="claims.py's claims.json on digits.")
    parser.add_argument("--machine", default="(not stated)", help="What produced the numbers: CPU, threads, time.")
    parser.add_argument("--wall", default="", help="How long the run took, in words (its calls ran in parallel).")
    parser.add_argument("--write-docs", action="store_true", help="Write --docs.")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "results-cifar10.md")
    args = parser.parse_args(argv)
    result = json.loads(args.result.read_text())
    if result.get("recipe") != "cifar10-cpu" or "random" not in result["sets"]:
        parser.error(f"{args.result}: not a reference_free.py run with --recipe cifar10-cpu --sets random")
    text = markdown(result, json.loads(args.digits.read_text()), args.machine, args.wall)
    if args.write_docs:
        args.docs.write_text(text)
        print(f"Wrote {args.docs}")
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
