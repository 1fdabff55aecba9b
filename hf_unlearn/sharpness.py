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

Everything here works on plain lists of parameters and gradients, so it is testable without a Trainer.
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


def _masked(tensor: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return tensor if mask is None else tensor * mask


def perturbation(
    params: Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor | None],
    masks: Sequence[torch.Tensor | None],
    rho: float,
    adaptive: bool,
) -> list[torch.Tensor | None] | None:
    """Return eps per parameter (``None`` where the parameter has no gradient or lies outside the partition).

    Returns ``None`` when the gradient norm over the partition is not finite (an fp16 overflow, a
    diverged loss): the caller then skips the perturbed pass. The direction is scale-invariant, so
    gradients still multiplied by an fp16 loss scale give the same eps.
    """
    scaled: list[torch.Tensor | None] = []
    for p, g, m in zip(params, grads, masks, strict=True):
        if g is None:
            scaled.append(None)
            continue
        g = g.detach().float()
        if adaptive:
            g = g * p.detach().abs().float()
        scaled.append(_masked(g, m))
    present = [s for s in scaled if s is not None]
    if not present:
        return None
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(s) for s in present]))
    if not torch.isfinite(norm):
        return None
    factor = rho / (norm + _NORM_EPS)
    eps: list[torch.Tensor | None] = []
    for p, s in zip(params, scaled, strict=True):
        if s is None:
            eps.append(None)
            continue
        # ASAM: eps = rho * T^2 g / ||T g||; s already holds T g (masked), so multiply by T once more.
        # One multiplication per tensor for SAM (``s`` may be the caller's gradient itself: never in place).
        e = (s * p.detach().abs().float()).mul_(factor) if adaptive else s * factor
        eps.append(e.to(p.dtype))
    return eps


def combine(g0: torch.Tensor, g1: torch.Tensor, sign: float, lam: float) -> torch.Tensor:
    """The combination rule ``g0 + sign * lambda * (g1 - g0)``."""
    if sign == 1.0 and lam == 1.0:
        return g1.clone()  # standard SAM: exactly g1, no rounding from the difference
    return g0 + (sign * lam) * (g1 - g0)


@contextlib.contextmanager
def perturbed(params: Sequence[torch.Tensor], eps: Sequence[torch.Tensor | None]) -> Iterator[None]:
    """Move ``w`` to ``w + eps`` and restore it exactly afterwards.

    Restoring copies the saved values back: subtracting eps again leaves rounding differences,
    which would make DDP replicas drift apart over many steps.
    """
    pairs = [(p, e) for p, e in zip(params, eps, strict=True) if e is not None]
    moved = [p for p, _ in pairs]
    with torch.no_grad():
        saved = [p.detach().clone() for p in moved]
        if moved:
            torch._foreach_add_(moved, [e for _, e in pairs])
    del eps, pairs  # applied; the restore uses the saved copy, so eps need not stay alive during the pass
    try:
        yield
    finally:
        if moved:
            with torch.no_grad():
                torch._foreach_copy_(moved, saved)


@contextlib.contextmanager
def frozen_batchnorm_stats(model: nn.Module) -> Iterator[None]:
    """Keep BatchNorm running statistics fixed during a forward pass (the perturbed SAM pass).

    Momentum 0 leaves running mean/var unchanged while the forward still normalises with batch
    statistics; ``num_batches_tracked`` is restored too, so the module state is bit-identical.
    """
    saved = []
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats:
            tracked = None if module.num_batches_tracked is None else module.num_batches_tracked.clone()
            saved.append((module, module.momentum, tracked))
            module.momentum = 0.0
    try:
        yield
    finally:
        for module, momentum, tracked in saved:
            module.momentum = momentum
            if tracked is not None:
                module.num_batches_tracked.copy_(tracked)


def branch_gradient(
    model: nn.Module,
    params: Sequence[torch.Tensor],
    masks: Sequence[torch.Tensor | None],
    backward: Callable[[], torch.Tensor],
    config: SharpnessConfig,
    direction: Direction = "min",
    *,
    mask_g1_only: bool = False,
) -> tuple[list[torch.Tensor | None], torch.Tensor, bool]:
    """Compute one branch's final gradient, restricted to its partition.

    ``backward`` runs forward + backward of the branch loss at the current weights and returns the
    detached loss; it must start from cleared gradients, which this function guarantees. Returns
    (gradients, loss at w, whether the perturbed pass ran). ``p.grad`` is left cleared.

    The gradient tensors that ``backward`` leaves in ``p.grad`` are taken over, not copied (`_take_grads`),
    and combined and masked in place: the returned tensors belong to the caller, and a SAM step costs no more
    full-model copies than the saved weights (the same results, bit for bit, as out-of-place arithmetic).

    ``mask_g1_only=True`` reproduces the official code (method-spec.md C.3): eps and its norm cover every
    parameter, the partition mask multiplies g1 only and the result is ``g0 + sign * lambda * (g1 * m - g0)``,
    which is *not* confined to the partition unless ``sign * lambda == 1``. Without a perturbed pass the
    gradient is ``g0 * m`` in both modes.
    """
    _clear_grads(params)
    loss = backward()
    g0 = _take_grads(params)
    perturbed_pass = False
    final = g0
    if config.enabled:
        eps_masks = [None] * len(params) if mask_g1_only else masks
        eps = perturbation(params, g0, eps_masks, config.rho, config.adaptive)
        if eps is not None:
            with perturbed(params, eps), frozen_batchnorm_stats(model):
                eps = None  # free the perturbation before the perturbed pass allocates its gradients
                backward()
            g1 = _take_grads(params)
            if mask_g1_only:
                g1 = [None if g is None else _mask_(g, m) for g, m in zip(g1, masks, strict=True)]
            sign = direction_sign(direction)
            final = [_merge(a, b, sign, config.lam) for a, b in zip(g0, g1, strict=True)]
            perturbed_pass = True
    if not (mask_g1_only and perturbed_pass):
        final = [None if g is None else _mask_(g, m) for g, m in zip(final, masks, strict=True)]
    return final, loss, perturbed_pass


def _take_grads(params: Sequence[torch.Tensor]) -> list[torch.Tensor | None]:
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


def _mask_(g: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Restrict an owned gradient to the partition, in place."""
    return g if mask is None else g.mul_(mask)


def _merge(g0: torch.Tensor | None, g1: torch.Tensor | None, sign: float, lam: float) -> torch.Tensor | None:
    """`combine` on owned gradients, in place in ``g1`` (bit-identical to the out-of-place formula)."""
    if g0 is None and g1 is None:
        return None
    if g0 is None:
        g0 = torch.zeros_like(g1)
    if g1 is None:
        g1 = torch.zeros_like(g0)
    if sign == 1.0 and lam == 1.0:
        return g1  # standard SAM: exactly g1
    return g1.sub_(g0).mul_(sign * lam).add_(g0)  # g0 + sign * lam * (g1 - g0)


def _clear_grads(params: Sequence[torch.Tensor]) -> None:
    for p in params:
        p.grad = None
