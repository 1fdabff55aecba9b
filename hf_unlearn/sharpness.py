"""The SAM machinery: perturb, restore and combine gradients over a parameter partition.

One *branch* of a training step has a loss, a direction (``"min"`` or ``"max"``) and a partition
(a boolean mask per parameter, or ``None`` for every element). With sharpness enabled the branch
gradient is

    g0 = grad L(w)
    eps = rho * T^2 * g0 / ||T * g0||          (over the partition only; T = |w| for ASAM, else 1)
    g1 = grad L(w + eps)                        (BatchNorm running statistics frozen)
    g  = g0 + sign * lambda * (g1 - g0)         (sign = +1 for min, -1 for max)

restricted to the partition. ``min`` with ``lambda = 1`` is standard SAM / ASAM (``g = g1``);
``max`` with ``lambda = 1`` gives ``2 * g0 - g1``, a descent step on ``L - S`` that increases the
sharpness ``S(w) = L(w + eps) - L(w)`` (method-spec.md A).

The cheap SAM (``sam_every = k``, `SharpnessMemory`) runs that two-pass step every k-th step and, in between, one
pass that reuses the sharpness gradient the last full step measured (after LookSAM, Liu et al., CVPR 2022):

    full step:   d = m * (g1 - g0),  n0 = ||m * g0||
    cheap step:  g = m * grad L(w),  final = g + sign * lambda * ||g|| / max(n0, ||d||) * d

``d`` is reused whole, with the size relative to the current gradient that it had at the full step
(``||d|| / n0``; LookSAM's fixed ``alpha * ||g|| / ||g_v||`` becomes the measured ratio), capped at the current
gradient's own norm: a direction measured on one batch at earlier weights never outweighs the fresh gradient.
With a large rho ``d`` can be several times the gradient, and reusing it at that size for k - 1 steps would push
the weights along one stale batch's correction. docs/methods.md ("The cheap SAM") compares this rule with
LookSAM's (only the part of ``d`` orthogonal to the gradient), the uncapped ratio and the unscaled ``d``. When
``||d|| <= n0``, at the full step's own weights and batch the cheap formula gives exactly the full step's gradient.

All bookkeeping is multi-tensor (``torch._foreach_*``): each stage (the norm, eps, perturb and restore, masks,
the combination) launches a constant number of kernels whatever the number of parameter tensors, and nothing
here reads a value back to the host. Everything works on plain lists of parameters and gradients, so it is
testable without a Trainer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

Sharpness = Literal["none", "sam", "asam"]
Direction = Literal["min", "max"]

SHARPNESS_CHOICES: tuple[str, ...] = ("none", "sam", "asam")
DIRECTION_CHOICES: tuple[str, ...] = ("min", "max")

# Added to the norm, as in ASAM/SAM reference implementations, so a zero gradient yields eps = 0.
_NORM_EPS = 1e-12


@dataclass(frozen=True)
class SharpnessConfig:
    """Run-level SAM settings shared by every branch of a method."""

    kind: Sharpness = "none"
    rho: float = 0.05
    lam: float = 1.0

    @property
    def enabled(self) -> bool:
        return self.kind != "none"

    @property
    def adaptive(self) -> bool:
        return self.kind == "asam"


def direction_sign(direction: Direction) -> float:
    if direction not in DIRECTION_CHOICES:
        raise ValueError(f"Unknown sharpness direction {direction!r}; use one of {DIRECTION_CHOICES}.")
    return 1.0 if direction == "min" else -1.0


def _float(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """float32 views of the tensors (no copy, no kernel when they already are float32)."""
    return [t.float() for t in tensors]


def _multiply(tensors: list[torch.Tensor], masks: Sequence[torch.Tensor | None]) -> list[torch.Tensor]:
    """``t * m`` for every masked tensor (new tensors; unmasked ones are passed through)."""
    idx = [i for i, m in enumerate(masks) if m is not None]
    if not idx:
        return list(tensors)
    out = list(tensors)
    products = torch._foreach_mul([tensors[i] for i in idx], [masks[i] for i in idx])
    for i, t in zip(idx, products, strict=True):
        out[i] = t
    return out


def global_norm(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """``||(t_1, ..., t_n)||_2`` as a 0-d tensor (per-tensor norms in one multi-tensor op, then their norm)."""
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(list(tensors))))


def perturbation(
    params: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor | None],
    masks: Sequence[torch.Tensor | None],
    rho: float,
    adaptive: bool,
) -> list[torch.Tensor | None] | None:
    """Return eps per parameter (``None`` where the parameter has no gradient); ``None`` when no parameter has one.

    Outside the partition eps is 0. The direction is scale-invariant, so gradients still multiplied by an fp16
    loss scale give the same eps. A non-finite gradient (an fp16 overflow, a diverged loss) gives a non-finite
    eps, hence a non-finite g1 and a non-finite final gradient, which the fp16 GradScaler skips as it would have
    skipped g0: checking the norm on the host instead would stall the device every step.
    """
    idx = [i for i, g in enumerate(grads) if g is not None]
    if not idx:
        return None
    p_abs = _float(torch._foreach_abs([params[i].detach() for i in idx])) if adaptive else None
    scaled = _float([grads[i].detach() for i in idx])
    if adaptive:
        scaled = torch._foreach_mul(scaled, p_abs)
    scaled = _multiply(scaled, [masks[i] for i in idx])
    factor = rho / (global_norm(scaled) + _NORM_EPS)
    # ASAM: eps = rho * T^2 g / ||T g||; ``scaled`` holds T g (masked), so multiply by T once more.
    # Never in place on ``scaled``: without ASAM or masks it is the caller's gradient itself.
    if adaptive:
        eps_present = torch._foreach_mul(scaled, p_abs)
        torch._foreach_mul_(eps_present, factor)
    else:
        eps_present = torch._foreach_mul(scaled, factor)
    eps: list[torch.Tensor | None] = [None] * len(params)
    for i, e in zip(idx, eps_present, strict=True):
        eps[i] = e.to(params[i].dtype)
    return eps


@contextlib.contextmanager
def perturbed(params: Sequence[torch.Tensor], eps: Sequence[torch.Tensor | None]) -> Iterator[None]:
    """Move ``w`` to ``w + eps`` and restore it exactly afterwards.

    Restoring copies the saved values back: subtracting eps again leaves rounding differences,
    which would make DDP replicas drift apart over many steps.
    """
    pairs = [(p, e) for p, e in zip(params, eps, strict=True) if e is not None]
    moved = [p for p, _ in pairs]
    with torch.no_grad():
        saved = [torch.empty_like(p) for p in moved]
        if moved:
            torch._foreach_copy_(saved, moved)
            torch._foreach_add_(moved, [e for _, e in pairs])
    del eps, pairs  # applied; the restore uses the saved copy, so eps need not stay alive during the pass
    try:
        yield
    finally:
        if moved:
            with torch.no_grad():
                torch._foreach_copy_(moved, saved)


def batchnorm_modules(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers of ``model`` that keep running statistics (what `frozen_batchnorm_stats` guards)."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


_BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


@contextlib.contextmanager
def frozen_batchnorm_stats(
    model: nn.Module, modules: Sequence[nn.modules.batchnorm._BatchNorm] | None = None
) -> Iterator[None]:
    """Keep BatchNorm running statistics fixed during a forward pass (the perturbed SAM pass).

    A BatchNorm layer in training mode normalises with the batch's statistics whether or not it has running
    ones, so its running buffers are detached from the module for the pass (``None``): the forward computes the
    same output and updates nothing, without a single tensor op or copy. Layers in eval mode normalise with their
    running statistics and never update them, so they are left alone. ``modules`` is ``batchnorm_modules(model)``
    if the caller has it cached.
    """
    detached = []
    for module in batchnorm_modules(model) if modules is None else modules:
        if module.training:
            detached.append((module, [module._buffers[name] for name in _BN_BUFFERS]))
            for name in _BN_BUFFERS:
                module._buffers[name] = None
    try:
        yield
    finally:
        for module, buffers in detached:
            for name, buffer in zip(_BN_BUFFERS, buffers, strict=True):
                module._buffers[name] = buffer


class SharpnessMemory:
    """What a full SAM step learned for one branch, reused by the cheap steps in between (see the module docs).

    ``d`` holds, per parameter, the full step's sharpness gradient ``m * (g1 - g0)``; ``denominator`` is
    ``max(||m * g0||, ||d||)`` of that step (plus a tiny constant, so a zero gradient divides safely). Both are
    device tensors: nothing is read back to the host.

    ``d`` lives in one flat float32 buffer, next to a second one (``m * g0`` at a masked full step, scratch at a
    cheap one), so that the scaling is one kernel whatever the model. Both buffers are kept and refilled by the
    next full step of the branch (``measure(..., reuse=memory)``): a fresh buffer of the model's size would fault
    in every 4 KiB page on first touch, on top of the arithmetic.
    """

    def __init__(
        self, flat_d: torch.Tensor, scratch: torch.Tensor, index: list[int], shapes: list[torch.Size], length: int
    ) -> None:
        self._flat_d, self._scratch, self._index, self._length = flat_d, scratch, index, length
        sizes = [s.numel() for s in shapes]
        self._d_views = [t.view(s) for t, s in zip(flat_d.split(sizes), shapes, strict=True)]
        self._scratch_views = [t.view(s) for t, s in zip(scratch.split(sizes), shapes, strict=True)]
        self.denominator = torch.ones((), device=flat_d.device)

    @property
    def d(self) -> list[torch.Tensor | None]:
        """``d`` per parameter position (``None`` where the full step had no gradient)."""
        out: list[torch.Tensor | None] = [None] * self._length
        for i, view in zip(self._index, self._d_views, strict=True):
            out[i] = view
        return out

    @classmethod
    def measure(
        cls,
        g0: Sequence[torch.Tensor | None],
        g1: Sequence[torch.Tensor | None],
        masks: Sequence[torch.Tensor | None],
        reuse: SharpnessMemory | None = None,
    ) -> SharpnessMemory:
        """Measure ``d`` and ``n0`` from one full step's gradients (``reuse``: a memory whose buffers to refill, the
        branch's previous one; its values are overwritten)."""
        idx = [i for i, (a, b) in enumerate(zip(g0, g1, strict=True)) if a is not None and b is not None]
        shapes = [g0[i].shape for i in idx]
        device = g0[idx[0]].device
        if reuse is not None and reuse._index == idx and [t.shape for t in reuse._d_views] == shapes:
            memory = reuse
        else:
            total = sum(s.numel() for s in shapes)
            flat_d, scratch = (torch.empty(total, device=device, dtype=torch.float32) for _ in range(2))
            memory = cls(flat_d, scratch, idx, shapes, len(g0))
        d, g0m = memory._d_views, memory._scratch_views
        present0, present1, part = [g0[i] for i in idx], [g1[i] for i in idx], [masks[i] for i in idx]
        if any(m is not None for m in part):  # the masks are all set or all None (one partition)
            _masked_copy_(g0m, present0, part)
            _masked_copy_(d, present1, part)
            memory._flat_d.sub_(memory._scratch)
            g0_norm = torch.linalg.vector_norm(memory._scratch)
        elif all(t.dtype == torch.float32 for t in present0 + present1):
            torch.ops.aten._foreach_sub.List_out(present1, present0, out=d)
            g0_norm = global_norm(present0)
        else:  # e.g. bfloat16 gradients: the difference is taken in float32
            torch._foreach_copy_(g0m, present0)
            torch._foreach_copy_(d, present1)
            memory._flat_d.sub_(memory._scratch)
            g0_norm = torch.linalg.vector_norm(memory._scratch)
        memory.denominator = torch.maximum(g0_norm, torch.linalg.vector_norm(memory._flat_d)) + _NORM_EPS
        return memory

    def apply_(self, grads: Sequence[torch.Tensor | None], sign: float, lam: float) -> None:
        """``g += sign * lam * ||g|| / max(n0, ||d||) * d`` in place on the (already masked) one-pass gradient."""
        pairs = [(grads[i], k) for k, i in enumerate(self._index) if grads[i] is not None]
        if not pairs:
            return
        present = [g for g, _ in pairs]
        scale = (global_norm(_float(present)) / self.denominator) * (sign * lam)
        torch.mul(self._flat_d, scale, out=self._scratch)  # the scratch buffer: no allocation per step
        torch._foreach_add_(present, [self._scratch_views[k] for _, k in pairs])


def branch_gradient(
    model: nn.Module,
    params: Sequence[torch.Tensor],
    masks: Sequence[torch.Tensor | None],
    backward: Callable[[], torch.Tensor],
    config: SharpnessConfig,
    direction: Direction = "min",
    *,
    mask_g1_only: bool = False,
    batchnorms: Sequence[nn.modules.batchnorm._BatchNorm] | None = None,
    memory: SharpnessMemory | None = None,
    remember: Callable[[SharpnessMemory], None] | None = None,
    reuse: SharpnessMemory | None = None,
) -> tuple[list[torch.Tensor | None], torch.Tensor, bool]:
    """Compute one branch's final gradient, restricted to its partition.

    ``backward`` runs forward + backward of the branch loss at the current weights and returns the
    detached loss; it must start from cleared gradients, which this function guarantees. Returns
    (gradients, loss at w, whether the perturbed pass ran). ``p.grad`` is left cleared.

    The cheap SAM: with ``memory`` (an in-between step) only the first pass runs and the gradient follows the
    one-pass LookSAM rule of the module docs; ``remember``, if given, receives the `SharpnessMemory` of a step
    whose perturbed pass ran, measured into the buffers of ``reuse`` (the branch's previous memory) if given. ``batchnorms`` is ``batchnorm_modules(model)``, if the caller has it cached.

    The gradient tensors that ``backward`` leaves in ``p.grad`` are taken over, not copied (`take_gradients`),
    and combined and masked in place: the returned tensors belong to the caller, and a SAM step costs no more
    full-model copies than the saved weights (the same results, bit for bit, as out-of-place arithmetic).

    ``mask_g1_only=True`` reproduces the official code (method-spec.md C.3): eps and its norm cover every
    parameter, the partition mask multiplies g1 only and the result is ``g0 + sign * lambda * (g1 * m - g0)``,
    which is *not* confined to the partition unless ``sign * lambda == 1``. Without a perturbed pass the
    gradient is ``g0 * m`` in both modes.
    """
    _clear_grads(params)
    loss = backward()
    g0 = take_gradients(params)
    if not config.enabled or memory is not None:
        final = _mask_(g0, masks)
        if memory is not None:
            memory.apply_(final, direction_sign(direction), config.lam)
        return final, loss, False
    eps = perturbation(params, g0, [None] * len(params) if mask_g1_only else masks, config.rho, config.adaptive)
    if eps is None:  # no parameter received a gradient
        return _mask_(g0, masks), loss, False
    with perturbed(params, eps), frozen_batchnorm_stats(model, batchnorms):
        eps = None  # free the perturbation before the perturbed pass allocates its gradients
        backward()
    g1 = take_gradients(params)
    if remember is not None:
        remember(SharpnessMemory.measure(g0, g1, masks, reuse=reuse))
    if mask_g1_only:
        g1 = _mask_(g1, masks)
    final = _merge(g0, g1, direction_sign(direction), config.lam)
    if not mask_g1_only:
        final = _mask_(final, masks)
    return final, loss, True


def take_gradients(params: Sequence[torch.Tensor]) -> list[torch.Tensor | None]:
    """Hand each ``p.grad`` over to the caller and clear it (the next backward allocates a fresh one).

    A gradient that is a view into another buffer (DDP's ``gradient_as_bucket_view``) is copied, since its
    storage is reused.
    """
    grads: list[torch.Tensor | None] = []
    for p in params:
        g = p.grad
        if g is not None:
            g = g.detach()
            if g._base is not None:
                g = g.clone()
        grads.append(g)
        p.grad = None
    return grads


def _masked_copy_(out: list[torch.Tensor], tensors: list[torch.Tensor], masks: list[torch.Tensor]) -> None:
    """``out = tensors * masks`` into float32 ``out`` (one multi-tensor op when the inputs are float32 too)."""
    if all(t.dtype == torch.float32 and m.dtype == torch.float32 for t, m in zip(tensors, masks, strict=True)):
        torch.ops.aten._foreach_mul.List_out(tensors, masks, out=out)
    else:
        torch._foreach_copy_(out, tensors)
        torch._foreach_mul_(out, masks)


def _mask_(grads: list[torch.Tensor | None], masks: Sequence[torch.Tensor | None]) -> list[torch.Tensor | None]:
    """Restrict owned gradients to the partition, in place (one multi-tensor multiply)."""
    pairs = [(g, m) for g, m in zip(grads, masks, strict=True) if g is not None and m is not None]
    if pairs:
        torch._foreach_mul_([g for g, _ in pairs], [m for _, m in pairs])
    return grads


def _merge(
    g0: list[torch.Tensor | None], g1: list[torch.Tensor | None], sign: float, lam: float
) -> list[torch.Tensor | None]:
    """``g0 + sign * lam * (g1 - g0)`` on owned gradients, in place in ``g1`` (bit-identical to the out-of-place
    formula)."""
    out: list[torch.Tensor | None] = []
    firsts, seconds = [], []
    for a, b in zip(g0, g1, strict=True):
        if a is None and b is None:
            out.append(None)
            continue
        a = torch.zeros_like(b) if a is None else a
        b = torch.zeros_like(a) if b is None else b
        out.append(b)
        firsts.append(a)
        seconds.append(b)
    if (sign == 1.0 and lam == 1.0) or not seconds:
        return out  # standard SAM: exactly g1
    torch._foreach_sub_(seconds, firsts)  # g0 + sign * lam * (g1 - g0)
    torch._foreach_mul_(seconds, sign * lam)
    torch._foreach_add_(seconds, firsts)
    return out


def add_gradients(
    into: list[torch.Tensor | None] | None, grads: list[torch.Tensor | None]
) -> list[torch.Tensor | None]:
    """``into + grads`` accumulated in place into ``into`` (both owned), one multi-tensor add; ``None`` is zero."""
    if into is None:
        return grads
    out = [b if a is None else a for a, b in zip(into, grads, strict=True)]
    pairs = [(a, b) for a, b in zip(into, grads, strict=True) if a is not None and b is not None]
    if pairs:
        torch._foreach_add_([a for a, _ in pairs], [b for _, b in pairs])
    return out


def _clear_grads(params: Sequence[torch.Tensor]) -> None:
    for p in params:
        p.grad = None
