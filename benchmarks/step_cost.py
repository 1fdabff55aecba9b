"""Time per optimizer step: hf_unlearn's trainers against a plain PyTorch loop doing the same update.

    python benchmarks/step_cost.py [--models digits resnet18] [--device cpu|cuda] [--json PATH]

Updates: ``sgd`` (finetune: retain CE), ``sam`` (finetune with SAM), ``sam_every5`` (finetune with the cheap SAM,
``sam_every=5``: chunks cover whole 5-step cycles, each starting with a full SAM step, and a chunk's time is the
*mean* step time, the cost per step averaged over the cycle), ``neggrad``, ``neggrad_sam`` and ``sharp_minmax``
(the intended variant, SAM, a 50% mask). Models: ``digits`` (recipes/digits.yaml's model, 1x16x16 input),
``resnet18`` and ``resnet50`` (``timm.create_model(name, pretrained=False, num_classes=10)``, 3x32x32).

Kernel launches: for each of ``--op-count-models`` (default resnet18 and resnet50) the kernel-launching ATen ops of
one ``training_step`` are counted (benchmarks/kernel_ops.py) for finetune, finetune+SAM, NegGrad, NegGrad+SAM and
Sharp MinMax, giving issue 12's ``sgd``, ``sam_bookkeeping``, ``compose`` and ``mask_bookkeeping`` from whole-step
counts and from the ops outside the model's forward and backward passes, and the host synchronisations per step.
Batch 64 (retain; the paired methods also draw 64 forget samples), SGD momentum 0.9, weight decay 5e-4 on the
same parameter groups as the Trainer, constant lr 0.01, no clipping, random data held in memory as tensors.

What is timed, in one process, side by side:

- plain loop: a hand-written loop on the same model (the raw timm model for resnet18; the trainer gets it inside
  transformers' ``TimmWrapperForImageClassification``, as a Hub timm checkpoint loads): the batch is sliced from
  in-memory tensors (not timed), then moving it to the device, forward/backward, SAM in the usual style (davda54/sam:
  norm, ``p += eps`` after saving ``p``, BatchNorm momentum 0 for the second pass, ``p`` restored from the saved
  copy), ``optimizer.step()`` and ``zero_grad()`` are timed;
- trainer: ``trainer.train()`` with a `TrainerCallback` that takes the time at ``on_step_begin`` and ``on_step_end``:
  everything the Trainer does for one optimizer step (``training_step`` with hf_unlearn's branches, its grad-norm
  and NaN checks, ``optimizer.step()``, the scheduler, ``zero_grad()``) but not the DataLoader's fetch and
  collation, which happen before ``on_step_begin`` (the plain loop's slicing is not timed either). The time between
  steps is reported separately (``gap``) so the data loading cost is visible.

On CUDA every timed span starts and ends with ``torch.cuda.synchronize()``. Each chunk runs ``--warmup`` untimed
steps, then ``--steps`` timed ones; the plain and trainer chunks of an update alternate (plain first in even
repeats, trainer first in odd ones), so load from other processes hits both alike. A chunk's time is the median
of its steps; an update's time is the median over ``--repeats`` chunks; ratios are medians of per-repeat ratios
(the paired chunks of one repeat ran back to back), printed with the min-max of those per-repeat ratios (and kept
in the JSON as ``*_range``): a spread wider than the claim means the machine was too busy to settle it.

Peak memory, measured after all timings in a separate pass (``--memory-steps`` steps per side):

- CUDA: ``torch.cuda.max_memory_allocated()`` during a step minus ``torch.cuda.memory_allocated()`` at its start;
- CPU: the resident-set high-water mark (``VmHWM`` in /proc/self/status, reset at each step's start by writing 5
  to /proc/self/clear_refs) minus the RSS at the step's start. For this pass glibc's mmap threshold is pinned to
  64 KiB (``mallopt``) and ``malloc_trim(0)`` runs before each step, so that freed tensors go back to the OS and
  the step's allocations show up in the RSS again (otherwise glibc keeps freed blocks, and a step's peak hides in
  memory the process already holds). Allocations under 64 KiB served from already-resident heap pages are not
  seen: on the tiny digits model the CPU column reads ~0. tracemalloc does not see torch's allocations. Where
  /proc/self/clear_refs is not writable, psutil samples the RSS every millisecond instead.

Both are a step's *transient* memory (activations, gradients, SAM's saved weights and gradient copies) on top of
the weights and optimizer state that stay resident between steps; the table gives the max over the pass's steps.

``--json PATH`` writes ``{"digits": {"trainer_over_plain": {update: r}, "sam_over_sgd": r, "sam_every5_over_sgd": r,
"sharp_minmax_over_neggrad_sam": r, ...}, "resnet18": {..., "kernel_ops": {"sgd", "sam_bookkeeping", "compose",
"mask_bookkeeping"}, "kernel_ops_outside_passes": {...}, "host_syncs_per_step": {...}}, "resnet50": {...}}`` (the
cross-update ratios are the trainer's) plus ``step_ms``, ``peak_mib`` and the plain loop's own cross-update ratios.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/step_cost.py`: make `benchmarks.*` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch

from benchmarks.step_cost_memory import pin_malloc_mmap_threshold
from benchmarks.step_cost_ops import kernel_op_counts
from benchmarks.step_cost_report import print_kernel_ops, print_table, summarize
from benchmarks.step_cost_runs import bench_model, measure_memory, profile_update
from benchmarks.step_cost_setup import BATCH, MODELS, UPDATES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--models",
        nargs="*",
        default=["digits", "resnet18"],
        choices=MODELS,
        help="models to time (none: only count kernel ops)",
    )
    parser.add_argument(
        "--op-count-models",
        nargs="*",
        default=["resnet18", "resnet50"],
        choices=MODELS,
        help="models whose kernel ops per training_step are counted (cheap; default resnet18 resnet50)",
    )
    parser.add_argument("--updates", nargs="+", default=list(UPDATES), choices=UPDATES)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (cuda when available)")
    parser.add_argument("--repeats", type=int, default=5, help="alternating plain/trainer chunks per update")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per chunk")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps at the start of every chunk")
    parser.add_argument("--memory-steps", type=int, default=3, help="steps per side in the peak-memory pass")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    parser.add_argument("--no-check", dest="check", action="store_false", help="skip the same-update check")
    parser.add_argument(
        "--no-vanilla",
        dest="vanilla",
        action="store_false",
        help="skip the stock transformers.Trainer reference for sgd",
    )
    parser.add_argument("--profile", choices=UPDATES, default=None, help="cProfile one chunk of this update per side")
    parser.add_argument("--json", type=Path, default=None, help="write the ratios here")
    opts = parser.parse_args(argv)
    if opts.steps < 1 or opts.repeats < 1 or opts.warmup < 1 or opts.memory_steps < 1:
        parser.error("--steps, --repeats, --warmup and --memory-steps must be >= 1")

    # A benchmark runs where it says or stops with one line.
    if opts.device not in ("cpu", "cuda", "auto") and not opts.device.startswith("cuda:"):
        print(f"step_cost.py: error: --device {opts.device}: use cpu, cuda, cuda:N or auto", file=sys.stderr)
        return 2
    if opts.device.startswith("cuda") and not torch.cuda.is_available():
        print(
            f"step_cost.py: error: --device {opts.device}: no CUDA device is available here; use --device cpu",
            file=sys.stderr,
        )
        return 2
    device = torch.device(
        "cuda"
        if opts.device == "auto" and torch.cuda.is_available()
        else ("cpu" if opts.device == "auto" else opts.device)
    )
    if opts.threads:
        torch.set_num_threads(opts.threads)
    warnings.filterwarnings("ignore")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(
        f"device {device} ({device_name}), torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"cores {os.cpu_count()}, load average at start {load}"
    )
    print(f"batch {BATCH}, repeats {opts.repeats} x {opts.steps} timed steps (+{opts.warmup} warm-up per chunk)")

    summaries: dict[str, Any] = {}
    benches = {}
    with tempfile.TemporaryDirectory(prefix="step_cost_") as workdir:
        for name in opts.models:
            benches[name] = bench_model(name, opts, device, workdir)
        if device.type == "cpu":
            pin_malloc_mmap_threshold()
        for name in opts.models:  # after every timing: the memory pass changes how glibc allocates
            measure_memory(benches[name], opts)
            summaries[name] = summarize(benches[name], opts.updates)
            print_table(name, summaries[name], opts.updates, benches[name]["memory"].method)
        if opts.profile:
            for name in opts.models:
                profile_update(benches[name], opts.profile, opts, top=25)
        print()
        for name in opts.op_count_models:
            ops = kernel_op_counts(name, workdir)
            summaries.setdefault(name, {}).update(ops)
            print_kernel_ops(name, ops)
    load_end = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(f"\nload average at end {load_end}")
    if opts.json:
        payload = dict(summaries)
        for name in payload:
            payload[name]["device"] = f"{device} ({device_name})"
            payload[name]["load_average"] = {"start": load, "end": load_end}
        opts.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = opts.json.with_name(f".{opts.json.name}.tmp")
        tmp.write_text(json.dumps(payload, indent=2) + "\n")
        os.replace(tmp, opts.json)
        print(f"wrote {opts.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
