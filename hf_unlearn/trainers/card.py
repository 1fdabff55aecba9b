"""The model card of a trainer's model: the same unlearning card as ``hf-unlearn push`` (`hf_unlearn.hub`).

`UnlearnTrainer.create_model_card` calls `trainer_report` and `hf_unlearn.hub.build_model_card`, so
``trainer.push_to_hub()`` publishes the card the CLI would write for the same model, data and forget set: a
model-index with EvalResults (retain / forget / test accuracy, MIA-efficacy, ToW when a reference is given), the
method's own hyperparameters, and the forget set's size and identifier.
"""

from __future__ import annotations

import json
from typing import Any

from ..metrics import tug_of_war
from ..metrics.unlearning import unlearning_metrics


def _test_split(trainer: Any, test_dataset: Any) -> Any:
    if test_dataset is not None:
        return test_dataset
    evaluation = trainer.eval_dataset
    if isinstance(evaluation, dict):
        evaluation = evaluation.get("test")
    if evaluation is None:
        raise ValueError(
            "create_model_card measures the model on retain, forget and test: pass test_dataset=... (or "
            "eval_dataset=... / eval_dataset={'test': ...} to the trainer)."
        )
    return evaluation


def trainer_report(
    trainer: Any,
    *,
    run: str,
    dataset: str | None = None,
    finetuned_from: str | None = None,
    test_dataset: Any = None,
    forget_set: dict[str, Any] | None = None,
    references: dict[str, dict[str, Any]] | None = None,
    mia_shadow_size: int | None = None,
    mia_seed: int = 0,
) -> dict[str, Any]:
    """A one-run report (the schema of report.json) of ``trainer.model`` on its retain / forget data and ``test``.

    ``forget_set``: ``{"kind", "size", "commitment"}`` as a run's report records it (default: kind ``given``, the forget
    data set's size, no identifier). ``references``: report entries (``original``, ``retrain``) to show beside the
    model; ToW is computed against ``references["retrain"]`` when present.
    """
    if trainer.forget_dataset is None or trainer.retain_dataset is None:
        raise ValueError("create_model_card needs the trainer's retain_dataset and forget_dataset.")
    args = trainer.args
    test = _test_split(trainer, test_dataset)
    metrics = unlearning_metrics(
        trainer.model,
        trainer.retain_dataset,
        trainer.forget_dataset,
        test,
        batch_size=args.per_device_eval_batch_size,
        mia_shadow_size=mia_shadow_size,
        mia_seed=mia_seed,
    )
    references = dict(references or {})
    reference = (references.get("retrain") or {}).get("accuracy")
    entry = {
        "method": args.method,
        "sharpness": args.sharpness,
        # The method's own, as report.json stores them (enums such as optim become their strings).
        "hyperparameters": json.loads(json.dumps(args.hyperparameters(), default=str)),
        "status": "finished",
        **metrics,
        "tow": tug_of_war(metrics["accuracy"], reference) if reference is not None else None,
    }
    forget = forget_set or {"kind": "given", "size": len(trainer.forget_dataset), "commitment": None}
    return {
        "name": run,
        "dataset": dataset or "unknown",
        "seed": args.seed,
        "forget_set": {**forget, "band": forget.get("band")},
        "base_model": finetuned_from,
        "sizes": {"retain": len(trainer.retain_dataset), "forget": len(trainer.forget_dataset), "test": len(test)},
        "reference": {
            "kind": "given" if reference is not None else "none",
            "from": None,
            "tow_unavailable": None if reference is not None else "no reference model (references['retrain'])",
        },
        "models": {**references, run: entry},
    }
