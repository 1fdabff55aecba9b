"""Recipe-driven stages: data -> original (pretrain) -> forget set -> reference -> unlearning runs -> report.

`Pipeline` strings together the parts of `hf_unlearn.steps` (plan, forget set, store, evaluator, training) and
offers each step publicly, so that other drivers (several seeds, `hf-unlearn evaluate`, benchmarks, tuning) use
the same steps instead of the pipeline's internals:

```python
pipeline = Pipeline(recipe, "runs/x", use_cpu=True)
splits = pipeline.prepare_data()                       # train / test (and validation) with row ids
original = pipeline.original_model(splits)             # pretrained once, reused when finished
run = pipeline.forget_set(splits, spec)                # one forget set: its folder, manifest, retain / forget
reference = pipeline.reference(run, original)          # retrained (or given) reference: its report entry
entry = pipeline.unlearn(run, original, {"method": "neggrad", "alpha": 0.9})   # one unlearning run
metrics = pipeline.evaluate(model, run.splits)         # retain / forget / test accuracy and MIA
report = pipeline.report(run, {"retrain": reference, "neggrad": entry})
```

Every stage writes its outputs atomically and a ``stage.json`` that marks it finished; a rerun on the same output
folder skips finished stages unless ``force`` is set, and re-scores them when only ``evaluation`` changed.

Output layout. One forget set (``forget:`` a mapping): everything at the top of the output folder
(``manifest.json``, ``models/<stage>/``, ``scores.json``, ``report.json``, ``report.md``, the plot). Several forget
sets (``forget:`` a list): the original model is shared (``models/original/``); each forget set gets a subfolder
named after it with its own ``manifest.json``, ``models/retrain/``, ``models/<run>/``, ``scores.json``,
``report.json``, ``report.md`` and plot, and the top folder holds one combined ``report.md``.
"""

from __future__ import annotations

import logging
import shlex
from pathlib import Path
from typing import Any

from .analysis import analysis_wanted, analyze_forget_set
from .distributed import barrier, is_main_process
from .errors import PushFailedError, located
from .paths import inside
from .recipe_schema import HubSection, forget_sets, reference_kind
from .report import assemble_report, write_combined_markdown, write_report
from .steps.forget import ForgetSetRun, Splits, build_forget_set, make_manifest, prepare_data
from .steps.lira import make_evaluator
from .steps.plan import StagePlan, retrain_plan, stage_plans, unlearn_plan
from .steps.store import StageStore
from .steps.train import StageRunner
from .validation import check_plans

__all__ = ["ForgetSetRun", "Pipeline", "Splits"]

logger = logging.getLogger(__name__)


class Pipeline:
    """Runs one validated recipe (see `hf_unlearn.recipe`) into ``output_dir``."""

    def __init__(self, recipe: dict[str, Any], output_dir: str | Path, *, force: bool = False, use_cpu: bool = False):
        import torch

        self.recipe = recipe
        self.output_dir = Path(output_dir)
        self.force = force
        self.use_cpu = use_cpu or not torch.cuda.is_available()
        self.seed = int(recipe["seed"])
        self.several = isinstance(recipe["forget"], list)
        self.store = StageStore(self.output_dir, force=force)
        self.evaluator = make_evaluator(recipe, self.output_dir, use_cpu=self.use_cpu)  # with LiRA when asked
        self.runner = StageRunner(recipe, self.store, self.evaluator, force=force, use_cpu=self.use_cpu)

    # ------------------------------------------------------------------------------------------------- run
    def run(self) -> dict[str, Any]:
        """Every stage of the recipe, then the report(s); returns the report (``forget_sets``: one per set)."""
        from transformers import set_seed

        from .forgetting import check_early_stop
        from .monitoring import check_monitoring
        from .validation import check_forget_sizes, check_labels, diagnose_source

        self.check()  # every stage's settings, before anything is written or trained
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.check_existing_outputs()
        set_seed(self.seed)
        with located("data"), diagnose_source(self.source_splits):
            splits = self.prepare_data()
        check_labels({"train": splits.train, "test": splits.test}, len(splits.class_names), self.source_splits)
        check_forget_sizes(self.recipe["forget"], len(splits.train))  # empty / whole-set forget sets fail now
        self.check_forget_sets(splits)  # bad index files etc. fail before pretraining, not after it
        check_early_stop(self.recipe, splits.prepared.validation)  # early_stop needs held-out samples
        check_monitoring(self.plans(), splits.prepared.validation)  # so do best checkpoints, early stopping
        original = self.original_model(splits)
        reports: dict[str, dict[str, Any]] = {}
        for spec in forget_sets(self.recipe):
            # The original is shared; the reference and the unlearning runs belong to one forget set.
            with located("forget"):
                run = self.forget_set(splits, spec)
            reports[spec["name"]] = report = self.run_forget_set(run, original)
            if is_main_process():  # every process holds the same report; one writes it
                write_report(report, run.folder)
        if self.several and is_main_process():
            write_combined_markdown(self.recipe["name"], reports, self.output_dir)
        barrier()
        if self.several:
            return {"name": self.recipe["name"], "forget_sets": reports}
        result = next(iter(reports.values()))
        self.push_to_hub(result)
        return result

    def run_forget_set(self, run: ForgetSetRun, original: Any) -> dict[str, Any]:
        """The reference and every unlearning run on one forget set, then its report (with the analysis hook)."""
        results: dict[str, dict[str, Any]] = {}
        reference = self.reference(run, original)
        if reference is not None:
            results["retrain"] = reference
        for settings in self.recipe["unlearn"]["runs"]:
            results[settings["name"]] = self.unlearn(run, original, settings)
        report = self.report(run, results)
        if analysis_wanted(self.recipe) and is_main_process():  # evaluation only, no collectives: process 0 alone
            analyze_forget_set(self.recipe, report, run, self.store.at(run.folder).stage_dir, use_cpu=self.use_cpu)
        return report

    # ------------------------------------------------------------------------------------------ public steps
    def plans(self) -> list[StagePlan]:
        """Every training stage with its merged settings and the recipe sections they come from."""
        return stage_plans(self.recipe)

    def check(self) -> None:
        """Build every stage's arguments up front: a bad value in the last run fails before pretraining."""
        check_plans(self.plans(), checkpoints=self.output_dir / "checkpoints", use_cpu=self.use_cpu, seed=self.seed)

    def prepare_data(self) -> Splits:
        """Train / (validation) / test inputs of the recipe's data (hf_unlearn.data.prepare), with row ids."""
        splits = prepare_data(self.recipe)
        # Every model folder saved from now on carries the image processor of this input transform.
        self.store.preprocessing = splits.prepared.description.get("transform") if splits.prepared else None
        return splits

    def original_model(self, splits: Splits) -> Any:
        """The original model: pretrained on the whole training set (recording learning events), or reused."""
        return self.runner.original(splits)

    def forget_set(self, splits: Splits, spec: dict[str, Any] | None = None, *, shared: bool = True) -> ForgetSetRun:
        """The forget set of ``spec`` (default: the recipe's only one) in its folder (a subfolder named after it
        when the recipe has several). ``shared=False`` when the main process builds it alone (no collective)."""
        spec = spec if spec is not None else forget_sets(self.recipe)[0]
        folder = inside(self.output_dir / spec["name"], self.output_dir) if self.several else self.output_dir
        return build_forget_set(
            self.recipe,
            splits,
            spec,
            root=self.output_dir,
            folder=folder,
            learning_events=self.store.learning_events_path,
            force=self.force,
            shared=shared,
        )

    def reference(self, run: ForgetSetRun, original: Any) -> dict[str, Any] | None:
        """The reference's report entry on ``run``: retrained without the forget set, or the recipe's given
        model (``retrain: {from: ...}``); None without one (``retrain: false``)."""
        kind = reference_kind(self.recipe)
        if kind == "retrain":
            return self.runner.stage(retrain_plan(self.recipe), run, original)
        if kind == "given":
            return self.runner.given_reference(run)
        return None

    def unlearn(self, run: ForgetSetRun, original: Any, settings: dict[str, Any]) -> dict[str, Any]:
        """One unlearning run from ``original`` on ``run``'s forget set: ``settings`` holds ``method``, an
        optional ``name`` (the stage folder; default the method) and training settings over the recipe's
        ``unlearn.defaults``. Returns its report entry (record and metrics; no ToW: see `report`)."""
        return self.runner.stage(unlearn_plan(self.recipe, settings), run, original)

    def evaluate(self, model: Any, splits: Splits) -> dict[str, Any]:
        """Accuracy on retain / forget / test and MIA-efficacy of ``model`` (not cached)."""
        return self.evaluator.metrics(model, splits)

    def report(self, run: ForgetSetRun, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """The report of ``run``: the original's entry (scored here, cached), ``results`` and ToW against
        ``results["retrain"]`` when present."""
        return assemble_report(
            self.recipe, run, {"original": self.runner.original_entry(run), **results}, several=self.several
        )

    def push_to_hub(self, result: dict[str, Any]) -> str | None:
        """Final stage (``hub.push``): upload one run with its model card, from the main process only.

        A failed upload raises `PushFailedError` carrying ``result``: the run itself is complete and kept."""
        hub = HubSection.of(self.recipe)
        if not hub.push or not is_main_process():
            return None
        from .hub import HubError, push_run

        try:
            url = push_run(
                self.output_dir,
                hub.repo_id,
                hub.run,
                private=hub.private,
                license=hub.license,
                license_name=hub.license_name,
                license_link=hub.license_link,
            )
        except HubError as error:
            again = f"hf-unlearn push {self.output_dir} --repo-id {hub.repo_id}"
            again += f" --run {hub.run}" if hub.run else ""
            again += " --private" if hub.private else ""
            again += f" --license {hub.license}" if hub.license else ""
            again += f" --license-name {hub.license_name}" if hub.license_name else ""
            again += f" --license-link {shlex.quote(hub.license_link)}" if hub.license_link else ""
            raise PushFailedError(
                f"hub: {error} Every stage finished and is kept; push again with `{again}`.", result
            ) from error
        logger.info("Pushed %s to %s", hub.run or "the unlearned model", url)
        return url

    # ---------------------------------------------------------------------------------------------- checks
    def check_existing_outputs(self) -> None:
        """Remove what a killed run left half-written; refuse a split manifest that was modified."""
        from .validation import check_manifest_file

        self.store.clean_partial()
        if not self.force:
            manifests = (
                *sorted(self.output_dir.glob("manifests/*.json")),
                *sorted(self.output_dir.glob("*/manifest.json")),
            )
            for path in (self.output_dir / "manifest.json", *manifests):
                check_manifest_file(path)

    def check_forget_sets(self, splits: Splits) -> None:
        """Build every forget set that does not depend on pretraining once, before it (cheap, deterministic):
        a bad index file, class list or score file fails in seconds. Low-confidence sets need the pretrained
        model's learning events, so they are checked when they are built."""
        for spec in forget_sets(self.recipe):
            if spec["kind"] != "low_confidence":
                with located("forget"):
                    make_manifest(self.recipe, splits, spec, self.store.learning_events_path)

    def source_splits(self) -> dict[str, Any]:
        """The raw source splits, to find the row that made data preparation fail."""
        from .data.sources import load_source_splits

        data = self.recipe["data"]
        splits, _ = load_source_splits(
            data["source"],
            config=data.get("config"),
            revision=data.get("revision"),
            image_column=data.get("image_column", "image"),
            label_column=data.get("label_column", "label"),
        )
        return splits
