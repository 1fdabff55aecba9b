"""A method from outside the package: a config, a trainer and one `register_method` line, and a recipe runs it.

The plugin lives in its own file and runs in its own process, as a user's package would: nothing in hf_unlearn
names it, and the registry, the recipe checks and the run record learn everything from the two classes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from conftest import tiny_recipe, write_recipe

PLUGIN = textwrap.dedent(
    '''
    """A toy method: retain cross-entropy minus a weighted forget cross-entropy."""
    import sys
    from dataclasses import dataclass, field
    from typing import ClassVar

    from hf_unlearn.args import UnlearnArguments
    from hf_unlearn.registry import register_method
    from hf_unlearn.search_space import Range
    from hf_unlearn.trainers import Branch, UnlearnTrainer
    from hf_unlearn.trainers.base import cross_entropy


    @dataclass
    class ShrinkConfig(UnlearnArguments):
        """Retain CE minus ``forget_weight`` times forget CE."""

        train_on: ClassVar[str] = "paired"
        search_space: ClassVar[dict] = {"forget_weight": Range(0.01, 0.5)}
        field_checks: ClassVar[dict] = {"forget_weight": (lambda v: v >= 0, "forget_weight must be >= 0 (got {v}).")}

        method: str = field(default="shrink", metadata={"help": "The method: 'shrink'."})
        forget_weight: float = field(default=0.1, metadata={"help": "Weight of the forget term."})


    class ShrinkTrainer(UnlearnTrainer):
        def branches(self, inputs):
            weight = self.args.forget_weight

            def loss(model, batch):
                return cross_entropy(model, batch["retain"]) - weight * cross_entropy(model, batch["forget"])

            return [Branch("shrink", loss)]


    register_method(ShrinkConfig, ShrinkTrainer)

    if __name__ == "__main__":
        from hf_unlearn.cli import main

        sys.exit(main(sys.argv[1:]))
    '''
)


def _run_plugin(tmp_path, recipe: dict) -> subprocess.CompletedProcess:
    script = tmp_path / "shrink_plugin.py"
    script.write_text(PLUGIN)
    command = [sys.executable, str(script), "run", str(write_recipe(tmp_path, recipe)), "--cpu"]
    command += ["--output-dir", str(tmp_path / "out")]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=dict(os.environ))


@pytest.mark.slow
def test_a_method_registered_from_outside_runs_through_a_recipe(tmp_path) -> None:
    runs = [{"name": "toy", "method": "shrink", "forget_weight": 0.2, "epochs": 1}]
    done = _run_plugin(tmp_path, tiny_recipe(**{"unlearn.runs": runs}))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    toy = report["models"]["toy"]
    assert toy["method"] == "shrink" and toy["hyperparameters"]["forget_weight"] == 0.2
    assert set(toy["accuracy"]) == {"retain", "forget", "test"} and toy["tow"] is not None
    original = (tmp_path / "out" / "models" / "original" / "model.safetensors").read_bytes()
    assert (tmp_path / "out" / "models" / "toy" / "model.safetensors").read_bytes() != original


@pytest.mark.slow
def test_a_registered_methods_own_checks_and_fields_reach_the_recipe(tmp_path) -> None:
    bad_value = _run_plugin(tmp_path, tiny_recipe(**{"unlearn.runs": [{"method": "shrink", "forget_weight": -1.0}]}))
    assert bad_value.returncode == 2
    assert "unlearn.runs[0].forget_weight: forget_weight must be >= 0 (got -1.0)." in bad_value.stderr
    other_method = _run_plugin(tmp_path, tiny_recipe(**{"unlearn.runs": [{"method": "neggrad", "forget_weight": 1}]}))
    assert other_method.returncode == 2
    assert "forget_weight is not a setting of neggrad (only shrink reads it); remove it." in other_method.stderr
    assert not (tmp_path / "out" / "models").exists()  # refused before anything trained
