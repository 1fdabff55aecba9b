"""How the subset models of `hf_unlearn.shadows` are drawn and shared out: their subsets and seeds, all from
``(seed, k)`` only, shards of K models, and processes started by a launcher that become independent workers."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from transformers import set_seed

from .models import build_model_from_config, load_pretrained_model

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


# ------------------------------------------------------------------------------------------------ subsets, seeds
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


def fold_indices(n: int, folds: int, seed: int, k: int) -> np.ndarray:
    """Sorted indices model k trains on: all but one fold. Models ``g * folds .. g * folds + folds - 1`` (group g)
    split one permutation drawn from ``(seed, g)`` into ``folds`` folds (sizes differ by at most one) and model k
    leaves out fold ``k % folds``, so each group leaves every sample out exactly once. Two folds: halves, in
    complementary pairs."""
    if folds < 2 or n < folds:
        raise ValueError(f"{folds} folds of {n} samples: need at least 2 folds and a sample per fold.")
    order = np.random.default_rng(np.random.SeedSequence([int(seed), int(k) // folds, 2])).permutation(n)
    left_out = np.array_split(order, folds)[int(k) % folds]
    keep = np.ones(n, dtype=bool)
    keep[left_out] = False
    return np.flatnonzero(keep).astype(np.int64)


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
