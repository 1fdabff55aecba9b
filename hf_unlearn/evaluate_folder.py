"""``hf-unlearn evaluate``: the report of any model folder (unlearned elsewhere, or with the Python API).

The recipe gives the data, the forget set and the evaluation settings; the model folder is evaluated on retain,
forget and test with the same metrics as a pipeline run, next to the recipe's original model (when the recipe
loads one as it is: ``model.name_or_path`` with ``pretrain.epochs: 0``) and a reference (``--reference``, or the
recipe's ``retrain.from``) for ToW. The output folder gets the same ``report.json`` / ``report.md`` / plot.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from transformers import set_seed

from .errors import ValidationError, located
from .models import load_reference_model
from .recipe_schema import reference_kind
from .report import assemble_report, write_report
from .validation import check_labels


def _entry(pipeline, folder: str, splits, what: str, method: str = "unknown") -> dict[str, Any]:
    """Metrics of one model folder; method and settings from its stage.json when hf_unlearn saved it (else
    ``method``: pretrain for the original, retrain for a reference, unknown for the model evaluated)."""
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
    name: str | None = None,
    use_cpu: bool = False,
) -> dict[str, Any]:
    """Evaluate ``model_dir`` on the recipe's data and forget set; writes and returns the report."""
    from .pipeline import Pipeline

    if isinstance(recipe["forget"], list):
        raise ValidationError("forget: evaluate takes one forget set; pick one with --set forget=... or a recipe")
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise ValidationError(f"--model: {model_dir} holds no model (config.json missing)")
    name = name or model_dir.resolve().name
    if name in ("original", "retrain"):
        name = f"{name}-model"
    pipeline = Pipeline(recipe, output_dir, use_cpu=use_cpu)
    pipeline.output_dir.mkdir(parents=True, exist_ok=True)
    set_seed(pipeline.seed)
    with located("data"):
        splits = pipeline.prepare_data()
    check_labels({"train": splits.train, "test": splits.test}, len(splits.class_names), pipeline.source_splits)
    with located("forget"):
        run = pipeline.forget_set(splits)
    splits = run.splits
    results: dict[str, dict[str, Any]] = {}
    spec = recipe["model"]
    if spec["name_or_path"] and not recipe["pretrain"].get("epochs", recipe["pretrain"].get("num_train_epochs", 1)):
        results["original"] = _entry(pipeline, spec["name_or_path"], splits, "model.name_or_path", "pretrain")
    reference = str(reference) if reference is not None else None
    if reference is None and reference_kind(recipe) == "given":
        reference = recipe["retrain"]["from"]
    if reference is not None:
        results["retrain"] = {**_entry(pipeline, reference, splits, "--reference", "retrain"), "reference": "given"}
    results[name] = _entry(pipeline, str(model_dir), splits, "--model")
    evaluated = {**recipe, "retrain": {"from": reference} if reference else False}
    report = assemble_report(evaluated, run, results)  # its reference block describes what was evaluated
    write_report(report, pipeline.output_dir)
    return report
