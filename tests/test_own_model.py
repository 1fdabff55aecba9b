"""The user path: a trained transformers model folder (with its image processor), an image folder of PNGs in class
sub-folders and a forget list of file names; unlearn without a reference, export, and use the export on its own.

The model and the data are made here without hf_unlearn (plain torch / PIL / transformers), as a user has them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from hf_unlearn.cli import main

CLASSES = ["0", "1", "2"]


def _make_image_folder(root: Path) -> None:
    """sklearn's digits 0-2 as 8x8 RGB PNGs in ROOT/{train,test}/<class>/digit_<i>.png."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    keep = np.flatnonzero(digits.target < len(CLASSES))
    rng = np.random.default_rng(0)
    rng.shuffle(keep)
    for n, i in enumerate(keep):
        split = "test" if n % 5 == 0 else "train"
        folder = root / split / str(digits.target[i])
        folder.mkdir(parents=True, exist_ok=True)
        grey = np.rint(digits.images[i] * (255 / 16)).astype(np.uint8)
        Image.fromarray(np.stack([grey] * 3, axis=-1)).save(folder / f"digit_{i:04d}.png")


def _train_model_folder(data: Path, folder: Path, seed: int = 0, skip: set[str] | None = None) -> None:
    """A small transformers ResNet trained with plain torch on data/train (minus ``skip``), saved with its
    image processor."""
    from transformers import AutoImageProcessor, ResNetConfig, ResNetForImageClassification, ViTImageProcessor

    processor = ViTImageProcessor(size={"height": 8, "width": 8}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    files = sorted(p for p in (data / "train").glob("*/*.png") if p.name not in (skip or set()))
    x = processor(images=[Image.open(p).convert("RGB") for p in files], return_tensors="pt")["pixel_values"]
    y = torch.tensor([CLASSES.index(p.parent.name) for p in files])
    torch.manual_seed(seed)
    config = ResNetConfig(
        num_channels=3,
        embedding_size=8,
        hidden_sizes=[8, 16],
        depths=[1, 1],
        layer_type="basic",
        num_labels=len(CLASSES),
        id2label=dict(enumerate(CLASSES)),
        label2id={c: i for i, c in enumerate(CLASSES)},
    )
    model = ResNetForImageClassification(config)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(6):
        for batch in torch.randperm(len(y)).split(32):
            if len(batch) < 2:  # BatchNorm needs two samples
                continue
            loss = torch.nn.functional.cross_entropy(model(pixel_values=x[batch]).logits, y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    assert isinstance(AutoImageProcessor.from_pretrained(folder), ViTImageProcessor)


@pytest.fixture(scope="module")
def user_files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("user")
    _make_image_folder(root / "images")
    _train_model_folder(root / "images", root / "my-model")
    # The deletion request: 12 training images of class 1, by bare file name.
    names = sorted(p.name for p in (root / "images" / "train" / "1").glob("*.png"))[:12]
    (root / "forget.txt").write_text("\n".join(names) + "\n")
    _train_model_folder(root / "images", root / "retrained-elsewhere", seed=1, skip=set(names))
    return {"root": root, "images": root / "images", "model": root / "my-model", "forget": root / "forget.txt"}


def _recipe(files: dict[str, Path], retrain) -> dict:
    """recipes/own-model.yaml with its placeholders filled in (and a quicker run)."""
    recipe = yaml.safe_load((Path(__file__).parents[1] / "recipes" / "own-model.yaml").read_text())
    recipe["data"]["source"] = str(files["images"])
    recipe["forget"]["path"] = str(files["forget"])
    recipe["model"]["name_or_path"] = str(files["model"])
    recipe["retrain"] = retrain
    recipe["unlearn"]["runs"] = [{"method": "neggrad", "alpha": 0.9, "epochs": 2, "batch_size": 24}]
    recipe["evaluation"]["batch_size"] = 64
    return recipe


def _run(files: dict[str, Path], retrain, name: str) -> Path:
    recipe = files["root"] / f"{name}.yaml"
    recipe.write_text(yaml.safe_dump(_recipe(files, retrain)))
    out = files["root"] / name
    assert main(["run", str(recipe), "--output-dir", str(out), "--cpu"]) == 0
    return out


def _pipeline_accuracy(folder: Path, files: list[Path]) -> float:
    from transformers import pipeline

    classify = pipeline("image-classification", model=str(folder), device="cpu")
    predictions = classify([str(p) for p in files], top_k=1, batch_size=16)
    return float(np.mean([pred[0]["label"] == p.parent.name for pred, p in zip(predictions, files, strict=True)]))


@pytest.fixture(scope="module")
def no_reference_run(user_files) -> Path:
    return _run(user_files, False, "no-ref")


def test_no_reference_report_and_self_contained_export(user_files, no_reference_run, capsys):
    out = no_reference_run
    report = json.loads((out / "report.json").read_text())
    assert set(report["models"]) == {"original", "neggrad"}  # no retrain entry
    assert report["reference"]["kind"] == "none" and "retrain: false" in report["reference"]["tow_unavailable"]
    assert all(entry["tow"] is None for entry in report["models"].values())
    assert report["sizes"]["forget"] == 12 and report["forget_set"]["kind"] == "file"
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["forget_indices"]) == 12
    text = (out / "report.md").read_text()
    assert "ToW: not computed" in text and "## What happened" in text and "forget accuracy" in text

    export = user_files["root"] / "export"
    assert main(["push", str(out), "--run", "neggrad", "--export-dir", str(export)]) == 0
    assert (export / "preprocessor_config.json").is_file()
    forget_names = set(user_files["forget"].read_text().split())
    forget_files = [p for p in (user_files["images"] / "train").glob("*/*.png") if p.name in forget_names]
    test_files = sorted((user_files["images"] / "test").glob("*/*.png"))
    accuracy = report["models"]["neggrad"]["accuracy"]
    assert _pipeline_accuracy(export, test_files) == pytest.approx(accuracy["test"], abs=1e-9)
    assert _pipeline_accuracy(export, forget_files) == pytest.approx(accuracy["forget"], abs=1e-9)
    card = (export / "README.md").read_text()
    assert str(user_files["root"]) not in card and "local:images" in card


def test_given_reference_reports_a_tow(user_files, capfd):
    out = _run(user_files, {"from": str(user_files["root"] / "retrained-elsewhere")}, "given-ref")
    printed, shown = capfd.readouterr()
    # The console: one bar per stage, the table and the summary; no raw log dicts, no per-checkpoint save bars.
    assert "{'loss'" not in printed and "{'train_runtime'" not in printed
    assert "Writing model shards" not in shown and "neggrad: 100%" in shown
    assert "ToW" in printed and "neggrad: forget accuracy" in printed
    stage = json.loads((out / "models" / "neggrad" / "stage.json").read_text())
    epochs = [entry for entry in stage["log_history"] if "loss" in entry]
    assert len(epochs) == 2 and all("loss_neggrad" in e for e in epochs)
    assert len([e for e in stage["log_history"] if "eval_forget_accuracy" in e]) == 2  # the Trainer's evaluation
    report = json.loads((out / "report.json").read_text())
    assert report["reference"]["kind"] == "given"
    assert report["models"]["retrain"]["reference"] == "given"
    tow = report["models"]["neggrad"]["tow"]
    assert tow is not None and 0.0 < tow <= 1.0
    ref, run = report["models"]["retrain"]["accuracy"], report["models"]["neggrad"]["accuracy"]
    expected = np.prod([1 - abs(ref[s] - run[s]) for s in ("retain", "forget", "test")])
    assert tow == pytest.approx(expected)


def test_evaluate_any_model_folder_matches_the_run(user_files, no_reference_run, capsys):
    recipe = user_files["root"] / "no-ref.yaml"
    out = user_files["root"] / "evaluated"
    reference = user_files["root"] / "retrained-elsewhere"
    model = no_reference_run / "models" / "neggrad"
    args = ["evaluate", str(recipe), "--model", str(model), "--reference", str(reference), "--output-dir", str(out)]
    assert main([*args, "--cpu"]) == 0
    run = json.loads((no_reference_run / "report.json").read_text())
    report = json.loads((out / "report.json").read_text())
    assert set(report["models"]) == {"original", "retrain", "neggrad"}
    entry = report["models"]["neggrad"]
    assert entry["method"] == "neggrad"  # read from the folder's stage.json
    assert entry["accuracy"] == run["models"]["neggrad"]["accuracy"]
    assert entry["mia"] == run["models"]["neggrad"]["mia"]
    assert report["models"]["original"]["accuracy"] == run["models"]["original"]["accuracy"]
    ref = report["models"]["retrain"]["accuracy"]
    expected = np.prod([1 - abs(ref[s] - entry["accuracy"][s]) for s in ("retain", "forget", "test")])
    assert entry["tow"] == pytest.approx(expected)
    assert report["reference"]["kind"] == "given"
    assert "neggrad" in capsys.readouterr().out


def test_trainer_push_to_hub_publishes_the_cli_card(user_files, no_reference_run, monkeypatch, tmp_path):
    """`trainer.push_to_hub()` up to the network boundary writes the card `hf-unlearn push` writes."""
    import transformers.trainer
    from huggingface_hub import HfApi

    from hf_unlearn import UnlearnArguments, get_trainer_class
    from hf_unlearn.data import SplitManifest, split_retain_forget
    from hf_unlearn.data.prepare import prepare_splits
    from hf_unlearn.models import load_saved_model

    uploads: list[dict] = []

    class FakeApi:
        def create_repo(self, repo_id, **kwargs):
            return type("Url", (), {"repo_id": repo_id})()

        def upload_folder(self, *, folder_path, **kwargs):
            uploads.append({"readme": (Path(folder_path) / "README.md").read_text(), **kwargs})
            return "https://huggingface.co/me/own-neggrad/commit/0"

    monkeypatch.setattr(transformers.trainer, "hf_api", FakeApi)
    monkeypatch.setattr(HfApi, "create_repo", lambda self, **kwargs: None)
    monkeypatch.setattr(HfApi, "upload_folder", lambda self, **kwargs: "url")
    out = no_reference_run
    assert main(["push", str(out), "--repo-id", "me/own-neggrad", "--export-dir", str(tmp_path / "cli")]) == 0
    cli_card = (tmp_path / "cli" / "README.md").read_text()

    report = json.loads((out / "report.json").read_text())
    entry = report["models"]["neggrad"]
    data = prepare_splits(
        {"source": str(user_files["images"])}, seed=0, model={"name_or_path": str(user_files["model"])}
    )
    retain, forget = split_retain_forget(data.train, SplitManifest.from_json(out / "manifest.json"))
    args = UnlearnArguments(
        output_dir=str(tmp_path / "py"),
        method="neggrad",
        use_cpu=True,
        report_to="none",
        hub_model_id="me/own-neggrad",
        per_device_eval_batch_size=64,
        **entry["hyperparameters"],
    )
    trainer = get_trainer_class("neggrad")(
        model=load_saved_model(str(out / "models" / "neggrad")), args=args, retain_dataset=retain, forget_dataset=forget
    )
    trainer.push_to_hub(
        finetuned_from=report["base_model"],
        dataset=report["dataset"],
        test_dataset=data.test,
        forget_set=report["forget_set"],
        references={"original": report["models"]["original"]},
    )
    assert len(uploads) == 1 and uploads[0]["repo_id"] == "me/own-neggrad"
    assert uploads[0]["readme"] == cli_card
    assert "alpha" in cli_card and "kd_T" not in cli_card
    assert "model-index" not in cli_card  # a local image folder is no Hub data set to name in a model-index
