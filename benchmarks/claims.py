#!/usr/bin/env python
"""The paper's claims on the embedded digits data, with a fair tuning protocol and several seeds.

    python benchmarks/claims.py --workers 3 --write-docs            # full protocol (see docs/results.md)
    python benchmarks/claims.py --sets lowconf high --write-docs    # fewer forget sets
    python benchmarks/claims.py --smoke --root /tmp/claims-smoke    # a tiny end-to-end check, 1.5-2 min (tests use it)
    python benchmarks/claims.py --trials 50 --workers 2 --write-docs  # more tuning trials per group and forget set
    python benchmarks/claims.py --from-json RUN/claims.json --previous OLD/claims.json --write-docs  # re-render, compared

Protocol. Forget sets: the 10% low-confidence set of recipes/digits.yaml (``lowconf``) and the 2% memorization bands
``high`` / ``mid`` / ``low`` of recipes/digits-memorization.yaml. Methods (groups): finetune, gradient_ascent,
random_label, salun, scrub, neggrad, each with sharpness none and sam (rho 0.1), and sharp_minmax with sam, intended
and official. Each group has a grid of 3 values of its main knob (GRIDS below; other settings as in
recipes/digits-all-methods.yaml). Tuning (default, ``--search tune``): per forget set and group, an `hf-unlearn tune`
study (hf_unlearn.tune: the group's method space, seeded TPE, median pruning; ``--trials`` trials, 30 by default)
whose objective is the mean validation ToW over the tuning seeds (a validation split carved from each tuning seed's
training split; the test split is never read); its best settings are then evaluated on the (different) evaluation
seeds. ``--search grid`` runs the former protocol instead: the 3-value grid of one knob per group (GRIDS below), the
value with the highest mean test ToW over the tuning seeds selected. Each seed has its own
data split, SGD-pretrained original, forget set and retrained reference, shared by all methods (the Pipeline reuses
finished stages). For the analysis claims each evaluation seed also gets a SAM-pretrained original (rho 0.05) on the
same split: entanglement (penultimate features, retain vs forget, per forget set) and the basin ratio of the test
loss landscape (11 x 11, direction seeds 42 and 43) are compared with the SGD original's, paired by seed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/claims.py`: make `benchmarks.*` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.claims_analysis import claims, evaluate_table, select, tuned_selection
from benchmarks.claims_report import markdown, previous_run
from benchmarks.claims_setup import SETS, configurations, groups
from benchmarks.claims_tuning import prepare_tuning, tune_group
from benchmarks.claims_workers import start_pool_worker, worker

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=ROOT / "runs" / "claims", help="Work folder (stages reused).")
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--tune-seeds", nargs="+", type=int, default=[100, 101])
    parser.add_argument("--eval-seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--workers", type=int, default=2, help="Processes (one seed each at a time).")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="Tiny model, 1 epoch, 4 groups, 2 trials per study, every forget set and seed: 1.5-2 min with 2 "
        "workers on an idle 2-core CPU (--sets lowconf --tune-seeds 100 --eval-seeds 0 --workers 1 runs a fraction of it).",
    )
    parser.add_argument(
        "--search",
        choices=("tune", "grid"),
        default="tune",
        help="tune: an hf-unlearn tune study per group and forget set (validation ToW); grid: the former 3-value grid.",
    )
    parser.add_argument(
        "--trials", type=int, default=None, help="Trials per study with --search tune (default 30; 2 with --smoke)."
    )
    parser.add_argument("--write-docs", action="store_true", help="Write docs/results.md.")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "results.md")
    parser.add_argument("--reduced", default="", help="A note on what was left out of the full protocol.")
    parser.add_argument(
        "--previous",
        type=Path,
        default=None,
        help="An earlier run's claims.json: the report compares its mean ToWs and verdicts with this run's.",
    )
    parser.add_argument(
        "--from-json",
        type=Path,
        default=None,
        help="Recompute verdicts and docs from a finished run's claims.json (no training).",
    )
    args = parser.parse_args(argv)
    if args.trials is None:
        args.trials = 2 if args.smoke else 30
    if args.trials < 1:
        parser.error(f"--trials: expected at least 1, got {args.trials}")
    previous = None
    if args.previous is not None:  # read up front: a bad file fails now, not after hours of training
        try:
            previous = previous_run(args.previous)
        except (OSError, ValueError, KeyError) as error:
            parser.error(f"--previous {args.previous}: not a claims.json of an earlier run ({error!r})")
    if args.from_json is not None:
        result = json.loads(args.from_json.read_text())
        for per_set in result["selection"].values():  # JSON made the grid values strings
            for chosen in per_set.values():
                chosen["tuning_tow"] = {float(k): v for k, v in chosen["tuning_tow"].items()}
        result["claims"] = claims(result["evaluation"], result["selection"], result["analysis"], result["sets"])
        if previous is not None:
            result["previous"] = previous
        args.from_json.write_text(json.dumps(result, indent=2, default=str) + "\n")
        if args.write_docs:
            args.docs.write_text(markdown(result))
            print(f"Wrote {args.docs}")
        return 0
    start = time.perf_counter()
    group_table = groups(args.smoke)
    common = {"smoke": args.smoke, "root": str(args.root), "sets": args.sets}
    analysis_tasks = [{**common, "seed": s, "runs": {}, "analysis": True} for s in args.eval_seeds]
    studies: list[dict[str, Any]] = []
    if args.search == "tune":
        print(
            f"Phase 1: {len(group_table)} groups x {len(args.sets)} forget sets, {args.trials} trials each on tuning "
            f"seeds {args.tune_seeds}; SGD/SAM originals for {len(args.eval_seeds)} evaluation seeds",
            flush=True,
        )
        _map([{**common, "seed": s} for s in args.tune_seeds], args.workers, prepare_tuning)
        study_tasks = [
            {**common, "group": g, "set": n, "tune_seeds": args.tune_seeds, "trials": args.trials}
            for n in args.sets
            for g in group_table
        ]
        studies = _map(study_tasks, args.workers, tune_group)
        phase1 = _map(analysis_tasks, args.workers)
        selection = {s: tuned_selection(studies, s, group_table) for s in args.sets}
    else:
        configs = configurations(group_table)
        tasks = [
            {**common, "seed": s, "runs": {n: {r: c[2] for r, c in configs.items()} for n in args.sets}}
            for s in args.tune_seeds
        ]
        print(
            f"Phase 1: {len(configs)} configurations x {len(args.sets)} forget sets x {len(args.tune_seeds)} tuning "
            f"seeds; SGD/SAM originals for {len(args.eval_seeds)} evaluation seeds",
            flush=True,
        )
        phase1 = _map(tasks + analysis_tasks, args.workers)
        tuning = [r for r in phase1 if r["seed"] in args.tune_seeds]
        selection = {s: select(tuning, s, group_table) for s in args.sets}
    analysis_runs = [r["analysis"] for r in sorted(phase1, key=lambda r: r["seed"]) if r["seed"] in args.eval_seeds]
    for s in args.sets:
        print(
            f"Selected on {s}: " + ", ".join(f"{g} {c['knob']}={c['value']:g}" for g, c in selection[s].items()),
            flush=True,
        )
    tasks = [
        {**common, "seed": s, "runs": {n: {c["run"]: c["settings"] for c in selection[n].values()} for n in args.sets}}
        for s in args.eval_seeds
    ]
    print(
        f"Phase 2: {len(group_table)} groups x {len(args.sets)} forget sets x {len(args.eval_seeds)} seeds", flush=True
    )
    evaluated = sorted(_map(tasks, args.workers), key=lambda r: r["seed"])
    evaluation = evaluate_table(evaluated, selection, args.sets)
    result = {
        "command": "python benchmarks/claims.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "sets": args.sets,
        "groups": group_table,
        "selection": selection,
        "evaluation": evaluation,
        "analysis": analysis_runs,
        "reduced": args.reduced,
        "search": args.search,
        "trials": args.trials if args.search == "tune" else None,
        "studies": studies,
    }
    result["claims"] = claims(evaluation, selection, analysis_runs, args.sets)
    if previous is not None:
        result["previous"] = previous
    result["wall_seconds"] = time.perf_counter() - start
    args.root.mkdir(parents=True, exist_ok=True)
    (args.root / "claims.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    print()
    for c in result["claims"]:
        print(f"{c['claim']}: {c['verdict'].upper()}")
        for line in c["evidence"]:
            print(f"    {line}")
    print(f"\nWall time {result['wall_seconds']:.0f} s; {args.root / 'claims.json'}")
    if args.write_docs:
        args.docs.write_text(markdown(result))
        print(f"Wrote {args.docs}")
    return 0


def _map(tasks: list[dict[str, Any]], workers: int, function=None) -> list[dict[str, Any]]:
    function = function or worker
    if workers <= 1:
        return [function(t) for t in tasks]
    import multiprocessing as mp

    context = mp.get_context("spawn")  # the workers share one tqdm lock, made here (start_pool_worker)
    with context.Pool(workers, initializer=start_pool_worker, initargs=(context.RLock(),)) as pool:
        results = list(pool.imap_unordered(function, tasks))
        pool.close()
        pool.join()  # the workers exit by themselves, cleaning up, before the pool's exit would kill them
    return results


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
