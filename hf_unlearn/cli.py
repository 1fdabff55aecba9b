"""Command line: ``hf-unlearn run [RECIPE] [--output-dir DIR] [--set key=value ...]``."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

DEFAULT_RECIPE = "digits"


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
        "recipe", nargs="?", default=DEFAULT_RECIPE,
        help="Path of a YAML recipe, or the name of a built-in one (default: %(default)s, the embedded digits run).",
    )
    run.add_argument("--output-dir", type=Path, default=None, help="Output folder (default: runs/<recipe name>).")
    run.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="Override a recipe key, e.g. --set pretrain.epochs=5 or --set unlearn.runs.neggrad.alpha=0.9 "
        "(repeatable; values are parsed as YAML).",
    )
    run.add_argument("--force", action="store_true", help="Redo finished stages instead of reusing them.")
    run.add_argument("--cpu", action="store_true", help="Run on the CPU even when a GPU is available.")
    return parser


def run_command(args: argparse.Namespace) -> int:
    from .pipeline import Pipeline
    from .recipe import load_recipe
    from .report import format_table

    recipe = load_recipe(args.recipe, args.overrides)
    output_dir = args.output_dir or Path("runs") / recipe["name"]
    start = time.perf_counter()
    report = Pipeline(recipe, output_dir, force=args.force, use_cpu=args.cpu).run()
    print(format_table(report))
    print(f"\nWrote {output_dir / 'report.json'}, report.md and the plot in {time.perf_counter() - start:.1f} s.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from .recipe import RecipeError

    try:
        if args.command == "run":
            return run_command(args)
    except RecipeError as error:
        print(f"hf-unlearn: error: {error}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
