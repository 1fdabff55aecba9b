"""Exports stand on their own: a model of any architecture hf_unlearn builds, the CIFAR-stem ResNet included, loads
with `AutoModelForImageClassification` and runs in `transformers.pipeline` in a Python where hf_unlearn cannot be
imported, with the logits of the model that was exported; every saved model folder has its image processor, and
its files share one mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hf_unlearn.hub import export_run
from hf_unlearn.models import build_model_from_config, load_saved_model
from hf_unlearn.steps.store import StageStore

CLASSES = ["cat", "dog", "ship"]
RESNET = {"model_type": "resnet", "num_channels": 3, "embedding_size": 8, "hidden_sizes": [8, 16], "depths": [1, 1]}
MANUAL = {"kind": "manual", "image_size": 16, "num_channels": 3, "mean": [0.5], "std": [0.25]}

# Run with ``python -I`` (no working folder or user site on sys.path); hf_unlearn, installed in editable mode, is
# then still on the path, so the guard makes every import of it fail, as on a machine without it.
STANDALONE = r"""
import sys
sys.modules["hf_unlearn"] = None
import json
import torch
from PIL import Image
from transformers import AutoModelForImageClassification, pipeline

job = json.loads(sys.argv[1])
out = {}
for name, folder in job["folders"].items():
    trust = name == "cifar"
    model = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=trust).eval()
    with torch.no_grad():
        logits = model(pixel_values=torch.tensor(job["x"])).logits
    classify = pipeline("image-classification", model=folder, trust_remote_code=trust, device="cpu")
    scores = {r["label"]: r["score"] for r in classify(Image.open(job["image"]), top_k=None)}
    out[name] = {"class": type(model).__name__, "logits": logits.tolist(), "scores": scores}
try:
    import hf_unlearn  # noqa: F401
    out["hf_unlearn_importable"] = True
except ImportError:
    out["hf_unlearn_importable"] = False
print(json.dumps(out))
"""


def _report(run: str) -> dict:
    entry = {
        "method": "neggrad",
        "sharpness": "none",
        "hyperparameters": {"alpha": 0.9},
        "accuracy": {"retain": 1.0, "forget": 0.5, "test": 0.9},
        "tow": None,
        "mia": {"confidence": 0.5},
    }
    return {
        "name": "portable",
        "dataset": "digits",
        "seed": 0,
        "base_model": None,
        "forget_set": {"kind": "random", "size": 3, "commitment": "ef" * 32},
        "preprocessing": MANUAL,
        "models": {run: entry},
    }


def _run_dir(root: Path, model) -> Path:
    run_dir = root / "run"
    model.save_pretrained(run_dir / "models" / "neggrad")
    (run_dir / "report.json").write_text(json.dumps(_report("neggrad")))
    return run_dir


def _image(path: Path) -> Path:
    pixels = np.random.default_rng(0).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


@pytest.mark.slow  # a subprocess
def test_exports_load_and_classify_where_hf_unlearn_is_not_installed(tmp_path) -> None:
    from hf_unlearn.processors import manual_processor

    models = {
        "cifar": build_model_from_config(RESNET, CLASSES, seed=0, stem="cifar"),
        "plain": build_model_from_config(RESNET, CLASSES, seed=1),
    }
    folders = {name: export_run(_run_dir(tmp_path / name, m), tmp_path / name / "export") for name, m in models.items()}
    assert {p.name for p in folders["cifar"].glob("*.py")} == {
        "configuration_cifar_resnet.py",
        "modeling_cifar_resnet.py",
    }
    assert not list(folders["plain"].glob("*.py"))  # transformers' own ResNet: nothing to trust
    image = _image(tmp_path / "picture.png")
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    job = {"folders": {k: str(v) for k, v in folders.items()}, "x": x.tolist(), "image": str(image)}
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    done = subprocess.run(
        [sys.executable, "-I", "-c", STANDALONE, json.dumps(job)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["hf_unlearn_importable"] is False
    assert result["cifar"]["class"] == "CifarResNetForImageClassification"
    assert result["plain"]["class"] == "ResNetForImageClassification"
    pixels = manual_processor(MANUAL)(images=[Image.open(image).convert("RGB")], return_tensors="pt")["pixel_values"]
    for name, model in models.items():
        model.eval()
        with torch.no_grad():
            expected = model(pixel_values=x).logits
            probabilities = model(pixel_values=pixels).logits.softmax(-1)[0]
        torch.testing.assert_close(torch.tensor(result[name]["logits"]), expected, atol=1e-5, rtol=0)
        scores = torch.tensor([result[name]["scores"][label] for label in CLASSES])
        torch.testing.assert_close(scores, probabilities, atol=1e-5, rtol=0)


def test_export_card_loads_from_the_folder_and_trusts_only_shipped_code(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    cifar = build_model_from_config(RESNET, CLASSES, seed=0, stem="cifar")
    folder = export_run(_run_dir(tmp_path / "c", cifar), Path("exports/cifar"))
    card = (folder / "README.md").read_text()
    assert 'from_pretrained("exports/cifar", trust_remote_code=True)' in card
    assert 'pipeline("image-classification", model="exports/cifar", trust_remote_code=True)' in card
    plain = build_model_from_config(RESNET, CLASSES, seed=0)
    folder = export_run(_run_dir(tmp_path / "p", plain), tmp_path / "exports" / "plain")  # absolute, below cwd
    card = (folder / "README.md").read_text()
    assert 'from_pretrained("exports/plain")' in card and "trust_remote_code" not in card
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "resnet" and "auto_map" not in config


def test_cifar_stem_folders_of_earlier_versions_still_load_and_export_portably(tmp_path) -> None:
    """Before the stem had its own model type, a folder said ``resnet`` + ``"stem": "cifar"`` and held no code."""
    from transformers import AutoConfig

    model = build_model_from_config(RESNET, CLASSES, seed=3, stem="cifar").eval()
    legacy = tmp_path / "run" / "models" / "neggrad"
    model.save_pretrained(legacy)
    config = json.loads((legacy / "config.json").read_text())
    config.update(model_type="resnet", architectures=["ResNetForImageClassification"])
    config.pop("auto_map")
    (legacy / "config.json").write_text(json.dumps(config))
    for code in legacy.glob("*.py"):
        code.unlink()
    (tmp_path / "run" / "report.json").write_text(json.dumps(_report("neggrad")))
    x = torch.randn(2, 3, 16, 16)
    again = load_saved_model(str(legacy))
    with torch.no_grad():
        torch.testing.assert_close(again(pixel_values=x).logits, model(pixel_values=x).logits)
    folder = export_run(tmp_path / "run", tmp_path / "export")
    assert AutoConfig.from_pretrained(folder).auto_map["AutoModelForImageClassification"] == (
        "modeling_cifar_resnet.CifarResNetForImageClassification"
    )
    assert "trust_remote_code=True" in (folder / "README.md").read_text()


def test_saved_files_share_one_mode(tmp_path) -> None:
    """safetensors writes through a 0600 temporary file; the writer gives the weights the umask's mode, like the
    files around them."""
    previous = os.umask(0o022)
    try:
        model = build_model_from_config(RESNET, CLASSES, seed=0, stem="cifar")
        folder = export_run(_run_dir(tmp_path, model), tmp_path / "export")
        store = StageStore(tmp_path / "out", preprocessing=MANUAL)
        store.save("neggrad", model, {"fingerprint": "x"})
    finally:
        os.umask(previous)
    for saved in (folder, store.stage_dir("neggrad")):
        modes = {p.name: oct(p.stat().st_mode & 0o777) for p in saved.iterdir()}
        assert set(modes.values()) == {"0o644"}, modes


def test_every_stage_folder_has_the_image_processor_of_the_runs_transform(tmp_path) -> None:
    from transformers import AutoImageProcessor, pipeline

    store = StageStore(tmp_path / "out", preprocessing=MANUAL).at(tmp_path / "out" / "set")
    model = build_model_from_config(RESNET, CLASSES, seed=0)
    store.save("neggrad", model, {"fingerprint": "x"})
    folder = store.stage_dir("neggrad")
    processor = AutoImageProcessor.from_pretrained(folder)
    assert processor.size == {"height": 16, "width": 16} and list(processor.image_std) == [0.25] * 3
    classify = pipeline("image-classification", model=str(folder), device="cpu")
    assert {r["label"] for r in classify(Image.open(_image(tmp_path / "p.png")), top_k=None)} == set(CLASSES)
    # Without a recorded transform (a run folder of an older version) nothing is guessed.
    StageStore(tmp_path / "old").save("neggrad", model, {"fingerprint": "x"})
    assert not (tmp_path / "old" / "models" / "neggrad" / "preprocessor_config.json").exists()
