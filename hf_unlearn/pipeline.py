"""Recipe-driven stages: data -> original (pretrain) -> forget set -> retrain -> unlearn runs -> evaluate -> report.

Every stage writes its outputs atomically (a temporary folder, then a rename) and a ``stage.json`` that
marks it finished; a rerun on the same output folder skips finished stages unless ``force`` is set.

Output layout. One forget set (``forget:`` a mapping): everything at the top of the output folder
(``manifest.json``, ``models/<stage>/``, ``report.json``, ``report.md``, the plot). Several forget sets (``forget:``
a list): the original model is shared (``models/original/``); each forget set gets a subfolder named after it
with its own ``manifest.json``, ``models/retrain/``, ``models/<run>/``, ``report.json``, ``report.md`` and plot,
and the top folder holds one combined ``report.md``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel, set_seed

from .checkpoints import CHECKPOINT_SETTINGS, HistoryCheckpoint, StageCheckpoints, train_resumable
from .console import check_report_to, use_stage_progress
from .data import SplitManifest, split_retain_forget
from .data.forget_sets import (
    classwise_forget_set,
    file_forget_set,
    low_confidence_forget_set,
    memorization_forget_set,
    random_forget_set,
)
from .data.prepare import PreparedData, prepare_splits
from .data.score_files import load_scores
from .data.sources import FILE_NAME_COLUMN
from .errors import DivergenceError, PushFailedError, ValidationError, located
from .memorization import ConfidenceRecorder
from .metrics import tug_of_war
from .metrics.unlearning import unlearning_metrics
from .models import (
    build_model_from_config,
    fresh_model,
    load_pretrained_model,
    load_reference_model,
    load_saved_model,
)
from .paths import inside
from .recipe import forget_sets, recipe_augmentation, reference_kind, training_arguments
from .registry import own_settings
from .report import atomic_save_npy, atomic_write_text, write_combined_markdown, write_report
from .trainers import get_trainer_class
from .validation import (
    StagePlan,
    check_forget_sizes,
    check_labels,
    check_manifest_file,
    check_model_config,
    check_pretrained_model,
    check_stages,
    diagnose_source,
    pretrained_load_error,
)

logger = logging.getLogger(__name__)

# Settings of the reference (pretrain / retrain) training when a recipe leaves them out.
REFERENCE_DEFAULTS: dict[str, Any] = {
    "epochs": 20,
    "batch_size": 64,
    "learning_rate": 0.1,
    "lr_scheduler_type": "cosine",
    "optim": "sgd",
    "optim_args": "momentum=0.9",
    "weight_decay": 5e-4,
}
# Training settings that only change what is logged or shown, not what is trained.
TRACKING_KEYS = frozenset(
    {"report_to", "log_level", "logging_steps", "logging_strategy", "logging_first_step", "run_name", "disable_tqdm"}
)
# Unlearning defaults: SGD with momentum and a constant learning rate (design.md: AdamW made Sharp MinMax collapse).
UNLEARN_DEFAULTS: dict[str, Any] = {
    "epochs": 5,
    "batch_size": 64,
    "learning_rate": 0.01,
    "lr_scheduler_type": "constant",
    "optim": "sgd",
    "optim_args": "momentum=0.9",
    "weight_decay": 5e-4,
}


@dataclass
class Splits:
    train: Any
    test: Any
    class_names: list[str]
    retain: Any = None
    forget: Any = None
    manifest: SplitManifest | None = None
    prepared: PreparedData | None = None  # row ids, validation split, source description

    @property
    def train_rows(self) -> np.ndarray:
        """Row of each training sample in the source's pool (what score files and index files refer to)."""
        return self.prepared.train_rows


class Pipeline:
    """Runs one validated recipe (see `hf_unlearn.recipe`) into ``output_dir``."""

    def __init__(self, recipe: dict[str, Any], output_dir: str | Path, *, force: bool = False, use_cpu: bool = False):
        self.recipe = recipe
        self.output_dir = Path(output_dir)
        self.force = force
        self.use_cpu = use_cpu or not torch.cuda.is_available()
        self.seed = int(recipe["seed"])
        self.several = isinstance(recipe["forget"], list)
        self.set_dir = self.output_dir  # the folder of the forget set being run (a subfolder when there are several)
        self.augmentation = recipe_augmentation(recipe)  # training inputs only (data.augmentation)

    # ----------------------------------------------------------------- public
    def run(self) -> dict[str, Any]:
        self.check_stages()  # every stage's settings, before anything is written or trained
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.check_existing_outputs()
        set_seed(self.seed)
        with located("data"), diagnose_source(self.source_splits):
            splits = self.prepare_data()
        check_labels({"train": splits.train, "test": splits.test}, len(splits.class_names), self.source_splits)
        check_forget_sizes(self.recipe["forget"], len(splits.train))  # empty / whole-set forget sets fail now
        self.check_forget_sets(splits)  # bad index files etc. fail before pretraining, not after it
        original = self.original_model(splits)
        reports: dict[str, dict[str, Any]] = {}
        for spec in forget_sets(self.recipe):
            # The original is shared; retrain and the unlearning runs belong to one forget set.
            self.set_dir = inside(self.output_dir / spec["name"], self.output_dir) if self.several else self.output_dir
            if _is_main_process():
                self.set_dir.mkdir(parents=True, exist_ok=True)
            with located("forget"):
                set_splits = self.build_forget_set(splits, spec)
            reports[spec["name"]] = report = self.run_forget_set(set_splits, original, spec)
            if _is_main_process():  # every process holds the same report; one writes it
                write_report(report, self.set_dir)
        self.set_dir = self.output_dir
        if self.several and _is_main_process():
            write_combined_markdown(self.recipe["name"], reports, self.output_dir)
        _barrier()
        if self.several:
            return {"name": self.recipe["name"], "forget_sets": reports}
        result = next(iter(reports.values()))
        self.push_to_hub(result)
        return result

    def run_forget_set(self, splits: Splits, original: PreTrainedModel, spec: dict[str, Any]) -> dict[str, Any]:
        """Retrain and every unlearning run on one forget set; its report."""
        results: dict[str, dict[str, Any]] = {}
        kind = reference_kind(self.recipe)
        if kind == "retrain":
            results["retrain"] = self.train_stage("retrain", self.retrain_settings(), splits, original)
        elif kind == "given":
            results["retrain"] = self.given_reference(splits)
        results["original"] = self.finished_stage("original")
        for run in self.recipe["unlearn"]["runs"]:
            settings = {**UNLEARN_DEFAULTS, **self.recipe["unlearn"]["defaults"], **run}
            results[run["name"]] = self.train_stage(run["name"], settings, splits, original)
        return self.assemble_report(results, splits, spec)

    def push_to_hub(self, result: dict[str, Any]) -> str | None:
        """Final stage (``hub.push``): upload one run with its model card, from the main process only.

        A failed upload raises `PushFailedError` carrying ``result``: the run itself is complete and kept."""
        hub = self.recipe.get("hub") or {}
        if not hub.get("push"):
            return None
        from accelerate import PartialState

        from .hub import HubError, push_run

        if not PartialState().is_main_process:
            return None
        try:
            url = push_run(self.output_dir, hub["repo_id"], hub.get("run"), private=bool(hub.get("private")))
        except HubError as error:
            again = f"hf-unlearn push {self.output_dir} --repo-id {hub['repo_id']}"
            again += f" --run {hub['run']}" if hub.get("run") else ""
            again += " --private" if hub.get("private") else ""
            raise PushFailedError(
                f"hub: {error} Every stage finished and is kept; push again with `{again}`.", result
            ) from error
        logger.info("Pushed %s to %s", hub.get("run") or "the unlearned model", url)
        return url

    # ------------------------------------------------------------------- data
    def prepare_data(self) -> Splits:
        """Train / (validation) / test inputs of the recipe's data (hf_unlearn.data.prepare), with row ids."""
        prepared = prepare_splits(self.recipe["data"], self.seed, self.recipe["model"])
        return Splits(train=prepared.train, test=prepared.test, class_names=prepared.class_names, prepared=prepared)

    def make_manifest(self, splits: Splits, spec: dict[str, Any]) -> SplitManifest:
        """Build one forget set from its recipe spec (hf_unlearn.data.forget_sets); deterministic in the seed."""
        n_train = len(splits.train)
        seed = self.seed if spec["seed"] is None else int(spec["seed"])
        kind = spec["kind"]
        if kind == "random":
            manifest = random_forget_set(n_train, spec["size"], seed)
        elif kind == "classwise":
            labels = np.asarray(splits.prepared.raw_train.with_format("numpy")["label"])
            manifest = classwise_forget_set(
                labels, classes=spec["classes"], fraction=spec["fraction"], seed=seed, class_names=splits.class_names
            )
        elif kind == "memorization":
            table = load_scores(spec["scores"], spec["scores_key"])
            scores = table.for_rows(splits.train_rows, pool_fingerprint=splits.prepared.pool_fingerprint)
            manifest = memorization_forget_set(
                scores,
                spec["size"],
                spec["band"],
                seed=seed,
                midpoint=spec["midpoint"],
                details={"scores": table.summary()},
            )
        elif kind == "low_confidence":
            if not self.learning_events_path().is_file():
                raise ValueError(
                    "forget.kind: low_confidence ranks samples by their confidence during pretraining, and this "
                    "recipe's original model was not pretrained here (pretrain.epochs: 0); use kind memorization "
                    "(with a score file), random, classwise or file."
                )
            confidence = np.load(self.learning_events_path(), allow_pickle=False)
            manifest = low_confidence_forget_set(confidence, spec["size"], spec["band"], seed=seed)
        else:  # file
            ids = splits.prepared.train_column(spec["id_column"]) if spec["index"] == "id" else None
            manifest = file_forget_set(
                spec["path"],
                n_train=n_train,
                index=spec["index"],
                train_rows=splits.train_rows,
                train_ids=ids,
                match_base_names=spec["id_column"] == FILE_NAME_COLUMN,
            )
        manifest.details["name"] = spec["name"]
        manifest.details["spec"] = spec
        manifest.details["inputs"] = self.forget_inputs(spec, n_train, manifest.details)
        return manifest

    def forget_inputs(self, spec: dict[str, Any], n_train: int, details: dict[str, Any]) -> str:
        """Fingerprint of everything a forget set is built from: a saved manifest with the same inputs but other
        contents was edited by hand (`build_forget_set` refuses it); other inputs mean the recipe changed."""
        inputs = {
            "spec": spec,
            "seed": self.seed,
            "n_train": n_train,
            "data": self.recipe["data"],
            # A low-confidence set is ranked by pretraining; score and index files by their contents.
            "pretrain": [self.recipe["model"], self.recipe["pretrain"]] if spec["kind"] == "low_confidence" else None,
            "file": details.get("file_sha256") or (details.get("scores") or {}).get("sha256"),
        }
        return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()

    def build_forget_set(self, splits: Splits, spec: dict[str, Any] | None = None, *, shared: bool = True) -> Splits:
        """The forget set of ``spec`` (default: the recipe's only one) as ``set_dir/manifest.json`` and retain /
        forget subsets. The manifest is rebuilt from the recipe every run (it is cheap and deterministic) and only
        rewritten when it changed, so finished stages stay valid. A saved manifest keeps its commitment key while
        its forget set is unchanged; one edited by hand (same inputs, other contents) is refused. Under DDP every
        process commits with process 0's key (a broadcast: ``shared=False`` when process 0 builds it alone)."""
        spec = spec if spec is not None else forget_sets(self.recipe)[0]
        path = self.set_dir / "manifest.json"
        manifest = self.make_manifest(splits, spec)
        existing = SplitManifest.from_json(path) if path.exists() and not self.force else None  # --force rebuilds
        if existing is not None:
            if existing.sha256 == manifest.sha256:  # same forget set: same key, same published commitment
                manifest = manifest.with_key(existing.commitment_key)
            if existing.details.get("inputs") == manifest.details["inputs"]:
                check_unedited(path, existing, _json_roundtrip(manifest))
        if shared and torch.distributed.is_initialized():  # every process commits with process 0's random key
            key = [manifest.commitment_key]
            torch.distributed.broadcast_object_list(key, src=0)
            manifest = manifest if key[0] == manifest.commitment_key else manifest.with_key(key[0])
        if _is_main_process() and (existing is None or existing != _json_roundtrip(manifest)):
            manifest.to_json(path)  # one writer; the others only compared it with the saved one (atomic rename)
        out = copy.copy(splits)
        out.manifest = manifest
        out.retain, out.forget = split_retain_forget(splits.train, manifest)
        return out

    # ----------------------------------------------------------------- models
    def new_model(self, splits: Splits) -> PreTrainedModel:
        spec = self.recipe["model"]
        if spec["config"] is not None:
            check_model_config(spec["config"], splits.class_names)
            with located("model.config"):
                return build_model_from_config(spec["config"], splits.class_names, self.seed, spec.get("stem"))
        check_pretrained_model(
            spec["name_or_path"],
            splits.class_names,
            trust_remote_code=spec["trust_remote_code"],
            ignore_mismatched_sizes=bool(spec.get("ignore_mismatched_sizes")),
        )
        try:
            return load_pretrained_model(
                spec["name_or_path"], splits.class_names, trust_remote_code=spec["trust_remote_code"]
            )
        except (OSError, ValueError) as error:
            raise pretrained_load_error(spec["name_or_path"], error) from error

    def original_model(self, splits: Splits) -> PreTrainedModel:
        """Pretrain on the whole training set, recording per-sample confidence (learning events)."""
        folder = self.stage_dir("original")
        settings = {**REFERENCE_DEFAULTS, **self.recipe["pretrain"]}
        fingerprint = self.fingerprint("original", settings)
        if self.is_finished("original", fingerprint):
            return load_saved_model(str(folder))
        start = time.perf_counter()
        model = self.new_model(splits)
        recorder = ConfidenceRecorder(splits.train, batch_size=self.recipe["evaluation"]["batch_size"])
        args = self.arguments("pretrain", settings)
        trainer = get_trainer_class("pretrain")(
            model=model, args=args, retain_dataset=splits.train, callbacks=[recorder], augmentation=self.augmentation
        )
        use_stage_progress(trainer, "original")
        if trainer.args.num_train_epochs or trainer.args.max_steps > 0:
            logger.info("Stage original: pretraining on %d samples", len(splits.train))
        else:
            logger.info("Stage original: the given model as it is (pretrain.epochs: 0)")
        history = HistoryCheckpoint(recorder)
        checkpoints = StageCheckpoints(args.output_dir, "original", fingerprint, extra_files=(history.filename,))
        diverged = train_resumable(trainer, checkpoints, force=self.force, history=history)
        if diverged is not None:
            checkpoints.remove()
            raise DivergenceError(
                f"pretrain: {diverged} Every later stage starts from the pretrained model, so the recipe stops "
                "here; fix pretrain.learning_rate (or the data) and rerun.",
                step=diverged.step,
                epoch=diverged.epoch,
                loss=diverged.loss,
            )
        # pretrain.epochs: 0 keeps a loaded (Hub) model as the original: no epochs, so no learning events.
        extra = {"learning_events.npy": recorder.mean_confidence()} if recorder.history else {}
        if extra and not np.isfinite(extra["learning_events.npy"]).all():
            checkpoints.remove()
            raise DivergenceError(
                "pretrain: the pretrained model's predictions are not finite (its weights or BatchNorm statistics "
                "overflow); the run diverged. Every later stage starts from it: lower pretrain.learning_rate."
            )
        self.save_stage(
            "original",
            model,
            args,
            time.perf_counter() - start,
            fingerprint,
            splits=None,
            extra_arrays=extra,
            details={"log_history": trainer.state.log_history},
        )
        checkpoints.remove()
        return model

    def given_reference(self, splits: Splits) -> dict[str, Any]:
        """``retrain: {from: ...}``: a reference retrained elsewhere, evaluated like a retrained one (not copied)."""
        source = self.recipe["retrain"]["from"]
        fingerprint = self.fingerprint("retrain", {"from": source}, splits.manifest.sha256)
        if self.is_finished("retrain", fingerprint):
            return self.finished_stage("retrain")
        start = time.perf_counter()
        with located("retrain.from"):
            model = load_reference_model(
                source, splits.class_names, trust_remote_code=self.recipe["model"]["trust_remote_code"]
            )
        metrics = self.evaluate(model, splits)  # every process predicts a shard (DDP)
        if _is_main_process():
            record = {
                "method": "retrain",
                "sharpness": "none",
                "hyperparameters": {},
                "reference": "given",
                "fingerprint": fingerprint,
                "status": "finished",
                **metrics,
            }
            record["wall_seconds"] = round(time.perf_counter() - start, 3)  # loading and evaluating it
            folder = self.stage_dir("retrain")
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write_text(folder / "stage.json", json.dumps(record, indent=2, default=str))
        _barrier()
        return self.finished_stage("retrain")

    def reference_initial_model(self, original: PreTrainedModel, splits: Splits, seed: int) -> PreTrainedModel:
        """The retrained reference's starting weights: never the original's.

        A model built from ``model.config`` is rebuilt exactly as the original was before pretraining (same config,
        same seed: the same initial weights, only the data differs); a loaded (Hub) model is rebuilt from its config
        with its architecture's own initialisation (`hf_unlearn.models.fresh_model`).
        """
        spec = self.recipe["model"]
        if spec["config"] is not None:
            with located("model.config"):
                return build_model_from_config(spec["config"], splits.class_names, seed, spec.get("stem"))
        return fresh_model(original.config, seed, trust_remote_code=spec["trust_remote_code"])

    def retrain_settings(self) -> dict[str, Any]:
        return {**REFERENCE_DEFAULTS, **self.recipe["pretrain"], **self.recipe["retrain"], "method": "retrain"}

    def train_stage(
        self, name: str, settings: dict[str, Any], splits: Splits, original: PreTrainedModel
    ) -> dict[str, Any]:
        fingerprint = self.fingerprint(name, settings, splits.manifest.sha256)
        if self.is_finished(name, fingerprint):
            return self.finished_stage(name)
        settings = dict(settings)
        method = settings.pop("method")
        settings.pop("name", None)
        start = time.perf_counter()
        args = self.arguments(method, settings, stage=name)
        extra: dict[str, Any] = {}
        if method == "retrain":
            model = self.reference_initial_model(original, splits, args.seed)
            extra["reinit"] = False
        else:
            model = copy.deepcopy(original)
        trainer = get_trainer_class(method)(
            model=model,
            args=args,
            retain_dataset=splits.retain,
            forget_dataset=splits.forget,
            augmentation=self.augmentation,
            **extra,
        )
        use_stage_progress(trainer, name)
        logger.info("Stage %s: %s (sharpness=%s)", name, method, args.sharpness)
        checkpoints = StageCheckpoints(args.output_dir, name, fingerprint)
        diverged = train_resumable(trainer, checkpoints, force=self.force)
        if diverged is None:
            try:
                self.save_stage(
                    name,
                    model,
                    args,
                    time.perf_counter() - start,
                    fingerprint,
                    splits=splits,
                    details={"log_history": trainer.state.log_history},
                )
            except DivergenceError as error:  # finite losses, but the predictions overflow (e.g. BatchNorm stats)
                diverged = error
        if diverged is not None:
            self.save_diverged_stage(
                name, args, time.perf_counter() - start, fingerprint, splits, checkpoints, diverged
            )
        checkpoints.remove()
        return self.finished_stage(name)

    def save_diverged_stage(
        self,
        name: str,
        args: Any,
        wall_seconds: float,
        fingerprint: str,
        splits: Splits,
        checkpoints: StageCheckpoints,
        diverged: DivergenceError,
    ) -> None:
        """Record a diverged run: the weights of its last checkpoint (saved before the divergence, checked finite)
        with their metrics, or, without a usable checkpoint, no weights and null metrics."""
        good = checkpoints.latest()
        record = {**diverged.record(), "weights_from_step": None if good is None else int(good.name.split("-")[-1])}
        try:
            model = None if good is None else load_saved_model(str(good))
            self.save_stage(
                name,
                model,
                args,
                wall_seconds,
                fingerprint,
                splits=splits,
                status="diverged",
                details={"divergence": record},
            )
        except DivergenceError:  # the checkpoint's predictions are not finite either
            record["weights_from_step"] = None
            self.save_stage(
                name,
                None,
                args,
                wall_seconds,
                fingerprint,
                splits=splits,
                status="diverged",
                details={"divergence": record},
            )
        kept = record["weights_from_step"]
        logger.warning(
            "Stage %s diverged: %s %s",
            name,
            diverged,
            f"Its entry keeps the weights of step {kept}."
            if kept is not None
            else "It has no usable checkpoint: no weights, null metrics.",
        )

    def arguments(self, method: str, settings: dict[str, Any], stage: str | None = None):
        # A checkpoint per epoch (to resume after a crash); report_to and log_level are the recipe's when it sets
        # them (tracking: tensorboard, trackio, wandb ... when installed), else no tracking and quiet logs.
        return training_arguments(
            {**CHECKPOINT_SETTINGS, "report_to": "none", "log_level": "warning", **settings},
            method=method,
            output_dir=str(
                inside(
                    (self.output_dir if stage is None else self.set_dir) / "checkpoints" / (stage or method),
                    self.output_dir,
                )
            ),
            use_cpu=self.use_cpu,
            seed=settings.get("seed", self.seed),
        )

    # ------------------------------------------------------------ reliability
    def stage_plans(self) -> list[StagePlan]:
        """Every training stage with its merged settings and the recipe sections they come from."""
        recipe = self.recipe
        plans = [
            StagePlan(
                "original",
                "pretrain",
                "pretrain",
                {**REFERENCE_DEFAULTS, **recipe["pretrain"]},
                [("pretrain", recipe["pretrain"])],
            ),
        ]
        if reference_kind(recipe) == "retrain":
            plans.append(
                StagePlan(
                    "retrain",
                    "retrain",
                    "retrain",
                    self.retrain_settings(),
                    [("retrain", recipe["retrain"]), ("pretrain", recipe["pretrain"])],
                )
            )
        defaults = recipe["unlearn"]["defaults"]
        for i, run in enumerate(recipe["unlearn"]["runs"]):
            plans.append(
                StagePlan(
                    run["name"],
                    f"unlearn.runs[{i}] ({run['name']})",
                    run["method"],
                    {**UNLEARN_DEFAULTS, **defaults, **run},
                    [(f"unlearn.runs[{i}]", run), ("unlearn.defaults", defaults)],
                )
            )
        return plans

    def check_stages(self) -> None:
        """Build every stage's arguments up front: a bad value in the last run fails before pretraining."""

        def make(plan: StagePlan):
            settings = {k: v for k, v in plan.settings.items() if k not in ("method", "name")}
            args = self.arguments(plan.method, settings, stage=plan.stage)
            check_report_to(args.report_to)  # a tracker that is not installed fails now, not after pretraining
            return args

        check_stages(self.stage_plans(), make)

    def check_existing_outputs(self) -> None:
        """Remove what a killed run left half-written; refuse a split manifest that was modified."""
        from accelerate import PartialState

        if PartialState().is_main_process:
            for path in [*self.output_dir.glob("models/.*-*"), *self.output_dir.glob("*/models/.*-*")]:
                shutil.rmtree(path, ignore_errors=True)  # save_stage's temporary folders
            prefixes = (".report.", ".manifest.", ".learning_events.", ".accuracy_tow.")
            # Atomic writers' temporary files, at the top and in each forget set's folder.
            for path in [*self.output_dir.glob(".*"), *self.output_dir.glob("*/.*")]:
                if path.is_file() and path.name.startswith(prefixes):
                    path.unlink(missing_ok=True)
        _barrier()  # nobody reads the folder while process 0 cleans it
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
                    self.make_manifest(splits, spec)

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

    def learning_events_path(self) -> Path:
        """Per-sample confidence over pretraining. It ranks the training samples (it picks low_confidence forget
        sets), so it is private run state beside manifest.json, never inside a (shareable) model folder."""
        return inside(self.output_dir / "learning_events.npy", self.output_dir)

    # ------------------------------------------------------------- evaluation
    def evaluate(self, model: torch.nn.Module, splits: Splits) -> dict[str, Any]:
        settings = self.recipe["evaluation"]
        return unlearning_metrics(
            model,
            splits.retain,
            splits.forget,
            splits.test,
            batch_size=settings["batch_size"],
            mia_shadow_size=settings["mia_shadow_size"],
            mia_seed=settings["mia_seed"],
            num_workers=settings["num_workers"],
            distributed=True,  # under DDP every process predicts a shard; all processes call this
        )

    # ---------------------------------------------------------------- stages
    def stage_dir(self, name: str) -> Path:
        """``models/<name>`` of the current forget set; the shared original sits at the top of the output folder."""
        return inside((self.output_dir if name == "original" else self.set_dir) / "models" / name, self.output_dir)

    def fingerprint(self, name: str, settings: dict[str, Any], forget_sha256: str | None = None) -> str:
        """What a stage's result depends on; a finished stage with another fingerprint is redone."""
        inputs = {
            # Bumped when a stage's result changes for the same settings, so old outputs are redone, not reused.
            # 2: retrain starts from the model's own initialisation; random_label / salun train on one shuffled
            # union; forget draws and random labels are per item from (seed, epoch) streams.
            "semantics": 2,
            "stage": name,
            # Tracking and console settings do not change the result: changing them reuses finished stages; nor do
            # other methods' settings (unlearn.defaults.kd_T for a NegGrad run) or SAM's without sharpness. The
            # original's settings (pretrain) and a given reference's carry no method.
            "settings": {
                k: v
                for k, v in own_settings(settings.get("method", "pretrain"), settings).items()
                if k not in TRACKING_KEYS
            },
            "seed": self.seed,
            "data": self.recipe["data"],
            "model": self.recipe["model"],
            "pretrain": self.recipe["pretrain"],
            "forget_sha256": forget_sha256,
            # DataLoader workers do not change any number.
            "evaluation": {k: v for k, v in self.recipe["evaluation"].items() if k != "num_workers"},
        }
        return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()

    def is_finished(self, name: str, fingerprint: str) -> bool:
        path = self.stage_dir(name) / "stage.json"
        if self.force or not path.is_file():
            return False
        if self.finished_stage(name).get("fingerprint") != fingerprint:
            logger.info("Stage %s: settings changed since it was run; redoing it", name)
            return False
        return True

    def finished_stage(self, name: str) -> dict[str, Any]:
        with open(self.stage_dir(name) / "stage.json", encoding="utf-8") as handle:
            return json.load(handle)

    def save_stage(
        self,
        name: str,
        model: PreTrainedModel,
        args: Any,
        wall_seconds: float,
        fingerprint: str,
        splits: Splits | None,
        extra_arrays: dict[str, np.ndarray] | None = None,
        status: str = "finished",
        details: dict[str, Any] | None = None,
    ) -> None:
        """Write weights (safetensors), metrics and ``stage.json`` to a temporary folder, then rename it.

        ``model`` is None for a run that diverged before its first checkpoint (no weights, null metrics).
        ``extra_arrays`` (per-sample data) go to the run folder, atomically, never into the model folder.
        Under DDP (``accelerate launch`` / ``torchrun``) every process evaluates a shard; only the main process writes,
        the others wait.
        """
        metrics: dict[str, Any] = {}
        if splits is not None:
            metrics = self.evaluate(model, splits) if model is not None else {"accuracy": None, "mia": None}
        if not _is_main_process():
            _barrier()
            return
        models_dir = self.stage_dir(name).parent
        models_dir.mkdir(parents=True, exist_ok=True)
        for filename, array in (extra_arrays or {}).items():
            atomic_save_npy(self.output_dir / filename, array)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=models_dir))
        if model is not None:
            model.save_pretrained(tmp, safe_serialization=True)
        record = {
            "method": args.method,
            "sharpness": args.sharpness,
            "hyperparameters": args.hyperparameters(),
            "wall_seconds": round(wall_seconds, 3),
            "fingerprint": fingerprint,
            "status": status,
            **(details or {}),
        }
        record.update(metrics)
        with open(tmp / "stage.json", "w", encoding="utf-8") as handle:
            json.dump(record, handle, indent=2, default=str)
        final = self.stage_dir(name)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _barrier()  # the other processes read stage.json next

    def assemble_report(
        self, results: dict[str, dict[str, Any]], splits: Splits, spec: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        if "original" in results and "accuracy" not in results["original"]:
            # The original is saved before the forget set exists; evaluate it now, once per forget set.
            results["original"].update(self.evaluate(load_saved_model(str(self.stage_dir("original"))), splits))
        # None without a reference, or when the retrain diverged before a checkpoint
        reference = results["retrain"].get("accuracy") if "retrain" in results else None
        models = {}
        # The original and the reference first, then the runs (`hf-unlearn evaluate` passes other names).
        for name in ["original", "retrain", *[n for n in results if n not in ("original", "retrain")]]:
            if name not in results:
                continue
            entry = dict(results[name])
            entry.pop("log_history", None)  # kept in the stage's stage.json; the report stays a summary
            entry.setdefault("status", "finished")
            comparable = name != "retrain" and reference is not None and entry.get("accuracy") is not None
            entry["tow"] = tug_of_war(entry["accuracy"], reference) if comparable else None
            models[name] = entry
        return {
            "name": self.recipe["name"],
            "dataset": self.recipe["data"]["source"],
            "seed": self.seed,
            "forget_set": {
                **splits.manifest.summary(),
                "band": splits.manifest.details.get("band"),
                "name": (spec or {}).get("name") if self.several else None,
            },
            "base_model": self.recipe["model"]["name_or_path"],  # Hub id or folder; None when built from a config
            **(
                {"skipped_images": splits.prepared.description["skipped_images"]}  # data.on_bad_image: skip
                if splits.prepared is not None and "skipped_images" in splits.prepared.description
                else {}
            ),
            "sizes": {
                "train": len(splits.train),
                "retain": len(splits.retain),
                "forget": len(splits.forget),
                "test": len(splits.test),
            },
            "reference": reference_summary(self.recipe, results),
            "preprocessing": splits.prepared.description.get("transform") if splits.prepared else None,
            "models": models,
        }


def reference_summary(recipe: dict[str, Any], results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What ToW was measured against (``kind``: retrain | given | none), and why it is null when it is."""
    kind = reference_kind(recipe)
    source = recipe["retrain"]["from"] if kind == "given" else None
    reason = None
    if kind == "none":
        reason = "no reference model (retrain: false): ToW compares with a model retrained without the forget set"
    elif (results.get("retrain") or {}).get("accuracy") is None:
        reason = "the reference has no metrics (its training diverged before a checkpoint)"
    return {"kind": kind, "from": source, "tow_unavailable": reason}


def check_unedited(path: Path, saved: SplitManifest, rebuilt: SplitManifest) -> None:
    """``saved`` was built from the same inputs as ``rebuilt``, so any difference is a hand edit: refuse it."""
    from dataclasses import asdict

    old, new = asdict(saved), asdict(rebuilt)
    changed = []
    for key in new:
        if key == "details":  # name the detail that changed, e.g. details.band
            both = sorted(set(old[key]) | set(new[key]))
            changed += [f"details.{k}" for k in both if old[key].get(k) != new[key].get(k)]
        elif key != "commitment_key" and old[key] != new[key]:
            changed.append(key)
    if changed:
        raise ValidationError(
            f"forget: {path} was edited after it was written: its {', '.join(changed[:3])} differs from what the "
            "recipe builds from the same inputs. Refusing to guess which samples to forget: restore the file, or "
            "delete it (or rerun with --force) to rebuild the split from the recipe."
        )


def _is_main_process() -> bool:
    return not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0


def _barrier() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.barrier()


def _json_roundtrip(manifest: SplitManifest) -> SplitManifest:
    """The manifest as `from_json` would read it back (tuples become lists ...), to compare with a saved one."""
    from dataclasses import asdict

    from .data.manifest import _json_default

    return SplitManifest(**json.loads(json.dumps(asdict(manifest), default=_json_default)))
