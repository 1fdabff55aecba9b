"""A method from outside the package: a config, a trainer and one `register_method` line, and a recipe runs it.

The plugin lives in its own file and runs in its own process, as a user's package would: nothing in hf_unlearn
names it, and the registry, the recipe checks and the run record learn everything from the two classes. The real
CLI finds it through an installed package's ``hf_unlearn.methods`` entry point or ``--plugin MODULE``; a recipe
cannot name code to import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import tiny_recipe, write_recipe

from hf_unlearn.recipe import RecipeError, load_recipe

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


def _install(folder: Path, module: str, text: str) -> None:
    """``module.py`` in ``folder`` and a distribution declaring it as the method plugin ``shrink``, as pip leaves it
    in site-packages: importlib.metadata finds it on sys.path (PYTHONPATH=folder)."""
    (folder / f"{module}.py").write_text(text)
    dist = folder / f"{module}-0.1.dist-info"
    dist.mkdir()
    package = module.replace("_", "-")
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[hf_unlearn.methods]\nshrink = {module}\n")


def _cli(*args: str, cwd: Path | None = None, path: Path | None = None, safe_path: bool = False):
    """``python -m hf_unlearn.cli ARGS`` in a fresh process; ``safe_path`` (-P) leaves the current folder off
    sys.path, as the ``hf-unlearn`` console script does."""
    env = dict(os.environ)
    if path is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(path), env.get("PYTHONPATH")]))
    python = [sys.executable, *(["-P"] if safe_path else []), "-m", "hf_unlearn.cli"]
    return subprocess.run([*python, *args], capture_output=True, text=True, timeout=300, env=env, cwd=cwd)


@pytest.mark.slow
def test_the_cli_runs_a_method_from_an_entry_point_or_the_plugin_flag(tmp_path) -> None:
    out = tmp_path / "out"
    installed = tmp_path / "site"
    installed.mkdir()
    _install(installed, "shrink_plugin", PLUGIN)
    runs = [{"name": "toy", "method": "shrink", "forget_weight": 0.2, "epochs": 1}]
    recipe = write_recipe(tmp_path, tiny_recipe(**{"unlearn.runs": runs}))
    done = _cli("run", str(recipe), "--cpu", "--output-dir", str(out), path=installed)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((out / "report.json").read_text())["models"]["toy"]["method"] == "shrink"

    # --plugin: a file in the current folder, which the console script's sys.path lacks (no entry point here). The
    # same output folder: the original and the reference are reused, only the new run trains.
    here = tmp_path / "here"
    here.mkdir()
    (here / "shrink_plugin.py").write_text(PLUGIN)
    runs = [{"name": "toy2", "method": "shrink", "forget_weight": 0.3, "epochs": 1}]
    recipe = write_recipe(tmp_path, tiny_recipe(**{"unlearn.runs": runs}))
    done = _cli(
        "run", str(recipe), "--cpu", "--output-dir", str(out), "--plugin", "shrink_plugin", cwd=here, safe_path=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    toy2 = json.loads((out / "report.json").read_text())["models"]["toy2"]
    assert toy2["method"] == "shrink" and toy2["hyperparameters"]["forget_weight"] == 0.3


def test_a_plugin_that_fails_to_load_is_one_line(tmp_path, monkeypatch, capsys) -> None:
    installed = tmp_path / "site"
    installed.mkdir()
    _install(installed, "broken_plugin", 'raise RuntimeError("boom")\n')
    done = _cli("run", "digits", "--cpu", "--output-dir", str(tmp_path / "out"), path=installed)
    assert done.returncode == 2
    assert done.stderr == (
        "hf-unlearn: error: the method plugin 'shrink' (broken_plugin) failed to load: RuntimeError: boom. Fix or "
        "uninstall the package that declares it (broken-plugin).\n"
    )
    assert not (tmp_path / "out").exists()

    from hf_unlearn.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # --plugin may append the current folder
    assert main(["run", "digits", "--plugin", "no_such_plugin"]) == 2
    assert capsys.readouterr().err == (
        f"hf-unlearn: error: --plugin no_such_plugin: no module 'no_such_plugin' on the Python path or in the current "
        f"folder ({tmp_path}).\n"
    )


def test_a_recipe_cannot_name_code_to_import(tmp_path, monkeypatch) -> None:
    # Recipes may come from strangers: only the command line and installed packages name plugins.
    (tmp_path / "recipe_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    recipe = write_recipe(tmp_path, tiny_recipe(plugins=["recipe_plugin"]))
    with pytest.raises(RecipeError, match="plugins: unknown recipe key"):
        load_recipe(recipe)
    assert "recipe_plugin" not in sys.modules
