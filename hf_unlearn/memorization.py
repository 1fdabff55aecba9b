"""Memorization scores (method-spec.md D.5) and their cheap proxy (D.6).

Feldman & Zhang's subsampled estimator: train K models, model k on a random subset S_k holding `subset_ratio`
(0.7) of the pool, and score every sample i by

    mem(i) = P[model correct on i | i in S] - P[model correct on i | i not in S],

each probability averaged over the models whose subset includes (excludes) i. 1 = learnt only when seen (highly
memorized), 0 = predicted as well unseen as seen (typical, or never learnt). `MemorizationEstimator` trains the
subset models with the library's own `pretrain` trainer on the recipe's model and pretraining settings.

Work splits three ways, all giving the same numbers for the same seed:
- shards (``shard=(i, n)``): model k belongs to shard ``k % n``; shards run as separate processes or machines
  and their files are merged with `merge_score_files` (sums of integer counts, so the merge equals one run);
- processes under ``accelerate launch`` / ``torchrun``: each process trains a disjoint part of the shard's models
  (every ``world_size``-th), each model on its own device and without DDP; process 0 writes the shard's file;
- resume: each finished model's per-sample correctness (and LiRA's statistics) is saved atomically under
  ``work_dir`` (one file per model, in a folder named after the settings' fingerprint) and is not trained again.

The machinery (training, shards, processes, resume, locks) is `hf_unlearn.shadows.SubsetModels`, shared with LiRA's
shadow models; the subsets and seeds are `hf_unlearn.subsets`.

Everything a model depends on is derived from ``(seed, k)``: its subset (`subset_indices`), its initialisation and
its data order (`model_seed`).

The cheap proxy is `hf_unlearn.callbacks.ConfidenceRecorder`: per-sample true-class confidence averaged over the
epochs of one training run (RUM's "confidence" learning event). Its direction is the opposite of memorization: LOW average confidence marks a
hard, HIGHLY memorized sample; forget-set builders invert it (`hf_unlearn.data.forget_sets`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .data.score_files import COUNT_ARRAYS, SCORE_FORMAT, ScoreTable, load_scores
from .shadows import ESTIMATOR, SubsetModels  # noqa: F401  (the machinery is shared with LiRA's shadows)
from .subsets import (  # noqa: F401  (these names stay importable from here)
    LAUNCHER_VARIABLES,
    detach_from_launcher,
    launcher_identity,
    model_seed,
    new_model,
    parse_shard,
    shard_models,
    subset_indices,
    subset_size,
)

logger = logging.getLogger(__name__)


class MemorizationEstimator(SubsetModels):
    """Feldman-Zhang memorization scores of every sample in a recipe's pool (see the module docstring).

    ``settings`` are the training settings of each subset model (a recipe training section: epochs, batch_size,
    optimizer ...); the pipeline's pretraining settings are the natural choice. ``work_dir`` holds one result file
    per finished model (resume); ``run()`` returns the `ScoreTable` of this shard (complete when unsharded).
    ``subsets="folds"`` (with ``folds``) scores from models that each leave out one fold instead of random subsets:
    the models LiRA's shadows (`hf_unlearn.shadows.ShadowModels`) train when the population is the pool alone, which
    they then share.
    """

    what = "memorization"

    def run(self) -> ScoreTable:
        """Train this process's missing models; process 0 then waits for the shard's models and returns its table."""
        start = time.perf_counter()
        trained = self.train()
        trained_seconds = time.perf_counter() - start
        if self.rank != 0:
            return None  # type: ignore[return-value]
        self.wait_for_shard()
        table = self.table(shard_models(self.num_models, self.shard))
        table.metadata["wall_seconds_this_run"] = round(trained_seconds, 3)
        table.metadata["trained_this_run"] = trained
        return table

    def table(self, model_ids: Iterable[int]) -> ScoreTable:
        """Counts and scores from the saved results of ``model_ids``."""
        ids = sorted(int(k) for k in model_ids)
        n_in = np.zeros(self.n, dtype=np.int32)
        n_out = np.zeros(self.n, dtype=np.int32)
        correct_in = np.zeros(self.n, dtype=np.int32)
        correct_out = np.zeros(self.n, dtype=np.int32)
        for k in ids:
            correct = self.load(k, "correct").astype(bool)
            member = self.member_mask(k)
            n_in += member
            n_out += ~member
            correct_in += correct & member
            correct_out += correct & ~member
        counts = {"n_in": n_in, "n_out": n_out, "correct_in": correct_in, "correct_out": correct_out}
        raw = self.data.raw_train
        labels = np.asarray(raw.with_format("numpy")["label"]) if raw is not None else None
        subsets = (
            "subset from SeedSequence([seed, k, 0])"
            if self.subsets == "random"
            else f"all but fold k % {self.folds} of a permutation from SeedSequence([seed, k // {self.folds}, 2])"
        )
        metadata = {
            "format": SCORE_FORMAT,
            **self.config,
            "num_models": self.num_models,
            "subset_size": subset_size(self.n, self.subset_ratio),
            "model_seeds": f"model k: {subsets}, init and data order from "
            "SeedSequence([seed, k, 1]) (hf_unlearn.memorization.subset_indices / model_seed)",
            "settings_fingerprint": self.fingerprint,
            "shard": f"{self.shard[0]}/{self.shard[1]}",
            "complete": ids == list(range(self.num_models)),
            "recipe": self.recipe.get("name"),
        }
        arrays = {**counts, "model_ids": np.asarray(ids, dtype=np.int64)}
        if labels is not None:
            arrays["labels"] = labels.astype(np.int64)
        return ScoreTable(scores_from_counts(counts), self.data.train_rows, metadata, arrays, origin="estimator")


def scores_from_counts(counts: dict[str, np.ndarray]) -> np.ndarray:
    """mem = correct_in / n_in - correct_out / n_out; NaN where a sample was in every subset or in none."""
    n_in, n_out = counts["n_in"].astype(np.float64), counts["n_out"].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        scores = counts["correct_in"] / n_in - counts["correct_out"] / n_out
    scores[(n_in == 0) | (n_out == 0)] = np.nan
    return scores


def merge_score_files(paths: Iterable[str | Path]) -> ScoreTable:
    """One table from shard files of the same estimation (same settings, disjoint models): sums of counts."""
    tables = [load_scores(p, require_complete=False) for p in paths]
    if not tables:
        raise ValueError("Nothing to merge: give the shard files.")
    first = tables[0]
    for table in tables:
        if table.metadata.get("format") != SCORE_FORMAT:
            raise ValueError(f"{table.origin} was not written by hf-unlearn memorization; only its shards merge.")
        for key in ("settings_fingerprint", "num_models"):
            if table.metadata.get(key) != first.metadata.get(key):
                raise ValueError(
                    f"{table.origin} and {first.origin} come from different estimations ({key} differs): merge only "
                    "shards of one command run with the same recipe, --num-models, --subset-ratio and --seed."
                )
        if not np.array_equal(table.row_ids, first.row_ids):
            raise ValueError(f"{table.origin} and {first.origin} score different rows.")
    ids = np.concatenate([t.arrays["model_ids"] for t in tables])
    if np.unique(ids).size != ids.size:
        raise ValueError("The shard files share models (the same shard given twice?); give each shard once.")
    counts = {name: sum(t.arrays[name].astype(np.int64) for t in tables).astype(np.int32) for name in COUNT_ARRAYS}
    metadata = dict(first.metadata)
    num_models = int(metadata["num_models"])
    metadata["complete"] = sorted(ids.tolist()) == list(range(num_models))
    metadata["shard"] = None if metadata["complete"] else f"merged {len(tables)} files"
    metadata["merged_from"] = [str(t.origin) for t in tables]
    for key in ("wall_seconds_this_run", "trained_this_run"):
        metadata.pop(key, None)
    arrays = {**counts, "model_ids": np.sort(ids).astype(np.int64)}
    if "labels" in first.arrays:
        arrays["labels"] = first.arrays["labels"]
    return ScoreTable(scores_from_counts(counts), first.row_ids, metadata, arrays, origin="merged")
