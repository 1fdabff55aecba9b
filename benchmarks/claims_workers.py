"""claims.py's training workers (run in spawned processes): one seed's original, references and unlearning runs,
and the SGD- vs SAM-pretrained originals' analysis."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from benchmarks.claims_analysis import number
from benchmarks.claims_setup import PRETRAIN_SAM, base_recipe


def start_pool_worker(tqdm_lock: Any) -> None:
    """A pool worker's initializer: no bars (set before tqdm is imported, which reads TQDM_DISABLE once) and the
    parent's tqdm lock (a worker's own would be a named semaphore that the pool's exit leaks, and the resource tracker
    warns about it at shutdown)."""
    os.environ["TQDM_DISABLE"] = "1"
    from tqdm import tqdm

    tqdm.set_lock(tqdm_lock)


def quiet_worker() -> None:
    """One torch thread per worker process, and no progress bars or log lines."""
    os.environ["TQDM_DISABLE"] = "1"  # the safetensors writer's progress bar
    import torch

    torch.set_num_threads(1)
    logging.disable(logging.WARNING)
    import transformers

    transformers.logging.set_verbosity_error()


def metrics_of(record: dict[str, Any]) -> dict[str, Any]:
    """A run record's accuracies and MIA (confidence)."""
    acc = record.get("accuracy") or {}
    return {"accuracy": acc or None, "mia": (record.get("mia") or {}).get("confidence")}


def tow_of(record: dict[str, Any], reference: dict[str, Any] | None) -> float | None:
    """A run record's ToW against the retrained reference's record, or None when either has no accuracies (a
    diverged run)."""
    from hf_unlearn.metrics import tug_of_war

    if not record.get("accuracy") or not (reference or {}).get("accuracy"):
        return None
    return tug_of_war(record["accuracy"], reference["accuracy"])


def worker(task: dict[str, Any]) -> dict[str, Any]:
    """One seed: original, per forget set the retrain and the given runs; with ``analysis`` the SGD-vs-SAM
    originals' entanglement, MIA and basin ratio."""
    quiet_worker()
    from transformers import set_seed

    from hf_unlearn.pipeline import Pipeline

    seed, smoke, root = task["seed"], task["smoke"], Path(task["root"])
    start = time.perf_counter()
    recipe = base_recipe(seed, task["sets"], smoke)
    pipe = Pipeline(recipe, root / f"seed-{seed}", use_cpu=True)
    pipe.output_dir.mkdir(parents=True, exist_ok=True)
    set_seed(seed)
    splits = pipe.prepare_data()
    original = pipe.original_model(splits)
    out: dict[str, Any] = {"seed": seed, "runs": {}, "reference": {}, "analysis": {}}
    set_splits = {}
    for spec in recipe["forget"]:
        name = spec["name"]
        forget_run = pipe.forget_set(splits, spec)
        ss = set_splits[name] = forget_run.splits
        retrain = pipe.reference(forget_run, original)
        out["reference"][name] = {"retrain": metrics_of(retrain), "original": metrics_of(pipe.evaluate(original, ss))}
        for run, settings in task["runs"].get(name, {}).items():
            record = pipe.unlearn(forget_run, original, {"name": run, **settings})
            metrics = metrics_of(record)
            metrics["tow"] = tow_of(record, retrain)
            metrics["status"] = record.get("status", "finished")
            out["runs"][f"{name}/{run}"] = metrics
            print(
                f"  seed {seed} {name:8s} {run:42s} ToW {number(metrics['tow'])} MIA {number(metrics['mia'])} "
                f"({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
    if task.get("analysis"):
        out["analysis"] = analysis(task, splits, set_splits, original, pipe)
    out["wall_seconds"] = time.perf_counter() - start
    print(f"seed {seed}: done in {out['wall_seconds']:.0f} s", flush=True)
    return out


def analysis(task, splits, set_splits, original, pipe) -> dict[str, Any]:
    """SGD- vs SAM-pretrained original on the same split: entanglement and MIA per forget set, basin ratio."""
    from hf_unlearn.metrics import (
        classwise_entanglement_score,
        entanglement_score,
        loss_landscape,
        penultimate_features,
    )
    from hf_unlearn.pipeline import Pipeline

    seed = task["seed"]
    recipe_sam = base_recipe(seed, task["sets"], task["smoke"], PRETRAIN_SAM)
    pipe_sam = Pipeline(recipe_sam, Path(task["root"]) / f"seed-{seed}-sam-pretrain", use_cpu=True)
    pipe_sam.output_dir.mkdir(parents=True, exist_ok=True)
    sam_original = pipe_sam.original_model(splits)
    steps = 3 if task["smoke"] else 11
    out: dict[str, Any] = {}
    for label, model in (("sgd", original), ("sam", sam_original)):
        entry: dict[str, Any] = {
            "basin_test": [
                loss_landscape(model, splits.test, steps=steps, seed=s).stats()["basin_ratio"] for s in (42, 43)
            ]
        }
        for name, ss in set_splits.items():
            fr, yr = penultimate_features(model, ss.retain)
            ff, yf = penultimate_features(model, ss.forget)
            entry[name] = {
                "entanglement": entanglement_score(fr, ff),
                "entanglement_classwise": classwise_entanglement_score(fr, yr, ff, yf),
                "basin_forget": loss_landscape(model, ss.forget, steps=steps, seed=42).stats()["basin_ratio"],
                **metrics_of(pipe.evaluate(model, ss)),
            }
        out[label] = entry
    print(
        f"  seed {seed} analysis: ES sgd/sam "
        + ", ".join(f"{n} {out['sgd'][n]['entanglement']:.3f}/{out['sam'][n]['entanglement']:.3f}" for n in set_splits)
        + f"; basin test sgd {out['sgd']['basin_test']} sam {out['sam']['basin_test']}",
        flush=True,
    )
    return out
