"""step_cost.py's timing harness: the plain and trainer chunks of every update alternated over the repeats, the
same-update check, the peak-memory pass and the optional cProfile of one update."""

from __future__ import annotations

import argparse
import copy
import cProfile
import io
import pstats
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from benchmarks.common import Sync, whole_cycles
from benchmarks.step_cost_memory import MemoryProbe
from benchmarks.step_cost_plain import PlainLoop
from benchmarks.step_cost_setup import BATCH, SAM_EVERY, build_models, random_data, random_masks
from benchmarks.step_cost_trainer import TrainerLoop, VanillaLoop, decay_parameter_names


@dataclass
class Result:
    plain: list[float] = field(default_factory=list)  # per-repeat median step seconds
    trainer: list[float] = field(default_factory=list)
    gap: list[float] = field(default_factory=list)
    vanilla: list[float] = field(default_factory=list)  # stock transformers.Trainer (sgd only)
    plain_peak: int = 0
    trainer_peak: int = 0


def check_same_update(loops: dict[str, tuple[PlainLoop, TrainerLoop]], device: torch.device) -> dict[str, float]:
    """Max relative difference between the plain loop's and the trainer's final gradient on one shared batch."""
    diffs = {}
    for update, (plain, trainer_loop) in loops.items():
        trainer = trainer_loop.trainer
        pair = plain.pair  # this update's own copies of the models
        saved_plain = copy.deepcopy(pair.plain.state_dict())
        saved_trainer = copy.deepcopy(pair.trainer.state_dict())
        pair.trainer.load_state_dict({pair.trainer_prefix + k: v for k, v in saved_plain.items()})
        xr, yr, xf, yf = plain.next_batch()
        plain.model.train()
        plain.gradients(*(t.to(device) for t in (xr, yr, xf, yf)))
        expected = [p.grad.detach().clone() for p in plain.params]
        plain.optimizer.zero_grad(set_to_none=True)
        inputs = {"retain": {"pixel_values": xr, "labels": yr}, "forget": {"pixel_values": xf, "labels": yf}}
        model = pair.trainer
        model.zero_grad(set_to_none=True)
        trainer.current_gradient_accumulation_steps = 1  # set by the Trainer's loop; this step runs outside it
        trainer.training_step(model, inputs)
        got = [p.grad.detach().clone() for p in model.parameters() if p.requires_grad]
        model.zero_grad(set_to_none=True)
        num = max(float((a - b).abs().max()) for a, b in zip(got, expected, strict=True))
        den = max(float(b.abs().max()) for b in expected)
        diffs[update] = num / den
        pair.plain.load_state_dict(saved_plain)
        pair.trainer.load_state_dict(saved_trainer)
    return diffs


def chunk_shape(update: str, opts: argparse.Namespace) -> tuple[int, int, Any]:
    """(warm-up steps, timed steps, how a chunk's step times are summarised) for ``update``.

    The cheap SAM alternates one full step with SAM_EVERY - 1 one-pass steps, so its chunks cover whole cycles
    (both counts rounded up to multiples of SAM_EVERY, each run starting with a full step) and a chunk's time is
    the mean: the cost per step averaged over the cycle. Every other update takes the median.
    """
    if update != "sam_every5":
        return opts.warmup, opts.steps, statistics.median
    return whole_cycles(opts.warmup, SAM_EVERY), whole_cycles(opts.steps, SAM_EVERY), statistics.fmean


def bench_model(name: str, opts: argparse.Namespace, device: torch.device, workdir: str) -> dict[str, Any]:
    sync, memory = Sync(device), MemoryProbe(device)
    pair = build_models(name)
    pair.plain.to(device)
    per_chunk = max(sum(chunk_shape(u, opts)[:2]) for u in opts.updates)
    retain = random_data(BATCH * max(per_chunk, opts.memory_steps + 1), pair.input_shape, seed=10)
    forget = random_data(BATCH * 2, pair.input_shape, seed=11)
    masks = random_masks(pair.plain, device)
    loops: dict[str, tuple[PlainLoop, TrainerLoop]] = {}
    for update in opts.updates:
        # One model pair per update, so optimizer state does not carry over between updates.
        sub = pair.copy()
        trainer_loop = TrainerLoop(sub, update, retain, forget, masks, device, sync, memory, per_chunk, workdir)
        decay = decay_parameter_names(trainer_loop, pair.trainer_prefix)
        plain = PlainLoop(sub, update, retain, forget, decay, masks, device, sync, memory)
        loops[update] = (plain, trainer_loop)
    vanilla = None
    if opts.vanilla and "sgd" in opts.updates:
        sub = pair.copy()
        vanilla = VanillaLoop(sub, retain, device, sync, memory, per_chunk, workdir)
    check = check_same_update(loops, device) if opts.check else {}

    results = {u: Result() for u in opts.updates}
    for u in opts.updates:  # one untimed chunk each: allocations, kernels, lazy initialisation
        warmup = chunk_shape(u, opts)[0]
        loops[u][0].run(warmup, 1)
        loops[u][1].run(warmup, 1)
    if vanilla is not None:
        vanilla.run(opts.warmup, 1)
    for r in range(opts.repeats):
        for k, u in enumerate(opts.updates):
            plain, trainer_loop = loops[u]
            warmup, steps, summary = chunk_shape(u, opts)
            sides = ["plain", "trainer"] if (r + k) % 2 == 0 else ["trainer", "plain"]
            if u == "sgd" and vanilla is not None:
                sides.insert(1, "vanilla")
            for side in sides:
                if side == "plain":
                    results[u].plain.append(summary(plain.run(warmup, steps)))
                elif side == "vanilla":
                    results[u].vanilla.append(statistics.median(vanilla.run(opts.warmup, opts.steps)[0]))
                else:
                    durations, gaps = trainer_loop.run(warmup, steps)
                    results[u].trainer.append(summary(durations))
                    results[u].gap.append(statistics.median(gaps) if gaps else float("nan"))
        print(f"  [{name}] repeat {r + 1}/{opts.repeats} done ({time.strftime('%H:%M:%S')})", file=sys.stderr)
    return {"pair": pair, "loops": loops, "results": results, "memory": memory, "check": check}


def measure_memory(bench: dict[str, Any], opts: argparse.Namespace) -> None:
    memory: MemoryProbe = bench["memory"]
    memory.enabled = True
    try:
        for u, (plain, trainer_loop) in bench["loops"].items():
            memory.peaks = []
            plain.run(0, opts.memory_steps)
            bench["results"][u].plain_peak = max(memory.peaks)
            memory.peaks = []
            trainer_loop.run(0, opts.memory_steps)
            bench["results"][u].trainer_peak = max(memory.peaks)
    finally:
        memory.enabled = False


def profile_update(bench: dict[str, Any], update: str, opts: argparse.Namespace, top: int) -> None:
    """cProfile one plain chunk and one trainer chunk of ``update`` (cumulative time, top entries)."""
    plain, trainer_loop = bench["loops"][update]
    for side, fn in (("plain", lambda: plain.run(0, opts.steps)), ("trainer", lambda: trainer_loop.run(0, opts.steps))):
        profiler = cProfile.Profile()
        profiler.enable()
        fn()
        profiler.disable()
        stream = io.StringIO()
        pstats.Stats(profiler, stream=stream).sort_stats("tottime").print_stats(top)
        print(f"\n---- cProfile {bench['pair'].name} {update} {side} ({opts.steps} steps), by own time ----")
        print("\n".join(stream.getvalue().splitlines()[: top + 12]))
