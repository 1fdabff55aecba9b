"""What a run's numbers came from: `hf-unlearn env` prints it for a bug report, report.json records it, and
constraints.txt pins the versions README's numbers were measured with (within pyproject's bounds)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import torch
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from hf_unlearn.cli import main
from hf_unlearn.environment import describe, environment, one_line

REPO = Path(__file__).resolve().parents[1]


def test_env_command_prints_what_a_bug_report_needs(capsys):
    assert main(["env"]) == 0
    out = capsys.readouterr().out
    for name in ("hf_unlearn", "torch", "transformers", "accelerate", "datasets"):
        assert f"- {name} version: " in out, name
    assert f"- torch version: {torch.__version__}" in out
    assert "- Python version: " in out and "- Platform: " in out and "- CPU: " in out and "- GPU: " in out
    assert f"- PyTorch threads: {torch.get_num_threads()} (OMP_NUM_THREADS=" in out


def test_environment_records_versions_machine_and_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    info = environment()
    assert info["torch_threads"] == torch.get_num_threads() and info["thread_variables"]["OMP_NUM_THREADS"] == "1"
    assert info["libraries"]["torch"] == torch.__version__ and info["libraries"]["hf_unlearn"]
    assert info["cpu"] and info["cpu_cores"] >= 1 and isinstance(info["gpu"], list)
    assert "OMP_NUM_THREADS=1" in describe(info)
    assert f"{info['torch_threads']} torch threads" in one_line(info) and one_line(None) == "not recorded"


def _requirements() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return [Requirement(r) for r in (*project["dependencies"], *extras["test"], *extras["tune"])]


def test_constraints_pin_every_dependency_within_pyprojects_bounds():
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin"
            pins[canonicalize_name(name)] = version
    for requirement in _requirements():
        version = pins.get(canonicalize_name(requirement.name))
        assert version is not None, f"constraints.txt does not pin {requirement.name}"
        assert requirement.specifier.contains(version), f"{requirement.name}=={version} is outside {requirement}"
    assert "hf-unlearn" not in pins and "hf_unlearn" not in pins
