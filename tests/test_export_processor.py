"""An export built from a run that used the manual transform carries an image processor doing the same thing
(transformers: ViTImageProcessor; timm: the pretrained_cfg and TimmWrapperImageProcessor)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import tiny_resnet_config

from hf_unlearn.data.sources import load_digits_dataset
from hf_unlearn.data.transforms import manual_image_transform
from hf_unlearn.hub import export_run
from hf_unlearn.models import build_model_from_config
from hf_unlearn.processors import manual_processor

CLASSES = [str(d) for d in range(10)]


def _manual(channels: int, size: int = 16) -> dict:
    return {"kind": "manual", "image_size": size, "num_channels": channels, "mean": [0.5], "std": [0.25]}


@pytest.mark.parametrize("channels", [1, 3])
def test_manual_processor_equals_the_training_transform(channels):
    digits = load_digits_dataset()
    images = [digits[i]["image"].convert("L" if channels == 1 else "RGB") for i in range(64)]
    expected = manual_image_transform(image_size=16, num_channels=channels, mean=[0.5], std=[0.25])(images)
    got = manual_processor(_manual(channels))(images=images, return_tensors="pt")["pixel_values"].numpy()
    assert got.shape == expected.shape == (64, channels, 16, 16)
    assert np.abs(got - expected).max() < 1e-5


def _run_dir(tmp_path, model, preprocessing):
    run_dir = tmp_path / "run"
    model.save_pretrained(run_dir / "models" / "neggrad")
    entry = {
        "method": "neggrad",
        "sharpness": "none",
        "hyperparameters": {"alpha": 0.9},
        "accuracy": {"retain": 1.0, "forget": 0.5, "test": 0.9},
        "tow": None,
        "mia": {"confidence": 0.5},
    }
    report = {
        "name": "t",
        "dataset": str(tmp_path / "secret" / "images"),
        "seed": 0,
        "base_model": None,
        "forget_set": {"kind": "file", "size": 3, "commitment": "cd" * 32},
        "preprocessing": preprocessing,
        "models": {"neggrad": entry},
    }
    (run_dir / "report.json").write_text(json.dumps(report))
    return run_dir


def test_transformers_export_gets_a_processor_from_the_manual_transform(tmp_path):
    from transformers import AutoImageProcessor, ViTImageProcessor

    model = build_model_from_config({**tiny_resnet_config(), "num_channels": 3}, CLASSES, seed=0)
    folder = export_run(_run_dir(tmp_path, model, _manual(3, size=8)), tmp_path / "export")
    processor = AutoImageProcessor.from_pretrained(folder)
    assert isinstance(processor, ViTImageProcessor)
    assert (processor.size["height"], processor.size["width"]) == (8, 8) and list(processor.image_std) == [0.25] * 3
    card = (folder / "README.md").read_text()
    assert str(tmp_path) not in card and "local:images" in card


def test_timm_export_records_size_mean_and_std(tmp_path):
    from transformers import AutoImageProcessor, TimmWrapperConfig, TimmWrapperForImageClassification

    torch.manual_seed(0)
    config = TimmWrapperConfig(architecture="test_resnet", num_labels=10, model_args={"in_chans": 3})
    model = TimmWrapperForImageClassification(config)
    folder = export_run(_run_dir(tmp_path, model, _manual(3, size=24)), tmp_path / "export")
    pretrained = json.loads((folder / "config.json").read_text())["pretrained_cfg"]
    assert pretrained["input_size"] == [3, 24, 24] and pretrained["mean"] == [0.5] * 3
    assert pretrained["std"] == [0.25] * 3 and pretrained["interpolation"] == "bilinear"
    processor = AutoImageProcessor.from_pretrained(folder)
    assert processor.data_config["input_size"] == (3, 24, 24)
