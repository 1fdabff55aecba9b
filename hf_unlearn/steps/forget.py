"""The data splits of a recipe and one forget set's run: its folder, its manifest and its retain / forget subsets.

A forget set is rebuilt from the recipe on every run (cheap and deterministic); its ``manifest.json`` is only
rewritten when it changed, so finished stages stay valid. Several forget sets each get a subfolder of the output
folder named after them; one forget set lives at the top.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data import SplitManifest, split_retain_forget
from ..data.forget_sets import (
    classwise_forget_set,
    file_forget_set,
    low_confidence_forget_set,
    memorization_forget_set,
    random_forget_set,
)
from ..data.manifest import json_default
from ..data.prepare import ROW_COLUMN, PreparedData, prepare_splits
from ..data.score_files import load_scores
from ..data.sources import FILE_NAME_COLUMN
from ..distributed import is_main_process
from ..errors import ValidationError
from .plan import digest


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


@dataclass
class ForgetSetRun:
    """One forget set of a run: ``folder`` holds its manifest, its stages' folders and its report (``root`` is the
    run's output folder, which holds the shared original)."""

    spec: dict[str, Any]
    root: Path
    folder: Path
    splits: Splits  # with retain, forget and manifest

    @property
    def name(self) -> str:
        return self.spec["name"]

    @property
    def manifest(self) -> SplitManifest:
        return self.splits.manifest


def prepare_data(recipe: dict[str, Any]) -> Splits:
    """Train / (validation) / test inputs of the recipe's data (hf_unlearn.data.prepare), with row ids."""
    prepared = prepare_splits(recipe["data"], int(recipe["seed"]), recipe["model"], keep=forget_rows_to_keep(recipe))
    return Splits(train=prepared.train, test=prepared.test, class_names=prepared.class_names, prepared=prepared)


def make_manifest(recipe: dict[str, Any], splits: Splits, spec: dict[str, Any], learning_events: Path) -> SplitManifest:
    """Build one forget set from its recipe spec (hf_unlearn.data.forget_sets); deterministic in the seed.
    ``learning_events``: the per-sample confidence over pretraining that ranks a low_confidence set."""
    n_train = len(splits.train)
    seed = int(recipe["seed"]) if spec["seed"] is None else int(spec["seed"])
    kind = spec["kind"]
    if kind == "random":
        manifest = random_forget_set(n_train, spec["size"], seed)
    elif kind in KNOWN_BEFORE_TRAINING:
        manifest = known_forget_set(spec, splits.prepared, seed)
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
        if not learning_events.is_file():
            raise ValueError(
                "forget.kind: low_confidence ranks samples by their confidence during pretraining, and this "
                "recipe's original model was not pretrained here (pretrain.epochs: 0); use kind memorization "
                "(with a score file), random, classwise or file."
            )
        confidence = np.load(learning_events, allow_pickle=False)
        manifest = low_confidence_forget_set(confidence, spec["size"], spec["band"], seed=seed)
    else:
        raise ValueError(f"forget.kind: unknown kind {kind!r}.")
    manifest.details["name"] = spec["name"]
    manifest.details["spec"] = spec
    manifest.details["inputs"] = forget_inputs(recipe, spec, n_train, manifest.details)
    return manifest


# Forget sets whose members are known before training: a validation carve leaves them in training.
KNOWN_BEFORE_TRAINING = ("classwise", "file")


def resolve_known(spec: dict[str, Any], raw: Any, seed: int) -> SplitManifest:
    """A class-wise or file forget set over ``raw`` (a training split with its source columns and row ids)."""
    if spec["kind"] == "classwise":
        return classwise_forget_set(
            np.asarray(raw.with_format("numpy")["label"]),
            classes=spec["classes"],
            fraction=spec["fraction"],
            seed=seed,
            class_names=raw.features["label"].names,
        )
    ids = None
    if spec["index"] == "id":
        if spec["id_column"] not in raw.column_names:
            known = [c for c in raw.column_names if c != ROW_COLUMN]
            raise ValueError(f"The training split has no column {spec['id_column']!r}; its columns are {known}.")
        ids = list(raw.with_format(None)[spec["id_column"]])
    return file_forget_set(
        spec["path"],
        n_train=len(raw),
        index=spec["index"],
        train_rows=np.asarray(raw.with_format("numpy")[ROW_COLUMN]),
        train_ids=ids,
        match_base_names=spec["id_column"] == FILE_NAME_COLUMN,
    )


def known_forget_set(spec: dict[str, Any], prepared: PreparedData, seed: int) -> SplitManifest:
    """A class-wise or file forget set, resolved on the training split before any validation carve (so the carve
    does not change it; file positions with ``index: train`` refer to that split) and located in the carved one."""
    before = prepared.raw_before_carve
    manifest = resolve_known(spec, prepared.raw_train if before is None else before, seed)
    if before is None:
        return manifest
    rows = np.asarray(before.with_format("numpy")[ROW_COLUMN])[manifest.forget_indices]
    position = {int(row): i for i, row in enumerate(prepared.train_rows)}
    indices = sorted(position[int(row)] for row in rows)  # never carved: `forget_rows_to_keep`
    return SplitManifest.build(
        manifest.kind, len(prepared.train_rows), indices, seed=manifest.seed, details=manifest.details
    )


def forget_rows_to_keep(recipe: dict[str, Any]) -> Any:
    """For `prepare_splits`: marks the members of every class-wise and file forget set of ``recipe`` in a training
    split, so that a validation split is carved from retain samples only. A forget set that cannot be resolved is
    skipped here; building it reports the error where it belongs (``forget``)."""
    from ..recipe_schema import forget_sets

    def keep(raw: Any) -> np.ndarray:
        mask = np.zeros(len(raw), dtype=bool)
        for spec in forget_sets(recipe):
            if spec["kind"] in KNOWN_BEFORE_TRAINING:
                seed = int(recipe["seed"]) if spec["seed"] is None else int(spec["seed"])
                try:
                    mask[resolve_known(spec, raw, seed).forget_indices] = True
                except ValueError:
                    continue
        return mask

    return keep


def forget_inputs(recipe: dict[str, Any], spec: dict[str, Any], n_train: int, details: dict[str, Any]) -> str:
    """Fingerprint of everything a forget set is built from: a saved manifest with the same inputs but other
    contents was edited by hand (`build_forget_set` refuses it); other inputs mean the recipe changed."""
    return digest(
        {
            "spec": spec,
            "seed": int(recipe["seed"]),
            "n_train": n_train,
            "data": recipe["data"],
            # A low-confidence set is ranked by pretraining; score and index files by their contents.
            "pretrain": [recipe["model"], recipe["pretrain"]] if spec["kind"] == "low_confidence" else None,
            "file": details.get("file_sha256") or (details.get("scores") or {}).get("sha256"),
        }
    )


def build_forget_set(
    recipe: dict[str, Any],
    splits: Splits,
    spec: dict[str, Any],
    *,
    root: Path,
    folder: Path,
    learning_events: Path,
    force: bool = False,
    shared: bool = True,
) -> ForgetSetRun:
    """The forget set of ``spec`` as ``folder/manifest.json`` and retain / forget subsets.

    A saved manifest keeps its commitment key while its forget set is unchanged; one edited by hand (same inputs,
    other contents) is refused; ``force`` rebuilds it. Under DDP every process commits with process 0's key (a
    broadcast: ``shared=False`` when process 0 builds it alone)."""
    import torch

    if is_main_process():
        folder.mkdir(parents=True, exist_ok=True)
    path = folder / "manifest.json"
    manifest = make_manifest(recipe, splits, spec, learning_events)
    existing = SplitManifest.from_json(path) if path.exists() and not force else None
    if existing is not None:
        if existing.sha256 == manifest.sha256:  # same forget set: same key, same published commitment
            manifest = manifest.with_key(existing.commitment_key)
        if existing.details.get("inputs") == manifest.details["inputs"]:
            check_unedited(path, existing, json_roundtrip(manifest))
    if shared and torch.distributed.is_initialized():  # every process commits with process 0's random key
        key = [manifest.commitment_key]
        torch.distributed.broadcast_object_list(key, src=0)
        manifest = manifest if key[0] == manifest.commitment_key else manifest.with_key(key[0])
    if is_main_process() and (existing is None or existing != json_roundtrip(manifest)):
        manifest.to_json(path)  # one writer; the others only compared it with the saved one (atomic rename)
    out = copy.copy(splits)
    out.manifest = manifest
    out.retain, out.forget = split_retain_forget(splits.train, manifest)
    return ForgetSetRun(spec=spec, root=root, folder=folder, splits=out)


def check_unedited(path: Path, saved: SplitManifest, rebuilt: SplitManifest) -> None:
    """``saved`` was built from the same inputs as ``rebuilt``, so any difference is a hand edit: refuse it."""
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


def json_roundtrip(manifest: SplitManifest) -> SplitManifest:
    """The manifest as `from_json` would read it back (tuples become lists ...), to compare with a saved one."""
    return SplitManifest(**json.loads(json.dumps(asdict(manifest), default=json_default)))
