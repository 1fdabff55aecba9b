"""What produced a run's numbers, and what a bug report needs: library versions, platform, CPU, GPU and threads.

CPU float sums depend on the CPU, the library versions and torch's thread count, and training carries a different
last bit into a few samples' predictions; so every report.json records `environment()`, and ``hf-unlearn env``
prints it for an issue (as ``transformers env`` and ``accelerate env`` do). constraints.txt pins the versions of
README's numbers.

Nothing here imports torch at module level: ``hf-unlearn --help`` stays light.
"""

from __future__ import annotations

import argparse
import os
import platform
from importlib import metadata
from typing import Any

# The distributions whose versions a report records (their numbers or their behaviour shape its results).
LIBRARIES = (
    "hf_unlearn",
    "torch",
    "transformers",
    "accelerate",
    "datasets",
    "timm",
    "huggingface_hub",
    "safetensors",
    "numpy",
    "scikit-learn",
    "scipy",
    "evaluate",
    "optuna",
)
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def library_versions() -> dict[str, str | None]:
    """Installed version of each of `LIBRARIES` (None: not installed); torch with its build tag (``+cu130``)."""
    versions: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    import torch

    versions["torch"] = torch.__version__
    return versions


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo, macOS sysctl), else what `platform` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if platform.system() == "Darwin":
        import subprocess

        try:
            out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True)
            if out.stdout.strip():
                return out.stdout.strip()
        except OSError:
            pass
    return platform.processor() or platform.machine() or "unknown"


def usable_cores() -> int | None:
    """Cores this process may run on (its affinity, e.g. a container's share), else the machine's count."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count()


def gpus() -> list[str]:
    """The accelerators torch sees: CUDA devices by name, or Apple's MPS; [] on a CPU-only machine."""
    import torch

    if torch.cuda.is_available():
        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return ["Apple MPS"]
    return []


def environment() -> dict[str, Any]:
    """The machine and software a report's numbers came from (report.json's ``environment``)."""
    import torch

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_cores": usable_cores(),
        "gpu": gpus(),
        "cuda_build": torch.version.cuda,  # the CUDA torch was built for (set on CPU-only machines too)
        "torch_threads": torch.get_num_threads(),
        "thread_variables": {name: os.environ.get(name) for name in THREAD_VARIABLES},
        "libraries": library_versions(),
    }


def describe(info: dict[str, Any]) -> str:
    """``info`` as the lines of a bug report (``hf-unlearn env``)."""
    variables = ", ".join(f"{k}={v if v is not None else 'unset'}" for k, v in info["thread_variables"].items())
    gpu = ", ".join(info["gpu"]) if info["gpu"] else "none"
    if info["gpu"] and info.get("cuda_build"):
        gpu += f" (CUDA {info['cuda_build']})"
    lines = [
        f"- Platform: {info['platform']}",
        f"- Python version: {info['python']}",
        f"- CPU: {info['cpu']} ({info['cpu_cores']} cores usable)",
        f"- GPU: {gpu}",
        f"- PyTorch threads: {info['torch_threads']} ({variables})",
    ]
    lines += [f"- {name} version: {version or 'not installed'}" for name, version in info["libraries"].items()]
    return "\n".join(lines)


def one_line(info: dict[str, Any] | None) -> str:
    """The short form a report.md states: machine, threads and the main libraries' versions."""
    if not info:
        return "not recorded"
    libraries = info.get("libraries") or {}
    versions = ", ".join(f"{name} {libraries.get(name)}" for name in ("torch", "transformers", "hf_unlearn"))
    gpu = ", ".join(info.get("gpu") or []) or "no GPU"
    return (
        f"{info.get('cpu')} ({info.get('cpu_cores')} cores), {gpu}, {info.get('torch_threads')} torch threads; "
        f"Python {info.get('python')}, {versions} (report.json has the rest)"
    )


def add_env_parser(commands: Any) -> None:
    commands.add_parser(
        "env",
        help="Print the versions, platform, CPU, GPU and thread count a bug report needs.",
        description="Print what a bug report needs (as `transformers env` does): hf_unlearn's and its libraries' "
        "versions, the platform, CPU and GPU, and torch's thread count. Every report.json records the same under "
        "'environment'.",
    )


def env_command(args: argparse.Namespace) -> int:
    print("Copy-and-paste the text below in your GitHub issue.\n")
    print(describe(environment()))
    return 0
