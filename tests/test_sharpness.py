"""Unit tests of hf_unlearn.sharpness: perturbation, exact restore, BatchNorm guard, one branch's gradient.

Expected values come from closed-form formulas or from `conftest.hand_branch` (torch.autograd on a
functional copy of the model), never from the library itself.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import ce_on, hand_branch, hand_cheap_step, hand_lookahead, make_dataset, make_model, weights_of
from torch import nn

from hf_unlearn.sharpness import (
    SharpnessConfig,
    SharpnessMemory,
    branch_gradient,
    frozen_batchnorm_stats,
    perturbation,
    perturbed,
)


def _tensors(seed: int, shapes=((3, 4), (4,), (2, 3))) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g) for s in shapes]


# ------------------------------------------------------------------------------------------ perturbation
@pytest.mark.parametrize("adaptive", [False, True], ids=["sam", "asam"])
def test_perturbation_matches_closed_form(adaptive: bool) -> None:
    params, grads = _tensors(0), _tensors(1)
    rho = 0.7
    eps = perturbation(params, grads, [None] * 3, rho, adaptive)
    # eps = rho * T^2 g / ||T g||, T = |w| (ASAM) or 1 (SAM), norm over every element of every parameter.
    t = [p.abs() if adaptive else torch.ones_like(p) for p in params]
    norm = torch.sqrt(sum(((ti * g) ** 2).sum() for ti, g in zip(t, grads, strict=False)))
    for e, ti, g in zip(eps, t, grads, strict=False):
        torch.testing.assert_close(e, rho * ti**2 * g / norm, rtol=1e-6, atol=1e-7)
    if not adaptive:
        total = torch.sqrt(sum((e**2).sum() for e in eps))
        torch.testing.assert_close(total, torch.tensor(rho), rtol=1e-6, atol=0)


@pytest.mark.parametrize("adaptive", [False, True], ids=["sam", "asam"])
def test_masked_perturbation_stays_in_partition_and_normalises_over_it(adaptive: bool) -> None:
    params, grads = _tensors(2), _tensors(3)
    g = torch.Generator().manual_seed(4)
    masks = [torch.rand(p.shape, generator=g) < 0.5 for p in params]
    masks[0][0, 0] = True  # the partition is never empty
    rho = 0.3
    eps = perturbation(params, grads, [m.float() for m in masks], rho, adaptive)
    t = [p.abs() if adaptive else torch.ones_like(p) for p in params]
    # The norm runs over the partition only: the gradient outside it does not shrink eps.
    norm = torch.sqrt(sum(((ti * gi)[m] ** 2).sum() for ti, gi, m in zip(t, grads, masks, strict=False)))
    for e, ti, gi, m in zip(eps, t, grads, masks, strict=False):
        assert torch.all(e[~m] == 0), "eps leaks outside the partition"
        torch.testing.assert_close(e[m], (rho * ti**2 * gi / norm)[m], rtol=1e-6, atol=1e-7)
    unmasked = perturbation(params, grads, [None] * 3, rho, adaptive)
    assert not torch.allclose(unmasked[0][masks[0]], eps[0][masks[0]]), "test is not discriminative"

    # Weights outside the partition are untouched by the perturbed pass.
    work = [p.clone() for p in params]
    with perturbed(work, eps):
        for w, p, e, m in zip(work, params, eps, masks, strict=False):
            assert torch.equal(w[~m], p[~m])
            assert torch.equal(w[m], (p + e)[m])


@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan")])
def test_perturbation_of_a_non_finite_gradient_is_non_finite(bad: float) -> None:
    """No host check of the norm (it would stall the device every step): a non-finite gradient gives a non-finite
    eps, so g1 and the step's gradient are non-finite too and the fp16 GradScaler skips the step."""
    params, grads = _tensors(5), _tensors(6)
    grads[1][2] = bad
    for adaptive in (False, True):
        eps = perturbation(params, grads, [None] * 3, 0.1, adaptive)
        assert not all(bool(torch.isfinite(e).all()) for e in eps)


def test_perturbation_skips_parameters_without_gradient() -> None:
    params, grads = _tensors(7), _tensors(8)
    assert perturbation(params, [None, None, None], [None] * 3, 0.1, False) is None
    eps = perturbation(params, [grads[0], None, grads[2]], [None] * 3, 0.1, False)
    assert eps[1] is None
    norm = torch.sqrt((grads[0] ** 2).sum() + (grads[2] ** 2).sum())
    torch.testing.assert_close(eps[0], 0.1 * grads[0] / norm)


# ------------------------------------------------------------------------------------------- perturbed
def test_perturbed_restores_weights_bit_exactly() -> None:
    g = torch.Generator().manual_seed(9)
    original = [torch.randn(50, generator=g) * 1e-3, torch.randn(7, 3, generator=g)]
    eps = [torch.randn(50, generator=g) * 10.0, torch.randn(7, 3, generator=g) * 1e3]
    # Subtracting eps again would not give the weights back (so the check below means something).
    assert not all(torch.equal((o + e) - e, o) for o, e in zip(original, eps, strict=False))
    params = [nn.Parameter(o.clone()) for o in original]
    with perturbed(params, eps):
        for p, o, e in zip(params, original, eps, strict=False):
            assert torch.equal(p.detach(), o + e)
    for p, o in zip(params, original, strict=False):
        assert torch.equal(p.detach(), o)
        assert p.requires_grad

    # Restored on an exception too, and parameters with eps None are never touched.
    with pytest.raises(RuntimeError, match="boom"), perturbed(params, [eps[0], None]):
        assert torch.equal(params[1].detach(), original[1])
        raise RuntimeError("boom")
    for p, o in zip(params, original, strict=False):
        assert torch.equal(p.detach(), o)


# ------------------------------------------------------------------------------------- BatchNorm guard
def test_frozen_batchnorm_stats_leaves_buffers_bit_identical() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(3 * 4 * 4, 5))
    cumulative = nn.BatchNorm1d(5, momentum=None)  # cumulative moving average variant
    model.append(cumulative)
    model.train()
    model(torch.randn(4, 2, 6, 6))  # non-trivial running statistics
    model(torch.randn(4, 2, 6, 6))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    bn_modules = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bn_modules]
    x = torch.randn(6, 2, 6, 6) * 3 + 1
    reference = copy.deepcopy(model)
    with frozen_batchnorm_stats(model):
        out = model(x)
        out.sum().backward()
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} changed"
        assert v.dtype == before[k].dtype
    assert [m.momentum for m in bn_modules] == momenta == [0.1, None]
    # The frozen forward still normalises with batch statistics (train mode), as SAM's second pass must.
    torch.testing.assert_close(out, reference(x))
    # And after the context the statistics move again.
    model(x)
    assert not torch.equal(model[1].running_mean, before["1.running_mean"])
    assert int(model[1].num_batches_tracked) == int(before["1.num_batches_tracked"]) + 1


# ------------------------------------------------------------------------------------ branch_gradient
def _branch(model, x, y, config, direction, masks=None):
    params = [p for p in model.parameters() if p.requires_grad]
    masks = masks if masks is not None else [None] * len(params)

    def backward() -> torch.Tensor:
        loss = F.cross_entropy(model(pixel_values=x).logits, y)
        loss.backward()
        return loss.detach()

    return branch_gradient(model, params, masks, backward, config, direction)


@pytest.mark.parametrize("lam", [1.0, 0.5])
@pytest.mark.parametrize("direction", ["min", "max"])
@pytest.mark.parametrize("kind", ["sam", "asam"])
def test_branch_gradient_matches_hand_computation(kind: str, direction: str, lam: float) -> None:
    model = make_model(seed=3)
    data = make_dataset(6, seed=4)
    x, y = data.x, data.y
    w = weights_of(model)
    rho = 0.5
    grads, loss, ran = _branch(model, x, y, SharpnessConfig(kind, rho, lam), direction)
    assert ran
    torch.testing.assert_close(loss, F.cross_entropy(model(pixel_values=x).logits, y).detach())
    expected = hand_branch(model, w, ce_on(x, y), kind, rho, direction, lam)
    plain = hand_branch(model, w, ce_on(x, y), "none", rho)
    names = list(w)
    for n, g in zip(names, grads, strict=False):
        torch.testing.assert_close(g, expected[n], rtol=1e-5, atol=1e-7)
    # min, lambda 1 is g1; max, lambda 1 is 2*g0 - g1: in any case far from the plain gradient.
    assert max((expected[n] - plain[n]).abs().max() for n in names) > 1e-3
    # Weights restored exactly, .grad cleared.
    for n, p in model.named_parameters():
        assert torch.equal(p.detach(), w[n])
        assert p.grad is None


def test_branch_gradient_masked_max_matches_hand_computation() -> None:
    model = make_model(seed=5)
    data = make_dataset(6, seed=6)
    w = weights_of(model)
    g = torch.Generator().manual_seed(7)
    mask = {n: torch.rand(t.shape, generator=g) < 0.4 for n, t in w.items()}
    grads, _, _ = _branch(
        model, data.x, data.y, SharpnessConfig("asam", 0.8, 1.0), "max", [m.float() for m in mask.values()]
    )
    expected = hand_branch(model, w, ce_on(data.x, data.y), "asam", 0.8, "max", 1.0, mask=mask)
    for (n, m), gr in zip(mask.items(), grads, strict=False):
        assert torch.all(gr[~m] == 0)
        torch.testing.assert_close(gr, expected[n], rtol=1e-5, atol=1e-7)


def test_branch_gradient_without_sharpness_is_the_plain_gradient() -> None:
    model = make_model(seed=8)
    data = make_dataset(5, seed=9)
    w = weights_of(model)
    grads, _, ran = _branch(model, data.x, data.y, SharpnessConfig("none", 0.1, 1.0), "min")
    assert not ran
    expected = hand_branch(model, w, ce_on(data.x, data.y), "none", 0.1)
    for n, gr in zip(w, grads, strict=False):
        torch.testing.assert_close(gr, expected[n], rtol=1e-6, atol=1e-8)


def test_branch_gradient_restores_weights_and_statistics_after_a_non_finite_loss() -> None:
    model = make_model(seed=10, batchnorm=True)
    data = make_dataset(4, seed=11)
    x = data.x.clone()
    x[0, 0] = float("nan")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grads, loss, _ran = _branch(model, x, data.y, SharpnessConfig("sam", 0.1, 1.0), "min")
    assert not torch.isfinite(loss)
    assert any(not bool(torch.isfinite(g).all()) for g in grads)  # the step's gradient stays non-finite
    after = model.state_dict()
    for k in before:
        # The perturbed pass never touches the running statistics; the first pass updated them with the batch.
        if k.startswith("bn.running") or k == "bn.num_batches_tracked":
            continue
        assert torch.equal(after[k], before[k]), f"{k} was not restored"
    assert int(after["bn.num_batches_tracked"]) == int(before["bn.num_batches_tracked"]) + 1  # one pass counted


# ------------------------------------------------------------------------------------------ the cheap SAM
@pytest.mark.parametrize("rho", [0.05, 5.0], ids=["d-below-n0", "d-capped"])
@pytest.mark.parametrize("masked", [False, True], ids=["all", "partition"])
@pytest.mark.parametrize("lam", [1.0, 0.5])
@pytest.mark.parametrize("direction", ["min", "max"])
def test_cheap_sam_step_matches_hand_computation(direction: str, lam: float, masked: bool, rho: float) -> None:
    """Full step at w0 keeps (d, n0); the one-pass step at other weights and data is
    g + sign lam ||g|| / max(n0, ||d||) d, g = m grad L(w1), in both regimes of the cap."""
    model = make_model(seed=40)
    w0 = weights_of(model)
    first, second = make_dataset(6, seed=41), make_dataset(6, seed=42)
    g = torch.Generator().manual_seed(43)
    mask = {n: torch.rand(t.shape, generator=g) < 0.5 for n, t in w0.items()} if masked else None
    masks = [None] * len(w0) if mask is None else [m.float() for m in mask.values()]
    config = SharpnessConfig("sam", rho, lam)
    kept: list[SharpnessMemory] = []
    params = list(model.parameters())

    def backward_on(data):
        def backward() -> torch.Tensor:
            loss = F.cross_entropy(model(pixel_values=data.x).logits, data.y)
            loss.backward()
            return loss.detach()

        return backward

    full, _, ran = branch_gradient(model, params, masks, backward_on(first), config, direction, remember=kept.append)
    assert ran and len(kept) == 1
    # The full step itself is the two-pass formula, unchanged.
    expected_full = hand_branch(model, w0, ce_on(first.x, first.y), "sam", rho, direction, lam, mask)
    for n, gr in zip(w0, full, strict=True):
        torch.testing.assert_close(gr, expected_full[n], rtol=1e-5, atol=1e-7)
    hand_d, hand_n0 = hand_lookahead(model, w0, ce_on(first.x, first.y), rho, mask)
    for n, d in zip(w0, kept[0].d, strict=True):
        torch.testing.assert_close(d.double(), hand_d[n], rtol=1e-4, atol=1e-7)
    d_norm = torch.sqrt(sum((t**2).sum() for t in hand_d.values()))
    assert (d_norm > hand_n0) == (rho > 1.0)  # each case exercises the regime it is named after
    torch.testing.assert_close(kept[0].denominator.double(), torch.maximum(hand_n0, d_norm), rtol=1e-5, atol=0)

    with torch.no_grad():  # the cheap step runs at other weights and on another batch
        for p in params:
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    w1 = weights_of(model)
    calls = []

    def counted() -> torch.Tensor:
        calls.append(1)
        return backward_on(second)()

    cheap, _, ran = branch_gradient(model, params, masks, counted, config, direction, memory=kept[0])
    assert not ran and len(calls) == 1  # one pass
    sign = 1.0 if direction == "min" else -1.0
    expected = hand_cheap_step(model, w1, ce_on(second.x, second.y), (hand_d, hand_n0), sign, mask, lam)
    plain = hand_branch(model, w1, ce_on(second.x, second.y), "none", 0.5, mask=mask)
    for n, gr in zip(w1, cheap, strict=True):
        torch.testing.assert_close(gr, expected[n], rtol=1e-4, atol=1e-7)
        if mask is not None:
            assert torch.all(gr[~mask[n]] == 0)  # stays in the partition
    assert max(float((expected[n] - plain[n]).abs().max()) for n in w1) > 1e-4  # the reused direction matters


def test_cheap_sam_step_at_the_full_steps_point_is_the_full_step() -> None:
    """Where ||d|| <= n0 (a small rho), the one-pass formula at the full step's weights and batch is that step."""
    model = make_model(seed=50)
    data = make_dataset(6, seed=51)
    params = list(model.parameters())
    g = torch.Generator().manual_seed(52)
    masks = [(torch.rand(p.shape, generator=g) < 0.5).float() for p in params]
    kept: list[SharpnessMemory] = []
    config = SharpnessConfig("sam", 0.05, 1.0)
    full, _, _ = _branch_with(model, params, masks, data, config, "max", remember=kept.append)
    plain, _, _ = _branch_with(model, params, masks, data, SharpnessConfig("none"), "max")
    d_norm = torch.linalg.vector_norm(torch.cat([t.flatten() for t in kept[0].d]))
    assert d_norm < torch.linalg.vector_norm(torch.cat([g.flatten() for g in plain]))  # the cap is not reached
    cheap, _, ran = _branch_with(model, params, masks, data, config, "max", memory=kept[0])
    assert not ran
    for a, b in zip(full, cheap, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7)


def test_cheap_sam_correction_is_capped_at_the_gradient_norm() -> None:
    """Where ||d|| > n0 (a large rho), the reused correction at the full step's point has the gradient's norm
    ||m g0|| and d's direction, not d's full size."""
    model = make_model(seed=50)
    data = make_dataset(6, seed=51)
    params = list(model.parameters())
    kept: list[SharpnessMemory] = []
    config = SharpnessConfig("sam", 5.0, 1.0)
    _branch_with(model, params, [None] * len(params), data, config, "min", remember=kept.append)
    plain, _, _ = _branch_with(model, params, [None] * len(params), data, SharpnessConfig("none"), "min")
    d = torch.cat([t.flatten() for t in kept[0].d])
    n0 = torch.linalg.vector_norm(torch.cat([g.flatten() for g in plain]))  # ||g0||: the plain gradient here
    assert torch.linalg.vector_norm(d) > 2 * n0  # well inside the capped regime
    cheap, _, _ = _branch_with(model, params, [None] * len(params), data, config, "min", memory=kept[0])
    correction = torch.cat([(c - p).flatten() for c, p in zip(cheap, plain, strict=True)])
    torch.testing.assert_close(torch.linalg.vector_norm(correction), n0, rtol=1e-4, atol=0)
    torch.testing.assert_close(correction / n0, d / torch.linalg.vector_norm(d), rtol=1e-3, atol=1e-6)


def _branch_with(model, params, masks, data, config, direction, **kwargs):
    def backward() -> torch.Tensor:
        loss = F.cross_entropy(model(pixel_values=data.x).logits, data.y)
        loss.backward()
        return loss.detach()

    return branch_gradient(model, params, masks, backward, config, direction, **kwargs)
