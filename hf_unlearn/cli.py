"""Command line: ``hf-unlearn run [RECIPE] [--output-dir DIR] [--set key=value ...]``."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
import time
from pathlib import Path

from .cli_push import add_push_parser, push_command  # light: the Hub client loads when it runs
from .cli_shadows import add_shadows_parsers, add_worker_options, shadows_command  # light: torch loads when they run
from .cli_ulira import add_ulira_parser, ulira_command  # light: torch loads when it runs
from .environment import add_env_parser, env_command  # light: no torch until `hf-unlearn env` runs
from .evaluate_folder import add_evaluate_parser, evaluate_command  # light: torch loads when it runs

DEFAULT_RECIPE = "digits"
# What a rerun of an interrupted command does (Ctrl-C).
RESUME_HINT = {
    "run": "Finished stages are kept: rerun the same command to resume from the last checkpoint.",
    "memorization": "Finished models are kept: rerun the same command to resume.",
    "shadows": "Finished shadows are kept: rerun the same command to resume.",
    "tune": "Finished trials are kept in the study: rerun the same command to resume it.",
}


def add_recipe_options(parser: argparse.ArgumentParser, example: str = "pretrain.epochs=5") -> None:
    """The options every command that reads a recipe shares: ``--set KEY=VALUE``, ``--cpu`` and ``--plugin``."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"Override a recipe key, e.g. --set {example} (repeatable; values are parsed as YAML).",
    )
    parser.add_argument("--cpu", action="store_true", help="Run on the CPU even when a GPU is available.")
    parser.add_argument(
        "--plugin",
        dest="plugins",
        action="append",
        default=[],
        metavar="MODULE",
        help="Import MODULE first, a module that registers a method (register_method), found on the Python path or "
        "in the current folder (repeatable). Installed packages' methods need no flag: see docs/methods.md.",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-unlearn", description="Sharpness-aware machine unlearning for Hugging Face image classifiers."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run",
        help="Run a recipe: pretrain, retrain the reference, unlearn, evaluate and report.",
        description="Run a YAML recipe end to end and write report.json, report.md and a plot to the output folder.",
    )
    run.add_argument(
        "recipe",
        nargs="?",
        default=DEFAULT_RECIPE,
        help="Path of a YAML recipe, or the name of a built-in one (default: %(default)s, the embedded digits run).",
    )
    run.add_argument("--output-dir", type=Path, default=None, help="Output folder (default: runs/<recipe name>).")
    add_recipe_options(run, "pretrain.epochs=5 or --set unlearn.runs.neggrad.alpha=0.9")
    run.add_argument("--force", action="store_true", help="Redo finished stages instead of reusing them.")
    add_evaluate_parser(commands, add_recipe_options)
    add_tune_parser(commands)
    add_shadows_parsers(commands, add_recipe_options)
    add_push_parser(commands)
    add_memorization_parsers(commands)
    add_ulira_parser(commands, add_recipe_options)
    verify = commands.add_parser(
        "verify",
        help="Check that a list of samples is the forget set a run's report and model card committed to.",
        description="Recompute the HMAC-SHA256 commitment of a list of forgotten samples (positions in the training "
        "split, as in the run's manifest.json) with the key in the run's private manifest, and compare it with the "
        "published commitment (report.json, or --commitment from a model card). Exit 0: the list is the committed "
        "forget set; exit 1: it is not. See docs/reliability.md.",
    )
    verify.add_argument("run_dir", type=Path, help="Folder of the run (holds manifest.json and report.json).")
    verify.add_argument("--ids", type=Path, required=True, help="The list: .txt / .csv (one per line), .json, .npy.")
    verify.add_argument("--commitment", default=None, help="The published value (default: report.json's).")
    add_env_parser(commands)
    return parser


def add_tune_parser(commands) -> None:
    tune = commands.add_parser(
        "tune",
        help="Tune one unlearning run's settings with Optuna (validation objective; the test split is never read).",
        description="An Optuna study (seeded TPE, median pruning per epoch) over the run's search space "
        "(hf_unlearn.tune.space, narrowed by the recipe's tune.space). The original and the reference are trained "
        "once; trial 0 is the run's own settings; the objective is ToW on retain, forget and a validation split "
        "(with retrain: false, the reference-free objective: a target estimated from the original). "
        "Writes DIR/tuning.json, the optimisation-history and parameter-importance plots and DIR/best.yaml. "
        "--trials counts the whole study: calling again with more trials resumes it. See docs/tuning.md.",
    )
    tune.add_argument(
        "recipe", nargs="?", default=DEFAULT_RECIPE, help="YAML recipe or built-in name (default: %(default)s)."
    )
    tune.add_argument("--run", default=None, help="The run to tune (its name; default: the recipe's only run).")
    tune.add_argument(
        "--trials", type=int, required=True, help="Trials in the study in all (resumes when it has some)."
    )
    tune.add_argument(
        "--output-dir", type=Path, default=None, help="Output folder (default: runs/<recipe name>-tune-<run>)."
    )
    tune.add_argument(
        "--storage",
        default=None,
        help="Optuna database URL shared by several processes or machines, e.g. postgresql://user@host/db "
        "(default: sqlite in the output folder).",
    )
    add_recipe_options(tune, "tune.space.alpha=[0.9,0.99]")


def tune_command(args: argparse.Namespace) -> int:
    from .tune.study import require_optuna

    require_optuna()  # before the recipe and the heavy imports: one line naming the extra to install
    from .lock import run_lock
    from .pipeline import Pipeline
    from .recipe import load_recipe
    from .tidy import removing_empty_folders
    from .tune.study import plan_study, run_study

    recipe = load_recipe(args.recipe, args.overrides)
    output_dir = args.output_dir or Path("runs") / f"{recipe['name']}-tune-{args.run or 'run'}"
    _, _, tuned = plan_study(recipe, args.run, args.trials)  # a bad run name or space fails before any folder exists
    for _, one_seed in tuned:
        Pipeline(one_seed, output_dir, use_cpu=args.cpu).check()
    start = time.perf_counter()
    with removing_empty_folders(output_dir), run_lock(output_dir, use_cpu=args.cpu, what="hf-unlearn tune"):
        result = run_study(recipe, args.run, args.trials, output_dir, storage=args.storage, use_cpu=args.cpu)
    from .console import format_settings

    label = "ToW" if result["objective"]["name"] == "tow" else result["objective"]["name"]
    for trial in result["trials"]:  # 4 significant digits on screen; tuning.json keeps the exact values
        value = "—" if trial["value"] is None else f"{trial['value']:.4f}"
        print(f"trial {trial['number']:3d}  {trial['state']:8s}  {label} {value}  {format_settings(trial['params'])}")
    if result["best"] is not None:
        print(f"\nBest: trial {result['best']['number']}, validation {label} {result['best']['value']:.4f}")
    print(f"Wrote {output_dir}/tuning.json, best.yaml and the plots in {time.perf_counter() - start:.1f} s.")
    return 0


def add_memorization_parsers(commands) -> None:
    mem = commands.add_parser(
        "memorization",
        help="Estimate Feldman-Zhang memorization scores of a recipe's training data (K subset models).",
        description="Train K models of the recipe's model, each on a random subset of the training pool, with the "
        "recipe's pretraining settings, and score every sample by P(correct | in subset) - P(correct | not in "
        "subset). Resumable (finished models are kept in --work-dir); --shard I/N splits the work over processes or "
        "machines (merge with memorization-merge); under accelerate launch / torchrun the processes share the "
        "models. See docs/forget-sets.md.",
    )
    mem.add_argument("recipe", help="Path of a YAML recipe, or the name of a built-in one (its data, model, pretrain).")
    mem.add_argument("--num-models", "-K", type=int, required=True, help="K, the number of subset models.")
    mem.add_argument("--output", type=Path, required=True, help="Score file to write (.npz).")
    mem.add_argument("--subset-ratio", type=float, default=0.7, help="Fraction of the pool in each subset (0.7).")
    mem.add_argument("--seed", type=int, default=0, help="Seed of the subsets and the models (default 0).")
    mem.add_argument(
        "--epochs", type=int, default=None, help="Epochs per subset model (default: the recipe's pretrain.epochs)."
    )
    mem.add_argument("--work-dir", type=Path, default=None, help="Per-model results (default: OUTPUT.work/).")
    add_worker_options(mem, add_recipe_options, "pretrain.batch_size=128")
    merge = commands.add_parser(
        "memorization-merge",
        help="Merge the shard files of one memorization estimation into one score file.",
        description="Sum the per-sample counts of shard files written by `hf-unlearn memorization --shard I/N` "
        "(same recipe, K, ratio and seed) into one score file, equal to an unsharded run.",
    )
    merge.add_argument("shards", nargs="+", type=Path, help="Shard files.")
    merge.add_argument("--output", type=Path, required=True, help="Merged score file to write (.npz).")


def memorization_command(args: argparse.Namespace) -> int:
    from .memorization import detach_from_launcher, parse_shard

    # First, before anything touches CUDA or builds a Trainer: launched processes become independent workers.
    global _DETACHED_RANK
    rank, world = detach_from_launcher()
    _DETACHED_RANK = rank
    from .data.score_files import save_scores
    from .memorization import MemorizationEstimator
    from .recipe import load_recipe
    from .steps.plan import original_plan

    recipe = load_recipe(args.recipe, args.overrides)
    settings = dict(original_plan(recipe).settings)  # the subset models train like the original
    if args.epochs is not None:
        settings["epochs"] = args.epochs
    work_dir = args.work_dir or args.output.with_name(args.output.name + ".work")
    start = time.perf_counter()
    estimator = MemorizationEstimator(
        recipe,
        settings,
        num_models=args.num_models,
        work_dir=work_dir,
        subset_ratio=args.subset_ratio,
        seed=args.seed,
        shard=parse_shard(args.shard),
        use_cpu=args.cpu,
        progress=not args.no_progress,
        rank=rank,
        world_size=world,
        eval_batch_size=recipe["evaluation"]["batch_size"],
    )
    table = estimator.run()
    if table is None:  # not process 0: its models are saved; process 0 writes the file
        return 0
    import numpy as np

    save_scores(args.output, table)
    scores = table.scores
    defined = scores[~np.isnan(scores)]
    what = "scores" if table.metadata["complete"] else f"shard {args.shard} (merge the shards with memorization-merge)"
    print(
        f"Wrote {args.output}: {what} of {len(scores)} samples from {len(table.arrays['model_ids'])} of "
        f"{args.num_models} models in {time.perf_counter() - start:.1f} s; mean "
        f"{defined.mean() if defined.size else float('nan'):.4f}, "
        f"{int((defined > 0.5).sum())} above 0.5, {int(np.isnan(scores).sum())} undefined."
    )
    return 0


def memorization_merge_command(args: argparse.Namespace) -> int:
    from .data.score_files import save_scores
    from .memorization import merge_score_files

    table = merge_score_files(args.shards)
    save_scores(args.output, table)
    state = "complete" if table.metadata["complete"] else "still incomplete (shards missing)"
    print(f"Wrote {args.output}: {len(table.arrays['model_ids'])} of {table.metadata['num_models']} models, {state}.")
    return 0


def verify_command(args: argparse.Namespace) -> int:
    from .verify import verify

    match, commitment = verify(args.run_dir, args.ids, args.commitment)
    if match:
        print(f"Match: {args.ids} is the forget set committed to by {args.run_dir} (commitment {commitment}).")
        return 0
    print(f"No match: {args.ids} is not the forget set committed to by {args.run_dir} (commitment {commitment}).")
    return 1


# Set by `hf-unlearn memorization`, whose launched processes drop the launcher's variables (they become workers).
_DETACHED_RANK: int | None = None


def is_main_process() -> bool:
    """Process 0 of a launch (accelerate launch / torchrun set RANK), or a plain process: the one that prints."""
    if _DETACHED_RANK is not None:
        return _DETACHED_RANK == 0
    return os.environ.get("RANK", "0") == "0"


def run_command(args: argparse.Namespace) -> int:
    from .errors import PushFailedError
    from .lock import run_lock
    from .pipeline import Pipeline
    from .recipe import load_recipe
    from .tidy import removing_empty_folders

    recipe = load_recipe(args.recipe, args.overrides)
    output_dir = args.output_dir or Path("runs") / recipe["name"]
    start = time.perf_counter()
    Pipeline(recipe, output_dir, use_cpu=args.cpu).check()  # before the folder (and its lock) exists
    push_failed = None
    with removing_empty_folders(output_dir), run_lock(output_dir, use_cpu=args.cpu):  # one run per folder
        try:
            result = _run(recipe, output_dir, args)
        except PushFailedError as error:  # the run finished: print its table, then say how to push again
            result, push_failed = error.result, error
    if not is_main_process():
        return 0
    _print_results(result, output_dir, time.perf_counter() - start)
    if push_failed is not None:
        print(f"hf-unlearn: error: {push_failed}", file=sys.stderr)
        return 2
    return 0


def _run(recipe: dict, output_dir: Path, args: argparse.Namespace) -> dict:
    if recipe.get("seeds") or recipe.get("analysis"):  # several seeds / analysis section: hf_unlearn.seeds
        from .seeds import run_recipe

        return run_recipe(recipe, output_dir, force=args.force, use_cpu=args.cpu)
    from .pipeline import Pipeline

    return Pipeline(recipe, output_dir, force=args.force, use_cpu=args.cpu).run()


def _print_results(result: dict, output_dir: Path, seconds: float) -> None:
    from .report import format_table, plain_summary

    if "seeds" in result:
        from .seeds import format_aggregate

        print(format_aggregate(result))
        print(
            f"\nWrote {output_dir}/report.json (aggregate over seeds {result['seeds']}), report.md, the ToW "
            f"plot and seed-<s>/ in {seconds:.1f} s."
        )
        return
    # Several forget sets: one report per set, in a subfolder named after it (docs/forget-sets.md).
    reports = result.get("forget_sets", {None: result})
    for set_name, report in reports.items():
        if set_name is not None:
            print(f"\nForget set {set_name} ({report['forget_set']['size']} samples):")
        print(format_table(report))
        for line in plain_summary(report):
            print(line)
    where = output_dir / "report.json" if None in reports else f"{output_dir}/<forget set>/report.json"
    print(f"\nWrote {where}, report.md and the plots in {seconds:.1f} s.")
    for set_name, report in reports.items():
        for name, entry in report["models"].items():
            if entry.get("status") == "diverged":  # recorded, not fatal: the other runs finished (docs/reliability.md)
                run = name if set_name is None else f"{set_name}/{name}"
                print(
                    f"hf-unlearn: warning: run {run!r} diverged: {entry['divergence']['message']} Its report entry "
                    "has status 'diverged'.",
                    file=sys.stderr,
                )


# OSErrors that name a path the user chose (or its disk), not a bug: said in one line, like bad input.
_PATH_ERRNOS = {errno.ENOTDIR, errno.EISDIR, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EEXIST}


def main(argv: list[str] | None = None) -> int:
    global _DETACHED_RANK
    _DETACHED_RANK = None  # (main may run several times in one process: the tests)
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # hf_unlearn's lines ("Stage ...") from one process of a launch; the others keep their warnings and errors.
    logging.getLogger("hf_unlearn").setLevel(logging.NOTSET if is_main_process() else logging.WARNING)
    if args.command in ("run", "evaluate", "push", "tune"):
        from .console import quiet_library_bars

        quiet_library_bars()
    from .errors import HfUnlearnError

    try:
        if hasattr(args, "plugins"):  # a command that reads a recipe: its methods may come from plugins
            from .plugins import import_plugins, load_entry_points

            load_entry_points()
            import_plugins(args.plugins)
        if args.command == "run":
            return run_command(args)
        if args.command == "evaluate":
            return evaluate_command(args)
        if args.command == "push":
            return push_command(args)
        if args.command == "tune":
            return tune_command(args)
        if args.command == "memorization":
            return memorization_command(args)
        if args.command == "memorization-merge":
            return memorization_merge_command(args)
        if args.command in ("shadows", "shadows-merge"):
            return shadows_command(args)
        if args.command == "verify":
            return verify_command(args)
        if args.command == "ulira":
            return ulira_command(args)
        if args.command == "env":
            return env_command(args)
    except (HfUnlearnError, ValueError) as error:  # bad input (RecipeError, ValidationError ...), divergence
        if os.environ.get("HF_UNLEARN_DEBUG"):
            raise
        hint = "" if isinstance(error, HfUnlearnError) else " (set HF_UNLEARN_DEBUG=1 to see the traceback)"
        if is_main_process():  # every process of a launch reaches the same refusal; one says it
            _close_bars()
            print(f"hf-unlearn: error: {error}{hint}", file=sys.stderr)
        return 2
    except OSError as error:  # the machine refused a path: a file where a folder goes, no permission, a full disk
        if os.environ.get("HF_UNLEARN_DEBUG") or error.errno not in _PATH_ERRNOS:
            raise
        if is_main_process():
            _close_bars()
            print(
                f"hf-unlearn: error: {error.strerror}: {error.filename}. Choose a path you can write to (--output-dir) "
                "or free the one named (set HF_UNLEARN_DEBUG=1 to see the traceback).",
                file=sys.stderr,
            )
        return 2
    except KeyboardInterrupt:
        if os.environ.get("HF_UNLEARN_DEBUG"):
            raise
        if is_main_process():
            _close_bars()
            print(f"hf-unlearn: interrupted. {RESUME_HINT.get(args.command, '')}".rstrip(), file=sys.stderr)
        return 130
    return 1


def _close_bars() -> None:
    """Close the progress bars an exception left open (each stays on screen, ended by a newline), so that the
    message after it starts on a line of its own."""
    std = sys.modules.get("tqdm.std")  # not imported: no bar was ever opened
    for bar in list(getattr(getattr(std, "tqdm", None), "_instances", ())):
        bar.close()


if __name__ == "__main__":
    sys.exit(main())
