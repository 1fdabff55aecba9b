"""Input pipeline speed: the share of each training step spent waiting for data, and the images per second.

    python -m benchmarks.input_pipeline --source /path/to/cifar10        # recipes/cifar10-cpu.yaml's data
    python -m benchmarks.input_pipeline --synthetic                      # random inputs of the recipe's shape

The recipe's model (``model.config`` and ``model.stem``) trains on the recipe's data the way `hf-unlearn run`
pretrains it: inputs decoded once and kept in memory (`TensorImageDataset`), a `PretrainTrainer` with SGD, the
recipe's batch size, data loaded in the main process. Each pipeline is timed over ``--steps`` optimizer steps
after ``--warmup`` untimed ones:

- ``none``: no augmentation (the recipe's default: the fast path, items are views of the cached tensors);
- ``flip_crop/item``: the ``flip_crop`` preset item by item, torchvision's ``v2`` transforms under a per-item seed
  (how every batch was augmented before the batched path);
- ``flip_crop``: the preset as training runs it now, per-item draws applied to the whole batch with tensor ops
  (`hf_unlearn.data.flip_crop`, bit-identical to the item-by-item path);
- ``flip/item``: ``[{RandomHorizontalFlip: {p: 0.5}}]``, a v2 list (always item by item).

A `TrainerCallback` (benchmarks.common.step_timer) takes the time of every step (``on_step_begin`` to
``on_step_end``: forward, backward, optimizer) and of the gap before it: the DataLoader's fetch (reading the items,
augmenting, collating) and the Trainer's bookkeeping between steps. ``wait`` = gaps / (gaps + steps); ``img/s`` =
batch x steps / (gaps + steps), the whole step. ``loader ms`` times the DataLoader alone (no model), the cleanest
view of the data cost. Every pipeline is timed ``--repeats`` times, interleaved, and the median repeat is shown,
so load from other processes hits all alike; the load average is printed at start and end: on a busy machine the
step times (and the images per second) are slower than alone, the data wait less so.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/input_pipeline.py`: make `benchmarks.*` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from benchmarks.common import Sync, quiet, sgd_arguments, step_timer

REPO = Path(__file__).resolve().parents[1]
PIPELINES = ("none", "flip_crop/item", "flip_crop", "flip/item")


def load_data(recipe: dict[str, Any], source: str | None, synthetic: bool) -> tuple[Any, int]:
    """The recipe's training inputs in memory (`TensorImageDataset`) and its class count."""
    from hf_unlearn.data import TensorImageDataset

    data = recipe["data"]
    if synthetic:
        rows = data.get("first_train_rows") or 10_000
        shape = (rows, data["num_channels"], data["image_size"], data["image_size"])
        generator = torch.Generator().manual_seed(0)
        return TensorImageDataset(torch.randn(shape, generator=generator), torch.arange(rows) % 10), 10
    from hf_unlearn.data.prepare import prepare_splits

    prepared = prepare_splits({**data, **({"source": source} if source else {})}, int(recipe["seed"]), recipe["model"])
    if not isinstance(prepared.train, TensorImageDataset):
        raise SystemExit("input_pipeline.py: the recipe's inputs are not precomputed in memory (data.precompute).")
    return prepared.train, len(prepared.class_names)


def augmentation_of(pipeline: str, data: dict[str, Any]):
    """The `Augmentation` of a pipeline name (None for ``none``)."""
    from hf_unlearn.data.augment import Augmentation, build_augmentation

    shape = {k: data[k] for k in ("image_size", "mean", "std", "num_channels")}
    if pipeline == "none":
        return None
    if pipeline == "flip/item":
        return build_augmentation([{"RandomHorizontalFlip": {"p": 0.5}}], **shape)
    batched = build_augmentation("flip_crop", **shape)
    if pipeline == "flip_crop":
        return batched
    return Augmentation(batched.transform, "flip_crop/item")  # the same transform, without the batched path


def loader_ms(dataset: Any, augmentation: Any, batch_size: int, batches: int) -> float:
    """Median milliseconds per batch of the training DataLoader alone (shuffled, main process, collated)."""
    from torch.utils.data import DataLoader

    from hf_unlearn.data.augment import AugmentedDataset

    if augmentation is not None:
        dataset = AugmentedDataset(dataset, augmentation, seed=0, stream="retain")
    loader = iter(DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True))
    times = []
    for _ in range(batches):
        start = time.perf_counter()
        next(loader)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def time_training(
    dataset: Any, num_labels: int, recipe: dict[str, Any], augmentation: Any, opts: argparse.Namespace, workdir: str
) -> dict[str, float]:
    """Whole-step timing of ``warmup + steps`` pretraining steps: wait share, images/s, step and gap medians."""
    from hf_unlearn.args import UnlearnArguments
    from hf_unlearn.models import build_model_from_config
    from hf_unlearn.trainers import get_trainer_class

    names = [str(i) for i in range(num_labels)]
    model = build_model_from_config(dict(recipe["model"]["config"]), names, 0, stem=recipe["model"].get("stem"))
    args = UnlearnArguments(
        output_dir=os.path.join(workdir, "out"),
        method="pretrain",
        **sgd_arguments(
            batch_size=opts.batch_size,
            max_steps=opts.warmup + opts.steps,
            learning_rate=0.01,
            use_cpu=True,
        ),
        log_level="error",
    )
    timer = step_timer(Sync("cpu"))
    trainer = get_trainer_class("pretrain")(
        model=model, args=args, retain_dataset=dataset, augmentation=augmentation, callbacks=[timer]
    )
    quiet(trainer)
    trainer.train()
    # gaps[i] is the wait before step i + 1; the first step's wait (the loader's start) is part of the warm-up.
    steps, gaps = timer.durations[opts.warmup :], timer.gaps[opts.warmup - 1 :]
    total = sum(steps) + sum(gaps)
    return {
        "wait": sum(gaps) / total,
        "images_per_s": opts.batch_size * len(steps) / total,
        "step_ms": 1000 * statistics.median(steps),
        "gap_ms": 1000 * statistics.median(gaps),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("--recipe", default=str(REPO / "recipes" / "cifar10-cpu.yaml"), help="recipe path or name")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--source", default=None, help="data.source for the recipe (e.g. a local CIFAR-10 copy)")
    where.add_argument("--synthetic", action="store_true", help="random inputs of the recipe's shape, no data")
    parser.add_argument("--pipelines", nargs="+", default=list(PIPELINES), choices=PIPELINES)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the recipe's pretrain.batch_size")
    parser.add_argument("--steps", type=int, default=12, help="timed optimizer steps per repeat")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps at the start of every repeat")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats per pipeline (median shown)")
    parser.add_argument("--loader-batches", type=int, default=30, help="batches of the DataLoader-alone timing")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    opts = parser.parse_args(argv)
    if min(opts.steps, opts.warmup, opts.repeats, opts.loader_batches) < 1:
        parser.error("--steps, --warmup, --repeats and --loader-batches must be >= 1")

    from transformers.utils import logging as hf_logging

    from hf_unlearn.recipe import RecipeError, load_recipe

    warnings.filterwarnings("ignore")
    hf_logging.set_verbosity_error()
    if opts.threads:
        torch.set_num_threads(opts.threads)
    try:
        recipe = load_recipe(opts.recipe, [f"data.source={opts.source}"] if opts.source else [])
    except RecipeError as error:
        print(f"input_pipeline.py: error: {error}", file=sys.stderr)
        return 2
    opts.batch_size = opts.batch_size or int(recipe["pretrain"]["batch_size"])
    try:
        dataset, num_labels = load_data(recipe, opts.source, opts.synthetic)
    except (OSError, ValueError, ConnectionError) as error:
        print(
            f"input_pipeline.py: error: the recipe's data did not load ({error}); give --source DIR (a local copy) "
            "or --synthetic",
            file=sys.stderr,
        )
        return 2
    print(
        f"recipe {recipe['name']}: {len(dataset)} training images {tuple(dataset.pixel_values.shape[1:])}"
        f"{' (synthetic)' if opts.synthetic else ''}, batch {opts.batch_size}, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}, cores {os.cpu_count()}, load average at start {_load()}"
    )
    print(f"{opts.repeats} repeats x {opts.steps} timed steps (+{opts.warmup} warm-up); median repeat shown")
    results: dict[str, list[dict[str, float]]] = {name: [] for name in opts.pipelines}
    with tempfile.TemporaryDirectory(prefix="input_pipeline_") as workdir:
        for _ in range(opts.repeats):
            for name in opts.pipelines:
                augmentation = augmentation_of(name, recipe["data"])
                row = time_training(dataset, num_labels, recipe, augmentation, opts, workdir)
                row["loader_ms"] = loader_ms(dataset, augmentation, opts.batch_size, opts.loader_batches)
                results[name].append(row)
    print(f"\n{'pipeline':<16}{'wait':>8}{'img/s':>9}{'step ms':>10}{'gap ms':>9}{'loader ms':>11}")
    for name, rows in results.items():
        row = sorted(rows, key=lambda r: r["wait"])[len(rows) // 2]  # the median repeat by wait share
        print(
            f"{name:<16}{row['wait']:>7.1%}{row['images_per_s']:>9.0f}{row['step_ms']:>10.1f}{row['gap_ms']:>9.1f}"
            f"{row['loader_ms']:>11.1f}"
        )
    print(f"\nload average at end {_load()}")
    return 0


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


if __name__ == "__main__":
    raise SystemExit(main())
