"""``hf-unlearn shadows [RECIPE]``: train LiRA's shadow models of a recipe on their own (`hf_unlearn.shadows`), and
``hf-unlearn shadows-merge``: gather shards trained on other machines into one folder. A run whose recipe sets
``evaluation.lira: {shadows: K, path: DIR}`` then reads them instead of training them. Light at import."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path


def add_worker_options(
    parser: argparse.ArgumentParser, add_recipe_options, example: str, models: str = "models"
) -> None:
    """The options of a command that trains many models as independent workers: ``--shard I/N``, the recipe options
    (``add_recipe_options``, hf_unlearn.cli) and ``--no-progress``."""
    parser.add_argument(
        "--shard", default=None, metavar="I/N", help=f"Train only shard I of N ({models} k with k %% N == I)."
    )
    add_recipe_options(parser, example)
    parser.add_argument("--no-progress", action="store_true", help="No progress bar.")


def add_shadows_parsers(commands, add_recipe_options) -> None:
    """``shadows`` and ``shadows-merge``; ``add_recipe_options`` adds ``--set`` and ``--cpu`` (hf_unlearn.cli)."""
    shadows = commands.add_parser(
        "shadows",
        help="Train a recipe's LiRA shadow models (on the training pool plus the test split), resumably.",
        description="Train K shadow models of the recipe's model with its pretraining settings, each on the training "
        "pool plus the test split less one fold of the test split's size (so it trains on as many samples as the "
        "recipe's models; every F consecutive shadows leave each sample out once), and record every sample's "
        "logit-scaled true-class confidence (and its mirror's when the augmentation flips images). "
        "Finished shadows are kept in --output-dir (rerun to resume); --shard I/N splits the work over processes "
        "or machines (gather their folders with shadows-merge). A recipe with evaluation.lira: {shadows: K, path: "
        "DIR} reads them. See docs/privacy.md.",
    )
    shadows.add_argument(
        "recipe", nargs="?", default="digits", help="Path of a YAML recipe, or a built-in one (default: digits)."
    )
    shadows.add_argument("--shadows", "-K", type=int, required=True, help="K, the number of shadows (>= the folds).")
    shadows.add_argument(
        "--output-dir", type=Path, default=None, help="Shadows folder (default: runs/<recipe name>/shadows)."
    )
    shadows.add_argument("--seed", type=int, default=None, help="Seed of the folds and models (default: the recipe's).")
    add_worker_options(
        shadows, add_recipe_options, "pretrain.epochs=5 (a run reuses the shadows when its recipe says the same)"
    )
    merge = commands.add_parser(
        "shadows-merge",
        help="Gather shadow folders trained as shards (on other machines) into one folder.",
        description="Copy the shadow models of each FOLDER (written by hf-unlearn shadows --shard I/N) into "
        "--output-dir; models already there are kept.",
    )
    merge.add_argument("folders", nargs="+", type=Path, help="Shadow folders (each an --output-dir of a shard).")
    merge.add_argument("--output-dir", type=Path, required=True, help="Folder to gather them in.")


def shadows_command(args: argparse.Namespace) -> int:
    if args.command == "shadows-merge":
        return merge_command(args)
    from .subsets import detach_from_launcher, parse_shard

    rank, world = detach_from_launcher()  # launched processes share the models, each as its own worker
    import json

    from .atomic import atomic_write_json
    from .recipe import load_recipe
    from .shadows import ShadowModels
    from .steps.plan import original_plan

    recipe = load_recipe(args.recipe, args.overrides)
    output_dir = args.output_dir or Path("runs") / recipe["name"] / "shadows"
    seed = int(recipe["seed"]) if args.seed is None else args.seed
    start = time.perf_counter()
    models = ShadowModels(
        recipe,
        original_plan(recipe).settings,  # as the pipeline's shadows: like the original
        num_models=args.shadows,
        work_dir=output_dir,
        seed=seed,
        shard=parse_shard(args.shard),
        use_cpu=args.cpu,
        progress=not args.no_progress,
        rank=rank,
        world_size=world,
        eval_batch_size=recipe["evaluation"]["batch_size"],
    )
    trained = models.train()
    if rank != 0:
        return 0
    models.wait_for_shard()
    description = models.describe()
    atomic_write_json(models.model_dir / "shadows.json", json.loads(json.dumps(description, default=str)))
    state = (
        "all of them"
        if description["trained"] == models.num_models
        else f"{description['trained']} of {models.num_models} so far (the other shards train the rest; gather "
        "shards from other machines with shadows-merge)"
    )
    print(
        f"Shadows in {models.model_dir}: {state}, {trained} trained in {time.perf_counter() - start:.1f} s; "
        f"{models.n} samples, {models.views} view(s), seed {seed}. Use them with evaluation.lira: "
        f"{{shadows: {models.num_models}, path: {output_dir}}}."
    )
    return 0


def merge_command(args: argparse.Namespace) -> int:
    """Copy every ``<fingerprint>/model_*.npz`` of the folders into ``--output-dir`` (models there are kept)."""
    import numpy as np

    copied = kept = 0
    for folder in args.folders:
        files = sorted(folder.glob("*/model_*.npz"))
        if not files:
            print(
                f"hf-unlearn shadows-merge: error: {folder} holds no shadow models (<folder>/*/model_*.npz).",
                file=sys.stderr,
            )
            return 2
        for path in files:
            with np.load(path, allow_pickle=False) as data:
                if not str(data["fingerprint"]).startswith(path.parent.name):
                    print(f"hf-unlearn shadows-merge: error: {path} is not in its settings' folder.", file=sys.stderr)
                    return 2
            target = args.output_dir / path.parent.name / path.name
            if target.exists():
                kept += 1
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target.with_suffix(".part"))
            target.with_suffix(".part").replace(target)  # atomic: a reader never sees half a file
            copied += 1
    print(f"Gathered shadows in {args.output_dir}: {copied} copied, {kept} already there.")
    return 0
