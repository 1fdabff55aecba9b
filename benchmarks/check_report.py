#!/usr/bin/env python
"""Recompute a finished run's accuracies from its saved model folders with plain transformers code.

    python benchmarks/check_report.py runs/cifar10-cpu --recipe recipes/cifar10-cpu.yaml --source ../shared/data/cifar10
    python benchmarks/check_report.py ROOT --seed 0 --recipe recipes/cifar10-cpu.yaml --source DIR  # reference_free.py

For a run on a parquet copy of a Hub image data set (``data.source`` a folder of ``train*.parquet`` and
``test*.parquet``, manual transforms, optionally ``first_train_rows``; read from ``--recipe``'s data section with plain YAML), every folder under ``RUN/models`` is loaded
with ``AutoModelForImageClassification.from_pretrained(..., trust_remote_code=True)`` and scored on the retain,
forget and test rows that ``RUN/manifest.json`` names, decoded here with PIL and normalised with
``ViTImageProcessor`` from report.json's ``preprocessing``. None of hf_unlearn's data or evaluation code runs, so a
mix-up there (rows, splits, normalisation) shows as a difference. It prints one line per model and split and exits 1
when any accuracy differs from report.json's. With ``--seed S``, RUN is the ``--root`` of a `reference_free.py`
run on cifar10-cpu (forget set ``random``): its evaluation seed S's models against ROOT/reference_free.json.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import yaml
from PIL import Image
from transformers import AutoModelForImageClassification, ViTImageProcessor


def read_split(folder: Path, split: str, image_column: str, label_column: str) -> tuple[list, np.ndarray]:
    files = sorted(folder.glob(f"{split}*.parquet")) or sorted(folder.glob(f"data/{split}-*.parquet"))
    if not files:
        raise SystemExit(f"no {split}*.parquet in {folder}")
    table = pa.concat_tables([pq.read_table(f, columns=[image_column, label_column]) for f in files])
    images = table.column(image_column).to_pylist()
    return images, np.asarray(table.column(label_column).to_pylist(), dtype=np.int64)


def pixels_of(images: list, preprocessing: dict) -> torch.Tensor:
    processor = ViTImageProcessor(
        do_resize=False,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=preprocessing["mean"],
        image_std=preprocessing["std"],
    )
    decoded = [np.asarray(Image.open(io.BytesIO(image["bytes"])).convert("RGB")) for image in images]
    return processor(images=decoded, input_data_format="channels_last", return_tensors="pt")["pixel_values"]


@torch.no_grad()
def accuracy(model: torch.nn.Module, pixels: torch.Tensor, labels: np.ndarray, batch_size: int = 500) -> float:
    correct = 0
    for start in range(0, len(labels), batch_size):
        logits = model(pixel_values=pixels[start : start + batch_size]).logits
        correct += int((logits.argmax(-1).numpy() == labels[start : start + batch_size]).sum())
    return correct / len(labels)


def reference_free_seed(root: Path, seed: str) -> tuple[dict, dict[str, tuple[Path, dict]]]:
    """The manifest and ``{model: (folder, entry)}`` of one evaluation seed of a reference_free.py run (``random``)."""
    result = json.loads((root / "reference_free.json").read_text())
    seed_dir = root / f"eval-seed-{seed}"
    entries = {}
    for key, entry in result["eval"][str(seed)].items():  # "random/retrain", "random/original", "random/RUN/ARM"
        parts = key.split("/")
        name = parts[1] if len(parts) == 2 else f"{parts[1]}__{parts[2]}"
        folder = seed_dir / "models" / "original" if name == "original" else seed_dir / "random" / "models" / name
        entries[name] = (folder, entry)
    return json.loads((seed_dir / "random" / "manifest.json").read_text()), entries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="A finished run's output folder (report.json, manifest.json, models/).")
    parser.add_argument("--recipe", type=Path, required=True, help="The recipe file the run used (its data section).")
    parser.add_argument("--source", type=Path, required=True, help="The parquet folder the run read.")
    parser.add_argument("--seed", default=None, help="RUN is a reference_free.py --root: check this evaluation seed.")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    data = yaml.safe_load(args.recipe.read_text())["data"]
    if args.seed is None:
        report = json.loads((args.run / "report.json").read_text())
        manifest = json.loads((args.run / "manifest.json").read_text())
        entries = {name: (args.run / "models" / name, entry) for name, entry in report["models"].items()}
        preprocessing = report["preprocessing"]
    else:
        manifest, entries = reference_free_seed(args.run, args.seed)
        preprocessing = {"mean": data["mean"], "std": data["std"]}  # the recipe's manual transform
    train_images, train_labels = read_split(
        args.source, data["train_split"], data["image_column"], data["label_column"]
    )
    if data.get("first_train_rows"):
        train_images, train_labels = train_images[: data["first_train_rows"]], train_labels[: data["first_train_rows"]]
    test_images, test_labels = read_split(args.source, data["test_split"], data["image_column"], data["label_column"])
    train_pixels, test_pixels = pixels_of(train_images, preprocessing), pixels_of(test_images, preprocessing)
    retain, forget = np.asarray(manifest["retain_indices"]), np.asarray(manifest["forget_indices"])
    splits = {
        "retain": (train_pixels[retain], train_labels[retain]),
        "forget": (train_pixels[forget], train_labels[forget]),
        "test": (test_pixels, test_labels),
    }
    differences = 0
    for name, (folder, entry) in entries.items():
        if not (folder / "config.json").is_file() or not entry.get("accuracy"):
            print(f"{name}: no saved weights or no accuracies, skipped")
            continue
        model = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True).eval()
        for split, (pixels, labels) in splits.items():
            mine, theirs = accuracy(model, pixels, labels), entry["accuracy"][split]
            same = abs(mine - theirs) < 1e-9
            differences += not same
            print(
                f"{name:22s} {split:7s} report {theirs:.4f} plain transformers {mine:.4f} {'ok' if same else 'DIFFERS'}"
            )
    print("all equal" if not differences else f"{differences} accuracies differ")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
