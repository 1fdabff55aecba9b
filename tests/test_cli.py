"""The CLI runs a tiny recipe end to end and writes a valid report; bad recipes fail with a clear message."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import tiny_recipe

from hf_unlearn.cli import main
from hf_unlearn.recipe import RecipeError, load_recipe

# The shared tiny recipe with three unlearning runs; `tiny_run` also shortens unlearning with --set.
TINY = tiny_recipe(
    **{
        "unlearn.runs": [
            {"method": "finetune"},
            {"method": "neggrad", "sharpness": "sam"},
            {"method": "sharp_minmax", "sharpness": "asam", "rho": 1.0},
        ]
    }
)
SET = ["--set", "unlearn.defaults.epochs=1"]  # the recipe says 2


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[Path, int]:
    folder = tmp_path_factory.mktemp("cli")
    recipe = folder / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(TINY))
    code = main(["run", str(recipe), "--output-dir", str(folder / "out"), "--cpu", *SET])
    return folder / "out", code


def test_cli_writes_a_valid_report(tiny_run):
    out, code = tiny_run
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["dataset"] == "digits" and report["seed"] == 0
    forget = report["forget_set"]
    assert forget["kind"] == "low_confidence" and forget["size"] == report["sizes"]["forget"] > 0
    assert len(forget["commitment"]) == 64 and "sha256" not in forget
    assert set(report["models"]) == {"original", "retrain", "finetune", "neggrad_sam", "sharp_minmax_asam"}
    for name, entry in report["models"].items():
        assert set(entry["accuracy"]) == {"retain", "forget", "test"}
        assert all(0.0 <= v <= 1.0 for v in entry["accuracy"].values())
        assert 0.0 <= entry["mia"]["confidence"] <= 1.0
        for attack in ("loss", "confidence", "entropy"):  # forget against test (docs/privacy.md)
            summary = entry["attacks"][attack]
            assert set(summary) == {"auc", "tpr_at_fpr"} and set(summary["tpr_at_fpr"]) == {"0.01", "0.001"}
            assert 0.0 <= summary["auc"] <= 1.0 and all(0.0 <= v <= 1.0 for v in summary["tpr_at_fpr"].values())
        assert entry["wall_seconds"] > 0.0  # every stage trained in this run
        assert (entry["tow"] is None) == (name == "retrain")
    assert report["models"]["neggrad_sam"]["sharpness"] == "sam"
    for name in ("finetune", "neggrad_sam", "sharp_minmax_asam"):  # the --set override, not the recipe's 2
        assert report["models"][name]["hyperparameters"]["num_train_epochs"] == 1, name
    assert report["models"]["original"]["hyperparameters"]["num_train_epochs"] == 2  # pretraining keeps its own
    assert "| run |" in (out / "report.md").read_text()
    assert "| original | loss |" in (out / "report.md").read_text()  # the attacks' table
    assert (out / "accuracy_tow.png").read_bytes()[:4] == b"\x89PNG"
    environment = report["environment"]  # what the numbers came from (hf_unlearn.environment)
    assert environment["torch_threads"] == torch.get_num_threads() and environment["cpu"]
    assert {"hf_unlearn", "torch", "transformers", "accelerate", "datasets"} <= set(environment["libraries"])
    assert "- environment: " in (out / "report.md").read_text()


def test_forget_and_retain_partition_the_training_set(tiny_run):
    out, _ = tiny_run
    manifest = json.loads((out / "manifest.json").read_text())
    forget, retain = set(manifest["forget_indices"]), set(manifest["retain_indices"])
    assert not forget & retain and len(forget | retain) == manifest["n_train"]


# ------------------------------------------------------------------- the report, recomputed without hf_unlearn
def _digits_inputs(preprocessing: dict) -> tuple[torch.Tensor, np.ndarray]:
    """Every digits image as the run's model saw it, built with scikit-learn and transformers only.

    digits stores ink as 0..16; the source scales it to 0..255 (rounded), as an 8-bit image (docs/datasets.md).
    The manual transform (resize, [0, 1], ``(x - mean) / std``) is transformers' ViTImageProcessor with those
    settings; at ``image_size`` 8 there is nothing to resize."""
    from sklearn.datasets import load_digits
    from transformers import ViTImageProcessor

    assert preprocessing["kind"] == "manual" and preprocessing["image_size"] == 8 and preprocessing["num_channels"] == 1
    bunch = load_digits()
    images = np.clip(np.rint(bunch.images * (255.0 / 16)), 0, 255).astype(np.uint8)
    processor = ViTImageProcessor(
        do_resize=False,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=preprocessing["mean"],
        image_std=preprocessing["std"],
    )
    pixels = processor(images=list(images[..., None]), input_data_format="channels_last", return_tensors="pt")
    return pixels["pixel_values"], bunch.target.astype(np.int64)


def _split_rows(labels: np.ndarray, test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, test rows) of the pool: datasets' stratified, seeded split (docs/datasets.md), by row id."""
    from datasets import ClassLabel, Dataset

    rows = Dataset.from_dict({"row": np.arange(len(labels)), "label": labels})
    rows = rows.cast_column("label", ClassLabel(names=[str(c) for c in range(10)]))
    parts = rows.train_test_split(test_size=test_size, seed=seed, stratify_by_column="label")
    return np.asarray(parts["train"]["row"]), np.asarray(parts["test"]["row"])


@pytest.mark.slow
def test_report_accuracies_equal_a_plain_transformers_evaluation_of_the_saved_folders(tiny_run):
    """Each saved model folder, loaded with `AutoModelForImageClassification`, scores exactly the report's
    retain / forget / test accuracies on the manifest's samples of the source read directly, and the loss attack's
    AUC (forget = members, test = non-members: scikit-learn on the cross-entropy). Nothing here goes through
    hf_unlearn's data or evaluation code, so a mix-up there (e.g. forget and test swapped) fails it."""
    from sklearn.metrics import roc_auc_score
    from transformers import AutoModelForImageClassification

    out, code = tiny_run
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    pixels, labels = _digits_inputs(report["preprocessing"])
    train_rows, test_rows = _split_rows(labels, TINY["data"]["test_size"], report["seed"])
    assert len(train_rows) == manifest["n_train"] == report["sizes"]["train"]
    rows = {
        "retain": train_rows[manifest["retain_indices"]],
        "forget": train_rows[manifest["forget_indices"]],
        "test": test_rows,
    }
    assert {name: len(r) for name, r in rows.items()} == {k: report["sizes"][k] for k in rows}
    recomputed, aucs = {}, {}
    for name, entry in report["models"].items():
        model = AutoModelForImageClassification.from_pretrained(out / "models" / name).eval()
        with torch.no_grad():
            logits = {split: model(pixel_values=pixels[r]).logits.double() for split, r in rows.items()}
        recomputed[name] = {
            split: float(np.mean(z.argmax(-1).numpy() == labels[rows[split]])) for split, z in logits.items()
        }
        assert recomputed[name] == entry["accuracy"], name
        # The loss attack: a lower cross-entropy says "member"; forget samples are members, test samples are not.
        losses = {
            split: torch.nn.functional.cross_entropy(
                logits[split], torch.from_numpy(labels[rows[split]]), reduction="none"
            )
            for split in ("forget", "test")
        }
        is_member = np.r_[np.ones(len(rows["forget"])), np.zeros(len(rows["test"]))]
        aucs[name] = roc_auc_score(is_member, -torch.cat([losses["forget"], losses["test"]]).numpy())
        # Batches of other sizes may move a logit in its last float32 bit: allow one pair of near-tied losses
        # to order differently (1 / pairs), no more.
        pairs = len(rows["forget"]) * len(rows["test"])
        assert entry["attacks"]["loss"]["auc"] == pytest.approx(aucs[name], abs=1.01 / pairs), name
    # The check can tell the splits apart: some model scores differently on each of them.
    assert any(len(set(acc.values())) == 3 for acc in recomputed.values()), recomputed
    assert any(abs(auc - 0.5) > 0.1 for auc in aucs.values()), aucs  # and it is no coin flip for some model


def test_rerun_reuses_finished_stages(tiny_run, capsys):
    out, _ = tiny_run
    before = {p: p.stat().st_mtime_ns for p in out.glob("models/*/model.safetensors")}
    recipe = out.parent / "tiny.yaml"
    assert main(["run", str(recipe), "--output-dir", str(out), "--cpu", *SET]) == 0
    after = {p: p.stat().st_mtime_ns for p in out.glob("models/*/model.safetensors")}
    assert before == after


def test_unknown_recipe_key_is_an_error_with_a_suggestion(tmp_path, capsys):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(yaml.safe_dump({**TINY, "unlearn": {"runs": [{"method": "neggrad", "alpah": 0.9}]}}))
    assert main(["run", str(recipe), "--output-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "alpah" in err and "Did you mean 'alpha'" in err


def test_an_output_dir_that_cannot_be_a_folder_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(["run", "digits", "--output-dir", str(blocker / "out"), "--cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hf-unlearn: error: Not a directory:") and str(blocker) in err and "\n" not in err


def test_set_overrides_and_unknown_method():
    recipe = load_recipe("digits", ["unlearn.runs.neggrad.alpha=0.9", "pretrain.epochs=3"])
    assert next(r for r in recipe["unlearn"]["runs"] if r["name"] == "neggrad")["alpha"] == 0.9
    assert recipe["pretrain"]["epochs"] == 3
    with pytest.raises(RecipeError, match="Did you mean 'neggrad'"):
        load_recipe("digits", ["unlearn.runs.0.method=neggrd"])
