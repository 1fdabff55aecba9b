"""Loss-landscape grid around a model's weights and its basin ratio (method-spec.md E.5).

Two random Gaussian directions ``d1``, ``d2`` (drawn from a local, seeded generator, so the global RNG is
untouched); ``d2`` is orthogonalised against ``d1`` per parameter tensor; each direction is normalised to unit
global norm, then every tensor with >= 2 dims is rescaled to the norm of its parameter tensor (per-layer
normalisation, as in the official analysis; not per-filter). The loss ``L(w + a * d1 + b * d2)`` is the mean
cross-entropy over a data set (per sample), in eval mode, on an ``steps x steps`` grid of ``a, b`` in
``[-span, span]``. The weights are restored bit-exactly afterwards (copied back from a saved clone).

1-d parameters (biases, norm scales and shifts), option ``one_d``:

- ``"zero"`` (default): they do not move (Li et al., 2018, "Visualizing the loss landscape of neural nets",
  ignore biases and BN parameters). The official code leaves them at their share of a unit-norm random vector,
  i.e. a move of about ``1 / sqrt(#params)`` per element: negligible for a ResNet-50 (~2e-4) but not for a
  small model, so the result would depend on the model's size; zero is the size-independent version.
- ``"official"``: keep that unit-norm share (reproduces the official directions).
- ``"layer"``: rescale them to their parameter's norm like every other tensor.

Because the per-tensor rescaling keeps per-tensor orthogonality, ``d1`` and ``d2`` stay globally orthogonal.

Statistics (`landscape_stats`): ``basin_ratio`` = 100 * fraction of grid points with
``|L - L_center| <= 0.5 * std(L_grid)`` (higher = flatter); ``variability`` = std(L_grid); ``grad_norm`` = mean
``||grad L||`` by ``np.gradient`` in the grid's own coordinates; ``stability`` = % of points within 10 / 25 / 50 /
75 % of ``L_center``. Non-finite losses (a diverged point far from the minimum) count as outside the basin and
are left out of the standard deviation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from .features import call_model
from .inference import collate_inputs, eval_mode, model_device

OneD = Literal["zero", "official", "layer"]
ONE_D_CHOICES: tuple[str, ...] = ("zero", "official", "layer")
DEFAULT_STEPS = 11  # a cheap default for reports on CPU
STABILITY_LEVELS = (10, 25, 50, 75)

Directions = dict[str, torch.Tensor]


@dataclass
class LossLandscape:
    """``losses[i, j] = L(w + alphas[i] * d1 + betas[j] * d2)``; ``center_loss = L(w)``."""

    alphas: np.ndarray
    betas: np.ndarray
    losses: np.ndarray
    center_loss: float
    settings: dict[str, Any] = field(default_factory=dict)

    def stats(self, threshold: float = 0.5) -> dict[str, Any]:
        return landscape_stats(self.losses, self.center_loss, self.alphas, self.betas, threshold=threshold)

    @property
    def basin_ratio(self) -> float:
        return basin_ratio(self.losses, self.center_loss)


# ----------------------------------------------------------------------------------------- directions
def landscape_directions(model: nn.Module, seed: int = 42, one_d: OneD = "zero") -> tuple[Directions, Directions]:
    """Two per-layer-normalised, per-tensor-orthogonal random directions ``{name: tensor}`` (float32, CPU)."""
    if one_d not in ONE_D_CHOICES:
        raise ValueError(f"Unknown one_d {one_d!r}; use one of {ONE_D_CHOICES}.")
    named = [(n, p.detach()) for n, p in model.named_parameters()]
    if not named:
        raise ValueError(f"{type(model).__name__} has no parameters.")
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    d1 = [torch.randn(p.shape, generator=generator, dtype=torch.float32) for _, p in named]
    d2 = [torch.randn(p.shape, generator=generator, dtype=torch.float32) for _, p in named]
    for a, b in zip(d1, d2, strict=True):  # Gram-Schmidt per tensor
        denom = torch.dot(a.reshape(-1), a.reshape(-1))
        if denom > 0:
            b.sub_(a * (torch.dot(a.reshape(-1), b.reshape(-1)) / denom))
    out = []
    for direction in (d1, d2):
        total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t) for t in direction]))
        scaled = {}
        for (name, p), t in zip(named, direction, strict=True):
            t = t / total
            if p.dim() >= 2 or one_d == "layer":
                norm_t = torch.linalg.vector_norm(t)
                t = t * (torch.linalg.vector_norm(p.float().cpu()) / norm_t) if norm_t > 0 else t
            elif one_d == "zero":
                t = torch.zeros_like(t)
            scaled[name] = t
        out.append(scaled)
    return out[0], out[1]


# ----------------------------------------------------------------------------------------------- scan
def grid_coordinates(steps: int = DEFAULT_STEPS, span: float = 1.0) -> np.ndarray:
    """``steps`` evenly spaced points in ``[-span, span]``; with an odd count the middle one is exactly 0."""
    if steps < 2:
        raise ValueError(f"steps must be >= 2 (got {steps})")
    if not (np.isfinite(span) and span > 0):
        raise ValueError(f"span must be a finite number > 0 (got {span})")
    if steps % 2 == 1:
        k = (steps - 1) // 2
        return span * np.arange(-k, k + 1, dtype=np.float64) / k
    return np.linspace(-span, span, steps, dtype=np.float64)


def loss_landscape(
    model: nn.Module,
    data: Any,
    *,
    steps: int = DEFAULT_STEPS,
    span: float = 1.0,
    directions: tuple[Directions, Directions] | None = None,
    seed: int = 42,
    one_d: OneD = "zero",
    batch_size: int = 256,
    max_samples: int | None = None,
    sample_seed: int = 0,
    device: torch.device | str | None = None,
) -> LossLandscape:
    """Mean cross-entropy of ``model`` on ``data`` over a ``steps x steps`` grid around its weights.

    ``data`` is a dataset of ``{"pixel_values", "labels"}`` items or a ``(pixel_values, labels)`` pair of
    tensors. ``max_samples`` evaluates a seeded random subset (the same at every grid point). ``directions``
    overrides the seeded ones (e.g. to share them between two models of the same architecture). The weights,
    buffers and train/eval flags of ``model`` are the same afterwards, bit for bit.
    """
    device = torch.device(device) if device is not None else model_device(model)
    alphas = grid_coordinates(steps, span)
    betas = alphas.copy()
    d1, d2 = directions if directions is not None else landscape_directions(model, seed=seed, one_d=one_d)
    batches = _cached_batches(data, batch_size, max_samples, sample_seed, device)
    params = dict(model.named_parameters())
    missing = set(params) - set(d1) | set(params) - set(d2)
    if missing:
        raise ValueError(f"The directions lack {len(missing)} parameters, e.g. {sorted(missing)[:3]}.")
    saved = {n: p.detach().clone() for n, p in params.items()}
    d1 = {n: d1[n].to(device=device, dtype=torch.float32) for n in params}
    d2 = {n: d2[n].to(device=device, dtype=torch.float32) for n in params}
    losses = np.empty((len(alphas), len(betas)), dtype=np.float64)
    with eval_mode(model):
        try:
            with torch.no_grad():
                center = _mean_loss(model, batches)
                for i, a in enumerate(alphas):
                    for j, b in enumerate(betas):
                        if a == 0 and b == 0:
                            losses[i, j] = center
                            continue
                        for n, p in params.items():
                            p.copy_((saved[n].float() + float(a) * d1[n] + float(b) * d2[n]).to(p.dtype))
                        losses[i, j] = _mean_loss(model, batches)
        finally:
            with torch.no_grad():
                for n, p in params.items():
                    p.copy_(saved[n])
    settings = {
        "steps": steps,
        "span": span,
        "seed": seed,
        "one_d": one_d,
        "max_samples": max_samples,
        "num_samples": sum(len(y) for _, y in batches),
        "custom_directions": directions is not None,
    }
    return LossLandscape(alphas=alphas, betas=betas, losses=losses, center_loss=center, settings=settings)


def _cached_batches(
    data: Any, batch_size: int, max_samples: int | None, sample_seed: int, device: torch.device
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The evaluation batches, collated once and kept on ``device`` (the grid re-reads them at every point)."""
    if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        x, y = data
        n = len(x)
        pick = _subsample(n, max_samples, sample_seed)
        if pick is not None:
            x, y = x[pick], y[pick]
        pairs = zip(torch.split(x, batch_size), torch.split(y, batch_size), strict=True)
        return [(xb.to(device), yb.long().to(device)) for xb, yb in pairs]
    n = len(data)
    pick = _subsample(n, max_samples, sample_seed)
    if pick is not None:
        data = torch.utils.data.Subset(data, pick.tolist())
    loader = DataLoader(data, batch_size=batch_size, shuffle=False, collate_fn=collate_inputs)
    return [(b["pixel_values"].to(device), torch.as_tensor(b["labels"]).reshape(-1).long().to(device)) for b in loader]


def _subsample(n: int, max_samples: int | None, seed: int) -> torch.Tensor | None:
    if n == 0:
        raise ValueError("The loss landscape needs a non-empty data set.")
    if max_samples is None or max_samples >= n:
        return None
    if max_samples < 1:
        raise ValueError(f"max_samples must be >= 1 (got {max_samples})")
    generator = torch.Generator().manual_seed(int(seed))
    return torch.randperm(n, generator=generator)[:max_samples].sort().values


def _mean_loss(model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    total = 0.0
    count = 0
    for x, y in batches:
        out = call_model(model, x)
        logits = out if isinstance(out, torch.Tensor) else out.logits
        total += float(F.cross_entropy(logits.float(), y, reduction="sum"))
        count += len(y)
    return total / count


# ---------------------------------------------------------------------------------------------- stats
def basin_ratio(losses: Any, center_loss: float, threshold: float = 0.5) -> float:
    """100 * fraction of grid points with ``|L - L_center| <= threshold * std(L_grid)`` (higher = flatter)."""
    grid = np.asarray(losses, dtype=np.float64)
    if grid.size == 0:
        raise ValueError("basin_ratio of an empty grid is undefined")
    finite = np.isfinite(grid)
    if not finite.any():
        return 0.0
    spread = np.std(grid[finite])
    with np.errstate(invalid="ignore"):
        inside = finite & (np.abs(grid - center_loss) <= threshold * spread)
    return float(100.0 * inside.sum() / grid.size)


def landscape_stats(
    losses: Any,
    center_loss: float,
    alphas: Any | None = None,
    betas: Any | None = None,
    threshold: float = 0.5,
) -> dict[str, Any]:
    """basin_ratio, variability (std), grad_norm (mean ||grad L|| on the grid) and the stability profile."""
    grid = np.asarray(losses, dtype=np.float64)
    if grid.ndim != 2 or min(grid.shape) < 2:
        raise ValueError(f"losses must be a 2-d grid of at least 2 x 2 points, got shape {grid.shape}")
    finite = np.isfinite(grid)
    coords = []
    if alphas is not None and betas is not None:
        coords = [np.asarray(alphas, dtype=np.float64), np.asarray(betas, dtype=np.float64)]
    with np.errstate(invalid="ignore"):
        grad_a, grad_b = np.gradient(grid, *coords)
        grad_norm = np.sqrt(grad_a**2 + grad_b**2)
        distance = np.abs(grid - center_loss)
        stability = {
            str(level): float(100.0 * np.mean(finite & (distance <= level / 100.0 * abs(center_loss))))
            for level in STABILITY_LEVELS
        }
    finite_grad = grad_norm[np.isfinite(grad_norm)]
    return {
        "basin_ratio": basin_ratio(grid, center_loss, threshold),
        "variability": float(np.std(grid[finite])) if finite.any() else float("nan"),
        "grad_norm": float(np.mean(finite_grad)) if finite_grad.size else float("nan"),
        "stability": stability,
        "center_loss": float(center_loss),
    }
