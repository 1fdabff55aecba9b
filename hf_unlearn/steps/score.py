"""Metrics of a model on a forget set's splits, cached apart from the trained weights.

Every stage's metrics (accuracy on retain / forget / test, MIA-efficacy, the attacks' error rates) are kept in the
forget set's ``scores.json``, keyed by the ``evaluation`` settings that change a number, the stage's fingerprint and
the forget set. A stage's fingerprint leaves ``evaluation`` out, so changing, say, ``evaluation.mia_seed`` re-scores
the saved models without retraining any of them. An entry that lacks a metric of `NO_METRICS` (written by an older
hf_unlearn, before the attacks) is scored again too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from ..atomic import atomic_write_json
from ..distributed import barrier, is_main_process
from ..recipe_schema import EvaluationSection
from .forget import ForgetSetRun, Splits
from .plan import digest

SCORES = "scores.json"
# The metrics of a model without weights (diverged early); every scored entry has these keys.
NO_METRICS: dict[str, Any] = {"accuracy": None, "mia": None, "attacks": None}


class Evaluator:
    """Scores models with the recipe's ``evaluation`` settings. Under DDP (``accelerate launch``) every process
    calls the same methods: each predicts a shard, and the main process alone writes the cache."""

    def __init__(self, recipe: dict[str, Any]):
        self.settings = EvaluationSection.of(recipe)

    def metrics(self, model: Any, splits: Splits) -> dict[str, Any]:
        """``{"accuracy": {retain, forget, test}, "mia": {...}, "attacks": {...}}`` of ``model`` on a forget set's
        splits. Raises `DivergenceError` when its predictions are not finite."""
        from ..metrics.unlearning import unlearning_metrics

        return unlearning_metrics(
            model,
            splits.retain,
            splits.forget,
            splits.test,
            batch_size=self.settings.batch_size,
            mia_shadow_size=self.settings.mia_shadow_size,
            mia_seed=self.settings.mia_seed,
            num_workers=self.settings.num_workers,
            distributed=True,  # under DDP every process predicts a shard; all processes call this
        )

    def accuracies(self, model: Any, datasets: Mapping[str, Any]) -> dict[str, float]:
        """Accuracy of ``model`` on each named split, e.g. ``{"validation": ..., "forget": ...}`` (no MIA)."""
        from ..metrics.inference import accuracy, predict_probabilities

        out = {}
        for name, dataset in datasets.items():
            probs, labels = predict_probabilities(
                model,
                dataset,
                batch_size=self.settings.batch_size,
                num_workers=self.settings.num_workers,
                distributed=True,
            )
            out[name] = accuracy(probs, labels)
        return out

    # ------------------------------------------------------------------------------------------------ cache
    def key(self, fingerprint: str, run: ForgetSetRun) -> str:
        return digest({"evaluation": self.settings.scored(), "stage": fingerprint, "forget": run.manifest.sha256})

    def cached(self, run: ForgetSetRun, name: str, fingerprint: str) -> dict[str, Any] | None:
        entry = _read(run).get(name)
        if entry is None or entry.get("key") != self.key(fingerprint, run):
            return None
        if any(metric not in entry for metric in NO_METRICS):  # cached before that metric existed: score again
            return None
        return {k: v for k, v in entry.items() if k != "key"}

    def remember(self, run: ForgetSetRun, name: str, fingerprint: str, metrics: dict[str, Any]) -> None:
        """Keep the metrics of stage ``name`` (main process writes; every process leaves together)."""
        if is_main_process():
            scores = _read(run)
            scores[name] = {"key": self.key(fingerprint, run), **metrics}
            atomic_write_json(run.folder / SCORES, scores)
        barrier()

    def scores(self, run: ForgetSetRun, name: str, fingerprint: str, load: Callable[[], Any | None]) -> dict[str, Any]:
        """Stage ``name``'s metrics on ``run``: from the cache, or by scoring ``load()`` (None: no weights)."""
        cached = self.cached(run, name, fingerprint)
        if cached is not None:
            return cached
        model = load()
        metrics = dict(NO_METRICS) if model is None else self.metrics(model, run.splits)
        self.remember(run, name, fingerprint, metrics)
        return metrics


def _read(run: ForgetSetRun) -> dict[str, Any]:
    path = run.folder / SCORES
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # unreadable: score again (the file is only a cache)
        return {}
