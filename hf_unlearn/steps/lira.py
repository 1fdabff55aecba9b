"""``evaluation.lira``: the likelihood-ratio attack (Carlini et al., 2022) on every evaluated model.

Members are the forget set, non-members the test split. Each sample's statistic (the logit-scaled true-class
confidence, and that of its mirror when the recipe's augmentation flips images) is judged against the recipe's
shadow models (`hf_unlearn.shadows.ShadowModels`: the pool plus the test split less one fold each, trained with the
recipe's pretraining settings and seed), which the run trains once into ``OUTPUT/shadows/`` (or reads from
``evaluation.lira.path``) and reuses: finished shadows are kept, one file each, under the fingerprint of what they
depend on, so an interrupted run resumes and a rerun trains none. Every model's metrics get ``attacks.lira``
(online: Gaussians of the shadows that trained on the sample and of those that did not) and ``attacks.lira_offline``
(only those that did not), each ``{"auc", "tpr_at_fpr": {"0.01", "0.001"}}`` (`hf_unlearn.metrics.attacks`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ValidationError
from ..metrics.attacks import attack_summary
from ..metrics.lira import lira_scores
from ..shadows import ShadowModels, ShadowStatistics, view_statistics
from .forget import Splits
from .plan import original_plan
from .score import Evaluator

logger = logging.getLogger(__name__)


def make_evaluator(recipe: dict[str, Any], output_dir: str | Path, *, use_cpu: bool) -> Evaluator:
    """The recipe's evaluator: with LiRA when ``evaluation.lira`` is set."""
    evaluator = Evaluator(recipe)
    if evaluator.settings.lira is None:
        return evaluator
    return LiraEvaluator(recipe, output_dir, use_cpu=use_cpu)


class LiraEvaluator(Evaluator):
    """An `Evaluator` that adds LiRA's two attacks to every model's ``attacks`` (beside what is there)."""

    def __init__(self, recipe: dict[str, Any], output_dir: str | Path, *, use_cpu: bool):
        super().__init__(recipe)
        self.recipe = recipe
        self.lira = self.settings.lira_settings
        self.given = self.lira.path is not None
        self.work_dir = Path(self.lira.path) if self.given else Path(output_dir) / "shadows"
        self.use_cpu = use_cpu
        self._models: ShadowModels | None = None
        self._statistics: ShadowStatistics | None = None

    def metrics(self, model: Any, splits: Splits) -> dict[str, Any]:
        metrics = super().metrics(model, splits)
        return {**metrics, "attacks": {**(metrics.get("attacks") or {}), **self.attacks(model, splits)}}

    # ---------------------------------------------------------------------------------------------- shadows
    def shadow_models(self) -> ShadowModels:
        if self._models is None:
            self._models = ShadowModels(
                self.recipe,
                original_plan(self.recipe).settings,  # the shadows train like the original
                num_models=self.lira.shadows,
                work_dir=self.work_dir,
                seed=int(self.recipe["seed"]),
                use_cpu=self.use_cpu,
                eval_batch_size=self.settings.batch_size,
            )
        return self._models

    def shadows(self) -> ShadowStatistics:
        """The shadows' statistics: trained now when missing (resumable), read from ``path`` when given."""
        if self._statistics is not None:
            return self._statistics
        import torch

        models = self.shadow_models()
        done = len(models.done())
        if done < models.num_models:
            command = (
                f"hf-unlearn shadows RECIPE --shadows {models.num_models} --seed {models.seed} --output-dir "
                f"{self.work_dir}"
            )
            if self.given:
                raise ValidationError(
                    f"evaluation.lira.path: {self.work_dir} holds {done} of the {models.num_models} shadows this "
                    f"recipe needs (its data, model, pretrain settings and seed {models.seed}: folder "
                    f"{models.model_dir.name}); train them with `{command}`, or remove path to train them in the run."
                )
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                raise ValidationError(
                    "evaluation.lira: a distributed run does not train shadow models (they are independent: no DDP); "
                    f"train them first with `{command}` (or under accelerate launch, which shares them out) and "
                    "set evaluation.lira.path."
                )
            logger.info(
                "Stage shadows: training %d of %d shadow models into %s",
                models.num_models - done,
                models.num_models,
                models.model_dir,
            )
            models.train()
            models.wait_for_shard()
        self._statistics = models.statistics()
        return self._statistics

    # ---------------------------------------------------------------------------------------------- attack
    def target_statistics(self, model: Any, dataset: Any) -> np.ndarray:
        """The model's statistics [n, V] on ``dataset``, with the shadows' views."""
        _, stats = view_statistics(
            model, dataset, views=self.shadow_models().views, batch_size=self.settings.batch_size
        )
        return stats.astype(np.float64)

    def attacks(self, model: Any, splits: Splits) -> dict[str, dict[str, Any]]:
        """``{"lira": ..., "lira_offline": ...}``: members = forget, non-members = test."""
        shadows = self.shadows()
        forget_rows = np.asarray(splits.train_rows)[splits.manifest.forget_indices]
        test_rows = splits.prepared.test_rows
        stats, member = shadows.select(np.concatenate([forget_rows, test_rows]))
        target = np.concatenate(
            [self.target_statistics(model, splits.forget), self.target_statistics(model, splits.test)]
        )
        n_forget = len(forget_rows)
        out = {}
        for name, online in (("lira", True), ("lira_offline", False)):
            scores = lira_scores(target, stats, member, online=online, fixed_variance=self.lira.use_fixed_variance)
            out[name] = attack_summary(scores[:n_forget], scores[n_forget:])
        return out
