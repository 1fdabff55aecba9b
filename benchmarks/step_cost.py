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
import contextlib
import copy
import cProfile
import ctypes
import io
import json
import logging
import os
import platform
import pstats
import statistics
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import Dataset  # noqa: E402

UPDATES = ("sgd", "sam", "sam_every5", "neggrad", "neggrad_sam", "sharp_minmax")
MODELS = ("digits", "resnet18", "resnet50")
# update -> (hf_unlearn method, sharpness, sam_every)
TRAINER_SETUP = {
    "sgd": ("finetune", "none", 1),
    "sam": ("finetune", "sam", 1),
    "sam_every5": ("finetune", "sam", 5),
    "neggrad": ("neggrad", "none", 1),
    "neggrad_sam": ("neggrad", "sam", 1),
    "sharp_minmax": ("sharp_minmax", "sam", 1),
}
SAM_EVERY = 5  # the cheap SAM's period in ``sam_every5``
# (method, sharpness) settings whose kernel-op counts give issue 12's quantities (benchmarks/kernel_ops.py)
OP_COUNT_SETUPS = (("finetune", "none"), ("finetune", "sam"), ("neggrad", "none"), ("neggrad", "sam"))
OP_COUNT_SETUPS += (("sharp_minmax", "sam"),)
BATCH = 64
LR = 0.01
MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4
ALPHA = 0.95
RHO = 0.05
MASK_RATIO = 0.5
NUM_LABELS = 10
MIB = 2**20


# --------------------------------------------------------------------------------------------- models
@dataclass
class ModelPair:
    """The plain loop's model and the trainer's model (same architecture, same initial weights)."""

    name: str
    plain: nn.Module
    trainer: nn.Module
    input_shape: tuple[int, ...]
    trainer_prefix: str = ""  # parameter-name prefix of the plain model inside the trainer's model

    def copy(self) -> ModelPair:
        return ModelPair(
            self.name, copy.deepcopy(self.plain), copy.deepcopy(self.trainer), self.input_shape, self.trainer_prefix
        )

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        out = self.plain(x) if self.trainer_prefix else self.plain(pixel_values=x)
        return out if isinstance(out, torch.Tensor) else out.logits


def build_models(name: str) -> ModelPair:
    torch.manual_seed(0)
    if name == "digits":
        import yaml

        from hf_unlearn.models import build_model_from_config

        recipe = yaml.safe_load((REPO / "recipes" / "digits.yaml").read_text())
        model = build_model_from_config(recipe["model"]["config"], [str(i) for i in range(NUM_LABELS)], seed=0)
        return ModelPair(name, model, copy.deepcopy(model), (recipe["data"]["num_channels"], 16, 16))
    if name in ("resnet18", "resnet50"):
        import timm
        from transformers import TimmWrapperConfig, TimmWrapperForImageClassification

        plain = timm.create_model(name, pretrained=False, num_classes=NUM_LABELS)
        wrapper = TimmWrapperForImageClassification(TimmWrapperConfig(architecture=name, num_labels=NUM_LABELS))
        wrapper.timm_model.load_state_dict(plain.state_dict())
        return ModelPair(name, plain, wrapper, (3, 32, 32), trainer_prefix="timm_model.")
    raise ValueError(f"unknown model {name!r}; choose from {MODELS}")


class TensorItems(Dataset):
    """``{"pixel_values", "labels"}`` items over in-memory tensors, with a batched ``__getitems__``."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"pixel_values": self.x[i], "labels": self.y[i]}

    def __getitems__(self, indices: list[int]) -> list[dict[str, torch.Tensor]]:
        return [{"pixel_values": self.x[i], "labels": self.y[i]} for i in indices]


def random_data(n: int, shape: tuple[int, ...], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn((n, *shape), generator=g), torch.randint(NUM_LABELS, (n,), generator=g)


# ---------------------------------------------------------------------------------------- timing aids
class Sync:
    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def __call__(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()


class MemoryProbe:
    """A step's transient peak memory in bytes (see the module docstring)."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.enabled = False
        self.peaks: list[int] = []
        self._base = 0
        self._clear_refs = (not self.cuda) and _clear_refs_works()
        self._sampler: threading.Thread | None = None
        self._sampling = False
        self._sampled_peak = 0

    @property
    def method(self) -> str:
        if self.cuda:
            return "torch.cuda.max_memory_allocated - memory_allocated at step start"
        if self._clear_refs:
            return "VmHWM (reset via /proc/self/clear_refs) - RSS at step start"
        return "psutil RSS sampled every 1 ms - RSS at step start"

    def begin(self) -> None:
        if not self.enabled:
            return
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
        elif self._clear_refs:
            _malloc_trim()  # give freed heap pages back, so that reusing them shows in the RSS again
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")
            self._base = _proc_status_kib("VmRSS") * 1024
        else:
            import psutil

            proc = psutil.Process()
            self._base = self._sampled_peak = proc.memory_info().rss
            self._sampling = True

            def sample() -> None:
                while self._sampling:
                    self._sampled_peak = max(self._sampled_peak, proc.memory_info().rss)
                    time.sleep(0.001)

            self._sampler = threading.Thread(target=sample, daemon=True)
            self._sampler.start()

    def end(self) -> None:
        if not self.enabled:
            return
        if self.cuda:
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
        elif self._clear_refs:
            peak = _proc_status_kib("VmHWM") * 1024
        else:
            self._sampling = False
            assert self._sampler is not None
            self._sampler.join()
            peak = self._sampled_peak
        self.peaks.append(max(0, peak - self._base))


def _proc_status_kib(key: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def _clear_refs_works() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        _proc_status_kib("VmHWM")
        return True
    except (OSError, KeyError):
        return False


def _malloc_trim() -> None:
    if platform.system() == "Linux":
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)


def pin_malloc_mmap_threshold(threshold: int = 64 * 1024) -> bool:
    """glibc: serve allocations >= threshold by mmap and give them back on free (M_MMAP_THRESHOLD = -3)."""
    if platform.system() != "Linux":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-3, threshold)) and bool(libc.mallopt(-1, threshold))  # also M_TRIM_THRESHOLD
    except OSError:
        return False


# ------------------------------------------------------------------------------------- the plain loop
class PlainLoop:
    """A hand-written training loop doing one hf_unlearn update per step."""

    def __init__(
        self,
        pair: ModelPair,
        update: str,
        retain: tuple[torch.Tensor, torch.Tensor],
        forget: tuple[torch.Tensor, torch.Tensor],
        decay_names: set[str],
        masks: list[torch.Tensor] | None,
        device: torch.device,
        sync: Sync,
        memory: MemoryProbe,
    ) -> None:
        self.pair, self.update, self.device, self.sync, self.memory = pair, update, device, sync, memory
        self.model = pair.plain
        self.retain, self.forget = retain, forget
        self.named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        self.params = [p for _, p in self.named]
        decay = [p for n, p in self.named if n in decay_names]
        no_decay = [p for n, p in self.named if n not in decay_names]
        self.optimizer = torch.optim.SGD(
            [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}],
            lr=LR,
            momentum=MOMENTUM,
        )
        self.masks = masks
        self.cycle = 0  # sam_every5: steps since the run's start (a full SAM step when cycle % SAM_EVERY == 0)
        self.lookahead: tuple | None = None  # (d, ||g0||) of the last full step
        self.complements = None if masks is None else [1.0 - m for m in masks]
        self.bn = [m for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        self.generator = torch.Generator().manual_seed(1)
        self.order = torch.randperm(len(retain[0]), generator=self.generator)
        self.cursor = 0
        self.durations: list[float] = []

    # data: slicing in-memory tensors (not timed), like the Trainer's fetch before on_step_begin
    def next_batch(self) -> tuple[torch.Tensor, ...]:
        if self.cursor + BATCH > len(self.order):
            self.order = torch.randperm(len(self.retain[0]), generator=self.generator)
            self.cursor = 0
        idx = self.order[self.cursor : self.cursor + BATCH]
        self.cursor += BATCH
        fidx = torch.randint(len(self.forget[0]), (BATCH,), generator=self.generator)
        return self.retain[0][idx], self.retain[1][idx], self.forget[0][fidx], self.forget[1][fidx]

    def ce(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.pair.logits(x).float(), y)

    @contextlib.contextmanager
    def frozen_bn(self):
        momenta = [m.momentum for m in self.bn]
        for m in self.bn:
            m.momentum = 0.0
        try:
            yield
        finally:
            for m, momentum in zip(self.bn, momenta, strict=True):
                m.momentum = momentum

    def sam_gradients(self, loss_fn, mask: list[torch.Tensor] | None = None) -> tuple[list, list]:
        """(g0, g1) of ``loss_fn`` in davda54/sam style; eps and its norm restricted to ``mask`` if given."""
        loss_fn().backward()
        g0 = [p.grad for p in self.params]
        scaled = g0 if mask is None else [g * m for g, m in zip(g0, mask, strict=True)]
        norm = torch.norm(torch.stack([s.norm(p=2) for s in scaled]), p=2)
        scale = RHO / (norm + 1e-12)
        saved = []
        with torch.no_grad():
            for p, s in zip(self.params, scaled, strict=True):
                saved.append(p.data.clone())
                p.add_(s * scale)
        self.optimizer.zero_grad(set_to_none=True)
        with self.frozen_bn():
            loss_fn().backward()
        g1 = [p.grad for p in self.params]
        with torch.no_grad():
            for p, old in zip(self.params, saved, strict=True):
                p.data.copy_(old)
        self.optimizer.zero_grad(set_to_none=True)
        return g0, g1

    def gradients(self, xr, yr, xf, yf) -> None:
        """Leave the update's final gradient in ``p.grad``."""
        update = self.update

        def retain_ce():
            return self.ce(xr, yr)

        def neggrad():
            return ALPHA * self.ce(xr, yr) - (1.0 - ALPHA) * self.ce(xf, yf)

        if update in ("sgd", "neggrad"):
            (retain_ce if update == "sgd" else neggrad)().backward()
        elif update in ("sam", "neggrad_sam"):
            _, g1 = self.sam_gradients(retain_ce if update == "sam" else neggrad)
            for p, g in zip(self.params, g1, strict=True):
                p.grad = g
        elif update == "sam_every5":
            self.cheap_sam(retain_ce)
        elif update == "sharp_minmax":
            _, r1 = self.sam_gradients(lambda: ALPHA * self.ce(xr, yr), self.complements)
            f0, f1 = self.sam_gradients(lambda: -(1.0 - ALPHA) * self.ce(xf, yf), self.masks)
            with torch.no_grad():
                for p, r, a, b, m, c in zip(self.params, r1, f0, f1, self.masks, self.complements, strict=True):
                    p.grad = r * c + (2.0 * a - b) * m  # retain: SAM min; forget: max, 2 g0 - g1
        else:
            raise ValueError(update)

    def cheap_sam(self, loss_fn) -> None:
        """The cheap SAM as hf_unlearn states it (sharpness.py): SAM every SAM_EVERY steps, keeping d = g1 - g0 and
        max(||g0||, ||d||); in between one pass and g = g0 + ||g0|| / max(||g0_full||, ||d||) * d."""
        full = self.cycle % SAM_EVERY == 0 or self.lookahead is None
        self.cycle += 1
        if full:
            g0, g1 = self.sam_gradients(loss_fn)
            with torch.no_grad():
                d = [b - a for a, b in zip(g0, g1, strict=True)]
                g0_norm = torch.norm(torch.stack([a.norm(p=2) for a in g0]), p=2)
                d_norm = torch.norm(torch.stack([x.norm(p=2) for x in d]), p=2)
                self.lookahead = (d, torch.maximum(g0_norm, d_norm))
            for p, g in zip(self.params, g1, strict=True):
                p.grad = g
            return
        loss_fn().backward()
        d, denominator = self.lookahead
        with torch.no_grad():
            ratio = torch.norm(torch.stack([p.grad.norm(p=2) for p in self.params]), p=2) / denominator
            for p, x in zip(self.params, d, strict=True):
                p.grad.add_(x * ratio)

    def step(self, batch: tuple[torch.Tensor, ...]) -> None:
        self.model.train()
        xr, yr, xf, yf = (t.to(self.device, non_blocking=True) for t in batch)
        self.gradients(xr, yr, xf, yf)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def run(self, warmup: int, steps: int) -> list[float]:
        times = []
        self.cycle, self.lookahead = 0, None  # as the trainer, whose train() starts with a full SAM step
        for i in range(warmup + steps):
            batch = self.next_batch()
            self.memory.begin()
            self.sync()
            start = time.perf_counter()
            self.step(batch)
            self.sync()
            elapsed = time.perf_counter() - start
            self.memory.end()
            if i >= warmup:
                times.append(elapsed)
        return times


# ----------------------------------------------------------------------------------------- the trainer
def make_step_timer(sync: Sync, memory: MemoryProbe):
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.durations: list[float] = []
            self.gaps: list[float] = []
            self._start = 0.0
            self._last_end: float | None = None

        def on_train_begin(self, args, state, control, **kwargs):
            self._last_end = None

        def on_step_begin(self, args, state, control, **kwargs):
            memory.begin()
            sync()
            self._start = time.perf_counter()
            if self._last_end is not None:
                self.gaps.append(self._start - self._last_end)

        def on_step_end(self, args, state, control, **kwargs):
            sync()
            self._last_end = time.perf_counter()
            self.durations.append(self._last_end - self._start)
            memory.end()

    return StepTimer()


class TrainerLoop:
    def __init__(
        self,
        pair: ModelPair,
        update: str,
        retain: tuple[torch.Tensor, torch.Tensor],
        forget: tuple[torch.Tensor, torch.Tensor],
        masks: list[torch.Tensor] | None,
        device: torch.device,
        sync: Sync,
        memory: MemoryProbe,
        steps_per_chunk: int,
        workdir: str,
    ) -> None:
        from hf_unlearn.args import UnlearnArguments
        from hf_unlearn.registry import method_settings
        from hf_unlearn.trainers import get_trainer_class

        method, sharpness, sam_every = TRAINER_SETUP[update]
        args = UnlearnArguments(
            output_dir=os.path.join(workdir, f"{pair.name}-{update}"),
            method=method,
            sharpness=sharpness,
            sam_every=sam_every,
            rho=RHO,
            **method_settings(method, {"alpha": ALPHA, "mask_ratio": MASK_RATIO}),  # where the method reads them
            per_device_train_batch_size=BATCH,
            max_steps=steps_per_chunk,
            learning_rate=LR,
            lr_scheduler_type="constant",
            optim="sgd",
            optim_args=f"momentum={MOMENTUM}",
            weight_decay=WEIGHT_DECAY,
            max_grad_norm=0.0,
            logging_strategy="no",
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            dataloader_num_workers=0,
            use_cpu=device.type == "cpu",
            seed=0,
            log_level="error",
        )
        self.timer = make_step_timer(sync, memory)
        kwargs: dict[str, Any] = {}
        if update == "sharp_minmax":
            names = [n for n, p in pair.trainer.named_parameters() if p.requires_grad]
            kwargs["mask"] = {n: m.bool().cpu() for n, m in zip(names, masks, strict=True)}
        self.trainer = get_trainer_class(method)(
            model=pair.trainer,
            args=args,
            retain_dataset=TensorItems(*retain),
            forget_dataset=TensorItems(*forget),
            callbacks=[self.timer],
            **kwargs,
        )
        from transformers import PrinterCallback, ProgressCallback

        for quiet in (PrinterCallback, ProgressCallback):  # no per-chunk metrics printout
            self.trainer.remove_callback(quiet)

    def run(self, warmup: int, steps: int) -> tuple[list[float], list[float]]:
        n_before, g_before = len(self.timer.durations), len(self.timer.gaps)
        self.trainer.args.max_steps = warmup + steps
        self.trainer.train()
        durations = self.timer.durations[n_before:]
        gaps = self.timer.gaps[g_before:]
        assert len(durations) == warmup + steps, (len(durations), warmup, steps)
        return durations[warmup:], gaps[max(0, warmup - 1) :]


class VanillaLoop:
    """Reference: a stock `transformers.Trainer` doing the SGD update (retain CE), timed the same way.

    It shows how much of the trainer's per-step cost is the Trainer's own loop (callbacks, NaN check, grad norm,
    scheduler) rather than hf_unlearn's ``training_step``.
    """

    def __init__(
        self,
        pair: ModelPair,
        retain,
        device: torch.device,
        sync: Sync,
        memory: MemoryProbe,
        steps_per_chunk: int,
        workdir: str,
    ) -> None:
        from torch.utils.data import default_collate
        from transformers import PrinterCallback, ProgressCallback, Trainer, TrainingArguments

        class CETrainer(Trainer):
            def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
                logits = model(pixel_values=inputs["pixel_values"]).logits
                return F.cross_entropy(logits.float(), inputs["labels"])

        args = TrainingArguments(
            output_dir=os.path.join(workdir, f"{pair.name}-vanilla"),
            per_device_train_batch_size=BATCH,
            max_steps=steps_per_chunk,
            learning_rate=LR,
            lr_scheduler_type="constant",
            optim="sgd",
            optim_args=f"momentum={MOMENTUM}",
            weight_decay=WEIGHT_DECAY,
            max_grad_norm=0.0,
            logging_strategy="no",
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            dataloader_num_workers=0,
            use_cpu=device.type == "cpu",
            seed=0,
            log_level="error",
            remove_unused_columns=False,
        )
        self.timer = make_step_timer(sync, memory)
        self.trainer = CETrainer(
            model=pair.trainer,
            args=args,
            train_dataset=TensorItems(*retain),
            data_collator=default_collate,
            callbacks=[self.timer],
        )
        for quiet in (PrinterCallback, ProgressCallback):
            self.trainer.remove_callback(quiet)

    run = TrainerLoop.run


def decay_parameter_names(loop: TrainerLoop, prefix: str) -> set[str]:
    """The Trainer's weight-decay group, in the plain model's parameter names."""
    names = loop.trainer.get_decay_parameter_names(loop.trainer.model)
    return {n[len(prefix) :] if prefix and n.startswith(prefix) else n for n in names}


def random_masks(model: nn.Module, device: torch.device) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return [
        (torch.rand(p.shape, generator=g) < MASK_RATIO).to(device=device, dtype=p.dtype)
        for p in model.parameters()
        if p.requires_grad
    ]


# ------------------------------------------------------------------------------------------ the runs
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
    whole = lambda n: -(-n // SAM_EVERY) * SAM_EVERY  # noqa: E731
    return whole(opts.warmup), whole(opts.steps), statistics.fmean


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


def kernel_op_counts(name: str, workdir: str) -> dict[str, Any]:
    """Issue 12's kernel-op quantities for the trainer's model ``name`` (benchmarks/kernel_ops.py), from whole-step
    counts (``kernel_ops``) and from the ops outside the model's forward and backward passes
    (``kernel_ops_outside_passes``); the counts do not depend on the batch size, so 8 samples do."""
    from benchmarks.kernel_ops import count_training_step, derived_counts
    from hf_unlearn.args import UnlearnArguments
    from hf_unlearn.registry import method_settings
    from hf_unlearn.trainers import get_trainer_class

    pair = build_models(name)
    retain, forget = random_data(8, pair.input_shape, seed=10), random_data(8, pair.input_shape, seed=11)
    inputs = {
        "retain": {"pixel_values": retain[0], "labels": retain[1]},
        "forget": {"pixel_values": forget[0], "labels": forget[1]},
    }
    whole, outside, syncs = {}, {}, {}
    for method, sharpness in OP_COUNT_SETUPS:
        model = copy.deepcopy(pair.trainer)
        args = UnlearnArguments(
            output_dir=os.path.join(workdir, f"{name}-ops"),
            method=method,
            sharpness=sharpness,
            rho=RHO,
            **method_settings(method, {"alpha": ALPHA}),  # NegGrad and Sharp MinMax read alpha
            use_cpu=True,
            report_to="none",
            disable_tqdm=True,
            log_level="error",
        )
        kwargs: dict[str, Any] = {}
        if method == "sharp_minmax":
            names = [n for n, p in model.named_parameters() if p.requires_grad]
            masks = random_masks(model, torch.device("cpu"))
            kwargs["mask"] = {n: m.bool() for n, m in zip(names, masks, strict=True)}
        trainer = get_trainer_class(method)(
            model=model, args=args, retain_dataset=TensorItems(*retain), forget_dataset=TensorItems(*forget), **kwargs
        )
        key = f"{method}/{sharpness}"
        counted = count_training_step(trainer, inputs)
        whole[key], syncs[key] = counted.kernels, counted.syncs
        outside[key] = count_training_step(trainer, inputs, outside_passes=True).kernels
    return {
        "kernel_ops": derived_counts(whole),
        "kernel_ops_outside_passes": derived_counts(outside),
        "kernel_ops_raw": whole,
        "host_syncs_per_step": syncs,
        "parameter_tensors": sum(1 for p in pair.trainer.parameters() if p.requires_grad),
    }


def print_kernel_ops(name: str, ops: dict[str, Any]) -> None:
    k, o = ops["kernel_ops"], ops["kernel_ops_outside_passes"]
    print(
        f"kernel ops per training_step, {name} ({ops['parameter_tensors']} parameter tensors): "
        f"sgd {k['sgd']}, SAM bookkeeping {k['sam_bookkeeping']}, NegGrad composition {k['compose']}, "
        f"Sharp MinMax mask bookkeeping {k['mask_bookkeeping']}; outside the forward/backward passes: "
        f"sgd {o['sgd']}, SAM {o['sam_bookkeeping']}, composition {o['compose']}, masks {o['mask_bookkeeping']}; "
        f"host syncs per step {sorted(set(ops['host_syncs_per_step'].values()))}"
    )


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


def paired_median(num: list[float], den: list[float]) -> float:
    return statistics.median(a / b for a, b in zip(num, den, strict=True))


def paired_range(num: list[float], den: list[float]) -> list[float]:
    """[min, max] of the per-repeat ratios: the spread that load from other processes left in ``paired_median``."""
    ratios = [a / b for a, b in zip(num, den, strict=True)]
    return [min(ratios), max(ratios)]


def summarize(bench: dict[str, Any], updates: list[str]) -> dict[str, Any]:
    res: dict[str, Result] = bench["results"]
    out: dict[str, Any] = {
        "trainer_over_plain": {u: paired_median(res[u].trainer, res[u].plain) for u in updates},
        "trainer_over_plain_range": {u: paired_range(res[u].trainer, res[u].plain) for u in updates},
        "step_ms": {
            u: {
                "plain": 1e3 * statistics.median(res[u].plain),
                "trainer": 1e3 * statistics.median(res[u].trainer),
                "trainer_gap": 1e3 * statistics.median(res[u].gap),
            }
            for u in updates
        },
        "peak_mib": {u: {"plain": res[u].plain_peak / MIB, "trainer": res[u].trainer_peak / MIB} for u in updates},
    }
    if bench["check"]:
        out["max_rel_grad_diff"] = bench["check"]
    if "sgd" in res and res["sgd"].vanilla:
        out["vanilla_trainer_sgd"] = {
            "step_ms": 1e3 * statistics.median(res["sgd"].vanilla),
            "over_plain": paired_median(res["sgd"].vanilla, res["sgd"].plain),
            "hf_unlearn_over_vanilla": paired_median(res["sgd"].trainer, res["sgd"].vanilla),
        }
    if "sam" in res and "sgd" in res:
        out["sam_over_sgd"] = paired_median(res["sam"].trainer, res["sgd"].trainer)
        out.setdefault("plain", {})["sam_over_sgd"] = paired_median(res["sam"].plain, res["sgd"].plain)
    if "sam_every5" in res and "sgd" in res:
        out["sam_every5_over_sgd"] = paired_median(res["sam_every5"].trainer, res["sgd"].trainer)
        out["sam_every5_over_sgd_range"] = paired_range(res["sam_every5"].trainer, res["sgd"].trainer)
        out.setdefault("plain", {})["sam_every5_over_sgd"] = paired_median(res["sam_every5"].plain, res["sgd"].plain)
    if "sharp_minmax" in res and "neggrad_sam" in res:
        out["sharp_minmax_over_neggrad_sam"] = paired_median(res["sharp_minmax"].trainer, res["neggrad_sam"].trainer)
        out.setdefault("plain", {})["sharp_minmax_over_neggrad_sam"] = paired_median(
            res["sharp_minmax"].plain, res["neggrad_sam"].plain
        )
    return out


def print_table(name: str, summary: dict[str, Any], updates: list[str], memory_method: str) -> None:
    header = ["update", "plain ms", "trainer ms", "trainer/plain", "(min-max)", "gap ms", "peak MiB plain"]
    header.append("peak MiB trainer")
    rows = [header]
    for u in updates:
        ms = summary["step_ms"][u]
        peak = summary["peak_mib"][u]
        rows.append(
            [
                u,
                f"{ms['plain']:.2f}",
                f"{ms['trainer']:.2f}",
                f"{summary['trainer_over_plain'][u]:.3f}",
                "{:.3f}-{:.3f}".format(*summary["trainer_over_plain_range"][u]),
                f"{ms['trainer_gap']:.2f}",
                f"{peak['plain']:.1f}",
                f"{peak['trainer']:.1f}",
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    print(f"\n== {name} ==")
    for i, row in enumerate(rows):
        print("  ".join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(row, widths, strict=True))))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    plain = summary.get("plain", {})
    if "sam_over_sgd" in summary:
        print(f"SAM / SGD:                  trainer {summary['sam_over_sgd']:.3f}   plain {plain['sam_over_sgd']:.3f}")
    if "sam_every5_over_sgd" in summary:
        print(
            f"sam_every 5 / SGD:          trainer {summary['sam_every5_over_sgd']:.3f} "
            + "(per-repeat {:.3f}-{:.3f})   ".format(*summary["sam_every5_over_sgd_range"])
            + f"plain {plain['sam_every5_over_sgd']:.3f}  (mean step time over whole 5-step cycles)"
        )
    if "sharp_minmax_over_neggrad_sam" in summary:
        print(
            f"Sharp MinMax / NegGrad+SAM: trainer {summary['sharp_minmax_over_neggrad_sam']:.3f}   "
            f"plain {plain['sharp_minmax_over_neggrad_sam']:.3f}"
        )
    if "vanilla_trainer_sgd" in summary:
        v = summary["vanilla_trainer_sgd"]
        print(
            f"stock transformers.Trainer, same SGD update: {v['step_ms']:.2f} ms, over plain {v['over_plain']:.3f}; "
            f"hf_unlearn sgd over stock Trainer {v['hf_unlearn_over_vanilla']:.3f}"
        )
    if "max_rel_grad_diff" in summary:
        diffs = ", ".join(f"{u} {d:.1e}" for u, d in summary["max_rel_grad_diff"].items())
        print(f"same update check (max |g_trainer - g_plain| / max |g_plain|): {diffs}")
    print(f"peak memory: {memory_method}")


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
