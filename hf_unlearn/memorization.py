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
- resume: each finished model's per-sample correctness is saved atomically under ``work_dir`` (one file per
  model, in a folder named after the settings' fingerprint) and is not trained again.

Everything a model depends on is derived from ``(seed, k)``: its subset (`subset_indices`), its initialisation and
its data order (`model_seed`).

The cheap proxy is `hf_unlearn.callbacks.ConfidenceRecorder`: per-sample true-class confidence averaged over the
epochs of one training run (RUM's "confidence" learning event). Its direction is the opposite of memorization: LOW average confidence marks a
hard, HIGHLY memorized sample; forget-set builders invert it (`hf_unlearn.data.forget_sets`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PrinterCallback, set_seed

from .data.prepare import PreparedData, prepare_pool
from .data.score_files import COUNT_ARRAYS, SCORE_FORMAT, ScoreTable, atomic_savez, load_scores
from .lock import FolderLock, FolderLockedError
from .metrics import predict_probabilities
from .models import build_model_from_config, load_pretrained_model
from .recipe import recipe_augmentation
from .recipe_training import training_arguments
from .trainers import get_trainer_class

logger = logging.getLogger(__name__)

ESTIMATOR = "feldman-zhang-subsampling"
# Environment variables through which launchers (accelerate launch, torchrun, MPI) make the Trainer distributed.
LAUNCHER_VARIABLES = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "GROUP_RANK",
    "ROLE_RANK",
    "ROLE_WORLD_SIZE",
    "GROUP_WORLD_SIZE",
    "ROLE_NAME",
    "MASTER_ADDR",
    "MASTER_PORT",
    "TORCHELASTIC_RUN_ID",
    "PMI_SIZE",
    "PMI_RANK",
    "OMPI_COMM_WORLD_SIZE",
    "OMPI_COMM_WORLD_RANK",
    "OMPI_COMM_WORLD_LOCAL_RANK",
    "MV2_COMM_WORLD_SIZE",
    "MV2_COMM_WORLD_RANK",
)


# --------------------------------------------------------------------------------------------------- the proxy
# ------------------------------------------------------------------------------------------- the subset models
def subset_size(n: int, ratio: float) -> int:
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"subset_ratio must be in (0, 1), got {ratio}.")
    size = int(np.floor(ratio * n + 0.5))
    if not 0 < size < n:
        raise ValueError(f"A {ratio} subset of {n} samples is empty or everything; use more samples.")
    return size


def subset_indices(n: int, ratio: float, seed: int, k: int) -> np.ndarray:
    """Sorted indices of model k's training subset: exactly ``round(ratio * n)`` samples, from ``(seed, k)``."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(k), 0]))
    return np.sort(rng.choice(n, size=subset_size(n, ratio), replace=False)).astype(np.int64)


def model_seed(seed: int, k: int) -> int:
    """Seed of model k's initialisation and data order (a 31-bit int derived from ``(seed, k)``)."""
    return int(np.random.SeedSequence([int(seed), int(k), 1]).generate_state(1)[0] >> 1)


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"i/n"`` -> (i, n) with 0 <= i < n; None -> (0, 1)."""
    if text is None:
        return 0, 1
    try:
        index, count = (int(part) for part in str(text).split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r}: expected I/N, e.g. 0/2 (the first of two shards).") from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"--shard {text!r}: need 0 <= I < N, e.g. 0/2 and 1/2 for two shards.")
    return index, count


def shard_models(num_models: int, shard: tuple[int, int]) -> list[int]:
    return [k for k in range(num_models) if k % shard[1] == shard[0]]


def launcher_identity(environ: dict[str, str] | None = None) -> tuple[int, int, int]:
    """(rank, world size, local rank) set by accelerate launch / torchrun; (0, 1, 0) in a plain process."""
    env = os.environ if environ is None else environ
    world = int(env.get("WORLD_SIZE", env.get("OMPI_COMM_WORLD_SIZE", env.get("PMI_SIZE", "1"))))
    rank = int(env.get("RANK", env.get("OMPI_COMM_WORLD_RANK", env.get("PMI_RANK", "0"))))
    local = int(env.get("LOCAL_RANK", env.get("OMPI_COMM_WORLD_LOCAL_RANK", str(rank))))
    return rank, world, local


def detach_from_launcher() -> tuple[int, int]:
    """Turn a launched process into an independent worker: (rank, world size), and a single-process environment.

    The subset models are independent, so processes share the K models instead of training each one with DDP: the
    launcher's variables are removed (the Trainer then sees one process) and, on GPUs, each process keeps the GPU of
    its local rank only. Call before anything touches CUDA.
    """
    rank, world, local = launcher_identity()
    if world > 1:
        for name in LAUNCHER_VARIABLES:
            os.environ.pop(name, None)
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        devices = [d for d in visible.split(",") if d.strip()] if visible else None
        if devices:
            os.environ["CUDA_VISIBLE_DEVICES"] = devices[local % len(devices)]
        elif visible is None:
            os.environ["CUDA_VISIBLE_DEVICES"] = str(local)
    return rank, world


def new_model(model_spec: dict[str, Any], class_names: list[str], seed: int):
    """The recipe's model, freshly initialised from ``seed`` (or loaded, with a seeded new head)."""
    if model_spec.get("config") is not None:
        return build_model_from_config(model_spec["config"], class_names, seed, model_spec.get("stem"))
    set_seed(seed)
    return load_pretrained_model(
        model_spec["name_or_path"], class_names, trust_remote_code=model_spec.get("trust_remote_code", False)
    )


class MemorizationEstimator:
    """Feldman-Zhang memorization scores of every sample in a recipe's pool (see the module docstring).

    ``settings`` are the training settings of each subset model (a recipe training section: epochs, batch_size,
    optimizer ...); the pipeline's pretraining settings are the natural choice. ``work_dir`` holds one result file
    per finished model (resume); ``run()`` returns the `ScoreTable` of this shard (complete when unsharded).
    """

    def __init__(
        self,
        recipe: dict[str, Any],
        settings: dict[str, Any],
        *,
        num_models: int,
        work_dir: str | Path,
        subset_ratio: float = 0.7,
        seed: int = 0,
        shard: tuple[int, int] = (0, 1),
        use_cpu: bool = False,
        eval_batch_size: int = 512,
        progress: bool = True,
        rank: int = 0,
        world_size: int = 1,
        data: PreparedData | None = None,
    ) -> None:
        if num_models < 1:
            raise ValueError(f"num_models must be at least 1, got {num_models}.")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside a world of {world_size} processes.")
        self.recipe = recipe
        self.settings = {k: v for k, v in settings.items() if k not in ("method", "name")}
        self.num_models = int(num_models)
        self.subset_ratio = float(subset_ratio)
        self.seed = int(seed)
        self.shard = shard
        self.use_cpu = use_cpu or not torch.cuda.is_available()
        self.eval_batch_size = eval_batch_size
        self.progress = progress
        self.rank, self.world_size = rank, world_size
        self.data = data if data is not None else prepare_pool(recipe["data"], recipe["model"])
        self.n = len(self.data.train)
        subset_size(self.n, self.subset_ratio)  # validates the ratio early
        self.config = {
            "estimator": ESTIMATOR,
            "subset_ratio": self.subset_ratio,
            "seed": self.seed,
            "model": recipe["model"],
            "training": self.settings,
            "data": {
                "source": recipe["data"]["source"],
                "config": recipe["data"].get("config"),
                "revision": recipe["data"].get("revision"),
                "split": recipe["data"].get("train_split", "train"),
                "pool_size": self.data.pool_size,
                "pool_fingerprint": self.data.pool_fingerprint,
                "transform": self.data.description.get("transform", {}),
            },
        }
        self.fingerprint = hashlib.sha256(json.dumps(self.config, sort_keys=True, default=str).encode()).hexdigest()
        self.model_dir = Path(work_dir) / self.fingerprint[:16]

    # ---------------------------------------------------------------------------------------------- models
    def model_path(self, k: int) -> Path:
        return self.model_dir / f"model_{k:05d}.npz"

    def my_models(self) -> list[int]:
        """This process's share of this shard's models."""
        return shard_models(self.num_models, self.shard)[self.rank :: self.world_size]

    def is_done(self, k: int) -> bool:
        path = self.model_path(k)
        if not path.is_file():
            return False
        try:
            with np.load(path, allow_pickle=False) as data:
                return str(data["fingerprint"]) == self.fingerprint and data["correct"].shape == (self.n,)
        except (OSError, ValueError, KeyError):
            return False  # a damaged file (cannot happen with atomic writes, but never trust it): train again

    def train_one(self, k: int) -> np.ndarray:
        """Train subset model k and return its per-sample correctness on the whole pool (bool [n])."""
        seed = model_seed(self.seed, k)
        indices = subset_indices(self.n, self.subset_ratio, self.seed, k)
        model = new_model(self.recipe["model"], self.data.class_names, seed)
        args = training_arguments(
            self.settings,
            method="pretrain",
            output_dir=str(self.model_dir / "trainer"),
            use_cpu=self.use_cpu,
            report_to="none",
            seed=seed,
            disable_tqdm=True,
            save_strategy="no",
            logging_strategy="no",
            log_level="error",
        )
        trainer = get_trainer_class("pretrain")(
            model=model,
            args=args,
            retain_dataset=self.data.train.select(indices),
            augmentation=recipe_augmentation(self.recipe),  # as the original's pretraining; scoring is deterministic
        )
        trainer.remove_callback(PrinterCallback)  # K models: the progress bar says enough
        trainer.train()
        probs, labels = predict_probabilities(model, self.data.train, batch_size=self.eval_batch_size)
        return probs.argmax(axis=1) == labels

    def run(self) -> ScoreTable:
        """Train this process's missing models; process 0 then waits for the shard's models and returns its table."""
        self.model_dir.mkdir(parents=True, exist_ok=True)
        mine = self.my_models()
        todo = [k for k in mine if not self.is_done(k)]
        start = time.perf_counter()
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(
                total=len(mine),
                initial=len(mine) - len(todo),
                unit="model",
                position=self.rank,
                desc=f"memorization shard {self.shard[0]}/{self.shard[1]}"
                + (f" process {self.rank}/{self.world_size}" if self.world_size > 1 else ""),
            )
        threads = torch.get_num_threads()
        if self.use_cpu:  # CPU kernels reduce in thread-count-dependent order: pin, so any machine gives the same bits
            torch.set_num_threads(1)
        try:
            for k in todo:
                # One trainer per model: a second command on the same work folder is refused (exit 2, naming
                # this process) instead of training the same model twice; a killed worker's lock dies with it.
                lock = FolderLock(self.model_dir, "hf-unlearn memorization worker", name=f".model_{k:05d}.lock")
                lock.acquire()
                try:
                    if self.is_done(k):  # finished meanwhile by another worker that has since released it
                        continue
                    correct = self.train_one(k)
                    atomic_savez(
                        self.model_path(k),
                        correct=correct,
                        fingerprint=np.array(self.fingerprint),
                        k=np.array(k),
                        wall_seconds=np.array(time.perf_counter() - start),
                    )
                finally:
                    lock.release()
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(acc=f"{correct.mean():.3f}")
        except FolderLockedError:  # another command's worker: not a failure of this launch's processes
            raise
        except BaseException as error:
            (self.model_dir / f"failed-rank{self.rank}.txt").write_text(f"{type(error).__name__}: {error}\n")
            raise
        finally:
            torch.set_num_threads(threads)
            if bar is not None:
                bar.close()
        trained_seconds = time.perf_counter() - start
        if self.rank != 0:
            return None  # type: ignore[return-value]
        self._wait_for_shard()
        table = self.table(shard_models(self.num_models, self.shard))
        table.metadata["wall_seconds_this_run"] = round(trained_seconds, 3)
        table.metadata["trained_this_run"] = len(todo)
        return table

    def _wait_for_shard(self, poll_seconds: float = 1.0) -> None:
        """Process 0 under a launcher: wait until the other processes have written their models."""
        needed = shard_models(self.num_models, self.shard)
        while True:
            missing = [k for k in needed if not self.is_done(k)]
            if not missing:
                return
            failures = sorted(self.model_dir.glob("failed-rank*.txt"))
            if failures:
                raise RuntimeError(
                    f"Another estimator process failed ({failures[0].read_text().strip()}); fix it and rerun: "
                    "finished models are kept."
                )
            if self.world_size == 1:
                raise RuntimeError(f"Models {missing[:5]} have no result file; rerun to train them.")
            time.sleep(poll_seconds)

    def table(self, model_ids: Iterable[int]) -> ScoreTable:
        """Counts and scores from the saved results of ``model_ids``."""
        ids = sorted(int(k) for k in model_ids)
        n_in = np.zeros(self.n, dtype=np.int32)
        n_out = np.zeros(self.n, dtype=np.int32)
        correct_in = np.zeros(self.n, dtype=np.int32)
        correct_out = np.zeros(self.n, dtype=np.int32)
        for k in ids:
            with np.load(self.model_path(k), allow_pickle=False) as data:
                correct = data["correct"].astype(bool)
            member = np.zeros(self.n, dtype=bool)
            member[subset_indices(self.n, self.subset_ratio, self.seed, k)] = True
            n_in += member
            n_out += ~member
            correct_in += correct & member
            correct_out += correct & ~member
        counts = {"n_in": n_in, "n_out": n_out, "correct_in": correct_in, "correct_out": correct_out}
        raw = self.data.raw_train
        labels = np.asarray(raw.with_format("numpy")["label"]) if raw is not None else None
        metadata = {
            "format": SCORE_FORMAT,
            **self.config,
            "num_models": self.num_models,
            "subset_size": subset_size(self.n, self.subset_ratio),
            "model_seeds": "model k: subset from SeedSequence([seed, k, 0]), init and data order from "
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
