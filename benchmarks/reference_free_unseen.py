#!/usr/bin/env python
"""On a hard forget set no setting was chosen for, do the defaults forget, and does early_stop make them?

    python benchmarks/reference_free_unseen.py --root runs/reference-free-stop     # reuses its evaluation originals

The forget set is the user's case: a deletion list that another model singled out. A model trained on digits with
another split (``--other-seed``, default 7) ranks its training samples by their learning events (mean true-class
confidence over pretraining); its hardest 10% (by pool row) is the deletion list. On each evaluation seed the rows
of the list that are in that seed's training split become a ``kind: file`` forget set (rows in its test split
cannot be forgotten), and four settings of neggrad, neggrad+SAM and Sharp MinMax+SAM run on it:

- ``defaults``: recipes/digits.yaml's settings (5 epochs), tuned on other forget sets;
- ``defaults_stop``: the same with ``early_stop`` (the reference-free target, checked every epoch, patience
  ``--stop-patience``) and a budget of ``--stop-epochs`` epochs;
- ``reference_free`` / ``reference_free_stop``: the reference-free study's choice for the recipe's own
  low-confidence set (``--chosen-from``, benchmarks/reference_free.py's JSON), without and with the stop.

Each is scored by ToW against the seed's model retrained without the list, on retain, forget and test, as the
report does. Data: each evaluation seed's split with a validation split carved from retain (what early_stop checks,
as `tune` carves it), so the originals are those of ``benchmarks/reference_free.py --stop`` under the same ``--root``.
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

import numpy as np

if __package__ in (None, ""):  # run as `python benchmarks/reference_free_unseen.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.claims_workers import metrics_of, quiet_worker, tow_of
from benchmarks.reference_free import RUNS, digits_recipe

ARMS = ("defaults", "defaults_stop", "reference_free", "reference_free_stop")


def hardest_rows(base: dict[str, Any], root: Path, seed: int, share: float) -> np.ndarray:
    """Pool rows of the ``share`` of training samples with the lowest learning events of a model trained at ``seed``."""
    from transformers import set_seed

    from hf_unlearn.pipeline import Pipeline
    from hf_unlearn.recipe import validate

    recipe = validate({**copy.deepcopy(base), "seed": int(seed)})
    pipe = Pipeline(recipe, root / f"other-seed-{seed}", use_cpu=True)
    pipe.output_dir.mkdir(parents=True, exist_ok=True)
    set_seed(seed)
    splits = pipe.prepare_data()
    pipe.original_model(splits)
    events = np.load(pipe.store.learning_events_path)
    rows = np.asarray(splits.prepared.train_rows)
    assert len(events) == len(rows), (len(events), len(rows))
    return np.sort(rows[np.argsort(events, kind="stable")[: round(share * len(rows))]])


def evaluate_seed(args: argparse.Namespace, base: dict[str, Any], seed: int, hard: np.ndarray, chosen: dict) -> dict:
    from transformers import set_seed

    from hf_unlearn.pipeline import Pipeline
    from hf_unlearn.recipe import validate
    from hf_unlearn.tune.space import apply_params

    raw = {**copy.deepcopy(base), "seed": int(seed)}
    raw["data"]["validation_size"] = 0.1
    folder = args.root / f"eval-seed-{seed}"
    set_seed(seed)
    rows = np.asarray(Pipeline(validate(copy.deepcopy(raw)), folder, use_cpu=True).prepare_data().prepared.train_rows)
    listed = hard[np.isin(hard, rows)]
    deletion = folder / "unseen-hard.txt"
    deletion.parent.mkdir(parents=True, exist_ok=True)
    deletion.write_text("".join(f"{row}\n" for row in listed))
    raw["forget"] = [{"name": "unseen_hard", "kind": "file", "path": str(deletion)}]
    recipe = validate(raw)
    pipe = Pipeline(recipe, folder, use_cpu=True)
    set_seed(seed)
    splits = pipe.prepare_data()
    original = pipe.original_model(splits)
    forget_run = pipe.forget_set(splits, recipe["forget"][0])
    reference = pipe.reference(forget_run, original)
    out: dict[str, Any] = {"listed": len(listed), "retrain": metrics_of(reference)}
    runs = {run["name"]: run for run in recipe["unlearn"]["runs"]}
    for run in args.runs:
        for arm in ARMS:
            params = chosen[f"lowconf/{run}/reference_free"]["params"] if arm.startswith("reference_free") else {}
            settings = {**apply_params(runs[run], params), "name": f"{run}__unseen__{arm}"}
            if arm.endswith("_stop"):
                early = {"every": "epoch", "patience": args.stop_patience}
                settings.update(epochs=args.stop_epochs, early_stop=early)
            record = pipe.unlearn(forget_run, original, settings)
            metrics = metrics_of(record)
            metrics["tow"] = tow_of(record, reference)
            stop = record.get("early_stop")
            if stop:
                metrics["stop"] = {
                    "stopped": stop["stopped"],
                    "epoch": stop.get("epoch"),
                    "target": stop["target"]["forget"],
                }
            out[f"{run}/{arm}"] = metrics
    print(f"  seed {seed}: {len(listed)} of {len(hard)} listed rows in training; done", flush=True)
    return out


def markdown(result: dict[str, Any]) -> str:
    seeds = result["eval"]
    retrain = statistics.fmean(seeds[s]["retrain"]["accuracy"]["forget"] for s in seeds)
    lines = [
        f"Unseen hard set (another model's hardest 10%, seed {result['other_seed']}); evaluation seeds {list(seeds)}; "
        f"retrained forget accuracy {retrain:.3f} (mean). Cells: ToW mean ± std (forget accuracy mean). "
        f"Wall time {result['seconds'] / 60:.1f} min.",
        "",
        "| run | " + " | ".join(ARMS) + " |",
        "|---|" + "---|" * len(ARMS),
    ]
    for run in result["runs"]:
        cells = []
        for arm in ARMS:
            entries = [seeds[s][f"{run}/{arm}"] for s in seeds]
            tows = [e["tow"] for e in entries if e["tow"] is not None]
            forget = statistics.fmean(e["accuracy"]["forget"] for e in entries)
            spread = f" ± {statistics.stdev(tows):.3f}" if len(tows) > 1 else ""
            cells.append(f"{statistics.fmean(tows):.3f}{spread} ({forget:.3f})")
        lines.append(f"| {run} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("runs") / "reference-free-stop")
    parser.add_argument("--chosen-from", type=Path, default=Path("benchmarks/results/reference_free_2026-12-06.json"))
    parser.add_argument("--other-seed", type=int, default=7)
    parser.add_argument("--eval-seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--stop-epochs", type=int, default=15)
    parser.add_argument("--stop-patience", type=int, default=3)
    args = parser.parse_args(argv)
    if args.other_seed in args.eval_seeds:
        parser.error("--other-seed must differ from the evaluation seeds: the list comes from another model.")
    quiet_worker()
    start = time.perf_counter()
    base = digits_recipe(False)
    hard = hardest_rows(base, args.root, args.other_seed, 0.1)
    chosen = json.loads(args.chosen_from.read_text())["chosen"]
    result = {
        "other_seed": args.other_seed,
        "runs": args.runs,
        "stop_epochs": args.stop_epochs,
        "stop_patience": args.stop_patience,
        "eval": {str(s): evaluate_seed(args, base, s, hard, chosen) for s in args.eval_seeds},
    }
    result["seconds"] = time.perf_counter() - start
    (args.root / "reference_free_unseen.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    text = markdown(result)
    (args.root / "reference_free_unseen.md").write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
