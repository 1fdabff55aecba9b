#!/usr/bin/env python
"""Does the reference-free objective of `hf-unlearn tune` choose settings as good as the reference-based one?

    python benchmarks/reference_free.py --root runs/reference-free                      # the full comparison
    python benchmarks/reference_free.py --smoke --root /tmp/rf-smoke                     # a tiny end-to-end check
    python benchmarks/reference_free.py --from-json runs/reference-free/reference_free.json   # re-render the table
    python benchmarks/reference_free.py --targets --root runs/reference-free   # the target vs the retrained model only
    python benchmarks/reference_free.py --recipe cifar10-cpu --data DIR --sets random --trials 4 \
        --tune-seeds 100 --root runs/rf-cifar10            # real data: the random 10% set of recipes/cifar10-cpu.yaml

A long comparison can run as parallel processes on one ``--root``: ``--tune-only`` runs the studies and writes
ROOT/chosen.json, ``--defaults-only`` meanwhile trains the evaluation seeds' originals, references and default runs,
and ``--chosen-from ROOT/chosen.json`` then evaluates the chosen settings (finished stages are reused).

Protocol (docs/tuning.md, "Without a reference"). Digits, the recipe of recipes/digits.yaml (``--recipe
cifar10-cpu``: recipes/cifar10-cpu.yaml with its own epochs and settings, forget set ``random`` only). Forget sets, one of
each kind: low confidence 10% (``lowconf``), memorization band ``high`` 2%, random 10%, class-wise (all of class 3).
Runs: neggrad, neggrad+SAM and Sharp MinMax+SAM of recipes/digits.yaml. Three settings per (forget set, run):
- ``defaults``: the recipe's own (tuned across kinds with a reference on seeds 100 / 101: docs/tuning.md);
- ``reference``: the best trial of an `hf-unlearn tune` study with a retrained reference (validation ToW);
- ``reference_free``: the best trial of the same study with ``retrain: false`` (the reference-free objective).
Both studies search the run's declared space (epochs fixed at the run's 5), ``--trials`` trials, over the tuning
seeds (``--tune-seeds``, default 100 101: each with its own split, original and validation split; the studies of a
forget set share them). Then every setting runs on each evaluation seed (``--eval-seeds``, default 0 1 2: no study
saw them), with its own original and retrained reference, and is scored by ToW against the reference on retain,
forget and the test split, as the report does. Studies live in SQLite and stages are cached under ``--root``: an
interrupted call resumes.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/reference_free.py`: make `benchmarks.*` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.claims_setup import SETS as CLAIM_SETS
from benchmarks.claims_setup import SMOKE_OVERRIDES
from benchmarks.claims_workers import metrics_of, quiet_worker, tow_of

SETS: dict[str, dict[str, Any]] = {
    "lowconf": CLAIM_SETS["lowconf"],
    "high": CLAIM_SETS["high"],
    "random": {"name": "random", "kind": "random", "size": 0.1},
    "classwise": {"name": "classwise", "kind": "classwise", "classes": [3]},
}
RECIPES = ("digits", "cifar10-cpu")
RUNS = ("neggrad", "neggrad_sam", "sharp_minmax_sam")
ARMS = ("defaults", "reference", "reference_free")
# With --stop: the same settings plus two that stop by the reference-free criterion (`early_stop`) within a budget of
# --stop-epochs epochs, on evaluation data with a validation split carved from retain (early_stop needs one).
STOP_ARMS = ("defaults_stop", "reference_free_stop")
ARM_TITLES = {
    "defaults": "defaults",
    "reference": "reference tune",
    "reference_free": "reference-free tune",
    "defaults_stop": "defaults + stop",
    "reference_free_stop": "reference-free tune + stop",
}


def digits_recipe(smoke: bool, name: str = "digits", data: str | None = None) -> dict[str, Any]:
    """The shipped recipe ``name`` (tiny model and epochs with ``smoke``; ``data`` as its data.source), quiet, with
    its neggrad and SAM runs only."""
    from hf_unlearn.recipe import load_recipe

    overrides = list(SMOKE_OVERRIDES) if smoke else []
    if data is not None:
        overrides.append(f"data.source={data}")
    recipe = load_recipe(name, overrides)
    recipe["unlearn"]["runs"] = [r for r in recipe["unlearn"]["runs"] if r["name"] in RUNS]
    quiet = {"disable_tqdm": True, "logging_strategy": "no"}
    recipe["pretrain"] = {**recipe["pretrain"], **quiet}
    recipe["unlearn"]["defaults"] = {**recipe["unlearn"]["defaults"], **quiet}
    recipe.pop("hub", None)
    return recipe


def study_recipe(base: dict[str, Any], set_name: str, arm: str, tune_seeds: list[int]) -> dict[str, Any]:
    """The recipe one study tunes: one forget set over the tuning seeds, with a reference or without one."""
    from hf_unlearn.recipe import validate

    raw = copy.deepcopy(base)
    raw.update(name=f"{arm}-{set_name}", seeds=list(tune_seeds), forget=dict(SETS[set_name]))
    raw["seed"] = int(tune_seeds[0])
    raw["retrain"] = False if arm == "reference_free" else raw["retrain"]
    raw["tune"] = {"validation_size": 0.1, "space": {"epochs": None}}  # epochs stay the run's own (5)
    return validate(raw)


def tune_all(args: argparse.Namespace, base: dict[str, Any]) -> dict[str, Any]:
    """Every study (forget set x run x tuned arm); the studies of a forget set share its folder and originals."""
    from hf_unlearn.tune.study import run_study

    chosen: dict[str, Any] = {}
    for set_name in args.sets:
        for run in args.runs:
            for arm in args.tune_arms:
                recipe = study_recipe(base, set_name, arm, args.tune_seeds)
                start = time.perf_counter()
                result = run_study(recipe, run, args.trials, args.root / "tune" / set_name, use_cpu=True)
                best = result["best"] or {"params": {}, "value": None, "number": None}
                chosen[f"{set_name}/{run}/{arm}"] = {**best, "warnings": result.get("warnings", [])}
                value = "—" if best["value"] is None else f"{best['value']:.3f}"
                print(
                    f"  tuned {set_name:9s} {run:17s} {arm:14s} best {value} (trial {best['number']}) "
                    f"{best['params']} ({time.perf_counter() - start:.0f} s)",
                    flush=True,
                )
    return chosen


def evaluate_seed(args: argparse.Namespace, base: dict[str, Any], seed: int, chosen: dict[str, Any]) -> dict:
    """One evaluation seed: its original, per forget set the retrained reference and every (run, arm) setting."""
    from transformers import set_seed

    from hf_unlearn.pipeline import Pipeline
    from hf_unlearn.recipe import validate
    from hf_unlearn.tune.space import apply_params

    raw = {**copy.deepcopy(base), "seed": int(seed), "forget": [dict(SETS[s]) for s in args.sets]}
    if args.stop:
        raw["data"]["validation_size"] = 0.1  # what early_stop checks, carved from retain as `tune` carves it
    recipe = validate(raw)
    pipe = Pipeline(recipe, args.root / f"eval-seed-{seed}", use_cpu=True)
    pipe.output_dir.mkdir(parents=True, exist_ok=True)
    set_seed(seed)
    splits = pipe.prepare_data()
    original = pipe.original_model(splits)
    runs = {run["name"]: run for run in recipe["unlearn"]["runs"]}
    out: dict[str, Any] = {}
    for spec in recipe["forget"]:
        forget_run = pipe.forget_set(splits, spec)
        reference = pipe.reference(forget_run, original)
        out[f"{spec['name']}/retrain"] = metrics_of(reference)
        unchanged = pipe.runner.original_entry(forget_run)  # doing nothing: the floor every setting must beat
        out[f"{spec['name']}/original"] = {**metrics_of(unchanged), "tow": tow_of(unchanged, reference)}
        for run in args.runs:
            for arm in arms_of(vars(args)):
                tuned = arm.removesuffix("_stop")
                params = {} if tuned == "defaults" else chosen[f"{spec['name']}/{run}/{tuned}"]["params"]
                settings = {**apply_params(runs[run], params), "name": f"{run}__{arm}"}
                if arm.endswith("_stop"):
                    settings.update(
                        epochs=args.stop_epochs, early_stop={"every": "epoch", "patience": args.stop_patience}
                    )
                record = pipe.unlearn(forget_run, original, settings)
                metrics = metrics_of(record)
                stop = record.get("early_stop")
                if stop:  # where it stopped, and the target it stopped at
                    metrics["stop"] = {k: stop.get(k) for k in ("stopped", "reason", "epoch", "step", "budget_steps")}
                    metrics["stop"]["target"] = stop["target"]["forget"]
                metrics["tow"] = tow_of(record, reference)
                out[f"{spec['name']}/{run}/{arm}"] = metrics
        print(f"  seed {seed} {spec['name']:9s} done", flush=True)
    return out


def targets(args: argparse.Namespace, base: dict[str, Any]) -> str:
    """The reference-free target (with and without learning events) against the retrained model's forget accuracy,
    per forget set, on each evaluation seed's data with the validation split a study carves (no tuning)."""
    from transformers import set_seed

    from hf_unlearn.forgetting import learning_events_of, original_target
    from hf_unlearn.pipeline import Pipeline
    from hf_unlearn.recipe import validate

    table: dict[str, list[list[float]]] = {name: [] for name in args.sets}
    for seed in args.eval_seeds:
        raw = {**copy.deepcopy(base), "seed": int(seed), "forget": [dict(SETS[s]) for s in args.sets]}
        raw["data"]["validation_size"] = 0.1
        recipe = validate(raw)
        pipe = Pipeline(recipe, args.root / f"targets-seed-{seed}", use_cpu=True)
        pipe.output_dir.mkdir(parents=True, exist_ok=True)
        set_seed(seed)
        splits = pipe.prepare_data()
        original = pipe.original_model(splits)
        for spec in recipe["forget"]:
            run = pipe.forget_set(splits, spec)
            retrained = pipe.reference(run, original)["accuracy"]["forget"]
            given = {"retain": run.splits.retain, "forget": run.splits.forget, "batch_size": 256}
            given["validation"] = splits.prepared.validation
            events = learning_events_of(pipe.store.learning_events_path, run.splits.manifest)
            with_events = original_target(original, learning_events=events, **given)
            without = original_target(original, **given)
            table[spec["name"]].append([retrained, with_events.matched_accuracy, with_events.forget, without.forget])
    lines = [
        f"Forget accuracy, mean over seeds {args.eval_seeds}: the retrained model, the matched held-out samples' "
        "accuracy, the target t, t without learning events.",
        "",
        "| forget set | retrained | matched accuracy | target t | t without learning events |",
        "|---|---|---|---|---|",
    ]
    for name, values in table.items():
        means = [statistics.fmean(column) for column in zip(*values, strict=True)]
        lines.append(f"| {name} | " + " | ".join(f"{m:.3f}" for m in means) + " |")
    return "\n".join(lines) + "\n"


def arms_of(settings: dict[str, Any]) -> tuple[str, ...]:
    """The evaluated settings of a run's ``settings`` (its arguments or its result): the defaults and the tuned
    arms, and with ``stop`` their stopped variants too."""
    tuned = settings.get("tune_arms")
    tuned = ("reference", "reference_free") if tuned is None else tuned
    arms = tuple(arm for arm in ARMS if arm == "defaults" or arm in tuned)
    stopped = tuple(arm for arm in STOP_ARMS if arm.removesuffix("_stop") in arms)
    return arms + stopped if settings.get("stop") else arms


def summary(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Per (forget set, run, arm): mean and std of test ToW and mean forget accuracy over the evaluation seeds."""
    rows = []
    seeds = result["eval"]
    for set_name in result["sets"]:
        retrain = [seeds[s][f"{set_name}/retrain"]["accuracy"]["forget"] for s in seeds]
        for run in result["runs"]:
            for arm in arms_of(result):
                cells = [seeds[s][f"{set_name}/{run}/{arm}"] for s in seeds]
                tows = [c["tow"] for c in cells if c["tow"] is not None]
                rows.append(
                    {
                        "set": set_name,
                        "run": run,
                        "arm": arm,
                        "tow_mean": statistics.fmean(tows) if tows else None,
                        "tow_std": statistics.stdev(tows) if len(tows) > 1 else None,
                        "forget_mean": statistics.fmean(c["accuracy"]["forget"] for c in cells if c["accuracy"]),
                        "retrain_forget_mean": statistics.fmean(retrain),
                        "seeds": len(tows),
                    }
                )
    return rows


def markdown(result: dict[str, Any]) -> str:
    def num(value: float | None) -> str:
        return "—" if value is None else f"{value:.3f}"

    lines = [
        f"# Reference-free vs reference-based tuning on {result.get('recipe', 'digits')}",
        "",
        f"Tuning seeds {result['tune_seeds']}, {result['trials']} trials per study; evaluation seeds "
        f"{list(result['eval'])}; ToW against each seed's retrained reference on retain, forget and test (mean ± std "
        f"over seeds; forget accuracy mean in brackets). {'SMOKE configuration: tiny model, not a result. ' if result['smoke'] else ''}"
        f"Wall time {result['seconds'] / 60:.1f} min.",
        "",
        "| forget set | run | retrain forget | " + " | ".join(ARM_TITLES[a] for a in arms_of(result)) + " |",
        "|---|---|---|" + "---|" * len(arms_of(result)),
    ]
    rows = {(r["set"], r["run"], r["arm"]): r for r in summary(result)}
    for set_name in result["sets"]:
        for run in result["runs"]:
            cells = []
            for arm in arms_of(result):
                row = rows[(set_name, run, arm)]
                spread = f" ± {row['tow_std']:.3f}" if row["tow_std"] is not None else ""
                cells.append(f"{num(row['tow_mean'])}{spread} ({num(row['forget_mean'])})")
            retrain = rows[(set_name, run, "defaults")]["retrain_forget_mean"]
            lines.append(f"| {set_name} | {run} | {num(retrain)} | " + " | ".join(cells) + " |")
    lines += ["", "Chosen settings (best trial of each study):", ""]
    for key, best in result["chosen"].items():
        value = num(best["value"])
        lines.append(f"- {key}: {best['params']} (validation value {value}, trial {best['number']})")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("runs") / "reference-free")
    parser.add_argument("--recipe", choices=RECIPES, default="digits", help="The shipped recipe compared on.")
    parser.add_argument("--data", default=None, help="The recipe's data.source (cifar10-cpu: a local copy's folder).")
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--tune-seeds", nargs="+", type=int, default=[100, 101])
    parser.add_argument("--eval-seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=None, help="Trials per study (default 30; 2 with --smoke).")
    parser.add_argument("--smoke", action="store_true", help="Tiny model, 1-2 epochs, 2 trials: minutes.")
    parser.add_argument("--from-json", type=Path, default=None, help="Re-render a finished run's table.")
    parser.add_argument("--targets", action="store_true", help="Only the target vs the retrained model: no tuning.")
    phase = parser.add_mutually_exclusive_group()
    phase.add_argument("--tune-only", action="store_true", help="Run the studies, write ROOT/chosen.json, stop.")
    phase.add_argument(
        "--defaults-only",
        action="store_true",
        help="Evaluate the defaults only (no tuning): the evaluation seeds' stages, ready for --chosen-from.",
    )
    parser.add_argument(
        "--tune-arms",
        nargs="+",
        default=["reference", "reference_free"],
        choices=["reference", "reference_free"],
        help="Which studies to run (and evaluate beside the defaults).",
    )
    parser.add_argument(
        "--stop",
        action="store_true",
        help="Also evaluate the defaults and the reference-free choice with early_stop (budget --stop-epochs), on "
        "evaluation data with a validation split.",
    )
    parser.add_argument("--stop-epochs", type=int, default=15, help="The epoch budget of the --stop arms.")
    parser.add_argument(
        "--stop-patience",
        type=int,
        default=3,
        help="The --stop arms also stop after this many epochs without a better reference-free score (a target "
        "never reached must not spend the whole budget).",
    )
    parser.add_argument(
        "--chosen-from",
        type=Path,
        default=None,
        help="Take the chosen settings from a finished run's JSON instead of tuning again (evaluation only).",
    )
    args = parser.parse_args(argv)
    if args.from_json:
        print(markdown(json.loads(args.from_json.read_text())), end="")
        return 0
    if args.recipe != "digits" and set(args.sets) - {"random"}:
        parser.error(f"--recipe {args.recipe}: only --sets random (its own forget set) is compared.")
    if args.targets:
        quiet_worker()
        args.root.mkdir(parents=True, exist_ok=True)
        text = targets(args, digits_recipe(args.smoke, args.recipe, args.data))
        (args.root / "targets.md").write_text(text)
        print(text, end="")
        return 0
    if set(args.tune_seeds) & set(args.eval_seeds):
        parser.error("--tune-seeds and --eval-seeds must differ: the evaluation seeds are the ones no study saw.")
    args.trials = args.trials or (2 if args.smoke else 30)
    quiet_worker()
    start = time.perf_counter()
    args.root.mkdir(parents=True, exist_ok=True)
    base = digits_recipe(args.smoke, args.recipe, args.data)
    if args.defaults_only:
        chosen, args.tune_arms = {}, []
    elif args.chosen_from:  # the settings (and the trial count they came from) of a finished run
        source = json.loads(args.chosen_from.read_text())
        chosen, args.trials = source["chosen"], source["trials"]
        args.tune_seeds = source.get("tune_seeds", args.tune_seeds)
    else:
        chosen = tune_all(args, base)
    if args.tune_only:
        studies = {"chosen": chosen, "trials": args.trials, "tune_seeds": args.tune_seeds, "recipe": args.recipe}
        studies["seconds"] = time.perf_counter() - start
        (args.root / "chosen.json").write_text(json.dumps(studies, indent=2, default=str) + "\n")
        print(f"Wrote {args.root / 'chosen.json'} ({studies['seconds'] / 60:.1f} min)")
        return 0
    evaluation = {str(seed): evaluate_seed(args, base, seed, chosen) for seed in args.eval_seeds}
    result = {
        "recipe": args.recipe,
        "sets": args.sets,
        "runs": args.runs,
        "tune_seeds": args.tune_seeds,
        "trials": args.trials,
        "smoke": args.smoke,
        "tune_arms": args.tune_arms,
        "stop": args.stop,
        "stop_epochs": args.stop_epochs if args.stop else None,
        "stop_patience": args.stop_patience if args.stop else None,
        "chosen_from": str(args.chosen_from) if args.chosen_from else None,
        "chosen": chosen,
        "eval": evaluation,
        "seconds": time.perf_counter() - start,
    }
    result["summary"] = summary(result)
    (args.root / "reference_free.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    text = markdown(result)
    (args.root / "reference_free.md").write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
