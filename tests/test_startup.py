"""Start-up cost: ``import hf_unlearn`` and ``hf-unlearn --help`` load none of the heavy libraries.

One subprocess (a fresh interpreter is the only way to see what an import loads); it imports no torch, so it
takes a fraction of a second.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "transformers", "datasets", "sklearn", "matplotlib", "accelerate", "timm", "optuna")

SCRIPT = f"""
import contextlib, io, json, sys
import hf_unlearn
after_import = [m for m in {HEAVY!r} if m in sys.modules]
from hf_unlearn import cli
codes = []
for argv in (["--help"], ["run", "--help"], ["run", "--no-such-flag"], ["memorization", "digits"], ["tune", "--help"]):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            codes.append(cli.main(argv))
        except SystemExit as exit:
            codes.append(exit.code)
after_cli = [m for m in {HEAVY!r} if m in sys.modules]
print(json.dumps({{"after_import": after_import, "after_cli": after_cli, "codes": codes}}))
"""


def test_import_and_help_load_no_heavy_library() -> None:
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["after_import"] == []
    assert result["after_cli"] == []  # --help and argument errors answer before anything heavy is imported
    assert result["codes"] == [0, 0, 2, 2, 0]  # help, help, unknown flag, missing required -K / --output, help


def test_lazy_exports_resolve_to_the_real_objects() -> None:
    import hf_unlearn
    from hf_unlearn import data, metrics
    from hf_unlearn.args import UnlearnArguments
    from hf_unlearn.metrics.tow import tug_of_war
    from hf_unlearn.trainers import get_trainer_class

    assert hf_unlearn.UnlearnArguments is UnlearnArguments
    assert hf_unlearn.get_trainer_class is get_trainer_class
    assert metrics.tug_of_war is tug_of_war
    for package in (hf_unlearn, data, metrics):
        for name in package.__all__:
            assert getattr(package, name) is not None, f"{package.__name__}.{name}"
    with pytest.raises(AttributeError, match="no_such_name"):
        hf_unlearn.no_such_name  # noqa: B018
