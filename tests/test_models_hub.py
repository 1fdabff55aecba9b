"""Models in (transformers families and timm, from local folders, offline) and out (export, model card, push).

Every model is built from a config and saved into a temporary folder first, so nothing is downloaded
(conftest sets HF_HUB_OFFLINE). The push path is tested up to the network boundary: `HfApi.create_repo` and
`HfApi.upload_folder` are replaced, and the fake upload keeps a copy of the folder it was given.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from conftest import make_args, make_dataset, tiny_recipe
from torch import nn

from hf_unlearn.hub import HubError, build_model_card, export_run, push_run, select_run
from hf_unlearn.models import (
    build_model_from_config,
    is_timm_model,
    load_pretrained_model,
    load_saved_model,
    save_model,
)
from hf_unlearn.trainers import get_trainer_class

CLASSES = ["zero", "one", "two"]
# A tiny timm ResNet (timm's resnet18 with 1 block per stage and 8..64 channels): ~86k parameters.
TIMM_TINY = {"layers": [1, 1, 1, 1], "channels": [8, 16, 32, 64], "stem_width": 8}
FAMILIES = ["resnet", "convnext", "vit", "swin", "timm"]


def _hf_model(family: str) -> nn.Module:
    import transformers as tf

    configs = {
        "resnet": (
            tf.ResNetForImageClassification,
            tf.ResNetConfig(num_channels=1, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=5),
        ),
        "convnext": (
            tf.ConvNextForImageClassification,
            tf.ConvNextConfig(
                num_channels=1, hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, patch_size=2, num_labels=5
            ),
        ),
        "vit": (
            tf.ViTForImageClassification,
            tf.ViTConfig(
                image_size=8,
                patch_size=4,
                num_channels=1,
                hidden_size=16,
                num_hidden_layers=1,
                num_attention_heads=2,
                intermediate_size=32,
                num_labels=5,
            ),
        ),
        "swin": (
            tf.SwinForImageClassification,
            tf.SwinConfig(
                image_size=8,
                patch_size=2,
                num_channels=1,
                embed_dim=8,
                depths=[1, 1],
                num_heads=[1, 2],
                window_size=2,
                num_labels=5,
            ),
        ),
    }
    cls, config = configs[family]
    return cls(config)


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    """One local folder per family, as a user would have after downloading a checkpoint (5-class heads)."""
    import timm
    from transformers import ViTImageProcessor

    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    dirs = {}
    for family in FAMILIES[:-1]:
        dirs[family] = root / family
        _hf_model(family).save_pretrained(dirs[family])
    ViTImageProcessor(size={"height": 8, "width": 8}, image_mean=[0.5], image_std=[0.5]).save_pretrained(dirs["vit"])
    dirs["timm"] = root / "timm"
    model = timm.create_model("resnet18", pretrained=False, num_classes=5, in_chans=1, **TIMM_TINY)
    timm.models.save_for_hf(model, str(dirs["timm"]), safe_serialization=True)
    return dirs


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        out = model(pixel_values=x) if not hasattr(model, "default_cfg") else model(x)
    return out.logits if hasattr(out, "logits") else out


def _images(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------- loading
def test_timm_exports_record_num_classes_twice(model_dirs) -> None:
    """The checkpoint format that breaks a plain from_pretrained (and that load_pretrained_model repairs)."""
    config = json.loads((model_dirs["timm"] / "config.json").read_text())
    assert "model_type" not in config and config["model_args"]["num_classes"] == 5


@pytest.mark.parametrize("family", FAMILIES)
def test_load_unlearn_save_and_reload(model_dirs, tmp_path, family: str) -> None:
    from transformers import AutoModelForImageClassification

    model = load_pretrained_model(str(model_dirs[family]), CLASSES)
    assert model.config.num_labels == 3 and model.config.id2label == dict(enumerate(CLASSES))
    assert is_timm_model(model) == (family == "timm")
    # The backbone comes from the folder; only the head was re-initialised for the 3 labels.
    saved = load_saved_model(str(model_dirs[family]))
    same = [
        n
        for n, p in model.named_parameters()
        if p.shape == dict(saved.named_parameters())[n].shape and torch.equal(p, dict(saved.named_parameters())[n])
    ]
    assert len(same) >= len(list(model.parameters())) - 2
    # Unlearn a few steps (NegGrad with SAM).
    retain = make_dataset(8, seed=1, shape=(1, 8, 8))
    forget = make_dataset(4, seed=2, shape=(1, 8, 8))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = make_args(
        tmp_path / "out",
        method="neggrad",
        sharpness="sam",
        rho=0.1,
        alpha=0.9,
        max_steps=2,
        per_device_train_batch_size=4,
    )
    get_trainer_class("neggrad")(model=model, args=args, retain_dataset=retain, forget_dataset=forget).train()
    assert any(not torch.equal(p.detach(), before[n]) for n, p in model.named_parameters())
    # Save, and reload with transformers (and timm).
    folder = save_model(model, tmp_path / "saved")
    assert (folder / "model.safetensors").is_file() and not list(folder.glob("*.bin"))
    x = _images(3, seed=3)
    expected = _logits(model, x)
    reloaded = AutoModelForImageClassification.from_pretrained(folder)
    assert reloaded.config.id2label == dict(enumerate(CLASSES))
    torch.testing.assert_close(_logits(reloaded, x), expected)
    if family == "timm":
        import timm

        native = timm.create_model(f"local-dir:{folder}", pretrained=True)
        assert type(native).__name__ == "ResNet" and native.num_classes == 3
        assert native.pretrained_cfg["label_names"] == CLASSES
        torch.testing.assert_close(_logits(native, x), expected)


def test_timm_architecture_from_a_config_builds_reproducibly() -> None:
    spec = {"model_type": "timm_wrapper", "architecture": "resnet18", "model_args": {"in_chans": 1, **TIMM_TINY}}
    a, b = (build_model_from_config(spec, CLASSES, seed=7) for _ in range(2))
    assert is_timm_model(a) and a.config.num_labels == 3
    for (n, p), q in zip(a.named_parameters(), b.parameters(), strict=False):
        assert torch.equal(p, q), n
    assert _logits(a, _images(2, 0)).shape == (2, 3)


# ----------------------------------------------------------------------------------------- model card
def _report(dataset: str = "digits", runs: tuple[str, ...] = ("sharp_minmax_asam",)) -> dict:
    def entry(method, tow, acc):
        return {
            "method": method,
            "sharpness": "asam" if method == "sharp_minmax" else "none",
            "hyperparameters": {"alpha": 0.95, "rho": 1.0, "learning_rate": 0.01},
            "accuracy": {"retain": acc, "forget": acc - 0.1, "test": acc - 0.05},
            "tow": tow,
            "mia": {"confidence": 0.61, "entropy": 0.58},
            "attacks": {"loss": {"auc": 0.57, "tpr_at_fpr": {"0.01": 0.02, "0.001": 0.0}}},
            "wall_seconds": 1.0,
        }

    models = {"original": entry("pretrain", 0.8, 0.99), "retrain": entry("retrain", None, 0.97)}
    for i, run in enumerate(runs):
        models[run] = entry(run.split("_asam")[0], 0.95 - i / 100, 0.96)
    return {
        "name": "t",
        "dataset": dataset,
        "seed": 0,
        "base_model": None,
        "forget_set": {"kind": "low_confidence", "size": 144, "commitment": "ab" * 32},
        "models": models,
    }


def _eval_results(card) -> dict[tuple[str, str | None, str | None], float]:
    return {(r.metric_type, r.dataset_split, r.metric_config): r.metric_value for r in card.data.eval_results}


def _assert_card_holds_report(card, report: dict, run: str) -> None:
    """The run's numbers are in the card's hf_unlearn block, and in its model-index when the data set is on the Hub
    (a model-index names its data set by Hub id: a local or built-in one gets none)."""
    entry = report["models"][run]
    meta = card.data.to_dict()["hf_unlearn"]
    assert meta["accuracy"] == pytest.approx(entry["accuracy"]) and meta["tow"] == pytest.approx(entry["tow"])
    assert meta["mia"] == pytest.approx(entry["mia"])
    assert meta["attacks"] == entry["attacks"]
    if "/" not in report["dataset"]:
        assert not card.data.eval_results and card.data.datasets is None
    else:
        results = _eval_results(card)
        for split in ("retain", "forget", "test"):
            assert results[("accuracy", split, None)] == pytest.approx(entry["accuracy"][split])
        assert results[("tow", None, None)] == pytest.approx(entry["tow"])
        for attack, value in entry["mia"].items():
            assert results[("mia_efficacy", "forget", attack)] == pytest.approx(value)
        assert results[("roc_auc", "forget", "loss")] == pytest.approx(entry["attacks"]["loss"]["auc"])
    assert meta["method"] == entry["method"] and meta["sharpness"] == entry["sharpness"]
    assert meta["hyperparameters"] == json.loads(json.dumps(entry["hyperparameters"]))
    assert meta["forget_set"] == report["forget_set"]
    assert card.data.pipeline_tag == "image-classification"


def test_model_card_metadata_parses_and_holds_the_report(tmp_path) -> None:
    from huggingface_hub import ModelCard

    report = _report(dataset="uoft-cs/cifar100")
    card = build_model_card(report, "sharp_minmax_asam", model_name="me/unlearned", base_model="microsoft/resnet-18")
    card.save(tmp_path / "README.md")
    loaded = ModelCard.load(tmp_path / "README.md")
    _assert_card_holds_report(loaded, report, "sharp_minmax_asam")
    assert loaded.data.base_model == "microsoft/resnet-18" and loaded.data.datasets == ["uoft-cs/cifar100"]
    assert loaded.data.library_name == "transformers" and "hf_unlearn" in loaded.data.tags
    assert "ab" * 32 in loaded.text and "not published" in loaded.text


def test_a_cifar_stem_export_ships_its_code_and_its_card_says_so(tmp_path) -> None:
    """transformers' ResNet has no CIFAR stem: the export carries the model's code (auto_map), so transformers loads
    it with trust_remote_code=True, as the card says (without hf_unlearn: tests/test_portable_export.py)."""
    from transformers import AutoModelForImageClassification

    resnet = {"model_type": "resnet", "num_channels": 1, "embedding_size": 8, "hidden_sizes": [8], "depths": [1]}
    model = build_model_from_config(resnet, CLASSES, seed=0, stem="cifar")
    run_dir = tmp_path / "run"
    model.save_pretrained(run_dir / "models" / "sharp_minmax_asam")
    (run_dir / "report.json").write_text(json.dumps(_report()))
    folder = export_run(run_dir, tmp_path / "export", repo_id="me/cifar-unlearned")
    card = (folder / "README.md").read_text()
    assert 'AutoModelForImageClassification.from_pretrained("me/cifar-unlearned", trust_remote_code=True)' in card
    assert "load_saved_model" not in card and "hf_unlearn.models" not in card
    x = _images(2, 1)
    again = AutoModelForImageClassification.from_pretrained(folder, trust_remote_code=True)
    torch.testing.assert_close(_logits(again, x), _logits(model, x))
    torch.testing.assert_close(_logits(load_saved_model(str(folder)), x), _logits(model, x))


def test_run_selection() -> None:
    report = _report(runs=("neggrad_sam", "sharp_minmax_asam"))
    with pytest.raises(HubError, match="2 unlearning runs"):
        select_run(report, None)
    with pytest.raises(HubError, match="not in the report"):
        select_run(report, "scrub")
    assert select_run(report, "neggrad_sam") == "neggrad_sam"
    assert select_run(_report(), None) == "sharp_minmax_asam"


def test_export_copies_the_base_models_image_processor(model_dirs, tmp_path) -> None:
    run_dir = tmp_path / "run"
    model = load_pretrained_model(str(model_dirs["vit"]), CLASSES)
    model.save_pretrained(run_dir / "models" / "sharp_minmax_asam")
    report = {**_report(), "base_model": str(model_dirs["vit"])}
    (run_dir / "report.json").write_text(json.dumps(report))
    (run_dir / "manifest.json").write_text(json.dumps({"forget_indices": [1, 2, 3]}))
    folder = export_run(run_dir, tmp_path / "export")
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
    ]
    from transformers import AutoImageProcessor

    assert AutoImageProcessor.from_pretrained(folder).size == {"height": 8, "width": 8}


# --------------------------------------------------------------------------- recipe -> run -> push
class FakeHub:
    """Stands in for the Hub: records create_repo / upload_folder calls and keeps a copy of each folder."""

    def __init__(self, keep: Path) -> None:
        self.keep = keep
        self.calls: list[tuple[str, dict]] = []

    def install(self, monkeypatch) -> None:
        import huggingface_hub

        fake = self

        def create_repo(self, repo_id, **kwargs):
            fake.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))
            return f"https://huggingface.co/{repo_id}"

        def upload_folder(self, **kwargs):
            copy = fake.keep / f"upload{len(fake.calls)}"
            shutil.copytree(kwargs["folder_path"], copy)
            fake.calls.append(("upload_folder", {**kwargs, "copy": copy}))
            return f"https://huggingface.co/{kwargs['repo_id']}/commit/0"

        monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
        monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)

    def uploads(self) -> list[dict]:
        return [kwargs for name, kwargs in self.calls if name == "upload_folder"]


@pytest.fixture(scope="module")
def pushed_run(model_dirs, tmp_path_factory):
    """`hf-unlearn run` of a recipe with a local timm model and `hub: {push: true}`, on digits at 8x8."""
    from hf_unlearn.cli import main

    monkeypatch = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("pushed")
    hub = FakeHub(root)
    hub.install(monkeypatch)
    recipe = tiny_recipe(
        name="hub-test",
        model={"name_or_path": str(model_dirs["timm"]), "ignore_mismatched_sizes": True},
        hub={"push": True, "repo_id": "me/digits-unlearned"},
        **{
            "data.transforms": "manual",
            "pretrain.learning_rate": 0.05,
            "retrain.epochs": 2,
            "unlearn.defaults.epochs": 1,
            "unlearn.runs": [{"method": "sharp_minmax", "sharpness": "asam", "rho": 1.0, "alpha": 0.95}],
            "evaluation.mia_shadow_size": 100,
        },
    )
    (root / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    try:
        assert main(["run", str(root / "recipe.yaml"), "--output-dir", str(root / "run"), "--cpu"]) == 0
        yield root / "run", hub, monkeypatch
    finally:
        monkeypatch.undo()


def test_recipe_push_uploads_only_the_model_and_its_card(pushed_run) -> None:
    run_dir, hub, _ = pushed_run
    assert [name for name, _ in hub.calls] == ["create_repo", "upload_folder"]
    assert hub.calls[0][1]["repo_id"] == "me/digits-unlearned" and hub.calls[0][1]["exist_ok"]
    upload = hub.uploads()[0]
    assert upload["repo_id"] == "me/digits-unlearned"
    files = sorted(p.name for p in upload["copy"].iterdir())
    assert files == ["README.md", "config.json", "model.safetensors"]  # timm keeps its data config in config.json
    # No data set, manifest, index or score files, and the forgotten indices appear nowhere.
    manifest = json.loads((run_dir / "manifest.json").read_text())
    indices = ",".join(str(i) for i in sorted(manifest["forget_indices"])[:5])
    for path in upload["copy"].iterdir():
        if path.suffix in (".json", ".md"):
            assert indices not in path.read_text().replace(" ", "")


def test_pushed_card_holds_the_numbers_of_the_report(pushed_run) -> None:
    from huggingface_hub import ModelCard

    run_dir, hub, _ = pushed_run
    report = json.loads((run_dir / "report.json").read_text())
    card = ModelCard.load(hub.uploads()[0]["copy"] / "README.md")
    _assert_card_holds_report(card, report, "sharp_minmax_asam")
    assert card.data.library_name == "timm" and card.data.base_model is None  # a local folder is no Hub id
    assert card.data.to_dict()["hf_unlearn"]["forget_set"]["size"] == report["forget_set"]["size"] > 0


def test_pushed_timm_model_loads_in_timm_and_transformers(pushed_run) -> None:
    import timm
    from transformers import AutoModelForImageClassification

    run_dir, hub, _ = pushed_run
    folder = hub.uploads()[0]["copy"]
    trained = load_saved_model(str(run_dir / "models" / "sharp_minmax_asam"))
    x = _images(4, seed=9)
    expected = _logits(trained, x)
    torch.testing.assert_close(_logits(AutoModelForImageClassification.from_pretrained(folder), x), expected)
    native = timm.create_model(f"local-dir:{folder}", pretrained=True)
    torch.testing.assert_close(_logits(native, x), expected)
    assert native.pretrained_cfg["label_names"] == [str(d) for d in range(10)]


def test_cli_push_export_and_errors(pushed_run, tmp_path, capsys) -> None:
    from hf_unlearn.cli import main

    run_dir, hub, _ = pushed_run
    assert main(["push", str(run_dir), "--repo-id", "me/reference", "--run", "retrain", "--private"]) == 0
    assert hub.calls[-2][1]["private"] is True and hub.calls[-1][1]["repo_id"] == "me/reference"
    assert main(["push", str(run_dir), "--repo-id", "me/x", "--run", "nope"]) == 2
    assert "not in the report" in capsys.readouterr().err
    assert main(["push", str(run_dir), "--repo-id", "not a repo id"]) == 2
    assert main(["push", str(run_dir)]) == 2
    assert main(["push", str(run_dir), "--export-dir", str(tmp_path / "e")]) == 0
    assert (tmp_path / "e" / "model.safetensors").is_file()
    with pytest.raises(HubError, match="OWNER/NAME"):
        push_run(run_dir, "no-owner")


def test_recipe_hub_section_is_checked_before_training() -> None:
    from hf_unlearn.recipe import RecipeError, load_recipe

    assert load_recipe("digits")["hub"] == {
        "push": False,
        "repo_id": None,
        "run": None,
        "private": False,
        "license": None,
        "license_name": None,
        "license_link": None,
    }
    one_seed = ["seeds=null"]  # a push names one run of one seed
    with pytest.raises(RecipeError, match=r"hub\.repo_id"):
        load_recipe("digits", [*one_seed, "hub.push=true", "hub.run=neggrad"])
    with pytest.raises(RecipeError, match=r"hub\.repo_id: .*'me/bad name' is not a Hub repo id"):
        load_recipe("digits", [*one_seed, "hub.push=true", "hub.run=neggrad", "hub.repo_id=me/bad name"])
    with pytest.raises(RecipeError, match=r"hub\.run"):
        load_recipe("digits", [*one_seed, "hub.push=true", "hub.repo_id=me/x"])  # six runs: which one?
    with pytest.raises(RecipeError, match="Did you mean 'neggrad'"):
        load_recipe("digits", ["hub.run=neggrd"])
    with pytest.raises(RecipeError, match="unknown recipe key"):
        load_recipe("digits", ["hub.pussh=true"])
    recipe = load_recipe("digits", [*one_seed, "hub.push=true", "hub.repo_id=me/x", "hub.run=neggrad_sam"])
    assert recipe["hub"]["run"] == "neggrad_sam"
