"""`hf-unlearn tune`: an Optuna study over one unlearning run of a recipe, resumable, shareable through a database.

Protocol (docs/tuning.md). The recipe's data gets a validation split (the source's, else ``tune.validation_size``
of the training split, stratified and seeded); the original and the reference are trained once on what is left
for training and shared by every trial. Trial 0 is the run's own settings; later trials come from a seeded TPE
sampler, and a trial whose ToW at an epoch's end falls below the median of earlier trials at that epoch is pruned.
The objective is ToW on retain, forget and validation, or without a reference (retrain: false) the reference-free
objective (`hf_unlearn.tune.objective`); the test split is never read.

Storage: SQLite in the output folder unless ``storage`` names another database (e.g. PostgreSQL, shared by several
processes or machines). ``trials`` is the study's total: calling again with a larger number adds the difference.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from ..errors import DivergenceError, ValidationError
from .space import Range, apply_params, resolve_space, setting_value

logger = logging.getLogger(__name__)

DEFAULT_VALIDATION_SIZE = 0.1
INSTALL_HINT = "hf-unlearn tune needs Optuna; install it with pip install 'hf_unlearn[tune]' (or pip install optuna)"


def require_optuna() -> Any:
    """``optuna``, or a one-line `ValidationError` that names the extra to install."""
    try:
        import optuna
    except ImportError:
        raise ValidationError(INSTALL_HINT + ".") from None
    return optuna


def find_run(recipe: dict[str, Any], name: str | None) -> dict[str, Any]:
    """The run to tune: ``name``, or the recipe's only run."""
    runs = recipe["unlearn"]["runs"]
    names = [run["name"] for run in runs]
    if name is None:
        if len(runs) == 1:
            return runs[0]
        raise ValidationError(f"tune: the recipe has {len(runs)} runs; name one with --run ({', '.join(names)}).")
    for run in runs:
        if run["name"] == name:
            return run
    raise ValidationError(f"tune --run {name}: the recipe has no run named {name!r}; its runs: {', '.join(names)}.")


def tuning_recipes(recipe: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(subfolder, one-seed recipe) pairs the study trains its shared stages with: one per seed of ``seeds`` (else
    the recipe's seed, at the top of the folder), each with a validation split (and its reference, if any)."""
    base = copy.deepcopy(recipe)
    if base["data"].get("validation_size") is None:  # used only when the source has no validation split of its own
        base["data"]["validation_size"] = (recipe.get("tune") or {}).get("validation_size") or DEFAULT_VALIDATION_SIZE
    seeds = base.pop("seeds", None)
    base.pop("analysis", None)  # the analysis section is run's business, not tuning's
    if not seeds:
        return [("", base)]
    return [(f"seed-{seed}", {**copy.deepcopy(base), "seed": int(seed)}) for seed in seeds]


def suggest(trial: Any, name: str, span: Range) -> Any:
    if span.integer:
        return trial.suggest_int(name, int(span.low), int(span.high), log=span.log)
    return trial.suggest_float(name, span.low, span.high, log=span.log)


def recipe_params(settings: dict[str, Any], space: dict[str, Range]) -> dict[str, Any]:
    """Trial 0: the run's own value of every searched setting (the arguments' default when the run has none)."""
    from ..registry import method_spec
    from .space import ALIASES

    fields = method_spec(settings["method"]).config.__dataclass_fields__
    params = {}
    for name in space:
        value = setting_value(settings, name)
        params[name] = value if value is not None else fields[ALIASES.get(name, name)].default
    return params


def plan_study(
    recipe: dict[str, Any], run_name: str | None, trials: int
) -> tuple[dict, dict[str, Range], list[tuple[str, dict]]]:
    """(the run, its space, the tuning recipe): every refusal before anything is written or trained."""
    if trials < 1:
        raise ValidationError(f"tune --trials: expected at least 1 trial, got {trials}.")
    run = find_run(recipe, run_name)
    space = resolve_space(run["method"], run.get("sharpness", "none"), (recipe.get("tune") or {}).get("space"))
    return run, space, tuning_recipes(recipe)


def run_study(
    recipe: dict[str, Any],
    run_name: str | None,
    trials: int,
    output_dir: Path,
    *,
    storage: str | None = None,
    use_cpu: bool = False,
) -> dict[str, Any]:
    """Run the study to ``trials`` trials in all and write tuning.json, the plots and best.yaml to ``output_dir``.

    With several forget sets and/or ``seeds`` the objective is the mean ToW over every (seed, forget set)."""
    require_optuna()
    run, space, tuned = plan_study(recipe, run_name, trials)
    output_dir = Path(output_dir)
    storage = storage or f"sqlite:///{(output_dir / 'study.db').resolve()}"
    identity = study_identity(tuned, run, space)

    from .adapter import shared_stages
    from .objective import objective_of

    output_dir.mkdir(parents=True, exist_ok=True)  # the default SQLite file lives here
    study_name = f"{recipe['name']}-{run['name']}"
    study, new = open_study(study_name, storage, identity, seed=int(recipe["seed"]), space=space)
    contexts = []  # after the study is known to match: the shared stages of every seed and forget set
    for folder, one_seed in tuned:
        label = f"{folder}/" if folder else ""
        contexts += shared_stages(one_seed, run, output_dir / folder, use_cpu=use_cpu, label=label)
    if new:
        study.enqueue_trial(recipe_params(contexts[0].settings, space), skip_if_exists=True)
    optimize(study, contexts, space, trials)
    for folder, _ in tuned:  # trials save nothing; the Trainer made their output folders
        for path in (output_dir / folder).glob(f"**/checkpoints/tune-{run['name']}"):
            shutil.rmtree(path, ignore_errors=True)
    result = summarize(study, recipe, run, space, contexts, objective_of(recipe))
    result["warnings"] = reference_free_warnings(contexts)
    for warning in result["warnings"]:
        logger.warning("tune: %s", warning)
    write_outputs(study, result, recipe, run, output_dir)
    return result


def open_study(name: str, storage: str, identity: str, *, seed: int, space: dict[str, Range]) -> tuple[Any, bool]:
    """The study ``name`` in ``storage`` (created when missing) with a seeded TPE sampler and median pruning, and
    whether it is new; a study started with another recipe, run or space (``identity``) is refused."""
    optuna = require_optuna()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        probe = optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True)
    except ImportError as error:  # optuna's RDB storage without the database's driver
        scheme = storage.split(":", 1)[0]  # not the URL: it may hold a password
        raise ValidationError(
            f"tune --storage: optuna cannot open a {scheme!r} database here ({error}). Install its driver (for "
            "PostgreSQL `pip install 'psycopg[binary]'`, for MySQL `pip install pymysql` with mysql+pymysql://) or "
            "leave --storage out for SQLite in the output folder."
        ) from error
    known = probe.user_attrs.get("identity")
    if known is None:
        probe.set_user_attr("identity", identity)
        probe.set_user_attr("space", {k: asdict(v) for k, v in space.items()})
    elif known != identity:
        raise ValidationError(
            f"tune: the study {name!r} in {storage} was started with another recipe, run or space; tune into "
            "a new --output-dir (or --storage), or restore the settings it was started with."
        )
    study = optuna.load_study(
        study_name=name,
        storage=storage,
        # Seeded from the recipe's seed and the trials so far: a resumed study draws new points, reproducibly.
        sampler=optuna.samplers.TPESampler(seed=seed + len(probe.trials)),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1),
    )
    return study, not probe.trials


def search(contexts: list[Any], space: dict[str, Range], trials: int, *, name: str, storage: str, seed: int) -> Any:
    """A study over ``contexts`` (`hf_unlearn.tune.adapter.shared_stages`) to ``trials`` trials; trial 0 is their
    run's settings. For callers that build their own contexts (benchmarks/claims.py)."""
    identity = hashlib.sha256(
        json.dumps([[c.name, c.settings] for c in contexts], sort_keys=True, default=str).encode()
    ).hexdigest()
    study, new = open_study(name, storage, identity, seed=seed, space=space)
    if new:
        study.enqueue_trial(recipe_params(contexts[0].settings, space), skip_if_exists=True)
    optimize(study, contexts, space, trials)
    return study


def optimize(study: Any, contexts: list[Any], space: dict[str, Range], trials: int) -> None:
    """Add trials until the study has ``trials`` finished ones (complete or pruned, from any process).

    One context (seed and forget set): the objective is reported at every epoch's end and pruned there. Several:
    each trial trains them in turn, the running mean is reported after each, and pruning compares those means."""
    import optuna

    from .adapter import trial_trainer
    from .objective import EpochObjective

    def objective(trial: Any) -> float:
        params = {name: suggest(trial, name, span) for name, span in space.items()}
        values, accuracy, seconds = [], [], 0.0
        for index, shared in enumerate(contexts):
            score = EpochObjective(trial, shared, report=len(contexts) == 1)
            trainer = trial_trainer(shared, apply_params(shared.settings, params), [score])
            start = time.perf_counter()
            try:
                trainer.train()
                values.append(score.values[-1])
            except DivergenceError as error:  # scored as ToW 0, as benchmarks/claims.py scores a diverged run
                trial.set_user_attr("diverged", f"{shared.name}: {error}")
                values.append(0.0)
            seconds += time.perf_counter() - start
            accuracy.append(score.last)
            trial.set_user_attr("seconds", round(seconds, 3))
            if score.pruned:
                raise optuna.TrialPruned(f"ToW {score.values[-1]:.4f} after epoch {len(score.values)}")
            if len(contexts) > 1:
                trial.report(sum(values) / len(values), step=index + 1)
                if index + 1 < len(contexts) and trial.should_prune():
                    raise optuna.TrialPruned(f"mean ToW {sum(values) / len(values):.4f} after {index + 1} sets")
        trial.set_user_attr("accuracy", accuracy[0] if len(contexts) == 1 else accuracy)
        if len(contexts) > 1:
            trial.set_user_attr("values", dict(zip([c.name for c in contexts], values, strict=True)))
        return sum(values) / len(values)

    # Complete and pruned trials count; a failed one (or one left running by a killed process) does not.
    counted = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    missing = trials - sum(t.state in counted for t in study.trials)
    if missing > 0:
        study.optimize(objective, n_trials=missing, callbacks=[optuna.study.MaxTrialsCallback(trials, counted)])


def study_identity(tuned: list[tuple[str, dict[str, Any]]], run: dict[str, Any], space: dict[str, Range]) -> str:
    """What a study's trials mean: the recipes (less their tune section and other runs), the run and the space."""
    recipes = [
        {**{k: v for k, v in one.items() if k not in ("tune", "unlearn", "hub", "name")}, "folder": folder}
        for folder, one in tuned
    ]
    inputs = {"recipes": recipes, "unlearn": {"defaults": tuned[0][1]["unlearn"]["defaults"], "run": run}}
    inputs["space"] = {k: asdict(v) for k, v in space.items()}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


def best_trial(study: Any) -> Any:
    """The complete trial with the highest value (the earliest on a tie); a pruned trial's value (Optuna keeps its
    last intermediate value) never counts: it did not finish its epochs."""
    import optuna

    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    return max(complete, key=lambda t: (t.value, -t.number)) if complete else None


def summarize(
    study: Any, recipe: dict[str, Any], run: dict[str, Any], space: dict[str, Range], contexts, objective
) -> dict[str, Any]:
    trials = [
        {
            "number": t.number,
            "params": t.params,
            "value": t.value if t.state.name == "COMPLETE" else None,  # a pruned trial did not finish its epochs
            "state": t.state.name.lower(),
            "intermediate": [t.intermediate_values[k] for k in sorted(t.intermediate_values)],
            **{k: t.user_attrs[k] for k in ("values", "accuracy", "seconds", "diverged") if k in t.user_attrs},
        }
        for t in study.trials
    ]
    best = best_trial(study)
    return {
        "run": run["name"],
        "method": run["method"],
        "recipe": recipe["name"],
        "objective": dict(objective),
        # The reference's accuracies (one seed and forget set), else per "seed-<s>/<forget set>"; None without one.
        "reference": contexts[0].reference if len(contexts) == 1 else {c.name: c.reference for c in contexts},
        **({"target": per_context(contexts, lambda c: c.target.as_dict())} if contexts[0].target else {}),
        "space": {k: asdict(v) for k, v in space.items()},
        "study": study.study_name,
        "trials": trials,
        "best": None if best is None else {"number": best.number, "params": best.params, "value": best.value},
    }


def per_context(contexts: list[Any], value: Any) -> Any:
    """``value(context)`` for one context, else ``{context name: value}``."""
    return value(contexts[0]) if len(contexts) == 1 else {c.name: value(c) for c in contexts}


def reference_free_warnings(contexts: list[Any]) -> list[str]:
    """Where the reference-free objective's held-out level may be a training level (docs/tuning.md)."""
    warnings = []
    for c in contexts:
        carved = str(c.splits.prepared.description.get("validation") or "").startswith("carved")
        if c.target is not None and c.target.difficulty == "confidence" and carved:
            warnings.append(
                f"{c.name or 'the forget set'}: the original was not trained by this recipe and the validation split "
                "was carved from its training data: if the model trained on those images, the held-out level is a "
                "training level and the objective under-forgets. Give the source a validation split the model never "
                "saw (data.validation_split)."
            )
            break  # once: the same data for every forget set
    return warnings


def best_recipe(recipe: dict[str, Any], run: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The user's recipe (its own data: no tuning validation split) with the tuned run alone, its settings replaced
    by ``params``, under a name of its own (``<name>-tuned-<run>``): `hf-unlearn run best.yaml` then writes to
    ``runs/<that name>``, never over the recipe's own run, and trains no run that was not tuned."""
    from ..registry import method_settings

    out = copy.deepcopy(recipe)
    tuned = next(r for r in out["unlearn"]["runs"] if r["name"] == run["name"])
    out["name"] = f"{recipe['name']}-tuned-{run['name']}"[:100]
    out["unlearn"]["runs"] = [apply_params(tuned, params)]
    # A default only the other runs' methods read would now be refused (a setting no run reads).
    out["unlearn"]["defaults"] = method_settings(tuned["method"], out["unlearn"].get("defaults") or {})
    if (out.get("hub") or {}).get("run") not in (None, run["name"]):
        out["hub"]["run"] = run["name"]
    return out


def write_outputs(study: Any, result: dict[str, Any], recipe: dict[str, Any], run: dict[str, Any], out: Path) -> None:
    """tuning.json, best.yaml and the two plots, each written atomically."""
    from ..atomic import atomic_write_bytes, atomic_write_text

    result["plots"] = plots(study, out, atomic_write_bytes)
    if result["best"] is not None:
        best = best_recipe(recipe, run, result["best"]["params"])
        chosen = {"objective": result["objective"], "study": result["study"], "trial": result["best"]["number"]}
        chosen["value"] = result["best"]["value"]
        tune = dict(best.get("tune") or {})
        tune["chosen"] = {**(tune.get("chosen") or {}), run["name"]: chosen}  # the report copies it (report.py)
        best["tune"] = tune
        header = (
            f"# {recipe['name']} with the settings `hf-unlearn tune` found for run {run['name']} "
            f"(trial {result['best']['number']}, validation {result['objective']['name']} "
            f"{result['best']['value']:.4f}).\n"
        )
        atomic_write_text(out / "best.yaml", header + yaml.safe_dump(best, sort_keys=False))
    atomic_write_text(out / "tuning.json", json.dumps(result, indent=2, default=str) + "\n")


def plots(study: Any, out: Path, write) -> dict[str, str]:
    """Optuna's optimisation history and parameter importances as PNG; a plot that cannot be drawn says why."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization.matplotlib import plot_optimization_history, plot_param_importances

    made = {}
    for filename, draw in (
        ("optimization_history.png", plot_optimization_history),
        ("param_importances.png", plot_param_importances),
    ):
        try:
            import warnings

            with warnings.catch_warnings():  # "experimental" notes of optuna's matplotlib backend
                warnings.simplefilter("ignore")
                axes = draw(study)
            buffer = io.BytesIO()
            axes.figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
            plt.close(axes.figure)
            write(out / filename, buffer.getvalue())
            made[filename] = "written"
        except (ValueError, RuntimeError, ZeroDivisionError) as error:  # e.g. importances need 2 complete trials
            made[filename] = f"not drawn: {error}"
    return made
