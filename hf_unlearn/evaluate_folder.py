"""``hf-unlearn evaluate``: the report of any model folder (unlearned elsewhere, or with the Python API).

The recipe gives the data, the forget set and the evaluation settings; the model folder is evaluated on retain,
forget and test with the same metrics as a pipeline run. A model inside the output folder of a ``hf-unlearn run``
(``RUN/models/<run>``, or any model with ``--run-dir RUN``) is evaluated on that run's forget set: the run's seed
(a recipe with ``seeds`` takes it), its forget set (a recipe with several takes the run's), its manifest (so the
report commits to the same forget set) and, for a ``low_confidence`` set, the learning events its pretraining
recorded; the run's original sits next to the model and its retrained reference gives ToW (unless ``--reference``
or the recipe's ``retrain.from`` names another). Otherwise the recipe's original is shown when the recipe loads one
as it is (``model.name_or_path`` with ``pretrain.epochs: 0``).

The report (report.json with an ``evaluation`` block, report.md, the plot) goes to a folder of its own: an
``--output-dir`` that holds a run's report or models is refused, never overwritten.

Only the parser is imported by the CLI at start-up; the evaluation imports torch and transformers when it runs.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ValidationError, located

# The folder a model of a run sits in: RUN/models/<run>.
MODELS = "models"
EVALUATION_KEY = "evaluation"


# ------------------------------------------------------------------------------------------------ source run
@dataclass
class SourceRun:
    """The ``hf-unlearn run`` output folder a model came from: ``folder`` holds the forget set's manifest.json and
    ``models/<run>``; ``root`` holds the shared original and the learning events (the folder itself, or its parent
    for a recipe with several forget sets)."""

    folder: Path
    root: Path
    seed: int | None
    forget_name: str | None  # the forget set's subfolder name when the run had several, else None

    @property
    def manifest(self) -> Path:
        return self.folder / "manifest.json"

    @property
    def learning_events(self) -> Path:
        return self.root / "learning_events.npy"

    def model(self, stage: str) -> Path | None:
        """``models/<stage>`` (the original at the root) when it holds a saved model."""
        path = (self.root if stage == "original" else self.folder) / MODELS / stage
        return path if (path / "config.json").is_file() else None


def _holds_original(folder: Path) -> bool:
    return (folder / "learning_events.npy").is_file() or (folder / MODELS / "original").is_dir()


def _run_seed(folder: Path, root: Path) -> int | None:
    """The seed of a run folder: its report.json's, else the ``seed-<s>`` folder name of a recipe with seeds."""
    report = folder / "report.json"
    if report.is_file():
        seed = json.loads(report.read_text(encoding="utf-8")).get("seed")
        if isinstance(seed, int):
            return seed
    match = re.fullmatch(r"seed-(\d+)", root.name)
    return int(match.group(1)) if match else None


def find_source_run(model_dir: Path, run_dir: Path | None = None) -> SourceRun | None:
    """The run folder ``run_dir`` (checked), else the one ``model_dir`` sits in (``RUN/models/<run>``), else None."""
    if run_dir is not None:
        folder = Path(run_dir)
        if not (folder / "manifest.json").is_file():
            raise ValidationError(
                f"--run-dir {folder}: no manifest.json there. Give the output folder of the `hf-unlearn run` whose "
                "forget set to use (with seeds: its seed-<s>/ folder; with several forget sets: the set's folder)."
            )
    else:
        parent = Path(model_dir).resolve().parent
        if parent.name != MODELS or not (parent.parent / "manifest.json").is_file():
            return None
        folder = parent.parent
    root = folder if _holds_original(folder) or not _holds_original(folder.parent) else folder.parent
    return SourceRun(folder, root, _run_seed(folder, root), folder.name if root != folder else None)


def recipe_for_run(recipe: dict[str, Any], source: SourceRun | None) -> dict[str, Any]:
    """The one-seed, one-forget-set recipe to evaluate with: the source run's seed and forget set, or a one-line
    `ValidationError` that says what to pass."""
    from .seeds import seed_recipe

    seeds = recipe.get("seeds")
    seed = None if source is None else source.seed
    if seeds:
        if seed is None or seed not in seeds:
            where = "the model is not in a run folder" if source is None else f"{source.folder} is seed {seed}"
            raise ValidationError(
                f"seeds: the recipe runs seeds {list(seeds)} and {where}; evaluate takes one seed: add --set "
                "seeds=null --set seed=N, or pass a model (or --run-dir) inside OUTPUT/seed-<N>/."
            )
        recipe = seed_recipe(recipe, seed)
    elif seed is not None and seed != int(recipe["seed"]):
        raise ValidationError(
            f"seed: the model's run {source.folder} used seed {seed} and the recipe's seed is {recipe['seed']} (another "
            f"split and forget set); add --set seed={seed}."
        )
    if isinstance(recipe["forget"], list):
        names = [spec["name"] for spec in recipe["forget"]]
        name = None if source is None else source.forget_name
        if name not in names:
            raise ValidationError(
                f"forget: the recipe has {len(names)} forget sets ({', '.join(names)}); evaluate takes one: pass a "
                "model (or --run-dir) inside OUTPUT/<forget set>/, or --set forget=... with one set."
            )
        recipe = {**recipe, "forget": next(spec for spec in recipe["forget"] if spec["name"] == name)}
    return recipe


def check_output_dir(output_dir: Path, source: SourceRun | None, default: Path) -> None:
    """Refuse an output folder that holds a run (its report, models or seeds): evaluate would replace its report."""
    out = Path(output_dir)
    report = out / "report.json"
    evaluated = report.is_file() and EVALUATION_KEY in json.loads(report.read_text(encoding="utf-8"))
    is_run = (
        (out / MODELS).is_dir()
        or any(out.glob("seed-*/report.json"))
        or (report.is_file() and not evaluated)
        or (source is not None and out.resolve() in (source.folder.resolve(), source.root.resolve()))
    )
    if is_run:
        raise ValidationError(
            f"--output-dir {out}: it holds a `hf-unlearn run` (report.json, models/ or seed-<s>/), whose report "
            f"evaluate would replace; evaluate writes its own report: choose another folder, e.g. {default}."
        )


def _needs_learning_events(recipe: dict[str, Any], source: SourceRun | None, model_dir: Path) -> Path | None:
    """Where a low_confidence forget set's learning events come from; a one-line error when nowhere."""
    if recipe["forget"]["kind"] != "low_confidence":
        return None
    if source is not None and source.learning_events.is_file():
        return source.learning_events
    pretrain = recipe["pretrain"]
    if not pretrain.get("epochs", pretrain.get("num_train_epochs", 1)):
        return None  # the forget set's own error says it: the original was not pretrained here
    where = f"{source.root} holds no learning_events.npy" if source else f"--model {model_dir} is not in a run folder"
    raise ValidationError(
        "forget.kind: low_confidence ranks samples by their confidence during the pretraining of the recipe's "
        f"original, which a `hf-unlearn run` records in its output folder, and {where}. Pass --run-dir RUN (the "
        "output folder of that run, e.g. runs/digits/seed-0), or evaluate on a forget set known without pretraining "
        "(--set forget.kind=random, classwise, memorization or file)."
    )


# ------------------------------------------------------------------------------------------------ evaluation
def _entry(pipeline, folder: str, splits, what: str, method: str = "unknown") -> dict[str, Any]:
    """Metrics of one model folder; method and settings from its stage.json when hf_unlearn saved it (else
    ``method``: pretrain for the original, retrain for a reference, unknown for the model evaluated)."""
    from .models import load_reference_model

    start = time.perf_counter()
    with located(what):
        model = load_reference_model(
            folder, splits.class_names, trust_remote_code=pipeline.recipe["model"]["trust_remote_code"]
        )
    stage = Path(folder) / "stage.json"
    saved = json.loads(stage.read_text(encoding="utf-8")) if stage.is_file() else {}
    metrics = pipeline.evaluate(model, splits)
    return {
        "method": saved.get("method", method),
        "sharpness": saved.get("sharpness", "none" if method != "unknown" else "unknown"),
        "hyperparameters": saved.get("hyperparameters", {}),
        "status": "finished",
        "evaluated_from": str(folder),
        **metrics,
        "wall_seconds": round(time.perf_counter() - start, 3),
    }


def evaluate_folder(
    recipe: dict[str, Any],
    model_dir: str | Path,
    output_dir: str | Path,
    *,
    reference: str | Path | None = None,
    run_dir: str | Path | None = None,
    name: str | None = None,
    use_cpu: bool = False,
) -> dict[str, Any]:
    """Evaluate ``model_dir`` on the recipe's data and forget set (the run's, when it comes from one: see the
    module docstring); writes and returns the report."""
    from transformers import set_seed

    from .pipeline import Pipeline
    from .recipe_schema import reference_kind
    from .report import assemble_report, write_report
    from .steps.forget import build_forget_set
    from .validation import check_labels

    model_dir, output_dir = Path(model_dir), Path(output_dir)
    if not (model_dir / "config.json").is_file():
        raise ValidationError(f"--model: {model_dir} holds no model (config.json missing)")
    source = find_source_run(model_dir, None if run_dir is None else Path(run_dir))
    recipe = recipe_for_run(recipe, source)
    check_output_dir(output_dir, source, Path("runs") / f"{recipe['name']}-evaluate")
    events = _needs_learning_events(recipe, source, model_dir)
    name = name or model_dir.resolve().name
    if name in ("original", "retrain"):
        name = f"{name}-model"
    pipeline = Pipeline(recipe, output_dir, use_cpu=use_cpu)
    pipeline.output_dir.mkdir(parents=True, exist_ok=True)
    if source is not None:  # the run's manifest: its commitment key, so the report commits to the same forget set
        shutil.copyfile(source.manifest, pipeline.output_dir / "manifest.json")
    set_seed(pipeline.seed)
    with located("data"):
        splits = pipeline.prepare_data()
    check_labels({"train": splits.train, "test": splits.test}, len(splits.class_names), pipeline.source_splits)
    with located("forget"):
        run = build_forget_set(
            recipe,
            splits,
            recipe["forget"],
            root=pipeline.output_dir,
            folder=pipeline.output_dir,
            learning_events=events or pipeline.store.learning_events_path,
        )
    same_set = source is not None and _same_forget_set(source, run)
    results: dict[str, dict[str, Any]] = {}
    original = _original_of(recipe, source)
    if original is not None:
        results["original"] = _entry(pipeline, original, run.splits, "original", "pretrain")
    reference = str(reference) if reference is not None else None
    if reference is None and reference_kind(recipe) == "given":
        reference = recipe["retrain"]["from"]
    if reference is None and same_set and source.model("retrain") is not None:
        reference = str(source.model("retrain"))  # the run's reference, retrained without this very forget set
    if reference is not None:
        results["retrain"] = {**_entry(pipeline, reference, run.splits, "--reference", "retrain"), "reference": "given"}
    results[name] = _entry(pipeline, str(model_dir), run.splits, "--model")
    evaluated = {**recipe, "retrain": {"from": reference} if reference else False}
    report = assemble_report(evaluated, run, results)  # its reference block describes what was evaluated
    report[EVALUATION_KEY] = {
        "model": str(model_dir),
        "run_dir": None if source is None else str(source.folder),
        "same_forget_set_as_run": same_set if source is not None else None,
        "original": original,
        "reference": reference,
    }
    write_report(report, pipeline.output_dir)
    return report


def _same_forget_set(source: SourceRun, run: Any) -> bool:
    from .data import SplitManifest

    return SplitManifest.from_json(source.manifest).sha256 == run.splits.manifest.sha256


def _original_of(recipe: dict[str, Any], source: SourceRun | None) -> str | None:
    """The original to show next to the model: the run's, else the recipe's loaded-as-is model, else None."""
    if source is not None and source.model("original") is not None:
        return str(source.model("original"))
    spec, pretrain = recipe["model"], recipe["pretrain"]
    if spec["name_or_path"] and not pretrain.get("epochs", pretrain.get("num_train_epochs", 1)):
        return spec["name_or_path"]
    return None


# ------------------------------------------------------------------------------------------------ command line
def add_evaluate_parser(commands: Any, add_recipe_options: Any) -> None:
    evaluate = commands.add_parser(
        "evaluate",
        help="Evaluate any model folder on a recipe's data and forget set (same metrics and report as run).",
        description="Write report.json, report.md and a plot for a model folder to a folder of its own (never a "
        "run's). A model inside a run's output folder (RUN/models/<run>, or --run-dir RUN) is evaluated on that "
        "run's seed and forget set, next to its original, with ToW against its retrained reference; --reference (or "
        "the recipe's retrain.from) names another reference.",
    )
    evaluate.add_argument("recipe", help="Path of a YAML recipe, or the name of a built-in one.")
    evaluate.add_argument("--model", type=Path, required=True, help="Model folder to evaluate (save_pretrained).")
    evaluate.add_argument(
        "--reference", default=None, help="A model retrained without the forget set (folder or Hub id), for ToW."
    )
    evaluate.add_argument(
        "--run-dir",
        type=Path,
        default=None,
        help="Output folder of the `hf-unlearn run` whose forget set, original and reference to use (default: the "
        "one --model sits in, if any).",
    )
    evaluate.add_argument(
        "--output-dir", type=Path, default=None, help="Output folder (default: runs/<recipe name>-evaluate)."
    )
    add_recipe_options(evaluate, "evaluation.mia_seed=1")


def evaluate_command(args: argparse.Namespace) -> int:
    from .recipe import load_recipe
    from .report import format_table, plain_summary
    from .tidy import removing_empty_folders

    recipe = load_recipe(args.recipe, args.overrides)
    output_dir = args.output_dir or Path("runs") / f"{recipe['name']}-evaluate"
    with removing_empty_folders(output_dir):  # a failed load leaves no empty folder behind
        report = evaluate_folder(
            recipe, args.model, output_dir, reference=args.reference, run_dir=args.run_dir, use_cpu=args.cpu
        )
    if report[EVALUATION_KEY]["run_dir"]:
        print(f"Forget set, original and reference of the run in {report[EVALUATION_KEY]['run_dir']}.")
    print(format_table(report))
    for line in plain_summary(report):
        print(line)
    print(f"\nWrote {output_dir}/report.json, report.md and the plot.")
    return 0
