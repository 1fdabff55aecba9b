"""Subset models: K models of a recipe, model k trained on a subset of a population drawn from ``(seed, k)`` only.

One machinery serves two consumers:

- memorization scores (`hf_unlearn.memorization`): random 70% subsets of the pool (``subsets="random"``);
- LiRA's shadow models (`ShadowModels`): the pool plus the source's own test split, each shadow leaving out one fold
  (``subsets="folds"``), so that the attack's non-members (test samples) have shadows that trained on them too
  (online LiRA).

Every model records, for every sample of its population, whether it predicts it correctly (``correct``) and its
logit-scaled true-class confidence (``stats`` [n, V]: the image, and its mirror when the recipe's augmentation flips
images horizontally). So one set of models serves both consumers when population and subsets agree (folds of a
pool-only population, e.g. digits): ``MemorizationEstimator(..., subsets="folds", folds=F)`` and `ShadowModels` then
share ``work_dir/<fingerprint>/`` and neither trains a model the other has.

Folds, not random halves: a shadow must be trained like the target. The target (the recipe's original) trains on the
training split, i.e. the population less a test split's worth of samples; a shadow trained on half the data is
weaker and less confident everywhere, and LiRA then reads the target's higher confidence on test samples as
membership (measured on digits: offline AUC 0.37 for the retrained reference against half-data shadows). So the
population is cut into F = population / test-size folds (5 on digits; 2, halves, when the test split is as large as
the pool used) and each shadow leaves out one: it trains on as many samples, for as many steps, as the target. Model
k leaves out fold ``k % F`` of a permutation drawn from ``(seed, k // F)``, so every F consecutive shadows leave
every sample out exactly once: with K >= F each sample has shadows out (K/F of them) and in (the rest). Work splits
as memorization's does: shards (``k % n == i``), processes under a launcher (every ``world_size``-th model), and
resume (one file per finished model, written atomically, under a lock).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PrinterCallback

from .data.prepare import PreparedData, prepare_pool, prepare_population
from .data.score_files import atomic_savez
from .lock import FolderLock, FolderLockedError
from .metrics.inference import collate_inputs, eval_mode, model_device
from .metrics.lira import logit_confidence
from .recipe import recipe_augmentation
from .recipe_training import BACKGROUND_TRAINING, training_arguments
from .subsets import fold_indices, model_seed, new_model, shard_models, subset_indices, subset_size
from .trainers import get_trainer_class

# The key that names the subsampling scheme in every fingerprint; kept for folds too, so that memorization's
# fingerprints (and its work folders and score files) are the ones earlier versions wrote.
ESTIMATOR = "feldman-zhang-subsampling"
SUBSET_SCHEMES = ("random", "folds")


def flips_horizontally(spec: Any) -> bool:
    """Whether a ``data.augmentation`` value flips images horizontally (flip_crop, timm, or a listed
    RandomHorizontalFlip): the mirror is then an input the model trained on, and LiRA queries it too."""
    if spec in ("flip_crop", "timm"):
        return True
    entries = spec if isinstance(spec, list) else []
    return any((next(iter(e)) if isinstance(e, dict) else e) == "RandomHorizontalFlip" for e in entries)


@torch.inference_mode()
def view_statistics(model: Any, dataset: Any, *, views: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(correct [n] bool, logit-scaled true-class confidence [n, views] float32) of ``model`` on ``dataset``; view 1
    is the horizontal mirror. One pass over the data (each batch is fed as it is and mirrored)."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_inputs)
    device = model_device(model)
    correct, stats = [], []
    with eval_mode(model):
        for batch in loader:
            pixels, labels = batch["pixel_values"].to(device), batch["labels"].reshape(-1).numpy()
            columns = []
            for view in range(views):
                logits = model(pixel_values=pixels if view == 0 else torch.flip(pixels, dims=[-1])).logits
                probs = torch.softmax(logits.double(), dim=-1).cpu().numpy()  # float64, as predict_probabilities
                if view == 0:
                    correct.append(probs.argmax(axis=1) == labels)
                columns.append(logit_confidence(probs, labels))
            stats.append(np.stack(columns, axis=1))
    return np.concatenate(correct), np.concatenate(stats).astype(np.float32)


# ------------------------------------------------------------------------------------------------ the models
class SubsetModels:
    """K models of ``recipe``'s model trained with ``settings`` (a training section) on subsets of a population.

    ``subsets``: ``random`` (``subset_ratio`` of the population, independently per model) or ``folds`` (all but
    one of ``folds`` folds, `fold_indices`). ``with_test``: the population is the pool plus the source's own test split
    (`prepare_population`), else the pool alone. ``work_dir`` holds one file per finished model in a folder named
    after the fingerprint of everything the models depend on; ``train()`` trains this process's missing models.
    """

    what = "subset models"  # the progress bar's name
    needs: tuple[str, ...] = ("correct",)  # the per-model arrays a consumer reads (older files may lack stats)

    def __init__(
        self,
        recipe: dict[str, Any],
        settings: dict[str, Any],
        *,
        num_models: int,
        work_dir: str | Path,
        subset_ratio: float = 0.7,
        subsets: str = "random",
        folds: int = 2,
        with_test: bool = False,
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
        if subsets not in SUBSET_SCHEMES:
            raise ValueError(f"subsets must be one of {', '.join(SUBSET_SCHEMES)}, got {subsets!r}.")
        self.recipe = recipe
        self.settings = {k: v for k, v in settings.items() if k not in ("method", "name")}
        self.num_models = int(num_models)
        self.subsets = subsets
        self.folds = int(folds)
        self.subset_ratio = (self.folds - 1) / self.folds if subsets == "folds" else float(subset_ratio)
        self.seed = int(seed)
        self.shard = shard
        self.use_cpu = use_cpu or not torch.cuda.is_available()
        self.eval_batch_size = eval_batch_size
        self.progress = progress
        self.rank, self.world_size = rank, world_size
        if data is None:
            data = (prepare_population if with_test else prepare_pool)(recipe["data"], recipe["model"])
        self.data = data
        self.n = len(self.data.train)
        if subsets == "random":
            subset_size(self.n, self.subset_ratio)  # validates the ratio early
        augmentation = (recipe.get("data") or {}).get("augmentation", "none")
        self.views = 2 if flips_horizontally(augmentation) else 1
        self.config = self._config(augmentation)
        self.fingerprint = hashlib.sha256(json.dumps(self.config, sort_keys=True, default=str).encode()).hexdigest()
        self.model_dir = Path(work_dir) / self.fingerprint[:16]

    def _config(self, augmentation: Any) -> dict[str, Any]:
        """What the models depend on. Keys that earlier versions did not write are added only when they differ
        from what those versions did (random subsets, the pool alone, no augmentation), so their fingerprints hold."""
        data = self.recipe["data"]
        config: dict[str, Any] = {
            "estimator": ESTIMATOR,
            "subset_ratio": self.subset_ratio,
            "seed": self.seed,
            "model": self.recipe["model"],
            "training": self.settings,
            "data": {
                "source": data["source"],
                "config": data.get("config"),
                "revision": data.get("revision"),
                "split": data.get("train_split", "train"),
                "pool_size": self.data.pool_size,
                "pool_fingerprint": self.data.pool_fingerprint,
                "transform": self.data.description.get("transform", {}),
            },
        }
        if self.data.description.get("test_split"):
            config["data"]["test_split"] = self.data.description["test_split"]
        if self.subsets != "random":
            config["subsets"] = {"kind": self.subsets, "folds": self.folds}
        if augmentation not in (None, "none"):
            config["augmentation"] = augmentation
        return config

    # ---------------------------------------------------------------------------------------------- subsets
    def subset(self, k: int) -> np.ndarray:
        """Sorted population indices model k trains on."""
        if self.subsets == "folds":
            return fold_indices(self.n, self.folds, self.seed, k)
        return subset_indices(self.n, self.subset_ratio, self.seed, k)

    def member_mask(self, k: int) -> np.ndarray:
        mask = np.zeros(self.n, dtype=bool)
        mask[self.subset(k)] = True
        return mask

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
        shapes = {"correct": (self.n,), "stats": (self.n, self.views)}
        try:
            with np.load(path, allow_pickle=False) as data:
                return str(data["fingerprint"]) == self.fingerprint and all(
                    data[name].shape == shapes[name] for name in self.needs
                )
        except (OSError, ValueError, KeyError):
            return False  # a damaged file (cannot happen with atomic writes, but never trust it), or no stats

    def load(self, k: int, name: str) -> np.ndarray:
        with np.load(self.model_path(k), allow_pickle=False) as data:
            return data[name]

    def train_one(self, k: int) -> dict[str, np.ndarray]:
        """Train model k on its subset; its ``correct`` [n] and ``stats`` [n, views] on the whole population."""
        seed = model_seed(self.seed, k)
        model = new_model(self.recipe["model"], self.data.class_names, seed)
        args = training_arguments(
            self.settings,
            method="pretrain",
            output_dir=str(self.model_dir / "trainer"),
            use_cpu=self.use_cpu,
            seed=seed,
            **BACKGROUND_TRAINING,
        )
        trainer = get_trainer_class("pretrain")(
            model=model,
            args=args,
            retain_dataset=self.data.train.select(self.subset(k)),
            augmentation=recipe_augmentation(self.recipe),  # as the original's pretraining; scoring is deterministic
        )
        trainer.remove_callback(PrinterCallback)  # K models: the progress bar says enough
        trainer.train()
        correct, stats = view_statistics(model, self.data.train, views=self.views, batch_size=self.eval_batch_size)
        return {"correct": correct, "stats": stats}

    def train(self) -> int:
        """Train this process's missing models (each under a lock, one torch thread on the CPU); how many."""
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
                desc=f"{self.what} shard {self.shard[0]}/{self.shard[1]}"
                + (f" process {self.rank}/{self.world_size}" if self.world_size > 1 else ""),
            )
        threads = torch.get_num_threads()
        if self.use_cpu:  # CPU kernels reduce in thread-count-dependent order: pin, so any machine gives the same bits
            torch.set_num_threads(1)
        try:
            for k in todo:
                # One trainer per model: a second command on the same work folder is refused (exit 2, naming
                # this process) instead of training the same model twice; a killed worker's lock dies with it.
                lock = FolderLock(self.model_dir, f"hf-unlearn {self.what} worker", name=f".model_{k:05d}.lock")
                lock.acquire()
                try:
                    if self.is_done(k):  # finished meanwhile by another worker that has since released it
                        continue
                    arrays = self.train_one(k)
                    atomic_savez(
                        self.model_path(k),
                        **arrays,
                        fingerprint=np.array(self.fingerprint),
                        k=np.array(k),
                        wall_seconds=np.array(time.perf_counter() - start),
                    )
                finally:
                    lock.release()
                if bar is not None:
                    bar.update(1)
                    member = self.member_mask(k)
                    correct = arrays["correct"]
                    bar.set_postfix(acc_in=f"{correct[member].mean():.3f}", acc_out=f"{correct[~member].mean():.3f}")
        except FolderLockedError:  # another command's worker: not a failure of this launch's processes
            raise
        except BaseException as error:
            (self.model_dir / f"failed-rank{self.rank}.txt").write_text(f"{type(error).__name__}: {error}\n")
            raise
        finally:
            torch.set_num_threads(threads)
            if bar is not None:
                bar.close()
        return len(todo)

    def wait_for_shard(self, poll_seconds: float = 1.0) -> None:
        """Process 0 under a launcher: wait until the other processes have written their models."""
        needed = shard_models(self.num_models, self.shard)
        while True:
            missing = [k for k in needed if not self.is_done(k)]
            if not missing:
                return
            failures = sorted(self.model_dir.glob("failed-rank*.txt"))
            if failures:
                raise RuntimeError(
                    f"Another {self.what} process failed ({failures[0].read_text().strip()}); fix it and rerun: "
                    "finished models are kept."
                )
            if self.world_size == 1:
                raise RuntimeError(f"Models {missing[:5]} have no result file; rerun to train them.")
            time.sleep(poll_seconds)


@dataclass
class ShadowStatistics:
    """What LiRA reads from K shadows: ``stats`` [K, N, V] (logit-scaled confidence per view), ``member`` [K, N]
    (which shadow trained on which sample) and ``row_ids`` [N] (`hf_unlearn.data.prepare`'s row ids)."""

    stats: np.ndarray
    member: np.ndarray
    row_ids: np.ndarray

    def select(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(stats [K, len(rows), V], member [K, len(rows)]) of the samples with these row ids, in their order."""
        position = {int(r): i for i, r in enumerate(self.row_ids)}
        missing = [int(r) for r in rows if int(r) not in position]
        if missing:
            raise ValueError(f"the shadows' population lacks rows {missing[:5]}; they were trained on other data.")
        index = np.asarray([position[int(r)] for r in rows], dtype=np.int64)
        return self.stats[:, index], self.member[:, index]


class ShadowModels(SubsetModels):
    """LiRA's shadow models: the pool plus the source's test split, each shadow leaving out one fold of the test
    split's size (see the module docstring). ``num_models`` must be at least the number of folds (`shadow_folds`):
    every sample then has a shadow that left it out; a multiple of it balances them exactly."""

    what = "shadows"
    needs = ("correct", "stats")

    def __init__(self, recipe: dict[str, Any], settings: dict[str, Any], *, num_models: int, **kwargs: Any) -> None:
        kwargs.setdefault("with_test", True)
        if kwargs.get("data") is None:
            kwargs["data"] = (prepare_population if kwargs["with_test"] else prepare_pool)(
                recipe["data"], recipe["model"]
            )
        folds = shadow_folds(recipe, kwargs["data"])
        if num_models < max(folds, 2):
            raise ValueError(
                f"shadows: {num_models} shadow models; each leaves out 1/{folds} of the data (a test split's worth, "
                f"so that it trains on as many samples as the recipe's models), so give at least {max(folds, 2)}, "
                f"better a multiple of {folds} (e.g. {folds * max(2, -(-16 // folds))})."
            )
        super().__init__(recipe, settings, num_models=num_models, subsets="folds", folds=folds, **kwargs)

    def done(self) -> list[int]:
        return [k for k in range(self.num_models) if self.is_done(k)]

    def statistics(self) -> ShadowStatistics:
        """The K shadows' statistics; every shadow must be trained."""
        missing = [k for k in range(self.num_models) if not self.is_done(k)]
        if missing:
            raise ValueError(f"shadows {missing[:5]} of {self.num_models} are not trained yet (in {self.model_dir}).")
        stats = np.stack([self.load(k, "stats") for k in range(self.num_models)]).astype(np.float64)
        member = np.stack([self.member_mask(k) for k in range(self.num_models)])
        return ShadowStatistics(stats, member, np.asarray(self.data.train_rows, dtype=np.int64))

    def describe(self) -> dict[str, Any]:
        """``shadows.json``: the settings, how many are trained and how the folds are drawn."""
        return {
            **self.config,
            "num_models": self.num_models,
            "views": self.views,
            "population_size": self.n,
            "trained": len(self.done()),
            "model_seeds": f"model k leaves out fold k % {self.folds} of a permutation from SeedSequence([seed, "
            f"k // {self.folds}, 2]); init and data order from SeedSequence([seed, k, 1]) "
            "(hf_unlearn.subsets.fold_indices / model_seed)",
        }


def shadow_folds(recipe: dict[str, Any], population: PreparedData) -> int:
    """How many folds the population is cut into: population / test split size, rounded (at least 2), so that a
    shadow trains on about as many samples as the recipe's training split. The test split is the source's own
    (`prepare_population` records its size) or ``data.test_size`` carved from the pool (a fraction, or a count)."""
    own = population.description.get("test_split")
    if own:
        n_test = own["size"]
    else:
        test_size = recipe["data"].get("test_size", 0.2)
        n_test = test_size if isinstance(test_size, int) else int(np.ceil(test_size * len(population.train)))
    return max(2, round(len(population.train) / max(n_test, 1)))
