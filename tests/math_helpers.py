"""Small helpers shared by the tests that compare a trainer step with a hand computation."""

from __future__ import annotations

import torch
from torch import nn


def assert_weights(model: nn.Module, expected: dict[str, torch.Tensor], rtol=1e-5, atol=1e-6) -> None:
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), expected[n], rtol=rtol, atol=atol, msg=lambda m, n=n: f"{n}: {m}")


def sgd_step(w: dict[str, torch.Tensor], *grads: dict[str, torch.Tensor], lr: float) -> dict[str, torch.Tensor]:
    """Plain SGD (no momentum, no weight decay) on the sum of the given gradients."""
    return {n: w[n] - lr * sum(g[n] for g in grads) for n in w}


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(float((a[n] - b[n]).abs().max()) for n in a)


def random_mask(weights: dict[str, torch.Tensor], ratio: float, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = {n: torch.rand(t.shape, generator=g) < ratio for n, t in weights.items()}
    for m in mask.values():  # both partitions non-empty in every tensor
        m.view(-1)[0] = True
        m.view(-1)[-1] = False
    return mask
