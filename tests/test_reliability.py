"""Reliability (docs/reliability.md): bad input, divergence, faults and resume, determinism, safe artifacts.

Every run uses the tiny recipe of tests/conftest.py (digits at 8x8, a two-stage ResNet of width 8/16, batches of 256,
1-2 epochs). Runs that need finished reference stages copy the session's baseline run (`baseline`, tests/conftest.py;
one uninterrupted run of TINY), so only the new stages train: the stage fingerprints (which do not depend on the
unlearning runs) make the copy's original / retrain stages reusable.

The SIGKILL test runs the CLI in a subprocess with a tiny TrainerCallback (installed by the subprocess's bootstrap
code, read from the HF_UNLEARN_TEST_KILL_AT environment variable) that SIGKILLs its own process at the start of a
given optimizer step of a given stage. The kill is therefore deterministic: it always lands after the stage's first
epoch checkpoint (step 4) and before the stage finishes, with no polling and no timing race.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import TINY_RECIPE, copy_of, run_cli, write_recipe
from conftest import TINY_STEPS_PER_EPOCH as STEPS_PER_EPOCH
from conftest import tiny_recipe as recipe_with
from safetensors.torch import load_file

from hf_unlearn.data import sources

N_TRAIN = 898  # the training half of digits (tests/conftest.py TINY_RECIPE)
TINY = TINY_RECIPE
STAGES = ("original", "retrain", "neggrad_sam")
ALLOWED_TOP = {
    "manifest.json",
    "learning_events.npy",
    "report.json",
    "report.md",
    "scores.json",  # every stage's metrics, keyed by the evaluation settings (hf_unlearn.steps.score)
    "logs",  # each stage's tracking: event files and *_results.json (hf_unlearn.tracking)
    "accuracy_tow.png",
    "models",
    ".hf_unlearn.lock",  # the run lock's file (docs/reliability.md); it stays, unlocked
}
ALLOWED_MODEL_FILES = {"config.json", "model.safetensors", "preprocessor_config.json", "stage.json"}


def weights(out: Path, stage: str) -> dict[str, torch.Tensor]:
    return load_file(str(out / "models" / stage / "model.safetensors"))


def assert_same_weights(a: Path, b: Path, stage: str) -> None:
    wa, wb = weights(a, stage), weights(b, stage)
    assert wa.keys() == wb.keys()
    different = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not different, f"{stage}: {len(different)} tensors differ, e.g. {different[:3]}"


def without_wall_seconds(report: Any) -> Any:
    """The report without timings and without the forget set's commitment: a fresh manifest draws a fresh random
    key, so two independent runs commit to the same forget set with different values (docs/reliability.md)."""
    if isinstance(report, dict):
        return {k: without_wall_seconds(v) for k, v in report.items() if k not in ("wall_seconds", "commitment")}
    if isinstance(report, list):
        return [without_wall_seconds(v) for v in report]
    return report


def read_report(out: Path) -> dict[str, Any]:
    return json.loads((out / "report.json").read_text())


# ============================================================================================ bad input
def expect_error(capsys, code: int, *fragments: str) -> str:
    err = capsys.readouterr().err
    assert code == 2, err[-3000:]
    assert "Traceback" not in err
    # One line: what is wrong, where, how to fix it (a progress bar may precede it on the same terminal line).
    lines = re.findall(r"hf-unlearn: error: [^\r\n]*", err)
    assert len(lines) == 1, err[-3000:]
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


@pytest.mark.parametrize(
    "changes, fragments",
    [
        ({"sead": 1}, ["sead: unknown recipe key", "Did you mean 'seed'"]),
        ({"data.imge_size": 8}, ["data.imge_size", "Did you mean 'image_size'"]),
        ({"forget.sise": 3}, ["forget.sise", "Did you mean 'size'"]),
        ({"model.confg": {}}, ["model.confg", "Did you mean 'config'"]),
        ({"pretrain.epoch": 1}, ["pretrain.epoch", "Did you mean 'epochs'"]),
        ({"unlearn.defaults.learning_rat": 0.1}, ["unlearn.defaults.learning_rat", "Did you mean 'learning_rate'"]),
        ({"unlearn.runs.0.alpah": 0.9}, ["unlearn.runs[0].alpah", "Did you mean 'alpha'"]),
        ({"evaluation.batchsize": 9}, ["evaluation.batchsize", "Did you mean 'batch_size'"]),
    ],
    ids=["top", "data", "forget", "model", "pretrain", "unlearn.defaults", "unlearn.runs", "evaluation"],
)
def test_misspelled_recipe_key_at_every_level(tmp_path, capsys, changes, fragments):
    expect_error(capsys, run_cli(tmp_path, recipe_with(**changes), tmp_path / "out"), *fragments)


@pytest.mark.parametrize(
    "changes, fragments",
    [
        ({"unlearn.runs.0.method": "neggrd"}, ["neggrd", "Did you mean 'neggrad'"]),
        (
            {"unlearn.runs.0.sharpness": "sma"},
            ["unlearn.runs[0].sharpness", "unknown sharpness 'sma'", "Did you mean 'sam'", "none, sam, asam"],
        ),
        (
            {"unlearn.defaults.sharpness": "assam", "unlearn.runs.0": {"method": "neggrad"}},
            ["unlearn.defaults.sharpness", "Did you mean 'asam'"],
        ),
        ({"unlearn.runs.0.rho": 0.0}, ["unlearn.runs[0].rho", "rho must be a finite number > 0"]),
        ({"unlearn.runs.0.rho": -1.0}, ["unlearn.runs[0].rho", "rho must be a finite number > 0"]),
        ({"unlearn.runs.0.alpha": 1.5}, ["unlearn.runs[0].alpha", "alpha must lie in [0, 1]"]),
        ({"unlearn.defaults.alpha": -0.1}, ["unlearn.defaults.alpha", "alpha must lie in [0, 1]"]),
        (
            {"unlearn.runs.0": {"method": "sharp_minmax", "mask_ratio": 0.0}},
            ["unlearn.runs[0].mask_ratio", "mask_ratio must lie in (0, 1]"],
        ),
        (
            {"unlearn.runs.0": {"method": "sharp_minmax", "mask_ratio": 1.5}},
            ["unlearn.runs[0].mask_ratio", "mask_ratio must lie in (0, 1]"],
        ),
        ({"retrain.optim": "sgdd"}, ["retrain", "sgdd"]),
        ({"pretrain.learning_rate": "fast"}, ["pretrain.learning_rate: expected a number, got 'fast'", "0.001"]),
        (
            {"unlearn.runs.0": {"method": "sharp_minmax", "official": "yes"}},
            ["unlearn.runs[0].official: expected bool, got 'yes'"],
        ),
        ({"unlearn.defaults.batch_size": 64.5}, ["unlearn.defaults.batch_size: expected int, got 64.5"]),
    ],
    ids=[
        "method",
        "sharpness",
        "sharpness-defaults",
        "rho-zero",
        "rho-negative",
        "alpha-high",
        "alpha-defaults",
        "mask-zero",
        "mask-high",
        "optim",
        "string-number",
        "bool",
        "float-batch",
    ],
)
def test_bad_method_sharpness_or_hyperparameter_fails_before_anything_runs(tmp_path, capsys, changes, fragments):
    out = tmp_path / "out"
    expect_error(capsys, run_cli(tmp_path, recipe_with(**changes), out), *fragments)
    assert not out.exists()  # checked before the output folder is even created, let alone pretraining


@pytest.mark.parametrize(
    "setting, env, fragments",
    [
        (
            {"fsdp": "full_shard"},
            {},
            [
                "unlearn.defaults.fsdp",
                "neggrad with sharpness='sam' is not supported under FSDP",
                "backward passes",
                "accelerate_configs/multi_gpu.yaml",
            ],
        ),
        (
            {},
            {"ACCELERATE_USE_DEEPSPEED": "true"},
            [
                "unlearn.runs[0] (neggrad_sam)",
                "ACCELERATE_USE_DEEPSPEED",
                "not supported under DeepSpeed",
                "multi_gpu.yaml",
            ],
        ),
    ],
    ids=["fsdp-recipe", "deepspeed-launch"],
)
def test_sam_under_deepspeed_or_fsdp_is_refused_before_training(tmp_path, capsys, monkeypatch, setting, env, fragments):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    recipe = recipe_with(**{f"unlearn.defaults.{k}": v for k, v in setting.items()})
    expect_error(capsys, run_cli(tmp_path, recipe, tmp_path / "out"), *fragments)


@pytest.mark.parametrize(
    "size, fragments",
    [
        (0, ["forget.size", "Forget set size is 0; it must be at least 1"]),
        (0.0001, ["forget.size", "must be at least 1"]),
        (N_TRAIN, ["forget.size", f"would leave nothing to retain out of {N_TRAIN}"]),
        (1.0, ["forget.size", "outside (0, 1)"]),
    ],
    ids=["empty", "empty-fraction", "whole-count", "whole-fraction"],
)
def test_empty_or_whole_forget_set_fails_before_pretraining(tmp_path, capsys, size, fragments):
    out = tmp_path / "out"
    expect_error(capsys, run_cli(tmp_path, recipe_with(**{"forget.size": size}), out), *fragments)
    assert not (out / "models").exists()


def _tamper(manifest: dict[str, Any], how: str) -> None:
    forget, retain = manifest["forget_indices"], manifest["retain_indices"]
    if how == "overlap":
        retain.append(forget[0])
        retain.sort()
    elif how == "duplicate":
        forget.insert(1, forget[0])
    elif how == "out-of-range":
        forget[-1] = manifest["n_train"] + 5
    elif how == "hash":
        manifest["sha256"] = "0" * 64


@pytest.mark.parametrize(
    "how, fragment",
    [
        ("overlap", "overlap"),
        ("duplicate", "not sorted without duplicates"),
        ("out-of-range", f"outside [0, {N_TRAIN})"),
        ("hash", "does not match the forget indices"),
    ],
)
def test_modified_split_manifest_is_refused_not_replaced(baseline, tmp_path, capsys, how, fragment):
    out = copy_of(baseline, tmp_path)
    manifest = json.loads((out / "manifest.json").read_text())
    _tamper(manifest, how)
    (out / "manifest.json").write_text(json.dumps(manifest))
    expect_error(capsys, run_cli(tmp_path, TINY, out), "forget:", fragment, "--force")
    assert json.loads((out / "manifest.json").read_text()) == manifest  # never silently rebuilt


@pytest.mark.parametrize(
    "lines, index, fragments",
    [
        (["# nothing to forget"], "train", ["forget:", "the file names no sample; the forget set would be empty"]),
        (["3", "3", "5"], "train", ["forget:", "repeats 1 indices (e.g. 3); remove the duplicates"]),
        (["2", str(N_TRAIN + 5)], "train", ["forget:", f"outside [0, {N_TRAIN}) (e.g. {N_TRAIN + 5})"]),
        ([str(i) for i in range(N_TRAIN)], "train", ["forget:", f"is the whole training set ({N_TRAIN} samples)"]),
        (["0", "5000"], "row", ["forget:", "entries are not in the training split (e.g. 5000)"]),
        (["1.5"], "train", ["forget:", "entries must be integer indices"]),
    ],
    ids=["empty", "duplicated", "out-of-range", "whole-set", "not-a-training-row", "not-an-integer"],
)
def test_bad_index_file_fails_before_pretraining(tmp_path, capsys, lines, index, fragments):
    path = tmp_path / "forget.txt"
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    recipe = recipe_with(forget={"kind": "file", "path": str(path), "index": index})
    expect_error(capsys, run_cli(tmp_path, recipe, out), *fragments)
    assert not (out / "models").exists()


def test_forget_indices_are_validated_with_a_fix(tmp_path):
    """The index checks every forget set goes through (`SplitManifest.build`), as the CLI words them."""
    from hf_unlearn.data import SplitManifest
    from hf_unlearn.errors import ValidationError, located

    cases = {
        (): "The forget set is empty",
        (3, 3, 5): "repeats 1 indices (e.g. 3); remove the duplicates",
        (2, 10): "outside [0, 10) (e.g. 10)",
        tuple(range(10)): "is the whole training set (10 samples)",
    }
    for indices, fragment in cases.items():
        with pytest.raises(ValidationError) as info, located("forget"):
            SplitManifest.build("user", 10, list(indices))
        assert str(info.value).startswith("forget: ") and fragment in str(info.value)


def _digits_with(**mutations: Any):
    """A digits source with some rows broken: labels=[(row, label)], images=[row] (bytes that are no image)."""

    def load():
        from datasets import Image

        dataset = sources.load_digits_dataset()
        images = list(dataset.cast_column("image", Image(decode=False))["image"])
        labels = list(dataset["label"])
        for row in mutations.get("images", []):
            images[row] = {"bytes": b"this is not an image", "path": None}
        for row, label in mutations.get("labels", []):
            labels[row] = label
        return dataset.from_dict({"image": images, "label": labels}, features=dataset.features)

    return load


@pytest.mark.parametrize(
    "mutations, fragments",
    [
        (
            {"labels": [(5, -1), (9, -1), (14, -1), (30, -1)]},
            ["data:", "have a label outside [0, 10)", "label -1", "unlabelled", "filter"],
        ),
        ({"labels": [(5, -1)]}, ["data:", "'train' source split have a label outside [0, 10)", "row 5 has label -1"]),
        ({"images": [17]}, ["data.image_column: row 17", "does not decode as an image", "UnidentifiedImageError"]),
    ],
    ids=["labels-out-of-range", "one-label-out-of-range", "image-does-not-decode"],
)
def test_bad_labels_or_images_name_the_row(tmp_path, capsys, monkeypatch, mutations, fragments):
    monkeypatch.setitem(sources.SOURCES, "broken_digits", _digits_with(**mutations))
    recipe = recipe_with(**{"data.source": "broken_digits"})
    expect_error(capsys, run_cli(tmp_path, recipe, tmp_path / "out"), *fragments)


def test_unknown_data_source(tmp_path, capsys):
    expect_error(
        capsys, run_cli(tmp_path, recipe_with(**{"data.source": "digitz"}), tmp_path / "out"), "data:", "digitz"
    )


def _tiny_resnet(num_labels: int):
    from transformers import ResNetConfig, ResNetForImageClassification

    config = ResNetConfig(
        **{k: v for k, v in TINY["model"]["config"].items() if k != "model_type"}, num_labels=num_labels
    )
    torch.manual_seed(0)
    return ResNetForImageClassification(config)


def test_label_count_mismatch_of_a_pretrained_model(tmp_path, capsys):
    folder = tmp_path / "three_labels"
    _tiny_resnet(3).save_pretrained(folder)
    recipe = recipe_with(**{"model": {"name_or_path": str(folder)}})
    expect_error(
        capsys,
        run_cli(tmp_path, recipe, tmp_path / "out"),
        "model.name_or_path",
        "classification head with 3 labels but the data set has 10 classes",
        "model.ignore_mismatched_sizes: true",
    )
    from hf_unlearn.validation import check_pretrained_model

    check_pretrained_model(str(folder), [str(i) for i in range(10)], ignore_mismatched_sizes=True)  # the opt-in


def test_label_count_in_model_config_is_refused(tmp_path, capsys):
    recipe = recipe_with(**{"model.config.num_labels": 5})
    expect_error(
        capsys,
        run_cli(tmp_path, recipe, tmp_path / "out"),
        "model.config.num_labels",
        "sized from the data set's classes (10",
    )


def test_pickle_only_pretrained_weights_are_not_loaded(tmp_path, capsys):
    folder = tmp_path / "pickled"
    model = _tiny_resnet(10)
    model.config.save_pretrained(folder)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")  # a pickle: loading it could run code
    assert (folder / "pytorch_model.bin").is_file() and not (folder / "model.safetensors").exists()
    recipe = recipe_with(**{"model": {"name_or_path": str(folder)}})
    expect_error(capsys, run_cli(tmp_path, recipe, tmp_path / "out"), "model.name_or_path", "safetensors weights only")


def test_pretraining_divergence_stops_the_recipe_with_a_message(tmp_path, capsys):
    recipe = recipe_with(**{"pretrain.learning_rate": 1.0e30})
    expect_error(
        capsys,
        run_cli(tmp_path, recipe, tmp_path / "out"),
        "pretrain: ",
        "non-finite",
        "the run diverged",
        "pretrain.learning_rate",
    )
    assert not (tmp_path / "out" / "checkpoints").exists()


# ============================================================================================ divergence
def test_divergence_is_recorded_and_the_recipe_goes_on(baseline, tmp_path, capsys):
    """Gradient ascent at an absurd learning rate blows up in its first epoch: no checkpoint yet, null metrics."""
    out = copy_of(baseline, tmp_path)
    recipe = recipe_with(
        **{
            "unlearn.runs": [
                {"method": "gradient_ascent", "learning_rate": 1.0e30, "name": "ga_blowup"},
                TINY["unlearn"]["runs"][0],
            ]
        }
    )
    assert run_cli(tmp_path, recipe, out) == 0
    assert "run 'ga_blowup' diverged" in capsys.readouterr().err
    report = read_report(out)
    entry = report["models"]["ga_blowup"]
    assert entry["status"] == "diverged"
    assert "non-finite training loss" in entry["divergence"]["message"]
    assert entry["divergence"]["weights_from_step"] is None
    assert entry["accuracy"] is None and entry["mia"] is None and entry["tow"] is None
    assert report["models"]["neggrad_sam"]["status"] == "finished"  # the other run was not affected
    assert not (out / "models" / "ga_blowup" / "model.safetensors").exists()
    assert "ga_blowup (diverged)" in (out / "report.md").read_text()
    assert not (out / "checkpoints").exists()


def test_divergence_keeps_the_last_good_checkpoint(baseline, tmp_path, monkeypatch):
    """A NaN loss in epoch 2 keeps the epoch-1 checkpoint's weights: the same as a run of exactly one epoch."""
    from hf_unlearn.trainers.neggrad import NegGradTrainer

    objective = NegGradTrainer.objective

    def nan_in_epoch_two(self, model, batch):
        loss = objective(self, model, batch)
        poisoned = self.args.output_dir.endswith("nan_at_6") and self.state.global_step >= STEPS_PER_EPOCH + 1
        return tuple(term * float("nan") for term in loss) if poisoned else loss

    monkeypatch.setattr(NegGradTrainer, "objective", nan_in_epoch_two)
    out = copy_of(baseline, tmp_path)
    runs = [
        {"method": "neggrad", "alpha": 0.9, "name": "nan_at_6"},
        {"method": "neggrad", "alpha": 0.9, "epochs": 1, "name": "one_epoch"},
    ]
    assert run_cli(tmp_path, recipe_with(**{"unlearn.runs": runs}), out) == 0
    models = read_report(out)["models"]
    diverged = models["nan_at_6"]
    assert diverged["status"] == "diverged"
    assert diverged["divergence"]["step"] == STEPS_PER_EPOCH + 2 and diverged["divergence"]["loss"] == "nan"
    assert diverged["divergence"]["weights_from_step"] == STEPS_PER_EPOCH
    assert diverged["accuracy"] == models["one_epoch"]["accuracy"] and diverged["tow"] is not None
    wa, wb = weights(out, "nan_at_6"), weights(out, "one_epoch")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    from hf_unlearn.hub import HubError, export_run

    with pytest.raises(HubError, match="diverged"):  # never pushed as if it were a finished run
        export_run(out, tmp_path / "export", "nan_at_6")
    # A diverged stage is a finished result: a rerun reuses it.
    before = (out / "models" / "nan_at_6" / "stage.json").stat().st_mtime_ns
    assert run_cli(tmp_path, recipe_with(**{"unlearn.runs": runs}), out) == 0
    assert (out / "models" / "nan_at_6" / "stage.json").stat().st_mtime_ns == before


# ===================================================================================== faults and resume
KILL_BOOTSTRAP = r"""
import os, signal, sys
from transformers import TrainerCallback
from hf_unlearn.trainers import base

stage, step = os.environ["HF_UNLEARN_TEST_KILL_AT"].rsplit(":", 1)


class KillAt(TrainerCallback):
    def on_step_begin(self, args, state, control, **kwargs):
        if os.path.basename(args.output_dir) == stage and state.global_step == int(step):
            os.kill(os.getpid(), signal.SIGKILL)


init = base.UnlearnTrainer.__init__


def patched_init(self, *args, **kwargs):
    init(self, *args, **kwargs)
    self.add_callback(KillAt())


base.UnlearnTrainer.__init__ = patched_init
from hf_unlearn.cli import main

sys.exit(main(sys.argv[1:]))
"""


def run_killed_at(recipe: Path, out: Path, stage: str, step: int, timeout: int = 300) -> None:
    """Run ``hf-unlearn run RECIPE`` in a real process that SIGKILLs itself at ``step`` of ``stage``; check it died
    there, leaving a checkpoint of the stage and no saved model."""
    env = {**os.environ, "HF_UNLEARN_TEST_KILL_AT": f"{stage}:{step}"}
    killed = subprocess.run(
        [sys.executable, "-c", KILL_BOOTSTRAP, "run", str(recipe), "--output-dir", str(out), "--cpu"],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert any((out / "checkpoints" / stage).glob("checkpoint-*")), stage
    assert not (out / "models" / stage).exists()


def test_sigkill_in_the_middle_of_unlearning_then_rerun_gives_identical_weights(baseline, tmp_path):
    out = tmp_path / "out"
    recipe = write_recipe(tmp_path, TINY)
    run_killed_at(recipe, out, "neggrad_sam", STEPS_PER_EPOCH + 2)
    # Killed mid-stage: the reference stages are finished, the unlearning stage has only its epoch-1 checkpoint.
    assert (out / "models" / "retrain" / "stage.json").is_file()
    assert not (out / "models" / "neggrad_sam").exists()
    stage_checkpoints = out / "checkpoints" / "neggrad_sam"
    assert sorted(p.name for p in stage_checkpoints.glob("checkpoint-*")) == [f"checkpoint-{STEPS_PER_EPOCH}"]
    finished = {s: (out / "models" / s / "model.safetensors").stat().st_mtime_ns for s in ("original", "retrain")}

    assert run_cli(tmp_path, TINY, out) == 0  # the rerun resumes from checkpoint-4
    for stage in STAGES:
        assert_same_weights(baseline, out, stage)
    assert {s: (out / "models" / s / "model.safetensors").stat().st_mtime_ns for s in finished} == finished
    assert without_wall_seconds(read_report(out)) == without_wall_seconds(read_report(baseline))
    assert not (out / "checkpoints").exists()  # checkpoints (and their pickles) are gone once stages finish


def test_interrupts_in_pretraining_and_between_stages_resume_without_redoing_finished_stages(
    baseline, tmp_path, monkeypatch
):
    """Interrupted in pretraining's second epoch, then between retrain and unlearning: each rerun picks up where
    the last one stopped (pretraining from its epoch-1 checkpoint, with the recorded confidence history), finished
    stages are reused, and the result is the uninterrupted run's. --force redoes everything."""
    from transformers import TrainerCallback

    from hf_unlearn.trainers import base

    interrupted: list[int] = []

    class InterruptAt(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if (
                Path(args.output_dir).name == "pretrain"
                and state.global_step == STEPS_PER_EPOCH + 1
                and not interrupted
            ):
                interrupted.append(state.global_step)
                raise KeyboardInterrupt  # e.g. Ctrl-C in the middle of pretraining's second epoch

    trained: list[str] = []
    stop_at: set[str] = set()  # stages whose trainer is never built: Ctrl-C comes first
    init = base.UnlearnTrainer.__init__

    def spy(self, *args, **kwargs):
        if Path((args[1] if len(args) > 1 else kwargs["args"]).output_dir).name in stop_at:
            raise KeyboardInterrupt
        init(self, *args, **kwargs)
        trained.append(Path(self.args.output_dir).name)
        self.add_callback(InterruptAt())

    monkeypatch.setattr(base.UnlearnTrainer, "__init__", spy)
    out = tmp_path / "out"
    assert run_cli(tmp_path, TINY, out) == 130  # Ctrl-C: one line, exit 130 (test_integrity.py)
    assert [p.name for p in (out / "checkpoints" / "pretrain").glob("checkpoint-*")] == [
        f"checkpoint-{STEPS_PER_EPOCH}"
    ]
    assert not (out / "models").exists()

    stop_at.add("neggrad_sam")  # e.g. Ctrl-C right after the retrain stage was saved
    trained.clear()
    assert run_cli(tmp_path, TINY, out) == 130  # Ctrl-C: one line, exit 130 (test_integrity.py)
    assert trained == ["pretrain", "retrain"]  # pretraining resumed (its checkpoint), then retrain
    assert (out / "models" / "retrain" / "stage.json").is_file() and not (out / "report.json").exists()
    assert not (out / "checkpoints" / "pretrain").exists()  # a finished stage's checkpoints are deleted
    stamps = {p: p.stat().st_mtime_ns for p in [*out.glob("models/*/*"), out / "manifest.json"]}

    stop_at.clear()
    trained.clear()
    assert run_cli(tmp_path, TINY, out) == 0
    assert trained == ["neggrad_sam"]  # original and retrain were reused, not redone
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert np.array_equal(np.load(out / "learning_events.npy"), np.load(baseline / "learning_events.npy"))
    for stage in STAGES:
        assert_same_weights(baseline, out, stage)
    assert without_wall_seconds(read_report(out)) == without_wall_seconds(read_report(baseline))

    # --force redoes finished stages: the first trainer built is pretraining's again (stopped right there).
    def stop_at_first_trainer(self, *args, **kwargs):
        trained.append(Path(args[1].output_dir if len(args) > 1 else kwargs["args"].output_dir).name)
        raise KeyboardInterrupt

    trained.clear()
    monkeypatch.setattr(base.UnlearnTrainer, "__init__", stop_at_first_trainer)
    assert run_cli(tmp_path, TINY, out, "--force") == 130
    assert trained == ["pretrain"]


def test_checkpoints_of_other_settings_or_foreign_folders_are_never_loaded(tmp_path):
    from hf_unlearn.checkpoints import MARKER, StageCheckpoints

    folder = tmp_path / "checkpoints" / "stage"
    good = folder / "checkpoint-6"
    good.mkdir(parents=True)
    for name in ("model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth"):
        (good / name).write_bytes(b"x")
    (good / "trainer_state.json").write_text(json.dumps({"global_step": 6}))
    partial = folder / "checkpoint-12"  # killed while saving: no trainer_state.json
    shutil.copytree(good, partial)
    (partial / "trainer_state.json").unlink()

    foreign = StageCheckpoints(folder, "stage", "abc")
    assert foreign.latest() is None  # no marker: not made by hf_unlearn for this stage
    (folder / MARKER).write_text(json.dumps({"stage": "stage", "fingerprint": "abc"}))
    assert foreign.latest() == good  # the partial checkpoint-12 is skipped
    other = StageCheckpoints(folder, "stage", "changed-settings")
    assert other.prepare() is None and not any(folder.glob("checkpoint-*"))  # removed, not loaded


# ============================================================================================ determinism
def test_same_recipe_and_seed_give_the_same_splits_manifest_weights_and_report(baseline, tmp_path):
    out = tmp_path / "out"
    assert run_cli(tmp_path, TINY, out) == 0
    mine, theirs = (json.loads((folder / "manifest.json").read_text()) for folder in (out, baseline))
    keyed = ("commitment_key", "commitment")  # a fresh random key per fresh manifest; everything else is equal
    assert {k: v for k, v in mine.items() if k not in keyed} == {k: v for k, v in theirs.items() if k not in keyed}
    assert mine["commitment_key"] != theirs["commitment_key"]
    assert np.array_equal(np.load(out / "learning_events.npy"), np.load(baseline / "learning_events.npy"))
    for stage in STAGES:
        assert_same_weights(baseline, out, stage)
    assert without_wall_seconds(read_report(out)) == without_wall_seconds(read_report(baseline))


# =========================================================================================== safe artifacts
def test_output_folder_holds_no_data_or_index_files(baseline):
    manifest = json.loads((baseline / "manifest.json").read_text())
    forget = manifest["forget_indices"]
    assert {p.name for p in baseline.iterdir()} <= ALLOWED_TOP  # no checkpoints/ left, no data set cache
    for stage in (baseline / "models").iterdir():
        assert {p.name for p in stage.iterdir()} == ALLOWED_MODEL_FILES, stage
        record = json.loads((stage / "stage.json").read_text())
        assert not {"forget_indices", "retain_indices"} & set(record)
        config = json.loads((stage / "config.json").read_text())
        assert "forget_indices" not in json.dumps(config)
    report = read_report(baseline)
    assert "commitment" in report["forget_set"] and not {"forget_indices", "retain_indices"} & set(report["forget_set"])
    assert all(not isinstance(v, (list, dict)) for v in report["forget_set"].values())  # a summary, no indices
    assert report["forget_set"]["commitment"] == manifest["commitment"] and report["forget_set"]["size"] == len(forget)
    # No file but the manifest spells out the forget indices.
    needle = json.dumps(forget[:8])[1:-1]
    for path in baseline.rglob("*"):
        if path.is_file() and path.name != "manifest.json" and path.suffix in (".json", ".md"):
            assert needle not in path.read_text(), path
    weights_files = [p for p in baseline.rglob("*") if p.suffix in (".bin", ".pt", ".pth", ".pkl", ".pickle")]
    assert not weights_files  # weights only in safetensors, no pickles anywhere


def test_exported_model_folder_holds_no_data_or_indices(baseline, tmp_path):
    from hf_unlearn import hub

    folder = Path(hub.export_run(baseline, tmp_path / "export", "neggrad_sam"))
    names = {p.name for p in folder.rglob("*") if p.is_file()}
    assert "model.safetensors" in names
    assert not names & {"manifest.json", "learning_events.npy", "stage.json", "report.json"}
    assert not [n for n in names if n.endswith((".npy", ".bin", ".pt", ".pth", ".arrow", ".parquet"))]


def test_remote_code_is_off_unless_the_recipe_turns_it_on():
    from hf_unlearn.recipe import load_recipe, validate

    assert load_recipe("digits")["model"]["trust_remote_code"] is False
    assert validate(recipe_with())["model"]["trust_remote_code"] is False
