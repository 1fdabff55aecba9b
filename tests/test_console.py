"""What the terminal shows around a stage's progress bar: library warnings on lines of their own, no mtime notice,
one process's ``Stage`` lines under a launch, Ctrl-C's message on its own line, short numbers from ``tune``, no
``pin_memory`` warning on a CPU, and benchmarks/claims.py's worker pools ending without leaked semaphores.

Top-level imports stay light: claims' spawned pool workers import this module for `draw_a_bar`.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
INTERRUPTED = (
    "hf-unlearn: interrupted. Finished stages are kept: rerun the same command to resume from the last checkpoint."
)


@contextmanager
def transformers_console():
    """transformers' console handler, writing to the test's captured stderr (its own one writes where stderr was when
    it was made); made inside the test, where capsys has replaced sys.stderr."""
    from transformers.utils import logging as hf_logging

    logger = hf_logging.get_logger("transformers")  # (its own handler is added here, once)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[transformers] %(message)s"))
    saved = logger.handlers
    logger.handlers = [handler]
    try:
        yield logger
    finally:
        logger.handlers = saved


def stage_bar(stage: str = "original", steps: int = 4):
    from transformers import TrainerControl, TrainerState

    from hf_unlearn.console import StageProgress

    progress, state = StageProgress(stage), TrainerState(max_steps=steps)
    args, control = SimpleNamespace(log_level="warning"), TrainerControl()
    progress.on_train_begin(args, state, control)
    return progress, state, args, control


def test_a_library_warning_during_a_stage_is_a_line_of_its_own(capsys):
    with transformers_console() as logger:
        before = list(logger.handlers)
        progress, state, args, control = stage_bar()
        state.global_step = 1
        progress.on_step_end(args, state, control)
        logging.getLogger("transformers.trainer").warning("a library warning")
        state.global_step = 4
        progress.on_step_end(args, state, control)
        progress.on_train_end(args, state, control)
        assert logger.handlers == before  # the stage gave the console handler back
    err = capsys.readouterr().err
    assert "original:" in err  # the bar was drawn
    assert "[transformers] a library warning" in err.splitlines()  # not glued to the bar's text (\r ends a bar)


def test_transformers_mtime_notice_is_not_shown_during_a_stage(tmp_path, capsys):
    from transformers import trainer_utils
    from transformers.utils import logging as hf_logging

    for step in (1, 2):  # two checkpoints less than a second apart: what a fast stage's epochs write
        (tmp_path / f"checkpoint-{step}").mkdir()
    with transformers_console():
        progress, state, args, control = stage_bar()
        hf_logging.warning_once.cache_clear()  # (it says it once per process)
        assert trainer_utils.sort_checkpoints(str(tmp_path), use_mtime=True)[-1].endswith("checkpoint-2")
        progress.on_train_end(args, state, control)
    assert "mtime" not in capsys.readouterr().err


def test_stage_lines_come_from_the_main_process_only(monkeypatch, caplog):
    from hf_unlearn import cli

    def run_command(args) -> int:  # a stage starting, as steps/train.py says it
        logging.getLogger("hf_unlearn.steps.train").info("Stage original: pretraining on 8 samples")
        return 0

    monkeypatch.setattr(cli, "run_command", run_command)
    caplog.set_level(logging.INFO)
    try:
        for rank, expected in (("1", 0), ("0", 1)):  # the variables accelerate launch / torchrun set
            monkeypatch.setenv("RANK", rank)
            monkeypatch.setenv("LOCAL_RANK", rank)
            monkeypatch.setenv("WORLD_SIZE", "2")
            caplog.clear()
            assert cli.main(["run"]) == 0
            said = [r.getMessage() for r in caplog.records]
            assert said.count("Stage original: pretraining on 8 samples") == expected
    finally:
        logging.getLogger("hf_unlearn").setLevel(logging.NOTSET)


def test_ctrl_c_during_a_stage_starts_its_message_on_a_line_of_its_own(tmp_path, capsys, monkeypatch):
    from conftest import run_cli, tiny_recipe

    from hf_unlearn.console import StageProgress

    step_end = StageProgress.on_step_end

    def interrupted(self, args, state, control, **kwargs):  # Ctrl-C after the bar's first step
        step_end(self, args, state, control, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(StageProgress, "on_step_end", interrupted)
    assert run_cli(tmp_path, tiny_recipe(), tmp_path / "out") == 130
    err = capsys.readouterr().err
    assert "original:" in err  # the bar was open
    assert err.rstrip("\n").split("\n")[-1] == INTERRUPTED


def test_tune_prints_settings_with_4_significant_digits(tmp_path, capsys, monkeypatch):
    from conftest import tiny_recipe, write_recipe

    from hf_unlearn.cli import main
    from hf_unlearn.tune import study

    exact = {"alpha": 0.9295779580694621, "learning_rate": 0.012345678901234567, "epochs": 3}
    result = {
        "objective": {"name": "tow"},
        "trials": [{"number": 0, "state": "COMPLETE", "value": 0.81234567, "params": exact}],
        "best": {"number": 0, "value": 0.81234567, "params": exact},
    }
    monkeypatch.setattr(study, "run_study", lambda *args, **kwargs: result)  # (tuning.json is run_study's)
    recipe = write_recipe(tmp_path, tiny_recipe())
    assert main(["tune", str(recipe), "--trials", "1", "--output-dir", str(tmp_path / "t"), "--cpu"]) == 0
    out = capsys.readouterr().out
    assert "alpha=0.9296, learning_rate=0.01235, epochs=3" in out and "0.92957" not in out


def test_the_readme_python_api_example_warns_nothing_about_pin_memory(tmp_path):
    import torch
    from conftest import make_dataset, make_model

    from hf_unlearn import UnlearnArguments, get_trainer_class

    args = UnlearnArguments(  # README's "Python API" example on tiny data
        output_dir=str(tmp_path),
        method="sharp_minmax",
        sharpness="sam",
        rho=0.1,
        alpha=0.98,
        mask_ratio=0.5,
        num_train_epochs=1,
        per_device_train_batch_size=8,
        report_to="none",
        disable_tqdm=True,
    )
    assert args.dataloader_pin_memory == torch.accelerator.is_available()
    trainer = get_trainer_class(args.method)(
        model=make_model(), args=args, retain_dataset=make_dataset(16, 1), forget_dataset=make_dataset(8, 2)
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train()
    assert not [w for w in caught if "pin_memory" in str(w.message)]


def test_pin_memory_stays_where_there_is_an_accelerator(tmp_path, monkeypatch):
    import torch

    from hf_unlearn import UnlearnArguments

    monkeypatch.setattr(torch.accelerator, "is_available", lambda: True)
    assert UnlearnArguments(output_dir=str(tmp_path), report_to="none").dataloader_pin_memory


def draw_a_bar(task: int) -> int:
    """A pool task whose library draws a tqdm bar, as datasets and the safetensors writer do in claims' workers."""
    from tqdm.auto import tqdm

    return sum(tqdm(range(task)))


@pytest.mark.slow
def test_claims_worker_pools_are_quiet_and_end_without_leaked_semaphores():
    script = (
        "from benchmarks.claims import _map\n"
        "from test_console import draw_a_bar\n"
        "if __name__ == '__main__':\n"
        "    for _ in range(4):\n"  # one pool per phase, as claims.py does; each exit used to leak at random
        "        assert sorted(_map([1, 2, 3, 4], 2, draw_a_bar)) == [0, 1, 3, 6]\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS)])}
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert "leaked" not in proc.stderr and "resource_tracker" not in proc.stderr, proc.stderr
    assert "it/s" not in proc.stderr  # and the workers draw no bars
