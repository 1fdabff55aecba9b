"""``hf-unlearn ulira [RECIPE] --run NAME --shadows K``: U-LiRA of one unlearning run (`hf_unlearn.ulira`).

Writes ``DIR/ulira.json`` (``attack_accuracy``, its interval, the settings, per pair and per target details) and
``DIR/ulira.md``. ``DIR/target/`` holds the recipe's data split, forget set (manifest.json) and, for a
``low_confidence`` set, the pretrained original that ranks it; ``DIR/shadows/<settings>/pair_<k>.npz`` one file per
finished shadow pair, so a rerun resumes. Light at import: torch loads when the command runs.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .cli_shadows import add_worker_options

logger = logging.getLogger(__name__)


def add_ulira_parser(commands: Any, add_recipe_options: Callable) -> None:
    ulira = commands.add_parser(
        "ulira",
        help="U-LiRA: can a per-example attack tell one run's unlearned models from retrained ones? (0.5 is ideal)",
        description="Train K shadow pairs, each an original on half of the non-forget samples plus the forget set, "
        "unlearned with the run's method on a random half of the forget set, and a model retrained without that "
        "half; fit per-example Gaussians of the unlearned and the retrained models' logit-scaled confidence and "
        "report the leave-one-pair-out attack accuracy (0.5: indistinguishable from retraining) with a 95%% "
        "bootstrap interval over pairs. Resumable: finished pairs are kept. See docs/privacy.md.",
    )
    ulira.add_argument(
        "recipe", nargs="?", default="digits", help="YAML recipe or built-in name (default: %(default)s)."
    )
    ulira.add_argument("--run", required=True, help="The unlearning run to judge (its name, e.g. neggrad).")
    ulira.add_argument("--shadows", "-K", type=int, required=True, help="K, the number of shadow pairs (>= 4).")
    ulira.add_argument(
        "--output-dir", type=Path, default=None, help="Output folder (default: runs/<recipe name>-ulira-<run>)."
    )
    ulira.add_argument("--forget", default=None, help="Which forget set, when the recipe has several (its name).")
    ulira.add_argument(
        "--fixed-variance",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="One variance for all targets (default: on below 64 pairs, where per-target variances are noisy).",
    )
    add_worker_options(ulira, add_recipe_options, "pretrain.epochs=10", models="pairs")


def prepared_recipe(recipe: dict[str, Any], forget: str | None) -> dict[str, Any]:
    """One seed (the first of ``seeds``) and one forget set (``--forget``, needed when the recipe has several)."""
    from .errors import ValidationError, did_you_mean
    from .seeds import seed_recipe

    seeds = recipe.get("seeds")
    out = seed_recipe(recipe, seeds[0] if seeds else recipe["seed"])
    out.pop("analysis", None)
    if isinstance(out["forget"], list):
        names = [spec["name"] for spec in out["forget"]]
        if forget not in names:
            raise ValidationError(
                f"ulira --forget: the recipe has {len(names)} forget sets ({', '.join(names)}); name one with --forget."
                + (did_you_mean(forget, names) if forget else "")
            )
        out["forget"] = next(spec for spec in out["forget"] if spec["name"] == forget)
    elif forget is not None and forget != out["forget"]["name"]:
        raise ValidationError(f"ulira --forget {forget}: the recipe's only forget set is {out['forget']['name']!r}.")
    return out


def check_output_dir(output_dir: Path) -> None:
    """Refuse a folder that holds another command's outputs (a run, a study): ulira writes next to nothing else."""
    from .errors import ValidationError

    taken = [name for name in ("report.json", "models", "tuning.json", "study.db") if (output_dir / name).exists()]
    if taken or any(output_dir.glob("seed-*/report.json")):
        raise ValidationError(
            f"--output-dir {output_dir}: it holds the outputs of another command ({', '.join(taken) or 'seed-<s>/'}); "
            "ulira writes DIR/ulira.json, DIR/ulira.md, DIR/target/ and DIR/shadows/: choose another folder, e.g. "
            "runs/<name>-ulira."
        )


@contextlib.contextmanager
def waiting_lock(folder: Path, what: str, poll_seconds: float = 2.0) -> Iterator[None]:
    """``folder``'s lock, waiting while another shard holds it (it builds the same target set)."""
    from .lock import FolderLock, FolderLockedError

    lock = FolderLock(folder, what)
    while True:
        try:
            lock.acquire()
            break
        except FolderLockedError:
            logger.info("%s: waiting for another ulira shard to build the target set", folder)
            time.sleep(poll_seconds)
    try:
        yield
    finally:
        lock.release()


def target_set(recipe: dict[str, Any], folder: Path, *, use_cpu: bool) -> tuple[Any, Any]:
    """(splits, forget-set run) of the recipe in ``folder``: the data, and the original when the forget set needs
    its learning events (``low_confidence``), exactly as ``hf-unlearn run`` builds them (reused when finished)."""
    from .errors import located
    from .pipeline import Pipeline
    from .validation import check_forget_sizes, diagnose_source

    pipeline = Pipeline(recipe, folder, use_cpu=use_cpu)
    pipeline.check()
    with waiting_lock(folder, "hf-unlearn ulira (target set)"):
        pipeline.check_existing_outputs()
        with located("data"), diagnose_source(pipeline.source_splits):
            splits = pipeline.prepare_data()
        check_forget_sizes(recipe["forget"], len(splits.train))
        if recipe["forget"]["kind"] == "low_confidence":
            pipeline.original_model(splits)
        with located("forget"):
            run = pipeline.forget_set(splits)
    return splits, run


def summary(pairs: Any, arrays: dict[str, Any], splits: Any, *, fixed_variance: bool) -> dict[str, Any]:
    """ulira.json's contents from the stacked pair arrays."""
    import numpy as np

    from .environment import environment
    from .ulira import BOOTSTRAP_SAMPLES, FORMAT, attack_result

    forgotten = arrays["forgotten"].astype(bool)
    attack = attack_result(
        arrays["unlearned"], arrays["retrained"], forgotten, fixed_variance=fixed_variance, seed=pairs.seed
    )
    baseline = attack_result(
        arrays["original"], arrays["retrained"], forgotten, fixed_variance=fixed_variance, seed=pairs.seed
    )
    counts = attack.pop("counts")
    baseline.pop("counts")

    def forget_accuracy(name: str) -> list[float]:
        return [float(arrays[f"{name}_correct"][k][forgotten[k]].mean()) for k in range(len(forgotten))]

    accuracies = {name: forget_accuracy(name) for name in ("original", "unlearned", "retrained")}
    per_pair = [
        {
            "k": k,
            "attack_accuracy": float(counts["correct"][k] / counts["calls"][k]) if counts["calls"][k] else None,
            "calls": int(counts["calls"][k]),
            "forget_accuracy": {name: accuracies[name][k] for name in accuracies},
            "wall_seconds": round(float(arrays["wall_seconds"][k]), 3),
        }
        for k in range(len(forgotten))
    ]
    rows = splits.train_rows[pairs.targets]
    with np.errstate(invalid="ignore", divide="ignore"):
        per_target = counts["target_correct"] / counts["target_calls"]
    return {
        "format": FORMAT,
        "recipe": pairs.recipe["name"],
        "run": pairs.run["name"],
        "method": pairs.run["method"],
        "attack_accuracy": attack["accuracy"],
        "attack_accuracy_interval": attack["interval"],
        "interval": f"95% percentile bootstrap over shadow pairs ({BOOTSTRAP_SAMPLES} resamples)",
        "auc": attack["auc"],
        "tpr_at_fpr": attack["tpr_at_fpr"],
        "calls": attack["calls"],
        "original_attack_accuracy": baseline["accuracy"],
        "original_attack_accuracy_interval": baseline["interval"],
        "original_auc": baseline["auc"],
        "shadows": pairs.num_shadows,
        "fixed_variance": fixed_variance,
        "targets": {
            "forget_set": pairs.recipe["forget"]["name"],
            "kind": pairs.recipe["forget"]["kind"],
            "size": len(pairs.targets),
            "forgotten_per_pair": sorted({int(n) for n in forgotten.sum(axis=1)}),
            "pool_size": len(pairs.pool),
            "views": int(arrays["unlearned"].shape[-1]),
        },
        "mean_forget_accuracy": {name: float(np.mean(values)) for name, values in accuracies.items()},
        "per_pair": per_pair,
        "per_target": {
            "row": [int(r) for r in rows],
            "calls": [int(c) for c in counts["target_calls"]],
            "attack_accuracy": [None if np.isnan(a) else round(float(a), 4) for a in per_target],
        },
        "settings": pairs.describe(),
        "environment": environment(),
    }


def markdown(result: dict[str, Any]) -> str:
    """The verdict in a few lines (the output folder's Markdown summary)."""
    low, high = result["attack_accuracy_interval"]
    base_low, base_high = result["original_attack_accuracy_interval"]
    targets = result["targets"]
    acc = result["mean_forget_accuracy"]
    return "\n".join(
        [
            f"# U-LiRA: {result['run']} ({result['method']}) on {result['recipe']}",
            "",
            f"**Attack accuracy {result['attack_accuracy']:.3f} [{low:.3f}, {high:.3f}]** (95% bootstrap over "
            f"{result['shadows']} shadow pairs; 0.5 = indistinguishable from retraining, the ideal; "
            f"{result['calls']} calls).",
            "",
            "| attack on | accuracy [95% interval] | per-example AUC |",
            "|---|---|---|",
            f"| {result['run']} vs retrained | {result['attack_accuracy']:.3f} [{low:.3f}, {high:.3f}] "
            f"| {result['auc']:.3f} |",
            f"| original (no unlearning) vs retrained | {result['original_attack_accuracy']:.3f} "
            f"[{base_low:.3f}, {base_high:.3f}] | {result['original_auc']:.3f} |",
            "",
            f"- targets: the forget set {targets['forget_set']!r} ({targets['kind']}, {targets['size']} samples); each "
            f"pair trains on half of the other {targets['pool_size'] - targets['size']} training samples plus the "
            f"targets and forgets {'-'.join(map(str, targets['forgotten_per_pair']))} of them; {targets['views']} view(s) per target",
            f"- accuracy on the forgotten targets, mean over pairs: original {acc['original']:.3f}, "
            f"{result['run']} {acc['unlearned']:.3f}, retrained {acc['retrained']:.3f}",
            f"- TPR at 1% / 0.1% FPR of the log-ratio: {result['tpr_at_fpr']['0.01']:.3f} / "
            f"{result['tpr_at_fpr']['0.001']:.3f}",
            f"- Gaussians: {'one variance for all targets' if result['fixed_variance'] else 'per-target variance'}; "
            "each call fitted on the other pairs (leave one pair out)",
            "",
            "How to read it and what it does not prove: docs/privacy.md.",
            "",
        ]
    )


def ulira_command(args: argparse.Namespace) -> int:
    from .atomic import atomic_write_json, atomic_write_text
    from .console import quiet_library_bars
    from .lock import LOCK_NAME, FolderLock
    from .memorization import parse_shard
    from .recipe import load_recipe
    from .tidy import removing_empty_folders
    from .ulira import FIXED_VARIANCE_BELOW, ShadowPairs, check_setting, find_run

    quiet_library_bars()
    start = time.perf_counter()
    shard = parse_shard(args.shard)
    recipe = prepared_recipe(load_recipe(args.recipe, args.overrides), args.forget)
    run = find_run(recipe, args.run)  # a bad name, K or run fails before any folder exists
    check_setting(recipe, run, args.shadows)
    output_dir = args.output_dir or Path("runs") / f"{recipe['name']}-ulira-{run['name']}"
    check_output_dir(output_dir)
    fixed = args.fixed_variance if args.fixed_variance is not None else args.shadows < FIXED_VARIANCE_BELOW
    # One command per folder; shards of one command each take their own lock (their pairs are locked one by one).
    name = LOCK_NAME if shard == (0, 1) else f".hf_unlearn.shard-{shard[0]}-of-{shard[1]}.lock"
    lock = FolderLock(output_dir, "hf-unlearn ulira", name=name)
    try:
        with removing_empty_folders(output_dir), lock:
            splits, target = target_set(recipe, output_dir / "target", use_cpu=args.cpu)
            pairs = ShadowPairs(
                recipe,
                run,
                splits.train,
                splits.class_names,
                target.splits.manifest.forget_indices,
                num_shadows=args.shadows,
                work_dir=output_dir / "shadows",
                use_cpu=args.cpu,
            )
            trained = pairs.run_pairs(shard, progress=not args.no_progress)
            missing = pairs.missing()
            if missing:
                print(
                    f"Trained {trained} shadow pairs of shard {args.shard}; {len(missing)} of {args.shadows} pairs "
                    "are still missing (other shards): ulira.json is written by the command that finds all of them."
                )
                return 0
            result = summary(pairs, pairs.load(), splits, fixed_variance=fixed)
            result["wall_seconds_this_run"] = round(time.perf_counter() - start, 3)
            result["trained_this_run"] = trained
            atomic_write_json(output_dir / "ulira.json", result)
            atomic_write_text(output_dir / "ulira.md", markdown(result))
    except KeyboardInterrupt:
        print(
            "hf-unlearn: interrupted. Finished shadow pairs are kept: rerun the same command to resume.",
            file=sys.stderr,
        )
        return 130
    low, high = result["attack_accuracy_interval"]
    print(
        f"U-LiRA {run['name']}: attack accuracy {result['attack_accuracy']:.3f} [{low:.3f}, {high:.3f}] over "
        f"{args.shadows} shadow pairs (0.5 is ideal; not unlearning at all scores {result['original_attack_accuracy']:.3f})."
    )
    print(f"Wrote {output_dir}/ulira.json and {output_dir}/ulira.md in {time.perf_counter() - start:.1f} s.")
    return 0
