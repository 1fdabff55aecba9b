"""Recipe-driven stages: data -> original (pretrain) -> forget set -> retrain -> unlearn runs -> evaluate -> report.

Every stage writes its outputs atomically (a temporary folder, then a rename) and a ``stage.json`` that
marks it finished; a rerun on the same output folder skips finished stages unless ``force`` is set.
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

from .data import (
    SplitManifest,
    forget_size,
    load_source,
    lowest_score_indices,
    random_forget_indices,
    split_retain_forget,
    stratified_split,
    to_model_inputs,
)
from .memorization import ConfidenceRecorder
from .metrics import accuracy, mia_efficacy, predict_probabilities, sample_shadow_members, tug_of_war
from .models import build_model_from_config, load_pretrained_model, load_saved_model
from .recipe import training_arguments
from .report import write_report
from .trainers import get_trainer_class

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
# Fields of a run's settings worth recording as its hyperparameters in the report.
RECORDED = (
    "sharpness", "rho", "sam_lambda", "alpha", "mask_ratio", "forget_direction", "learning_rate", "num_train_epochs",
    "per_device_train_batch_size", "optim", "optim_args", "lr_scheduler_type", "weight_decay", "seed",
    "official", "l1_weight", "msteps", "kd_T", "beta", "gamma",
)


@dataclass
class Splits:
    train: Any
    test: Any
    class_names: list[str]
    retain: Any = None
    forget: Any = None
    manifest: SplitManifest | None = None


class Pipeline:
    """Runs one validated recipe (see `hf_unlearn.recipe`) into ``output_dir``."""

    def __init__(self, recipe: dict[str, Any], output_dir: str | Path, *, force: bool = False, use_cpu: bool = False):
        self.recipe = recipe
        self.output_dir = Path(output_dir)
        self.force = force
        self.use_cpu = use_cpu or not torch.cuda.is_available()
        self.seed = int(recipe["seed"])

    # ----------------------------------------------------------------- public
    def run(self) -> dict[str, Any]:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        set_seed(self.seed)
        splits = self.prepare_data()
        original = self.original_model(splits)
        self.build_forget_set(splits)
        results: dict[str, dict[str, Any]] = {}
        results["retrain"] = self.train_stage("retrain", self.retrain_settings(), splits, original)
        results["original"] = self.finished_stage("original")
        for run in self.recipe["unlearn"]["runs"]:
            settings = {**UNLEARN_DEFAULTS, **self.recipe["unlearn"]["defaults"], **run}
            results[run["name"]] = self.train_stage(run["name"], settings, splits, original)
        report = self.assemble_report(results, splits)
        write_report(report, self.output_dir)
        return report

    # ------------------------------------------------------------------- data
    def prepare_data(self) -> Splits:
        data = self.recipe["data"]
        dataset = load_source(data["source"])
        train, test = stratified_split(dataset, test_size=data["test_size"], seed=self.seed)
        convert = dict(image_size=data["image_size"], num_channels=data["num_channels"], mean=data["mean"], std=data["std"])
        train, test = to_model_inputs(train, **convert), to_model_inputs(test, **convert)
        return Splits(train=train, test=test, class_names=list(train.features["labels"].names))

    def build_forget_set(self, splits: Splits) -> None:
        path = self.output_dir / "manifest.json"
        spec = self.recipe["forget"]
        # The forget set depends on its spec and, for proxies, on the original model's training.
        origin = {"spec": spec, "original": self.finished_stage("original")["fingerprint"]}
        manifest = SplitManifest.from_json(path) if path.exists() and not self.force else None
        if manifest is None or manifest.details.get("origin") != origin:
            n_train = len(splits.train)
            size = forget_size(spec["size"], n_train)
            seed = self.seed if spec["seed"] is None else int(spec["seed"])
            if spec["kind"] == "random":
                indices = random_forget_indices(n_train, size, seed)
                details = {"size_spec": spec["size"]}
            else:
                scores = np.load(self.output_dir / "models" / "original" / "learning_events.npy")
                indices = lowest_score_indices(scores, size)
                details = {"size_spec": spec["size"], "proxy": "mean true-class confidence over pretraining epochs"}
            details["origin"] = origin
            manifest = SplitManifest.build(spec["kind"], n_train, indices, seed=seed, details=details)
            manifest.to_json(path)
        splits.manifest = manifest
        splits.retain, splits.forget = split_retain_forget(splits.train, manifest)

    # ----------------------------------------------------------------- models
    def new_model(self, splits: Splits) -> PreTrainedModel:
        spec = self.recipe["model"]
        if spec["config"] is not None:
            return build_model_from_config(spec["config"], splits.class_names, self.seed)
        return load_pretrained_model(spec["name_or_path"], splits.class_names, trust_remote_code=spec["trust_remote_code"])

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
            model=model, args=args, retain_dataset=splits.train, callbacks=[recorder]
        )
        logger.info("Stage original: pretraining on %d samples", len(splits.train))
        trainer.train()
        extra = {"learning_events.npy": recorder.mean_confidence()}
        self.save_stage(
            "original", model, args, time.perf_counter() - start, fingerprint, splits=None, extra_arrays=extra
        )
        return model

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
        model = copy.deepcopy(original)
        args = self.arguments(method, settings, stage=name)
        trainer = get_trainer_class(method)(
            model=model, args=args, retain_dataset=splits.retain, forget_dataset=splits.forget
        )
        logger.info("Stage %s: %s (sharpness=%s)", name, method, args.sharpness)
        trainer.train()
        self.save_stage(name, model, args, time.perf_counter() - start, fingerprint, splits=splits)
        return self.finished_stage(name)

    def arguments(self, method: str, settings: dict[str, Any], stage: str | None = None):
        return training_arguments(
            settings,
            method=method,
            output_dir=str(self.output_dir / "checkpoints" / (stage or method)),
            use_cpu=self.use_cpu,
            report_to="none",
            seed=settings.get("seed", self.seed),
            log_level="warning",
        )

    # ------------------------------------------------------------- evaluation
    def evaluate(self, model: torch.nn.Module, splits: Splits) -> dict[str, Any]:
        batch_size = self.recipe["evaluation"]["batch_size"]
        probs = {
            name: predict_probabilities(model, dataset, batch_size=batch_size)
            for name, dataset in (("retain", splits.retain), ("forget", splits.forget), ("test", splits.test))
        }
        accuracies = {name: accuracy(p, y) for name, (p, y) in probs.items()}
        shadow_size = self.recipe["evaluation"]["mia_shadow_size"] or len(splits.test)
        members = sample_shadow_members(len(splits.retain), shadow_size, self.recipe["evaluation"]["mia_seed"])
        retain_probs, retain_labels = probs["retain"]
        mia = mia_efficacy(
            retain_probs[members], retain_labels[members], *probs["test"], *probs["forget"],
            seed=self.recipe["evaluation"]["mia_seed"],
        )
        return {"accuracy": accuracies, "mia": mia}

    # ---------------------------------------------------------------- stages
    def stage_dir(self, name: str) -> Path:
        return self.output_dir / "models" / name

    def fingerprint(self, name: str, settings: dict[str, Any], forget_sha256: str | None = None) -> str:
        """What a stage's result depends on; a finished stage with another fingerprint is redone."""
        inputs = {
            "stage": name,
            "settings": settings,
            "seed": self.seed,
            "data": self.recipe["data"],
            "model": self.recipe["model"],
            "pretrain": self.recipe["pretrain"],
            "forget_sha256": forget_sha256,
            "evaluation": self.recipe["evaluation"],
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
    ) -> None:
        """Write weights (safetensors), metrics and ``stage.json`` to a temporary folder, then rename it."""
        models_dir = self.output_dir / "models"
        models_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=models_dir))
        model.save_pretrained(tmp, safe_serialization=True)
        for filename, array in (extra_arrays or {}).items():
            np.save(tmp / filename, array)
        record = {
            "method": args.method,
            "sharpness": args.sharpness,
            "hyperparameters": {key: getattr(args, key) for key in RECORDED},
            "wall_seconds": round(wall_seconds, 3),
            "fingerprint": fingerprint,
        }
        if splits is not None:
            record.update(self.evaluate(model, splits))
        with open(tmp / "stage.json", "w", encoding="utf-8") as handle:
            json.dump(record, handle, indent=2, default=str)
        final = self.stage_dir(name)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)

    def assemble_report(self, results: dict[str, dict[str, Any]], splits: Splits) -> dict[str, Any]:
        if "accuracy" not in results["original"]:
            # The original is saved before the forget set exists; evaluate it now, once.
            results["original"].update(self.evaluate(load_saved_model(str(self.stage_dir("original"))), splits))
        reference = results["retrain"]["accuracy"]
        models = {}
        for name in ["original", "retrain", *[r["name"] for r in self.recipe["unlearn"]["runs"]]]:
            entry = dict(results[name])
            entry["tow"] = None if name == "retrain" else tug_of_war(entry["accuracy"], reference)
            models[name] = entry
        return {
            "name": self.recipe["name"],
            "dataset": self.recipe["data"]["source"],
            "seed": self.seed,
            "forget_set": splits.manifest.summary(),
            "sizes": {"train": len(splits.train), "retain": len(splits.retain), "forget": len(splits.forget),
                      "test": len(splits.test)},
            "models": models,
        }
