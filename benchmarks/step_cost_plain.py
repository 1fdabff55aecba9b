"""The reference: a hand-written PyTorch training loop doing the same update as hf_unlearn's trainer, SAM in the
usual style (davda54/sam). step_cost.py times its steps against the trainer's."""

from __future__ import annotations

import contextlib
import time

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.common import Sync
from benchmarks.step_cost_memory import MemoryProbe
from benchmarks.step_cost_setup import ALPHA, BATCH, LR, MOMENTUM, RHO, SAM_EVERY, WEIGHT_DECAY, ModelPair


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
