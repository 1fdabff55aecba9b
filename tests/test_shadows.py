"""LiRA's shadow models (hf_unlearn.shadows): folds, population, shards, resume, sharing with memorization, the
``shadows`` command, and the ``evaluation.lira`` recipe settings."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SUBSET_MODEL, small_digits_recipe, subset_settings, tiny_recipe, write_recipe

from hf_unlearn.cli import main
from hf_unlearn.errors import RecipeError
from hf_unlearn.memorization import MemorizationEstimator
from hf_unlearn.recipe import validate
from hf_unlearn.recipe_schema import EvaluationSection
from hf_unlearn.shadows import ShadowModels, flips_horizontally
from hf_unlearn.steps.plan import original_plan
from hf_unlearn.subsets import fold_indices

TINY_MODEL = SUBSET_MODEL
SETTINGS = subset_settings(1)


@pytest.fixture(scope="module")
def recipe(small_digits):
    return small_digits_recipe(small_digits, "shadows", SETTINGS)


def test_each_group_of_shadows_leaves_every_sample_out_once_from_seed_and_k():
    for n in (10, 11):
        kept = [fold_indices(n, 5, seed=0, k=k) for k in range(5, 10)]  # group 1
        left_out = [np.setdiff1d(np.arange(n), keep) for keep in kept]
        assert all(np.all(np.diff(keep) > 0) for keep in kept)  # sorted
        assert sorted(len(out) for out in left_out) == sorted(len(f) for f in np.array_split(np.arange(n), 5))
        np.testing.assert_array_equal(np.sort(np.concatenate(left_out)), np.arange(n))  # each sample out once
    first, second = fold_indices(11, 2, seed=0, k=6), fold_indices(11, 2, seed=0, k=7)  # two folds: halves
    assert {first.size, second.size} == {5, 6} and not np.intersect1d(first, second).size
    np.testing.assert_array_equal(fold_indices(100, 5, seed=0, k=4), fold_indices(100, 5, seed=0, k=4))
    assert not np.array_equal(fold_indices(100, 5, seed=0, k=4), fold_indices(100, 5, seed=0, k=9))  # other group
    assert not np.array_equal(fold_indices(100, 5, seed=0, k=4), fold_indices(100, 5, seed=1, k=4))  # other seed


def test_mirrored_views_follow_the_augmentation():
    assert flips_horizontally("flip_crop") and flips_horizontally("timm")
    assert flips_horizontally([{"RandomRotation": {"degrees": 5}}, {"RandomHorizontalFlip": {"p": 0.5}}])
    assert not flips_horizontally("none") and not flips_horizontally([{"RandomRotation": {"degrees": 5}}])


def test_population_is_the_pool_plus_the_sources_own_test_split(tmp_path):
    """A source with its own test split: the shadows' population holds it (row ids -1 - j), as the run's test rows
    say; a carved test split is part of the pool (its rows are pool rows, disjoint from training)."""
    from datasets import DatasetDict

    from hf_unlearn.data import load_digits_dataset
    from hf_unlearn.data.prepare import prepare_population, prepare_splits

    digits = load_digits_dataset()
    folder = tmp_path / "two_splits"
    DatasetDict({"train": digits.select(range(60)), "test": digits.select(range(60, 80))}).save_to_disk(str(folder))
    data = {"source": str(folder), "image_size": 8}
    population = prepare_population(data)
    assert len(population.train) == 80 and population.pool_size == 60
    np.testing.assert_array_equal(population.train_rows, [*range(60), *(-1 - np.arange(20))])
    splits = prepare_splits(data, seed=0)
    np.testing.assert_array_equal(splits.test_rows, -1 - np.arange(20))
    np.testing.assert_array_equal(
        population.train.pixel_values[60:].numpy(), splits.test.pixel_values.numpy()
    )  # the same inputs
    carved = prepare_splits({"source": "digits", "image_size": 8, "test_size": 0.2}, seed=0)
    assert len(carved.test_rows) == len(carved.test) and not np.intersect1d(carved.test_rows, carved.train_rows).size


@pytest.mark.slow
def test_shards_resume_and_sharing_with_memorization(recipe, tmp_path):
    # 120 samples, a carved test split of 24: 5 folds, each shadow trains on 96 samples as the recipe's models do.
    whole = ShadowModels(recipe, SETTINGS, num_models=5, work_dir=tmp_path / "a", progress=False, use_cpu=True)
    assert whole.folds == 5 and whole.train() == 5
    stats = whole.statistics()
    assert stats.stats.shape == (5, 120, 1) and np.isfinite(stats.stats).all()
    assert (stats.member.sum(axis=1) == 96).all() and (stats.member.sum(axis=0) == 4).all()  # each sample out once
    np.testing.assert_array_equal(stats.row_ids, np.arange(120))

    for i in range(2):  # shards in their own folder, as on two machines
        part = ShadowModels(
            recipe, SETTINGS, num_models=5, work_dir=tmp_path / "b", shard=(i, 2), progress=False, use_cpu=True
        )
        assert part.train() == [3, 2][i]
    merged = ShadowModels(recipe, SETTINGS, num_models=5, work_dir=tmp_path / "b", progress=False, use_cpu=True)
    np.testing.assert_array_equal(merged.statistics().stats, stats.stats)  # bitwise: one thread, (seed, k) only

    assert whole.train() == 0  # resume: nothing left to train
    whole.model_path(3).unlink()
    assert whole.train() == 1
    np.testing.assert_array_equal(whole.statistics().stats, stats.stats)

    # Memorization from the same folds of the same pool reads the same models: it trains none.
    estimator = MemorizationEstimator(
        recipe, SETTINGS, num_models=5, subsets="folds", folds=5, work_dir=tmp_path / "a", progress=False, use_cpu=True
    )
    assert estimator.model_dir == whole.model_dir
    assert estimator.run().metadata["trained_this_run"] == 0
    # Other settings never reuse them; fewer shadows than asked is refused.
    other = ShadowModels(recipe, {**SETTINGS, "epochs": 2}, num_models=5, work_dir=tmp_path / "a", progress=False)
    assert other.model_dir != whole.model_dir
    with pytest.raises(ValueError, match="not trained yet"):
        other.statistics()
    with pytest.raises(ValueError, match="give at least 5, better a multiple of 5"):
        ShadowModels(recipe, SETTINGS, num_models=4, work_dir=tmp_path, data=whole.data)


@pytest.mark.slow
def test_cli_trains_shards_and_merges_them(recipe, small_digits, tmp_path, capsys):
    path = write_recipe(
        tmp_path,
        {
            "data": {"source": str(small_digits), "image_size": 8},
            "model": {"config": TINY_MODEL},
            "pretrain": SETTINGS,
            "unlearn": {"runs": [{"method": "finetune"}]},
        },
    )
    for i in range(2):
        assert main(["shadows", str(path), "-K", "5", "--shard", f"{i}/2", "--cpu", "--no-progress",
                     "--output-dir", str(tmp_path / f"s{i}")]) == 0  # fmt: skip
    assert "2 of 5 so far (the other shards" in capsys.readouterr().out
    assert (
        main(["shadows-merge", str(tmp_path / "s0"), str(tmp_path / "s1"), "--output-dir", str(tmp_path / "all")]) == 0
    )
    assert "5 copied" in capsys.readouterr().out
    settings = original_plan(recipe).settings  # the command trains like the original, as a run's shadows do
    models = ShadowModels(recipe, settings, num_models=5, work_dir=tmp_path / "all", progress=False)
    assert models.done() == [0, 1, 2, 3, 4]
    assert main(["shadows", str(path), "-K", "3", "--output-dir", str(tmp_path / "x")]) == 2  # fewer than the folds
    assert "give at least 5" in capsys.readouterr().err


def test_recipe_lira_settings_are_checked_and_key_the_scores():
    def evaluation(lira):
        return validate(tiny_recipe(**{"evaluation.lira": lira}))["evaluation"]

    assert "lira" not in EvaluationSection(**validate(tiny_recipe())["evaluation"]).scored()  # cached scores hold
    few = EvaluationSection(**evaluation({"shadows": 16})).scored()["lira"]
    assert few == {"shadows": 16, "path": None, "fixed_variance": True}  # below 64: one pooled variance
    assert EvaluationSection(**evaluation({"shadows": 64})).scored()["lira"]["fixed_variance"] is False
    given = {"shadows": 8, "path": "shadows", "fixed_variance": False}
    assert EvaluationSection(**evaluation(given)).scored()["lira"] == given
    for lira, message in [
        ({"shadow": 8}, "evaluation.lira.shadow: unknown recipe key. Did you mean 'shadows'"),
        ({"path": "x"}, "evaluation.lira.shadows: LiRA needs the number of shadow models"),
        ({"shadows": 1}, "give at least 2"),
        ({"shadows": "8"}, "evaluation.lira.shadows: expected int"),
        ({"shadows": 8, "fixed_variance": "yes"}, "evaluation.lira.fixed_variance: expected bool"),
        (8, "evaluation.lira: expected a mapping"),
    ]:
        with pytest.raises(RecipeError, match=message):
            evaluation(lira)
