"""Integrity and security (docs/reliability.md): safe names, one run per folder, YAML / JSON errors, the forget-set
commitment and `hf-unlearn verify`, edited manifests, Hub failures, main-process printing and Ctrl-C.

Runs use the tiny recipe of tests/conftest.py; tests that need finished stages copy the session's baseline run
(`baseline`, tests/conftest.py), so only what the test changes is computed again.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY_RECIPE as TINY
from conftest import TINY_STEPS_PER_EPOCH as STEPS_PER_EPOCH
from conftest import all_methods_recipe, copy_of, run_cli, write_recipe
from conftest import tiny_recipe as recipe_with
from safetensors.torch import load_file
from test_reliability import _digits_with, expect_error

from hf_unlearn.cli import main
from hf_unlearn.data import sources
from hf_unlearn.data.manifest import SplitManifest, indices_sha256
from hf_unlearn.lock import LOCK_NAME, FolderLock, FolderLockedError
from hf_unlearn.paths import inside, safe_name
from hf_unlearn.recipe import load_recipe

REPO = Path(__file__).resolve().parents[1]


# ================================================================================================ safe names
@pytest.mark.parametrize(
    "override, where",
    [
        ("unlearn.runs.0.name=../../escaped", "unlearn.runs[0].name"),
        ("unlearn.runs.0.name=a/b", "unlearn.runs[0].name"),
        ("unlearn.runs.0.name=/tmp/abs", "unlearn.runs[0].name"),
        ("unlearn.runs.0.name=.hidden", "unlearn.runs[0].name"),
        (f"unlearn.runs.0.name={'x' * 101}", "unlearn.runs[0].name"),
        ("forget.name=../up", "forget.name"),
        ("name=../../elsewhere", "name"),
    ],
    ids=["dotdot", "slash", "absolute", "hidden", "too-long", "forget-set", "recipe-name"],
)
def test_names_that_become_paths_are_refused_before_anything_is_created(tmp_path, capsys, override, where):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    out = work / "out"
    code = main(["run", str(write_recipe(work, TINY)), "--output-dir", str(out), "--cpu", "--set", override])
    expect_error(capsys, code, f"{where}:", "is not a safe folder name", "e.g.")
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "recipe.yaml"]  # nothing escaped either


def test_safe_name_rule():
    assert safe_name("neggrad_sam-0.1", "x") == "neggrad_sam-0.1"
    for bad in ("..", "a/b", "/a", "", ".x", "-x", "a b", "x" * 101, "a\\b"):
        with pytest.raises(ValueError, match="not a safe folder name"):
            safe_name(bad, "x")


def test_a_symlinked_output_folder_works_and_a_symlink_inside_it_is_refused(baseline, tmp_path, capsys):
    # The output folder itself may be a link (to another disk ...): what lies inside it is inside.
    real = tmp_path / "real"
    shutil.copytree(baseline, real)
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    assert inside(link / "models" / "retrain", link) == (real / "models" / "retrain").resolve()
    # A link planted inside the folder must not redirect a write elsewhere.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.rmtree(real / "models" / "neggrad_sam")
    (real / "models" / "neggrad_sam").symlink_to(elsewhere, target_is_directory=True)
    expect_error(capsys, run_cli(tmp_path, TINY, link), "neggrad_sam", "outside the output folder")
    assert not any(elsewhere.iterdir())


# ============================================================================================ one run per folder
HOLDER = (
    "import sys, time\n"
    "from hf_unlearn.lock import FolderLock\n"
    "lock = FolderLock(sys.argv[1]).acquire()  # kept referenced: a collected lock is released\n"
    "print('locked', flush=True)\n"
    "time.sleep(120)\n"
)


def hold_lock(folder: Path) -> subprocess.Popen:
    """A separate process holding ``folder``'s run lock (as a running `hf-unlearn run` does)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_run_on_a_locked_folder_exits_2_naming_the_holder(baseline, tmp_path, capsys):
    out = copy_of(baseline, tmp_path)
    before = (out / "report.json").read_bytes()
    holder = hold_lock(out)
    try:
        line = expect_error(capsys, run_cli(tmp_path, TINY, out), str(out), "in use by another hf-unlearn run")
        assert f"process {holder.pid} on host " in line and "started 20" in line
    finally:
        holder.kill()
        holder.wait()
    assert (out / "report.json").read_bytes() == before  # the first run's report is untouched


def test_a_killed_runs_lock_is_taken_over(tmp_path, caplog):
    holder = hold_lock(tmp_path)
    with pytest.raises(FolderLockedError, match=f"process {holder.pid}"):
        FolderLock(tmp_path).acquire()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with caplog.at_level("WARNING"), FolderLock(tmp_path) as lock:
        assert lock.owner()["pid"] == os.getpid()
    assert f"taking over the lock of a hf-unlearn run that stopped (process {holder.pid}" in caplog.text
    assert (tmp_path / LOCK_NAME).exists() and lock.owner() is None  # released: no holder recorded


# ============================================================================================ parse errors
def test_a_python_yaml_tag_is_one_line_with_file_line_and_column(tmp_path, capsys):
    path = tmp_path / "evil.yaml"
    path.write_text(f"name: evil\nseed: !!python/object/apply:os.system ['touch {tmp_path / 'pwned'}']\n")
    line = expect_error(capsys, main(["run", str(path), "--output-dir", str(tmp_path / "out")]), f"{path}:2:7:")
    assert "Python tags such as !!python/object are refused" in line
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "out").exists()


def test_yaml_syntax_and_json_errors_name_file_line_and_column(tmp_path, capsys):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nunlearn:\n  runs: [{method: neggrad}\n")
    line = expect_error(capsys, main(["run", str(path)]), "Fix the YAML syntax")
    assert re.search(rf"{re.escape(str(path))}:\d+:\d+: while parsing a flow sequence", line), line
    index = tmp_path / "forget.json"
    index.write_text('{"indices": [1, 2,]}')
    recipe = recipe_with(forget={"kind": "file", "path": str(index), "index": "train"})
    expect_error(capsys, run_cli(tmp_path, recipe, tmp_path / "out"), f"{index}:1:", "not valid JSON")


def test_config_with_name_or_path_is_refused(tmp_path, capsys):
    code = run_cli(tmp_path, recipe_with(**{"model.name_or_path": "microsoft/resnet-50"}), tmp_path / "out")
    expect_error(capsys, code, "model:", "not both", "--set model.config=null")


# ================================================================================== commitment and verify
def test_reports_carry_an_hmac_commitment_and_verify_tells_true_from_false_lists(baseline, tmp_path, capsys):
    manifest = json.loads((baseline / "manifest.json").read_text())
    forget = manifest["forget_indices"]
    published = json.loads((baseline / "report.json").read_text())["forget_set"]
    assert "sha256" not in published and "commitment_key" not in published
    # The commitment is HMAC-SHA256 over the canonical text, under the manifest's 32-byte key (independent check).
    key = bytes.fromhex(manifest["commitment_key"])
    text = ",".join(str(i) for i in sorted(forget)).encode()
    assert len(key) == 32 and published["commitment"] == hmac.new(key, text, hashlib.sha256).hexdigest()
    assert published["commitment"] != indices_sha256(forget)  # not the plain hash anyone can recompute
    assert published["commitment"] in (baseline / "report.md").read_text()

    true_list = tmp_path / "true.txt"
    true_list.write_text("\n".join(str(i) for i in reversed(forget)))  # any order: the set is what counts
    assert main(["verify", str(baseline), "--ids", str(true_list)]) == 0
    assert "Match:" in capsys.readouterr().out
    retain = manifest["retain_indices"]
    false_list = tmp_path / "false.txt"
    false_list.write_text("\n".join(str(i) for i in [*forget[:-1], retain[0]]))
    assert main(["verify", str(baseline), "--ids", str(false_list)]) == 1
    assert "No match:" in capsys.readouterr().out
    # Checking a card's value: a commitment of another forget set is an error, not a "no match".
    code = main(["verify", str(baseline), "--ids", str(true_list), "--commitment", "ab" * 32])
    expect_error(capsys, code, "is not the one of", "manifest.json")


def test_a_fresh_manifest_draws_a_fresh_key():
    a = SplitManifest.build("random", 10, [1, 2])
    b = SplitManifest.build("random", 10, [1, 2])
    assert a.sha256 == b.sha256 and a.commitment_key != b.commitment_key and a.commitment != b.commitment
    assert a.with_key(b.commitment_key).commitment == b.commitment
    assert "commitment_key" not in repr(a)


def test_a_rerun_keeps_the_key_and_an_edited_manifest_is_refused(baseline, tmp_path, capsys):
    out = copy_of(baseline, tmp_path)
    before = (out / "manifest.json").read_bytes()
    assert run_cli(tmp_path, TINY, out) == 0
    capsys.readouterr()
    assert (out / "manifest.json").read_bytes() == before  # same key, same commitment: the card stays valid
    # A consistent hand edit: one forgotten sample swapped for a retained one, sha256 and commitment recomputed.
    data = json.loads(before)
    swapped_out, swapped_in = data["forget_indices"][0], data["retain_indices"][0]
    data["forget_indices"] = sorted([*data["forget_indices"][1:], swapped_in])
    data["retain_indices"] = sorted([*data["retain_indices"][1:], swapped_out])
    edited = SplitManifest(**{**data, "sha256": indices_sha256(data["forget_indices"]), "commitment": ""})
    edited.to_json(out / "manifest.json")
    edited_bytes = (out / "manifest.json").read_bytes()
    line = expect_error(capsys, run_cli(tmp_path, TINY, out), "was edited after it was written", "forget_indices")
    assert "--force" in line
    assert (out / "manifest.json").read_bytes() == edited_bytes  # refused, not silently rebuilt


# ============================================================================================ Hub failures
def test_an_offline_push_is_one_line(baseline, tmp_path, capsys):
    code = main(["push", str(baseline), "--repo-id", "someone/model"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err  # (progress bars of the export may precede the line)
    lines = re.findall(r"hf-unlearn push: error: [^\r\n]*", err)
    assert len(lines) == 1 and "OfflineModeIsEnabled" in lines[0] and "cannot be reached" in lines[0], err


@pytest.mark.parametrize(
    "status, fix",
    [(401, "the Hub refused the token; log in with `hf auth login`"), (404, "does not exist or your token cannot see")],
    ids=["auth", "missing-repository"],
)
def test_hub_http_failures_are_one_line_with_the_fix(baseline, capsys, monkeypatch, status, fix):
    from types import SimpleNamespace

    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    kind = RepositoryNotFoundError if status == 404 else HfHubHTTPError
    response = SimpleNamespace(status_code=status, headers={}, request=None)

    def refuse(self, **kwargs):
        raise kind(f"{status} Client Error: refused\n(many more lines)", response=response)

    monkeypatch.setattr(HfApi, "create_repo", refuse)
    code = main(["push", str(baseline), "--repo-id", "someone/model"])
    err = capsys.readouterr().err
    lines = re.findall(r"hf-unlearn push: error: [^\r\n]*", err)
    assert code == 2 and "Traceback" not in err and len(lines) == 1, err
    assert f"{kind.__name__}: {status} Client Error: refused)" in lines[0] and fix in lines[0]


def test_a_failed_recipe_push_keeps_the_table_and_says_how_to_push_again(baseline, tmp_path, capsys):
    out = copy_of(baseline, tmp_path)
    recipe = recipe_with(hub={"push": True, "repo_id": "someone/model"})
    code = run_cli(tmp_path, recipe, out)
    captured = capsys.readouterr()
    assert code == 2 and "Traceback" not in captured.err
    assert "neggrad_sam" in captured.out and "Wrote" in captured.out  # the results table is still printed
    lines = re.findall(r"hf-unlearn: error: [^\n]*", captured.err)
    assert len(lines) == 1 and f"push again with `hf-unlearn push {out} --repo-id someone/model`" in lines[0]


# ================================================================================= printing and interrupts
def test_only_the_main_process_prints_a_refusal(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    assert run_cli(tmp_path, recipe_with(sead=1), tmp_path / "out") == 2
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("RANK", "0")
    expect_error(capsys, run_cli(tmp_path, recipe_with(sead=1), tmp_path / "out"), "sead")


def test_ctrl_c_is_one_line_saying_that_a_rerun_resumes(tmp_path, capsys, monkeypatch):
    from hf_unlearn.trainers import base

    def interrupted(self, *args, **kwargs):  # Ctrl-C as pretraining starts
        raise KeyboardInterrupt

    monkeypatch.setattr(base.UnlearnTrainer, "__init__", interrupted)
    assert run_cli(tmp_path, TINY, tmp_path / "out") == 130
    err = capsys.readouterr().err
    assert err.strip() == (
        "hf-unlearn: interrupted. Finished stages are kept: rerun the same command to resume from the last checkpoint."
    )
    assert FolderLock(tmp_path / "out").acquire()  # the lock was released on the way out


# ================================================================================== several processes, one writer
README_TWO_PROCESSES = [
    "launch",
    "--multi_gpu",
    "--num_processes",
    "2",
    "--num_machines",
    "1",
    "--mixed_precision",
    "no",
    "--dynamo_backend",
    "no",
    "-m",
    "hf_unlearn.cli",
    "run",
]
# Fewer epochs than the recipes' (the stage kinds, file work and barriers are the same; the tiny digits data keeps
# each stage short): one epoch per stage (SCRUB keeps its max pass in epoch 0).
SHORT = ["--set", "pretrain.epochs=1", "--set", "unlearn.defaults.epochs=1", "--cpu"]


@pytest.mark.slow
@pytest.mark.parametrize("recipe", [None, str(REPO / "recipes" / "digits-all-methods.yaml")], ids=["default", "all"])
def test_readme_two_process_command_runs_the_default_recipe_to_the_end(tmp_path, recipe):
    """README's ``accelerate launch --multi_gpu --num_processes 2 ... -m hf_unlearn.cli run --cpu``: every stage
    kind creates and removes its checkpoint folder while the other process waits; both processes finish, one
    prints."""
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    accelerate = Path(sys.executable).parent / "accelerate"
    # README's command runs the default recipe; of its three seeds one (the seeds path, seed-0/, the aggregate)
    chosen = ["--set", "seeds=[0]"] if recipe is None else [recipe]
    command = [str(accelerate), *README_TWO_PROCESSES, *chosen, "--output-dir", str(out), *SHORT]
    proc = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    assert "Traceback" not in proc.stderr
    assert proc.stdout.count("Wrote ") == 1  # the table and "Wrote ..." come from process 0 only
    assert proc.stderr.count("Stage original:") == 1  # so do the stage lines
    if recipe is None:
        assert json.loads((out / "report.json").read_text())["seeds"] == [0]  # the aggregate
        out = out / "seed-0"
    report = json.loads((out / "report.json").read_text())
    expected = len(load_recipe(recipe or "digits")["unlearn"]["runs"])
    assert len(report["models"]) == 2 + expected and report["sizes"]["forget"] == report["forget_set"]["size"]
    for name, entry in report["models"].items():
        assert entry["status"] == "finished", name
        assert all(0.0 <= v <= 1.0 for v in entry["accuracy"].values()), name
    assert not (out / "checkpoints").exists() and len(list((out / "models").iterdir())) == 2 + expected


# ========================================================================================= exact resume, every method
# The uninterrupted reference of both tests is the session's `all_methods_reference` (tests/conftest.py): TINY's
# baseline plus every method of `all_methods_recipe`, trained once.
def test_every_method_resumes_bit_identically_after_an_interrupt(
    baseline, all_methods_reference, tmp_path, monkeypatch
):
    """Each unlearning stage is interrupted once, right after its last checkpoint before the final epoch, and the next rerun
    resumes it from that checkpoint (on disk, as after SIGKILL; tests/test_reliability.py SIGKILLs a real process).
    Every stage's weights then equal an uninterrupted run's, bit for bit."""
    from transformers import TrainerCallback

    from hf_unlearn.trainers import base

    recipe = all_methods_recipe()
    reference = all_methods_reference

    interrupted: list[str] = []

    class InterruptInTheLastEpoch(TrainerCallback):
        saves = 0

        def on_save(self, args, state, control, **kwargs):
            self.saves += 1

        def on_step_begin(self, args, state, control, **kwargs):
            stage = Path(args.output_dir).name
            last = self.saves == round(args.num_train_epochs) - 1  # resumes from the checkpoint before the last epoch
            if last and stage not in interrupted and stage not in ("pretrain", "retrain"):
                interrupted.append(stage)
                raise KeyboardInterrupt

    init = base.UnlearnTrainer.__init__

    def with_interrupt(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.add_callback(InterruptInTheLastEpoch())

    monkeypatch.setattr(base.UnlearnTrainer, "__init__", with_interrupt)
    out = tmp_path / "out"
    shutil.copytree(baseline, out)
    shutil.rmtree(out / "models" / "neggrad_sam")
    names = [run["name"] for run in recipe["unlearn"]["runs"]]
    for _ in range(len(names) + 1):
        code = run_cli(tmp_path, recipe, out)
        if code != 130:
            break
    assert code == 0 and interrupted == names, interrupted  # every stage was interrupted once, then finished
    for name in names:
        a = load_file(str(reference / "models" / name / "model.safetensors"))
        b = load_file(str(out / "models" / name / "model.safetensors"))
        different = [k for k in a if not torch.equal(a[k], b[k])]
        assert not different, f"{name}: {len(different)} tensors differ after resuming, e.g. {different[:2]}"


def test_sigkill_in_scrub_and_official_sharp_minmax_then_rerun_gives_identical_weights(
    baseline, all_methods_reference, tmp_path
):
    """The two stages with resume state beyond the Trainer's own (SCRUB's phase and position, the official Sharp
    MinMax's retain optimizer) are SIGKILLed in a real process, one step after a checkpoint; each rerun resumes the
    killed stage from disk, and the weights equal an uninterrupted run's, bit for bit (the same two runs, same
    settings, in `all_methods_reference`: a stage's weights do not depend on the other runs of the recipe)."""
    from test_reliability import run_killed_at

    runs = all_methods_recipe()["unlearn"]["runs"]
    scrub = next(run for run in runs if run["method"] == "scrub")
    official = next(run for run in runs if run["name"] == "sharp_minmax_official")
    recipe = recipe_with(**{"unlearn.runs": [scrub, official], "unlearn.defaults.epochs": 2})
    reference = all_methods_reference

    out = tmp_path / "out"
    shutil.copytree(baseline, out)
    shutil.rmtree(out / "models" / "neggrad_sam")
    path = write_recipe(tmp_path, recipe, "kill.yaml")
    # SCRUB (msteps 1, 4 epochs) saves after steps 5, 9 and 13: killed at step 14, it resumes from checkpoint-13.
    for stage, step in ((scrub["name"], 14), (official["name"], STEPS_PER_EPOCH + 1)):
        run_killed_at(path, out, stage, step, timeout=600)
    assert run_cli(tmp_path, recipe, out) == 0
    for name in (scrub["name"], official["name"]):
        a = load_file(str(reference / "models" / name / "model.safetensors"))
        b = load_file(str(out / "models" / name / "model.safetensors"))
        different = [k for k in a if not torch.equal(a[k], b[k])]
        assert not different, f"{name}: {len(different)} tensors differ after resuming, e.g. {different[:2]}"


# ================================================================================================ streamed images
@pytest.mark.slow
def test_a_broken_streamed_image_stops_the_run_naming_the_row(tmp_path, capsys, monkeypatch):
    """Decoded on the fly (precompute: false), a broken image used to surface mid-training as a raw PIL error."""
    monkeypatch.setitem(sources.SOURCES, "broken_digits", _digits_with(images=[17]))
    recipe = recipe_with(**{"data.source": "broken_digits", "data.precompute": False})
    expect_error(
        capsys,
        run_cli(tmp_path, recipe, tmp_path / "out"),
        "data.image_column: row 17 of the source's training split does not decode as an image",
        "UnidentifiedImageError",
        "data.on_bad_image: skip",
    )


@pytest.mark.slow
def test_on_bad_image_skip_leaves_the_row_out_and_reports_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sources.SOURCES, "broken_digits", _digits_with(images=[17, 400]))
    recipe = recipe_with(
        **{"data.source": "broken_digits", "data.precompute": False, "data.on_bad_image": "skip"},
    )
    out = tmp_path / "out"
    assert run_cli(tmp_path, recipe, out) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["skipped_images"] == {"train": {"count": 2, "rows": [17, 400]}}
    assert report["sizes"]["train"] + report["sizes"]["test"] == 1797 - 2
