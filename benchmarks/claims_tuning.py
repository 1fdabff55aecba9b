"""claims.py's tuning with `hf-unlearn tune` (the default ``--search tune``): per tuning seed the shared original
and references, and per group and forget set one study whose objective is the mean validation ToW."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from benchmarks.claims_setup import base_recipe, groups
from benchmarks.claims_workers import quiet_worker


def tuning_recipe(seed: int, sets: list[str], smoke: bool) -> dict[str, Any]:
    """A tuning seed's recipe: every forget set, and a validation split carved from training (tune's objective)."""
    from hf_unlearn.tune.study import tuning_recipes

    return tuning_recipes(base_recipe(seed, sets, smoke))[0][1]


def group_space(group: str, smoke: bool) -> dict[str, Any]:
    """The group's search space: its method's declared space (hf_unlearn.tune.space); --smoke searches its knob only."""
    from hf_unlearn.tune.space import resolve_space

    fixed, knob, _grid = groups(smoke)[group]
    space = resolve_space(fixed["method"], fixed.get("sharpness", "none"), None)
    return {knob: space[knob]} if smoke else space


def prepare_tuning(task: dict[str, Any]) -> dict[str, Any]:
    """One tuning seed: train (or reuse) its original and the references of every forget set, once for all groups."""
    quiet_worker()
    from hf_unlearn.tune.adapter import shared_stages

    seed = task["seed"]
    recipe = tuning_recipe(seed, task["sets"], task["smoke"])
    start = time.perf_counter()
    shared_stages(recipe, {"name": "finetune", "method": "finetune"}, _tune_dir(task, seed), use_cpu=True)
    print(f"tuning seed {seed}: shared stages ready ({time.perf_counter() - start:.0f} s)", flush=True)
    return {"seed": seed}


def tune_group(task: dict[str, Any]) -> dict[str, Any]:
    """One study: a group on one forget set over the tuning seeds (mean validation ToW); its best settings."""
    quiet_worker()
    from hf_unlearn.tune.adapter import shared_stages
    from hf_unlearn.tune.study import best_trial, search

    group, set_name, smoke = task["group"], task["set"], task["smoke"]
    fixed = groups(smoke)[group][0]
    run = {"name": group, **fixed}
    contexts = []
    for seed in task["tune_seeds"]:
        recipe = tuning_recipe(seed, task["sets"], smoke)
        stages = shared_stages(recipe, run, _tune_dir(task, seed), use_cpu=True, label=f"seed-{seed}/")
        contexts += [c for c in stages if c.name == f"seed-{seed}/{set_name}"]
    space = group_space(group, smoke)
    start = time.perf_counter()
    folder = Path(task["root"]) / "tune" / set_name
    folder.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{(folder / f'{group}.db').resolve()}"  # one file per study: no write contention
    study = search(contexts, space, task["trials"], name=group, storage=storage, seed=0)
    finished = [t for t in study.trials if t.state.is_finished()]
    best = best_trial(study)
    seconds = [t.user_attrs["seconds"] for t in finished if "seconds" in t.user_attrs]
    print(
        f"  tuned {set_name:8s} {group:28s} validation ToW {best.value:.3f} (trial {best.number} of "
        f"{len(finished)}) {best.params} ({time.perf_counter() - start:.0f} s)",
        flush=True,
    )
    return {
        "set": set_name,
        "group": group,
        "params": best.params,
        "value": best.value,
        "trial": best.number,
        "trial_0": finished[0].value if finished and finished[0].number == 0 else None,
        "trials": len(finished),
        "pruned": sum(t.state.name == "PRUNED" for t in finished),
        "trial_seconds": seconds,
        "space": {k: [v.low, v.high] for k, v in space.items()},
    }


def _tune_dir(task: dict[str, Any], seed: int) -> Path:
    return Path(task["root"]) / f"tune-seed-{seed}"
