"""U-LiRA (Hayes et al., 2024, "Inexact unlearning needs more careful evaluations"): can an attacker tell a model
unlearned with a method from one retrained without the forgotten samples, sample by sample?

The targets T are the recipe's forget set, drawn as the recipe draws it (its seed). Shadow pair k (everything
derived from ``(seed, k)``, as `hf_unlearn.memorization` derives its subset models):

- D_k: a random half of the training samples outside T, plus all of T (`shadow_sets`); F_k: a random half of T,
  pairs 2j and 2j+1 forgetting complementary halves, so each target is forgotten in half of the pairs;
- O_k: the recipe's model pretrained on D_k with the recipe's pretraining settings (the ``pretrain`` trainer);
- U_k: O_k unlearned with the chosen run's method and settings, forget set F_k, retain set D_k minus F_k;
- R_k: the reference, trained like the recipe's (``retrain`` settings, the same initial weights as O_k) on D_k
  minus F_k.

Each model's statistic on every target is the logit-scaled true-class confidence
(`hf_unlearn.metrics.lira.logit_confidence`), with the mirrored image as a second view when the recipe's
augmentation flips. For target x, N_u(x) is fitted on the U models' statistics and N_r(x) on the R models', over
the pairs that forgot x. The attack is judged leave-one-pair-out (`leave_one_out`): for pair k and each x in F_k,
the Gaussians are fitted on the other pairs; U_k's statistic is called "unlearned" when
``log N_u - log N_r > 0``, R_k's "retrained" when it is <= 0. ``attack_accuracy`` is the fraction of correct calls,
half of them on U models and half on R models: 0.5 means the method's models cannot be told from retraining (the
ideal), 1 that every target betrays them. Its 95% interval is a bootstrap over pairs (`bootstrap_interval`): the
calls within a pair share its two models and their training noise, so pairs, not targets, are the independent
units. The same calls with O_k in place of U_k give ``original_attack_accuracy``: the score of not unlearning at
all, the scale against which a method is read.

Differences from the paper: the attacker is judged leave-one-out on the shadow pairs themselves instead of on
separately trained target pairs (each pair is both, which halves the training), and each shadow forgets half of T,
so a method whose effect depends on the forget set's size sees a set half the recipe's.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ValidationError, did_you_mean
from .metrics.lira import gaussian_fit, gaussian_log_ratio
from .shadows import flips_horizontally, view_statistics
from .subsets import model_seed, shard_models, subset_indices

logger = logging.getLogger(__name__)

FORMAT = "hf-unlearn-ulira-1"
# Each target is forgotten in K / 2 pairs; leaving one out leaves K / 2 - 1 points per Gaussian, and a spread
# needs two: K >= 6.
MIN_SHADOWS = 6
# Below this many pairs each per-target Gaussian rests on fewer than ~31 points: pool the variance over targets
# (LiRA's fixed-variance variant, which Carlini et al. recommend for small shadow counts).
FIXED_VARIANCE_BELOW = 64
BOOTSTRAP_SAMPLES = 2000


# ------------------------------------------------------------------------------------------ the protocol
def forget_half(n_targets: int, seed: int, k: int) -> np.ndarray:
    """Sorted positions (within T) of the targets pair k forgets: pairs 2j and 2j+1 split one permutation drawn
    from ``(seed, j)`` into its first ``n // 2`` targets and the rest, so with an even K every target is forgotten
    in exactly K / 2 pairs (each target's Gaussians rest on as many points as the others')."""
    if n_targets < 2:
        raise ValidationError(f"forget: U-LiRA needs at least 2 target samples (the forget set has {n_targets}).")
    # Stream 3: memorization's subsets and seeds use streams 0 and 1, its halves 2.
    order = np.random.default_rng(np.random.SeedSequence([int(seed), int(k) // 2, 3])).permutation(n_targets)
    return np.sort(order[: n_targets // 2] if k % 2 == 0 else order[n_targets // 2 :]).astype(np.int64)


def shadow_sets(n_pool: int, targets: np.ndarray, seed: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(D_k, F_k) of pair k as sorted positions in the pool: half of the non-targets plus every target, and half of
    the targets."""
    targets = np.unique(np.asarray(targets, dtype=np.int64))
    others = np.setdiff1d(np.arange(n_pool, dtype=np.int64), targets)
    kept = others[subset_indices(len(others), 0.5, seed, k)]
    return np.union1d(kept, targets), targets[forget_half(len(targets), seed, k)]


def leave_one_out(unlearned: np.ndarray, retrained: np.ndarray, forgotten: np.ndarray, *, fixed_variance: bool) -> dict:
    """The leave-one-pair-out calls (module docstring) from statistics [K, N] or [K, N, V] and ``forgotten`` [K, N].

    Returns per pair the correct calls and the calls made (``correct``, ``calls``: [K]), the log-ratios of the U and
    the R calls (``u_scores``, ``r_scores``) and per target its correct calls and calls (``target_correct``,
    ``target_calls``: [N]). A target is called in pair k only when the other pairs forgot it at least twice (once
    with a fixed variance): a per-target variance needs two points.
    """
    forgotten = np.asarray(forgotten, dtype=bool)
    num, n = forgotten.shape
    need = 1 if fixed_variance else 2
    correct, calls = np.zeros(num, dtype=np.int64), np.zeros(num, dtype=np.int64)
    target_correct, target_calls = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    u_scores: list[np.ndarray] = []
    r_scores: list[np.ndarray] = []
    for k in range(num):
        others = forgotten.copy()
        others[k] = False
        fit_u = gaussian_fit(unlearned, others, fixed_variance=fixed_variance)
        fit_r = gaussian_fit(retrained, others, fixed_variance=fixed_variance)
        u = gaussian_log_ratio(np.asarray(unlearned)[k], fit_u, fit_r)
        r = gaussian_log_ratio(np.asarray(retrained)[k], fit_u, fit_r)
        # NaN where a fit has no spread at all (no target with two points): no call rather than a wrong one.
        usable = forgotten[k] & (others.sum(axis=0) >= need) & np.isfinite(u) & np.isfinite(r)
        right = (u > 0).astype(np.int64) + (r <= 0).astype(np.int64)
        correct[k], calls[k] = right[usable].sum(), 2 * usable.sum()
        target_correct += np.where(usable, right, 0)
        target_calls += 2 * usable
        u_scores.append(u[usable])
        r_scores.append(r[usable])
    return {
        "correct": correct,
        "calls": calls,
        "u_scores": np.concatenate(u_scores),
        "r_scores": np.concatenate(r_scores),
        "target_correct": target_correct,
        "target_calls": target_calls,
    }


def bootstrap_interval(
    correct: np.ndarray, calls: np.ndarray, *, seed: int = 0, samples: int = BOOTSTRAP_SAMPLES, level: float = 0.95
) -> list[float]:
    """Percentile interval of ``sum(correct) / sum(calls)`` over pairs resampled with replacement (seeded)."""
    correct, calls = np.asarray(correct, dtype=np.float64), np.asarray(calls, dtype=np.float64)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 4]))
    picks = rng.integers(0, len(calls), size=(samples, len(calls)))
    totals = calls[picks].sum(axis=1)
    ratios = correct[picks].sum(axis=1)[totals > 0] / totals[totals > 0]
    tail = (1.0 - level) / 2
    return [float(np.quantile(ratios, tail)), float(np.quantile(ratios, 1.0 - tail))]


def attack_result(
    unlearned: np.ndarray, retrained: np.ndarray, forgotten: np.ndarray, *, fixed_variance: bool, seed: int = 0
) -> dict[str, Any]:
    """``accuracy``, its ``interval``, the calls made and the per-example AUC / TPR at low FPR of the log-ratio
    (`hf_unlearn.metrics.attacks.attack_summary`, U calls as members); with the raw per-pair and per-target counts."""
    from .metrics.attacks import attack_summary

    calls = leave_one_out(unlearned, retrained, forgotten, fixed_variance=fixed_variance)
    total = int(calls["calls"].sum())
    if total == 0:
        raise ValidationError(
            "ulira: no target was forgotten by enough other shadow pairs to fit its Gaussians; raise --shadows."
        )
    return {
        "accuracy": float(calls["correct"].sum() / total),
        "interval": bootstrap_interval(calls["correct"], calls["calls"], seed=seed),
        "calls": total,
        **attack_summary(calls["u_scores"], calls["r_scores"]),
        "counts": calls,
    }


# --------------------------------------------------------------------------------------- the shadow pairs
def find_run(recipe: dict[str, Any], name: str) -> dict[str, Any]:
    """The unlearning run named ``name``; an error listing the recipe's runs otherwise."""
    names = [run["name"] for run in recipe["unlearn"]["runs"]]
    for run in recipe["unlearn"]["runs"]:
        if run["name"] == name:
            return run
    raise ValidationError(
        f"ulira --run {name}: the recipe has no unlearning run named {name!r}; its runs: {', '.join(names)}."
        + did_you_mean(name, names)
    )


def check_setting(recipe: dict[str, Any], run: dict[str, Any], num_shadows: int) -> Any:
    """The run's `StagePlan`, after the refusals that need no data: too few pairs, a run that stops early."""
    from .steps.plan import unlearn_plan

    if num_shadows < MIN_SHADOWS:
        raise ValidationError(
            f"ulira --shadows {num_shadows}: need at least {MIN_SHADOWS} pairs (each target's Gaussians are fitted on "
            "the other pairs that forgot it, K / 2 - 1 of them, and a spread needs two); 16 or more give a usable interval."
        )
    pretrain = recipe["pretrain"]
    if not pretrain.get("epochs", pretrain.get("num_train_epochs", 1)):
        raise ValidationError(
            "pretrain.epochs: 0 keeps a given model as the original, which no shadow can imitate: U-LiRA trains each "
            "shadow original with the recipe's pretraining. Give pretrain a number of epochs (--set pretrain.epochs=N)."
        )
    plan = unlearn_plan(recipe, run)
    if plan.early_stop is not None or plan.early_stopping is not None:
        raise ValidationError(
            f"ulira --run {run['name']}: a run that stops early (early_stop, early_stopping_patience) decides on a "
            "validation split the shadow pairs do not have; give it a fixed number of epochs (--set)."
        )
    return plan


class ShadowPairs:
    """Trains (or reuses) the K shadow pairs of one U-LiRA setting into ``work_dir/<fingerprint>/pair_<k>.npz``.

    ``pool`` is the recipe's training split (a dataset with ``pixel_values`` and ``labels``) and ``targets`` the
    forget set's positions in it. Each finished pair is saved atomically, so an interrupted command resumes.
    """

    def __init__(
        self,
        recipe: dict[str, Any],
        run: dict[str, Any],
        pool: Any,
        class_names: list[str],
        targets: np.ndarray,
        *,
        num_shadows: int,
        work_dir: str | Path,
        use_cpu: bool,
    ) -> None:
        from .recipe_schema import reference_kind
        from .steps.plan import digest, original_plan, retrain_plan

        plan = check_setting(recipe, run, num_shadows)
        self.recipe, self.run, self.pool, self.class_names = recipe, run, pool, class_names
        self.targets = np.unique(np.asarray(targets, dtype=np.int64))
        import torch

        self.num_shadows = int(num_shadows)
        self.use_cpu = use_cpu or not torch.cuda.is_available()
        self.seed = int(recipe["seed"])
        self.settings = {
            "pretrain": original_plan(recipe).settings,
            # Without a recipe reference (retrain: false, or given), shadows retrain with the pretraining settings.
            "retrain": (retrain_plan if reference_kind(recipe) == "retrain" else original_plan)(recipe).settings,
            "unlearn": plan.settings,
        }
        self.mirror = flips_horizontally((recipe.get("data") or {}).get("augmentation") or "none")
        self.batch_size = int(recipe["evaluation"]["batch_size"])
        self.config = {
            "format": FORMAT,
            "seed": self.seed,
            "method": plan.method,
            "settings": self.settings,
            "model": recipe["model"],
            "data": recipe["data"],
            "pool_size": len(pool),
            "targets_sha256": hashlib.sha256(self.targets.tobytes()).hexdigest(),
            "mirror": self.mirror,
        }
        self.fingerprint = digest(self.config)
        self.folder = Path(work_dir) / self.fingerprint[:16]

    def path(self, k: int) -> Path:
        return self.folder / f"pair_{k:05d}.npz"

    def is_done(self, k: int) -> bool:
        try:
            with np.load(self.path(k), allow_pickle=False) as data:
                return str(data["fingerprint"]) == self.fingerprint
        except (OSError, ValueError, KeyError):
            return False  # missing or unreadable: train it (again)

    def _trained(self, method: str, model: Any, seed: int, retain: Any, forget: Any = None, **extra: Any) -> Any:
        """``model`` trained by the library's trainer of ``method`` with the recipe's settings for it (no
        checkpoints, logs or evaluation: a pair is saved whole or not at all)."""
        from transformers import PrinterCallback

        from .recipe import recipe_augmentation
        from .recipe_training import BACKGROUND_TRAINING, training_arguments
        from .trainers import get_trainer_class

        section = {"pretrain": "pretrain", "retrain": "retrain"}.get(method, "unlearn")
        args = training_arguments(
            self.settings[section],
            method=method,
            output_dir=str(self.folder / "trainer"),
            use_cpu=self.use_cpu,
            seed=seed,
            eval_strategy="no",
            load_best_model_at_end=False,
            **BACKGROUND_TRAINING,
        )
        trainer = get_trainer_class(method)(
            model=model,
            args=args,
            retain_dataset=retain,
            forget_dataset=forget,
            augmentation=recipe_augmentation(self.recipe),
            **extra,
        )
        trainer.remove_callback(PrinterCallback)  # K pairs: the command's bar says enough
        trainer.train()
        return model

    def train_pair(self, k: int) -> dict[str, np.ndarray]:
        """Pair k's O, U and R statistics on every target ([N, V] each), which targets it forgot, and accuracies."""
        from .memorization import new_model
        from .models import build_model_from_config, fresh_model

        start = time.perf_counter()
        train, forget = shadow_sets(len(self.pool), self.targets, self.seed, k)
        retain = np.setdiff1d(train, forget)
        seed = model_seed(self.seed, k)
        spec = self.recipe["model"]
        original = new_model(spec, self.class_names, seed)
        # The reference starts as the pipeline's (StageRunner.initial_reference): from the original's initial
        # weights when built from model.config, from a fresh initialisation of a loaded architecture.
        if spec.get("config") is not None:
            reference = build_model_from_config(spec["config"], self.class_names, seed, spec.get("stem"))
        else:
            reference = fresh_model(original.config, seed, trust_remote_code=spec.get("trust_remote_code", False))
        self._trained("pretrain", original, seed, self.pool.select(train))
        unlearned = copy.deepcopy(original)
        self._trained(self.run["method"], unlearned, seed, self.pool.select(retain), self.pool.select(forget))
        self._trained("retrain", reference, seed, self.pool.select(retain), reinit=False)
        targets = self.pool.select(self.targets)
        out: dict[str, np.ndarray] = {"forgotten": np.isin(self.targets, forget)}
        for name, model in (("original", original), ("unlearned", unlearned), ("retrained", reference)):
            correct, stats = view_statistics(model, targets, views=2 if self.mirror else 1, batch_size=self.batch_size)
            out[name], out[f"{name}_correct"] = stats.astype(np.float64), correct
        out["wall_seconds"] = np.array(time.perf_counter() - start)
        return out

    def run_pairs(self, shard: tuple[int, int] = (0, 1), *, progress: bool = True) -> int:
        """Train this shard's missing pairs (one torch thread on CPU, as the memorization estimator); how many."""
        import torch

        from .data.score_files import atomic_savez
        from .lock import FolderLock

        self.folder.mkdir(parents=True, exist_ok=True)
        mine = shard_models(self.num_shadows, shard)
        todo = [k for k in mine if not self.is_done(k)]
        bar = None
        if progress:
            from tqdm.auto import tqdm

            where = "" if shard == (0, 1) else f" shard {shard[0]}/{shard[1]}"
            bar = tqdm(total=len(mine), initial=len(mine) - len(todo), unit="pair", desc=f"ulira shadows{where}")
        threads = torch.get_num_threads()
        if self.use_cpu:  # CPU sums depend on the thread count: pinned, a pair gives the same bits on any machine
            torch.set_num_threads(1)
        try:
            for k in todo:
                with FolderLock(self.folder, "hf-unlearn ulira worker", name=f".pair_{k:05d}.lock"):
                    if self.is_done(k):  # another shard finished it meanwhile
                        continue
                    pair = self.train_pair(k)
                    atomic_savez(self.path(k), fingerprint=np.array(self.fingerprint), k=np.array(k), **pair)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(u_acc=f"{pair['unlearned_correct'][pair['forgotten']].mean():.2f}")
        finally:
            torch.set_num_threads(threads)
            if bar is not None:
                bar.close()
        return len(todo)

    def missing(self) -> list[int]:
        return [k for k in range(self.num_shadows) if not self.is_done(k)]

    def load(self) -> dict[str, np.ndarray]:
        """Every pair's arrays stacked over pairs ([K, ...])."""
        pairs = []
        for k in range(self.num_shadows):
            with np.load(self.path(k), allow_pickle=False) as data:
                pairs.append({name: data[name] for name in data.files})
        return {name: np.stack([pair[name] for pair in pairs]) for name in pairs[0]}

    def describe(self) -> dict[str, Any]:
        """The settings block of ulira.json."""
        return {**json.loads(json.dumps(self.config, default=str)), "fingerprint": self.fingerprint}
