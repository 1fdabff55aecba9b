"""The model card of a trainer's model: the same unlearning card as ``hf-unlearn push`` (`hf_unlearn.hub`).

`ModelCard.create_model_card` (a mixin of `UnlearnTrainer`) calls `trainer_report` and `hf_unlearn.hub_card.build_model_card`, so
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


class ModelCard:
    """Mixin of `UnlearnTrainer`: ``create_model_card`` writes the unlearning card (``push_to_hub`` publishes it)."""

    def create_model_card(
        self,
        language: str | None = None,
        license: str | None = None,
        tags: str | list[str] | None = None,
        model_name: str | None = None,
        finetuned_from: str | None = None,
        tasks: str | list[str] | None = None,
        dataset_tags: str | list[str] | None = None,
        dataset: str | list[str] | None = None,
        dataset_args: str | list[str] | None = None,
        **unlearning: Any,
    ) -> None:
        """Write the unlearning model card of ``hf-unlearn push`` to ``output_dir/README.md`` (so `push_to_hub`
        publishes it). ``language``, ``license`` and ``tags`` go into the card's metadata; ``dataset_tags`` (the Hub
        id of the data set), ``dataset`` (its name, or its Hub id) and ``dataset_args`` (its config) name the data
        set of the card's results, as transformers' own cards read them. Extra keywords: ``run`` (the run's name,
        default method[_sharpness]) and those of `trainer_report`: ``test_dataset``, ``forget_set`` ({kind, size,
        commitment}), ``references`` (report entries), ``mia_shadow_size``, ``mia_seed``."""
        if not self.is_world_process_zero():
            return
        from pathlib import Path

        from ..hub_card import build_model_card, folder_location
        from ..hub_ids import license_problem
        from ..models import is_timm_model, needs_remote_code

        if license is not None and (problem := license_problem(license)):
            raise ValueError(f"create_model_card: license: {problem}")
        repo_id = self.hub_model_id or self.args.hub_model_id
        name = repo_id or model_name or Path(self.args.output_dir).name
        base = finetuned_from or getattr(getattr(self.model, "config", None), "_name_or_path", None) or None
        method, sharpness = self.args.method, self.args.sharpness
        run = unlearning.pop("run", None) or (method if sharpness == "none" else f"{method}_{sharpness}")
        report = trainer_report(self, run=run, dataset=_first(dataset), finetuned_from=base, **unlearning)
        card = build_model_card(
            report,
            run,
            model_name=name,
            base_model=base,
            library_name="timm" if is_timm_model(self.model) else "transformers",
            stem=getattr(getattr(self.model, "config", None), "stem", None),
            remote_code=needs_remote_code(self.model),
            location=repo_id or folder_location(self.args.output_dir),
            license=license,
            language=language,
            tags=[tags] if isinstance(tags, str) else tags,
            dataset_id=_first(dataset_tags),
            dataset_config=_first(dataset_args),
        )
        card.save(Path(self.args.output_dir) / "README.md")


def _first(value: str | list[str] | None) -> str | None:
    """The first of a Trainer card argument that may be one string or a list (one data set per card here)."""
    return value[0] if isinstance(value, list) and value else value or None
