"""The Feldman-Zhang memorization estimator (subsets, counts, shards, resume, processes) and the confidence proxy."""

from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import SUBSET_MODEL, small_digits_recipe, subset_settings

from hf_unlearn.callbacks import ConfidenceRecorder
from hf_unlearn.cli import main
from hf_unlearn.data.score_files import load_scores, save_scores
from hf_unlearn.memorization import (
    MemorizationEstimator,
    detach_from_launcher,
    launcher_identity,
    merge_score_files,
    model_seed,
    parse_shard,
    scores_from_counts,
    shard_models,
    subset_indices,
)

TINY_MODEL = SUBSET_MODEL
SETTINGS = subset_settings(2)


@pytest.fixture(scope="module")
def recipe(small_digits):
    return small_digits_recipe(small_digits, "mem", SETTINGS)


def test_subsets_and_seeds_are_functions_of_seed_and_k():
    a = subset_indices(100, 0.7, seed=0, k=3)
    assert a.size == 70 and np.all(np.diff(a) > 0)
    np.testing.assert_array_equal(a, subset_indices(100, 0.7, seed=0, k=3))
    assert not np.array_equal(a, subset_indices(100, 0.7, seed=0, k=4))
    assert not np.array_equal(a, subset_indices(100, 0.7, seed=1, k=3))
    assert model_seed(0, 3) == model_seed(0, 3) != model_seed(0, 4)
    assert shard_models(7, (1, 3)) == [1, 4] and parse_shard("1/3") == (1, 3) and parse_shard(None) == (0, 1)
    for bad in ("3/3", "a/b", "1"):
        with pytest.raises(ValueError, match="shard"):
            parse_shard(bad)


def test_score_is_p_correct_in_minus_p_correct_out():
    counts = {  # sample 0: in 3 models (all correct), out of 1 (wrong): mem 1; sample 1 always right: 0
        "n_in": np.array([3, 2, 4]),
        "n_out": np.array([1, 2, 0]),
        "correct_in": np.array([3, 2, 4]),
        "correct_out": np.array([0, 2, 0]),
    }
    np.testing.assert_array_equal(scores_from_counts(counts), [1.0, 0.0, np.nan])


@pytest.mark.slow
def test_sharded_merge_equals_unsharded_and_resume(recipe, tmp_path):
    whole = MemorizationEstimator(recipe, SETTINGS, num_models=3, work_dir=tmp_path / "a", progress=False, use_cpu=True)
    table = whole.run()
    assert table.metadata["complete"] and table.metadata["trained_this_run"] == 3
    assert table.arrays["model_ids"].tolist() == [0, 1, 2] and (table.arrays["n_in"] + table.arrays["n_out"] == 3).all()
    meta = table.metadata
    assert (meta["num_models"], meta["subset_ratio"], meta["seed"]) == (3, 0.7, 0)
    assert meta["model"]["config"] == TINY_MODEL and meta["data"]["pool_size"] == 120
    assert len(meta["data"]["pool_fingerprint"]) == 64 and meta["training"]["epochs"] == 2

    shards = []
    for i in range(2):  # separate work dir: the shards train their own models
        part = MemorizationEstimator(
            recipe,
            SETTINGS,
            num_models=3,
            work_dir=tmp_path / "b",
            shard=(i, 2),
            progress=False,
            use_cpu=True,
            data=whole.data,
        ).run()
        assert not part.metadata["complete"] and part.arrays["model_ids"].tolist() == [[0, 2], [1]][i]
        shards.append(save_scores(tmp_path / f"shard{i}.npz", part))
    merged = merge_score_files(shards)
    assert merged.metadata["complete"]
    np.testing.assert_array_equal(merged.scores, table.scores)
    for name in ("n_in", "n_out", "correct_in", "correct_out"):
        np.testing.assert_array_equal(merged.arrays[name], table.arrays[name])
    with pytest.raises(ValueError, match="share models"):
        merge_score_files([shards[0], shards[0]])
    with pytest.raises(ValueError, match="merge the shards"):
        load_scores(shards[0])

    # Resume: finished models are not trained again; a lost one is retrained alone, with the same result.
    again = MemorizationEstimator(
        recipe, SETTINGS, num_models=3, work_dir=tmp_path / "a", progress=False, use_cpu=True, data=whole.data
    )
    assert again.run().metadata["trained_this_run"] == 0
    again.model_path(2).unlink()
    redone = again.run()
    assert redone.metadata["trained_this_run"] == 1
    np.testing.assert_array_equal(redone.scores, table.scores)
    # Other settings never reuse these models.
    other = MemorizationEstimator(
        recipe,
        {**SETTINGS, "epochs": 1},
        num_models=3,
        work_dir=tmp_path / "a",
        progress=False,
        use_cpu=True,
        data=whole.data,
    )
    assert other.model_dir != whole.model_dir and not other.is_done(0)


@pytest.mark.slow
def test_cli_memorization_shards_and_merge(recipe, small_digits, tmp_path):
    import yaml

    path = tmp_path / "mem.yaml"
    path.write_text(yaml.safe_dump({k: recipe[k] for k in ("name", "data", "model", "pretrain", "unlearn")}))
    common = ["memorization", str(path), "-K", "2", "--epochs", "1", "--cpu", "--no-progress"]
    outs = [tmp_path / f"s{i}.npz" for i in range(2)]
    for i, out in enumerate(outs):
        assert main([*common, "--shard", f"{i}/2", "--output", str(out), "--work-dir", str(tmp_path / "w")]) == 0
    assert main(["memorization-merge", *map(str, outs), "--output", str(tmp_path / "merged.npz")]) == 0
    # The unsharded command over the same work dir finds both models done (resume) and writes the same scores.
    assert main([*common, "--output", str(tmp_path / "whole.npz"), "--work-dir", str(tmp_path / "w")]) == 0
    merged, whole = load_scores(tmp_path / "merged.npz"), load_scores(tmp_path / "whole.npz")
    np.testing.assert_array_equal(merged.scores, whole.scores)
    assert whole.metadata["training"]["epochs"] == 1 and merged.metadata["complete"]


def test_launched_processes_become_independent_workers(monkeypatch):
    assert launcher_identity({}) == (0, 1, 0)
    assert launcher_identity({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == (3, 4, 1)
    for name, value in {
        "RANK": "1",
        "WORLD_SIZE": "2",
        "LOCAL_RANK": "1",
        "MASTER_ADDR": "x",
        "CUDA_VISIBLE_DEVICES": "4,5",
    }.items():
        monkeypatch.setenv(name, value)
    assert detach_from_launcher() == (1, 2)
    import os

    assert "WORLD_SIZE" not in os.environ and "LOCAL_RANK" not in os.environ and "MASTER_ADDR" not in os.environ
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "5"  # the process keeps the GPU of its local rank


@pytest.mark.slow
def test_processes_share_the_models(recipe, tmp_path):
    """Two processes (as under accelerate launch) train disjoint models; process 0 writes the complete table."""
    kwargs = dict(num_models=2, work_dir=tmp_path / "w", progress=False, use_cpu=True, shard=(0, 1))
    second = MemorizationEstimator(recipe, {**SETTINGS, "epochs": 1}, rank=1, world_size=2, **kwargs)
    assert second.my_models() == [1] and second.run() is None
    first = MemorizationEstimator(recipe, {**SETTINGS, "epochs": 1}, rank=0, world_size=2, data=second.data, **kwargs)
    assert first.my_models() == [0]
    table = first.run()
    assert table.metadata["complete"] and table.metadata["trained_this_run"] == 1


def test_confidence_proxy_marks_mislabelled_samples_as_memorized(tmp_path):
    """Low confidence = high memorization: samples with flipped labels (learnt last, if at all) have the lowest
    average true-class confidence over training, so the proxy's "high" band finds them."""
    import torch
    from conftest import TensorItems, make_model
    from sklearn.datasets import load_digits

    from hf_unlearn.data.forget_sets import low_confidence_forget_set
    from hf_unlearn.recipe_training import training_arguments
    from hf_unlearn.trainers import get_trainer_class

    bunch = load_digits()
    x = torch.tensor(bunch.data[:200] / 16.0, dtype=torch.float32)
    y = torch.tensor(bunch.target[:200])
    flipped = np.arange(0, 200, 20)  # 10 samples get a wrong label
    y[flipped] = (y[flipped] + 5) % 10
    data = TensorItems(x, y)
    recorder = ConfidenceRecorder(data)
    args = training_arguments(
        {**SETTINGS, "epochs": 8},
        method="pretrain",
        output_dir=str(tmp_path),
        use_cpu=True,
        report_to="none",
        disable_tqdm=True,
        save_strategy="no",
        logging_strategy="no",
    )
    model = make_model(seed=0, in_features=64, hidden=32, num_labels=10)
    get_trainer_class("pretrain")(model=model, args=args, retain_dataset=data, callbacks=[recorder]).train()
    confidence = recorder.mean_confidence()
    assert len(recorder.history) == 8 and confidence.shape == (200,)
    clean = np.setdiff1d(np.arange(200), flipped)
    assert confidence[flipped].mean() < confidence[clean].mean() - 0.3
    high = low_confidence_forget_set(confidence, 10, "high")  # inverted: the LEAST confident are "high"
    assert len(set(high.forget_indices) & set(flipped.tolist())) >= 7  # chance: 0.5
    low = low_confidence_forget_set(confidence, 10, "low")
    assert not set(low.forget_indices) & set(flipped.tolist())


@pytest.mark.slow
def test_scores_do_not_depend_on_the_callers_thread_count(recipe, tmp_path):
    """CPU kernels reduce in an order that depends on the thread count; the estimator pins one thread while it
    trains, so shards computed on machines with different core counts merge into exactly the unsharded result."""
    import torch

    before = torch.get_num_threads()
    tables = {}
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            estimator = MemorizationEstimator(
                recipe, SETTINGS, num_models=2, work_dir=tmp_path / str(threads), progress=False, use_cpu=True
            )
            tables[threads] = estimator.run()
            assert torch.get_num_threads() == threads  # the caller's setting is restored
    finally:
        torch.set_num_threads(before)
    for name in ("n_in", "n_out", "correct_in", "correct_out"):
        assert np.array_equal(tables[1].arrays[name], tables[2].arrays[name]), name
    assert np.array_equal(tables[1].scores, tables[2].scores, equal_nan=True)


def test_a_second_worker_on_a_model_in_training_is_refused(recipe, tmp_path):
    from hf_unlearn.lock import FolderLock, FolderLockedError

    estimator = MemorizationEstimator(recipe, SETTINGS, num_models=1, work_dir=tmp_path, progress=False, use_cpu=True)
    estimator.model_dir.mkdir(parents=True)
    held = FolderLock(estimator.model_dir, "hf-unlearn memorization worker", name=".model_00000.lock")
    with held, pytest.raises(FolderLockedError, match=f"process {os.getpid()}"):
        estimator.run()
    assert not list(estimator.model_dir.glob("failed-rank*"))  # not recorded as a failure of this launch
