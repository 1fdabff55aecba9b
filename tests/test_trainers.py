"""Trainer-level tests: one optimizer step of each method equals an independent hand computation.

Every run uses plain SGD (no momentum, no weight decay, constant lr 0.1) and full-batch single steps,
so the data order does not matter; where the composition of a batch matters (random forget partners,
micro-batches of gradient accumulation), the datasets record which items they handed out.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import (
    ce_on,
    hand_branch,
    hand_cheap_step,
    hand_lookahead,
    hand_saliency,
    make_dataset,
    make_model,
    weights_of,
)
from math_helpers import assert_weights as _assert_weights
from math_helpers import max_diff as _max_diff
from math_helpers import random_mask as _random_mask
from math_helpers import sgd_step
from torch import nn

from hf_unlearn.args import UnlearnArguments
from hf_unlearn.errors import ValidationError
from hf_unlearn.trainers import TRAINERS, UnlearnTrainer, get_trainer_class
from hf_unlearn.trainers.random_label import random_wrong_labels
from hf_unlearn.trainers.retrain import RetrainTrainer
from hf_unlearn.trainers.sharp_minmax import SharpMinMaxTrainer

LR = 0.1


def _sgd(w: dict[str, torch.Tensor], *grads: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return sgd_step(w, *grads, lr=LR)


# ------------------------------------------------------------------------------- registry and arguments
def test_every_trainer_computes_its_own_unscaled_loss() -> None:
    assert UnlearnTrainer.loss_is_scaled_for_ga is False
    for name, cls in TRAINERS.items():
        assert cls.loss_is_scaled_for_ga is False, name


def test_unknown_method_suggests_the_closest_name() -> None:
    with pytest.raises(ValueError, match="neggrad") as info:
        get_trainer_class("neggrd")
    assert "Did you mean 'neggrad'" in str(info.value)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("rho", 0.0, "rho must be"),
        ("rho", -0.1, "rho must be"),
        ("rho", float("nan"), "rho must be"),
        ("rho", float("inf"), "rho must be"),
        ("alpha", -0.01, "alpha must lie in \\[0, 1\\]"),
        ("alpha", 1.01, "alpha must lie in \\[0, 1\\]"),
        ("mask_ratio", 0.0, "mask_ratio must lie in \\(0, 1\\]"),
        ("mask_ratio", -0.5, "mask_ratio must lie in \\(0, 1\\]"),
        ("mask_ratio", 1.5, "mask_ratio must lie in \\(0, 1\\]"),
        ("forget_direction", "up", "Unknown forget_direction 'up'"),
        ("sharpness", "sharp", "Unknown sharpness 'sharp'"),
        ("method", "neggrd", "Unknown method 'neggrd'"),
        ("sam_every", 0, "sam_every must be an integer >= 1"),
        ("sam_every", 2.5, "sam_every must be an integer >= 1"),
    ],
)
def test_arguments_reject_invalid_values(args_factory, field: str, value, message: str) -> None:
    # Sharp MinMax reads alpha, mask_ratio and forget_direction besides the shared fields.
    with pytest.raises(ValueError, match=message):
        args_factory(**{"method": "sharp_minmax", field: value})


def test_cheap_sam_is_refused_with_the_official_code(args_factory) -> None:
    with pytest.raises(ValueError, match="sam_every > 1 is not available with official=True"):
        args_factory(method="sharp_minmax", sharpness="sam", official=True, sam_every=5)


def test_arguments_accept_boundary_values(args_factory) -> None:
    for kwargs in ({"alpha": 0.0}, {"alpha": 1.0}, {"mask_ratio": 1.0}, {"rho": 1e-6}, {"sharpness": "asam"}):
        args = args_factory(method="sharp_minmax", **kwargs)
        assert isinstance(args, UnlearnArguments)


# ------------------------------------------------------------------------------------ SAM through a Trainer
@pytest.mark.parametrize("kind, lam", [("none", 1.0), ("sam", 1.0), ("asam", 1.0), ("sam", 0.5), ("asam", 0.5)])
def test_finetune_step_matches_hand_computation(args_factory, kind: str, lam: float) -> None:
    model = make_model(seed=11)
    retain = make_dataset(8, seed=12)
    model_copy = copy.deepcopy(model)
    w = weights_of(model)
    rho = 0.5
    args = args_factory(method="finetune", sharpness=kind, rho=rho, sam_lambda=lam, per_device_train_batch_size=8)
    trainer = get_trainer_class("finetune")(model=model, args=args, retain_dataset=retain)
    trainer.train()
    assert sorted(retain.accessed) == list(range(8))  # one full batch

    # SAM: eps = rho g/||g||, final = g1; ASAM: eps = rho |w|^2 g / || |w| g ||; lambda 0.5: g0 + 0.5 (g1 - g0).
    final = hand_branch(model_copy, w, ce_on(retain.x, retain.y), kind, rho, "min", lam)
    expected = _sgd(w, final)
    _assert_weights(trainer.model, expected)
    if kind != "none":
        plain = _sgd(w, hand_branch(model_copy, w, ce_on(retain.x, retain.y), "none", rho))
        assert _max_diff(expected, plain) > 1e-4, "test is not discriminative"


def test_gradient_ascent_step_matches_hand_and_raises_forget_loss(args_factory) -> None:
    model = make_model(seed=13)
    retain, forget = make_dataset(6, seed=14), make_dataset(4, seed=15)
    model_copy = copy.deepcopy(model)
    w = weights_of(model)
    with torch.no_grad():
        before = F.cross_entropy(model(pixel_values=forget.x).logits, forget.y)
    args = args_factory(method="gradient_ascent", per_device_train_batch_size=4)
    trainer = get_trainer_class("gradient_ascent")(model=model, args=args, retain_dataset=retain, forget_dataset=forget)
    trainer.train()
    assert retain.accessed == []  # gradient ascent never looks at retain data
    _assert_weights(trainer.model, _sgd(w, hand_branch(model_copy, w, ce_on(forget.x, forget.y, -1.0), "none", 0.1)))
    with torch.no_grad():
        after = F.cross_entropy(trainer.model(pixel_values=forget.x).logits, forget.y)
    assert after > before + 1e-3


def test_neggrad_step_matches_hand_computation(args_factory) -> None:
    model = make_model(seed=16)
    retain, forget = make_dataset(6, seed=17), make_dataset(3, seed=18)
    model_copy = copy.deepcopy(model)
    w = weights_of(model)
    alpha, rho = 0.7, 0.5
    args = args_factory(method="neggrad", sharpness="sam", rho=rho, alpha=alpha, per_device_train_batch_size=6)
    trainer = get_trainer_class("neggrad")(model=model, args=args, retain_dataset=retain, forget_dataset=forget)
    forget.accessed.clear()
    trainer.train()
    assert len(forget.accessed) == 6
    xf, yf = forget.subset(forget.accessed)

    def objective(logits_fn):  # one objective, one SAM pair of passes
        return alpha * F.cross_entropy(logits_fn(retain.x), retain.y) - (1 - alpha) * F.cross_entropy(logits_fn(xf), yf)

    _assert_weights(trainer.model, _sgd(w, hand_branch(model_copy, w, objective, "sam", rho)))


# ---------------------------------------------------------------------------------------- Sharp MinMax
def _sharp_minmax(args_factory, model, retain, forget, mask=None, **overrides) -> SharpMinMaxTrainer:
    kwargs = dict(
        method="sharp_minmax",
        sharpness="sam",
        rho=0.5,
        alpha=0.6,
        mask_ratio=0.3,
        per_device_train_batch_size=len(retain),
        per_device_eval_batch_size=2,
    )
    kwargs.update(overrides)
    return SharpMinMaxTrainer(
        model=model, args=args_factory(**kwargs), retain_dataset=retain, forget_dataset=forget, mask=mask
    )


def _bn_model_with_stats(seed: int) -> nn.Module:
    model = make_model(seed=seed, batchnorm=True)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():  # running statistics far from the batch statistics: eval mode matters
        model.bn.running_mean.copy_(torch.randn(model.bn.num_features, generator=g))
        model.bn.running_var.copy_(torch.rand(model.bn.num_features, generator=g) * 3 + 0.2)
        model.bn.num_batches_tracked.fill_(7)
        model.bn.weight.copy_(torch.randn(model.bn.num_features, generator=g))
        model.bn.bias.copy_(torch.randn(model.bn.num_features, generator=g))
    return model


def test_mask_is_one_bool_per_weight_and_has_exact_size(args_factory) -> None:
    model = _bn_model_with_stats(seed=20)
    trainer = _sharp_minmax(args_factory, model, make_dataset(6, seed=21), make_dataset(5, seed=22), mask_ratio=0.3)
    named = {n: p for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert set(trainer.mask) == set(named)
    # One boolean per parameter element: the forget branch's partition is the mask, the retain branch's its
    # complement (~mask), so the two are disjoint and cover every element (the branch math on each partition is
    # checked by test_sharp_minmax_step_matches_hand_computation).
    for n, m in trainer.mask.items():
        assert m.dtype == torch.bool and m.shape == named[n].shape, n
    total = sum(p.numel() for p in named.values())
    assert sum(int(m.sum()) for m in trainer.mask.values()) == round(0.3 * total)


@pytest.mark.parametrize("ratio", [0.1, 0.45])
def test_mask_marks_the_top_forget_saliency(args_factory, ratio: float) -> None:
    model = _bn_model_with_stats(seed=23)
    forget = make_dataset(5, seed=24)
    saliency = hand_saliency(model, forget)
    trainer = _sharp_minmax(args_factory, model, make_dataset(4, seed=25), forget, mask_ratio=ratio)
    flat_s = torch.cat([saliency[n].reshape(-1) for n in trainer.mask])
    flat_m = torch.cat([trainer.mask[n].reshape(-1) for n in trainer.mask]).bool()
    k = round(ratio * flat_s.numel())
    assert int(flat_m.sum()) == k
    # The k most salient elements, and no others (tanh model: no ties at the boundary).
    top = torch.topk(flat_s, k).indices
    assert flat_s.sort(descending=True).values[k - 1] > flat_s.sort(descending=True).values[k] * (1 + 1e-4)
    expected = torch.zeros_like(flat_m)
    expected[top] = True
    assert torch.equal(flat_m, expected)


def test_building_the_mask_has_no_side_effects(args_factory) -> None:
    model = _bn_model_with_stats(seed=26)
    g = torch.Generator().manual_seed(27)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=g)
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    model.train()
    trainer = _sharp_minmax(args_factory, model, make_dataset(4, seed=28), make_dataset(5, seed=29))
    assert trainer.mask is not None
    for n, b in trainer.model.named_buffers():
        assert torch.equal(b, buffers[n]), f"{n} moved while building the mask"
    for n, p in trainer.model.named_parameters():
        assert p.grad is not None and torch.equal(p.grad, grads[n]), f"{n}.grad changed"
    assert trainer.model.training


@pytest.mark.parametrize("kind", ["sam", "asam"])
def test_sharp_minmax_step_matches_hand_computation(args_factory, kind: str) -> None:
    model = make_model(seed=30)
    retain, forget = make_dataset(6, seed=31), make_dataset(3, seed=32)
    model_copy = copy.deepcopy(model)
    w = weights_of(model)
    mask = _random_mask(w, 0.4, seed=33)
    alpha, rho = 0.6, 0.5
    trainer = _sharp_minmax(args_factory, model, retain, forget, mask=mask, sharpness=kind, alpha=alpha, rho=rho)
    forget.accessed.clear()
    trainer.train()
    assert sorted(retain.accessed) == list(range(6))
    assert len(forget.accessed) == 6  # one random forget partner per retain item
    xf, yf = forget.subset(forget.accessed)

    complement = {n: ~m for n, m in mask.items()}
    # Retain: SAM-min on alpha * CE_R, eps and its norm on the complement, final g1 on the complement.
    retain_g = hand_branch(model_copy, w, ce_on(retain.x, retain.y, alpha), kind, rho, "min", 1.0, complement)
    # Forget: SAM-max on -(1 - alpha) * CE_F on the mask: final 2 g0 - g1 on the mask, 0 outside.
    forget_g = hand_branch(model_copy, w, ce_on(xf, yf, -(1 - alpha)), kind, rho, "max", 1.0, mask)
    expected = _sgd(w, retain_g, forget_g)  # both at the same starting weights, one SGD step
    _assert_weights(trainer.model, expected)

    # Discriminative: sharpness matters, and the forget branch moves only the mask.
    plain = _sgd(
        w,
        hand_branch(model_copy, w, ce_on(retain.x, retain.y, alpha), "none", rho, mask=complement),
        hand_branch(model_copy, w, ce_on(xf, yf, -(1 - alpha)), "none", rho, mask=mask),
    )
    assert _max_diff(expected, plain) > 1e-4
    for n, p in trainer.model.named_parameters():
        moved = p.detach() != w[n]
        assert torch.all(moved[mask[n]] == (forget_g[n][mask[n]] != 0))


# ------------------------------------------------------------------------------------- BatchNorm statistics
def _bn_update(running_mean, running_var, h: torch.Tensor, momentum: float = 0.1):
    """Closed form of one train-mode BatchNorm1d update (unbiased batch variance)."""
    mean = h.mean(0)
    var = h.var(0, unbiased=True)
    return (1 - momentum) * running_mean + momentum * mean, (1 - momentum) * running_var + momentum * var


def test_sam_moves_batchnorm_statistics_once_per_step(args_factory) -> None:
    model = _bn_model_with_stats(seed=40)
    retain = make_dataset(8, seed=41)
    rm, rv = model.bn.running_mean.clone(), model.bn.running_var.clone()
    with torch.no_grad():
        h = model.fc1(retain.x)  # BN input at the starting weights (the clean pass)
    args = args_factory(method="finetune", sharpness="sam", rho=0.5, per_device_train_batch_size=8)
    trainer = get_trainer_class("finetune")(model=model, args=args, retain_dataset=retain)
    trainer.model.bn.num_batches_tracked.zero_()
    trainer.train()
    exp_mean, exp_var = _bn_update(rm, rv, h)
    bn = trainer.model.bn
    assert int(bn.num_batches_tracked) == 1
    torch.testing.assert_close(bn.running_mean, exp_mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bn.running_var, exp_var, rtol=1e-5, atol=1e-6)


def test_sharp_minmax_moves_batchnorm_statistics_once_per_branch(args_factory) -> None:
    model = _bn_model_with_stats(seed=42)
    model.bn.num_batches_tracked.zero_()
    retain, forget = make_dataset(6, seed=43), make_dataset(4, seed=44)
    rm, rv = model.bn.running_mean.clone(), model.bn.running_var.clone()
    w = weights_of(model)
    trainer = _sharp_minmax(args_factory, model, retain, forget, mask=_random_mask(w, 0.5, seed=45))
    forget.accessed.clear()
    trainer.train()
    xf, _ = forget.subset(forget.accessed)
    bn = trainer.model.bn
    assert int(bn.num_batches_tracked) == 2
    # Both branches start from the same weights; each clean pass moves the statistics once.
    with torch.no_grad():
        h_r = F.linear(retain.x, w["fc1.weight"], w["fc1.bias"])
        h_f = F.linear(xf, w["fc1.weight"], w["fc1.bias"])
    orders = []
    for first, second in ((h_r, h_f), (h_f, h_r)):
        m1, v1 = _bn_update(rm, rv, first)
        orders.append(_bn_update(m1, v1, second))

    def close(a: torch.Tensor, b: torch.Tensor) -> bool:
        return torch.allclose(a, b, rtol=1e-5, atol=1e-6)

    # Retain then forget, or the other way round: either order, but exactly one update per branch.
    assert any(close(bn.running_mean, m) and close(bn.running_var, v) for m, v in orders), (
        bn.running_mean,
        bn.running_var,
        orders,
    )


def test_a_last_batch_of_one_sample_under_batchnorm_names_the_fix(args_factory) -> None:
    # 5 retain samples in batches of 4 leave one sample over, which train-mode BatchNorm1d cannot normalise.
    retain = make_dataset(5, seed=46)
    args = args_factory(method="finetune", per_device_train_batch_size=4, max_steps=-1, num_train_epochs=1)
    trainer = get_trainer_class("finetune")(model=make_model(seed=47, batchnorm=True), args=args, retain_dataset=retain)
    with pytest.raises(ValidationError, match=r"batch of one sample \(retain 1\).*dataloader_drop_last: true"):
        trainer.train()
    # The fix the message names: the short batch is dropped and the epoch trains on the full one.
    args = args_factory(
        method="finetune", per_device_train_batch_size=4, max_steps=-1, num_train_epochs=1, dataloader_drop_last=True
    )
    trainer = get_trainer_class("finetune")(model=make_model(seed=47, batchnorm=True), args=args, retain_dataset=retain)
    assert trainer.train().global_step == 1


class _TwoPointSGD(torch.optim.SGD):
    """Stands in for a schedule-free optimizer: ``train()`` / ``eval()`` switch the weights between the point it
    trains at and the point it is evaluated at (here: the training point scaled by 0.5)."""

    def __init__(self, params, **kwargs) -> None:
        super().__init__(params, **kwargs)
        self.modes: list[str] = []

    def _scale(self, factor: float) -> None:
        with torch.no_grad():
            for group in self.param_groups:
                for p in group["params"]:
                    p.mul_(factor)

    def train(self) -> None:
        if self.modes and self.modes[-1] == "eval":
            self._scale(2.0)
        self.modes.append("train")

    def eval(self) -> None:
        if self.modes and self.modes[-1] == "train":
            self._scale(0.5)
        self.modes.append("eval")


def test_training_ends_at_a_schedule_free_optimizers_evaluation_point(args_factory, retain_dataset) -> None:
    model = make_model(seed=48)
    w = weights_of(model)
    expected = _sgd(w, hand_branch(model, w, ce_on(retain_dataset.x, retain_dataset.y), "none", rho=0.0))
    optimizer = _TwoPointSGD(model.parameters(), lr=LR)
    args = args_factory(method="finetune", per_device_train_batch_size=len(retain_dataset))
    trainer = get_trainer_class("finetune")(
        model=model, args=args, retain_dataset=retain_dataset, optimizers=(optimizer, None)
    )
    trainer.train()
    # The step ran at the training point; the model is left at the evaluation point (what is evaluated and saved).
    assert optimizer.modes[0] == "train" and optimizer.modes[-1] == "eval"
    _assert_weights(trainer.model, {k: 0.5 * v for k, v in expected.items()})


# ------------------------------------------------------------------------------- gradient accumulation
def _run_finetune(args_factory, model, retain, **overrides):
    args = args_factory(method="finetune", **overrides)
    trainer = get_trainer_class("finetune")(model=model, args=args, retain_dataset=retain)
    trainer.train()
    return trainer


def test_gradient_accumulation_equals_the_large_batch(args_factory) -> None:
    model = make_model(seed=50)
    w = weights_of(model)
    data = make_dataset(8, seed=51)
    accumulated = _run_finetune(
        args_factory, copy.deepcopy(model), data, per_device_train_batch_size=4, gradient_accumulation_steps=2
    )
    large = _run_finetune(args_factory, copy.deepcopy(model), make_dataset(8, seed=51), per_device_train_batch_size=8)
    expected = _sgd(w, hand_branch(model, w, ce_on(data.x, data.y), "none", 0.1))
    _assert_weights(accumulated.model, weights_of(large.model))
    _assert_weights(accumulated.model, expected)
    assert _max_diff(expected, w) > 1e-3


def _tiny_hf_resnet(seed: int) -> nn.Module:
    from transformers import ResNetConfig, ResNetForImageClassification

    torch.manual_seed(seed)
    config = ResNetConfig(num_channels=1, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=3)
    return ResNetForImageClassification(config)


def _hold_batchnorm_in_eval(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
            module.train = lambda mode=True, module=module: module  # Trainer's model.train() leaves it in eval


def test_gradient_accumulation_equals_the_large_batch_on_hf_resnet(args_factory) -> None:
    model = _tiny_hf_resnet(seed=52)
    g = torch.Generator().manual_seed(53)
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.3, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
    base = copy.deepcopy(model)
    w = weights_of(model)
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    runs = []
    for bs, ga in ((4, 2), (8, 1)):
        m = copy.deepcopy(model)
        _hold_batchnorm_in_eval(m)
        runs.append(
            _run_finetune(
                args_factory,
                m,
                make_dataset(8, seed=54, shape=(1, 16, 16)),
                per_device_train_batch_size=bs,
                gradient_accumulation_steps=ga,
            ).model
        )
    accumulated, large = runs
    for n, b in accumulated.named_buffers():
        assert torch.equal(b, buffers[n]), f"{n}: BatchNorm was not held in eval mode"
    _assert_weights(accumulated, weights_of(large), rtol=1e-4, atol=1e-6)
    # And both equal one hand-computed SGD step on the mean CE of all 8 images (no GA / world-size scaling).
    data = make_dataset(8, seed=54, shape=(1, 16, 16))
    base.eval()
    expected = _sgd(w, hand_branch(base, w, ce_on(data.x, data.y), "none", 0.1))
    _assert_weights(accumulated, expected, rtol=1e-4, atol=1e-6)
    assert _max_diff(expected, w) > 1e-3


def test_gradient_accumulation_with_sam_averages_per_micro_batch_sam(args_factory) -> None:
    model = make_model(seed=55)
    model_copy = copy.deepcopy(model)
    w = weights_of(model)
    data = make_dataset(8, seed=56)
    rho = 0.5
    trainer = _run_finetune(
        args_factory,
        model,
        data,
        sharpness="sam",
        rho=rho,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
    )
    assert len(data.accessed) == 8 and sorted(data.accessed) == list(range(8))
    micro = [data.subset(data.accessed[:4]), data.subset(data.accessed[4:])]
    # Each micro-batch perturbs with its own g0; the step uses the mean of the two SAM gradients.
    per_micro = [hand_branch(model_copy, w, ce_on(x, y), "sam", rho) for x, y in micro]
    mean = {n: (per_micro[0][n] + per_micro[1][n]) / 2 for n in w}
    expected = _sgd(w, mean)
    _assert_weights(trainer.model, expected)
    # Not the same as one SAM step on the whole batch (eps from the mean gradient).
    whole = _sgd(w, hand_branch(model_copy, w, ce_on(data.x, data.y), "sam", rho))
    assert _max_diff(expected, whole) > 1e-4


# ------------------------------------------------------------------------------------ retrain, random label
def test_retrain_reinitialises_reproducibly(args_factory) -> None:
    original = make_model(seed=60)
    retain = make_dataset(6, seed=61)

    def reinitialised(seed: int) -> dict[str, torch.Tensor]:
        args = args_factory(method="retrain", seed=seed)
        return weights_of(RetrainTrainer(model=copy.deepcopy(original), args=args, retain_dataset=retain).model)

    first, again, other = reinitialised(1), reinitialised(1), reinitialised(2)
    w = weights_of(original)
    for n in w:
        assert not torch.equal(first[n], w[n]), f"{n} kept the passed model's weights"
        assert torch.equal(first[n], again[n]), f"{n} is not reproducible for a fixed seed"
        assert not torch.equal(first[n], other[n]), f"{n} ignores the seed"


def test_random_wrong_labels_never_draw_the_true_label() -> None:
    num_labels = 5
    g = torch.Generator().manual_seed(70)
    labels = torch.randint(num_labels, (20000,), generator=g)
    wrong = random_wrong_labels(labels, num_labels, generator=g)
    assert wrong.shape == labels.shape and wrong.dtype == labels.dtype
    assert torch.all(wrong != labels)
    assert torch.all((wrong >= 0) & (wrong < num_labels))
    # Uniform over the other C - 1 classes.
    for y in range(num_labels):
        counts = torch.bincount(wrong[labels == y], minlength=num_labels).float()
        assert counts[y] == 0
        others = counts[torch.arange(num_labels) != y]
        expected = others.sum() / (num_labels - 1)
        assert torch.all((others - expected).abs() < 6 * math.sqrt(expected))
    with pytest.raises(ValueError):
        random_wrong_labels(torch.zeros(3, dtype=torch.long), 1)


# ------------------------------------------------------------------------------------------ the cheap SAM
def test_sharp_minmax_with_sam_every_matches_hand_computation(args_factory) -> None:
    """sam_every=2 over three steps: full SAM, one cheap LookSAM step per branch, full SAM again."""
    model = make_model(seed=60)
    retain, forget = make_dataset(6, seed=61), make_dataset(3, seed=62)
    model_copy = copy.deepcopy(model)
    w0 = weights_of(model)
    mask = _random_mask(w0, 0.4, seed=63)
    complement = {n: ~m for n, m in mask.items()}
    alpha, rho = 0.6, 0.5
    trainer = _sharp_minmax(args_factory, model, retain, forget, mask=mask, alpha=alpha, rho=rho, sam_every=2)
    trainer.args.max_steps = 3
    forget.accessed.clear()
    trainer.train()
    partners = [forget.subset(forget.accessed[6 * k : 6 * k + 6]) for k in range(3)]

    def losses(k):
        xf, yf = partners[k]
        return ce_on(retain.x, retain.y, alpha), ce_on(xf, yf, -(1 - alpha))

    # Step 1 (full): the two-pass SAM of each branch, and what each branch keeps for the cheap step.
    retain_loss, forget_loss = losses(0)
    full_retain = hand_branch(model_copy, w0, retain_loss, "sam", rho, "min", 1.0, complement)
    full_forget = hand_branch(model_copy, w0, forget_loss, "sam", rho, "max", 1.0, mask)
    kept_retain = hand_lookahead(model_copy, w0, retain_loss, rho, complement)
    kept_forget = hand_lookahead(model_copy, w0, forget_loss, rho, mask)
    w1 = _sgd(w0, full_retain, full_forget)
    # Step 2 (cheap): one pass per branch plus sign * (||g|| / n0) * d of its own partition.
    retain_loss, forget_loss = losses(1)
    cheap_retain = hand_cheap_step(model_copy, w1, retain_loss, kept_retain, +1.0, complement)
    cheap_forget = hand_cheap_step(model_copy, w1, forget_loss, kept_forget, -1.0, mask)
    w2 = _sgd(w1, cheap_retain, cheap_forget)
    # Step 3 (full again).
    retain_loss, forget_loss = losses(2)
    w3 = _sgd(
        w2,
        hand_branch(model_copy, w2, retain_loss, "sam", rho, "min", 1.0, complement),
        hand_branch(model_copy, w2, forget_loss, "sam", rho, "max", 1.0, mask),
    )
    _assert_weights(trainer.model, w3)
    # Discriminative: the cheap step is neither the plain gradient nor a full SAM step.
    retain_loss, forget_loss = losses(1)
    plain = _sgd(
        w1,
        hand_branch(model_copy, w1, retain_loss, "none", rho, mask=complement),
        hand_branch(model_copy, w1, forget_loss, "none", rho, mask=mask),
    )
    full = _sgd(
        w1,
        hand_branch(model_copy, w1, retain_loss, "sam", rho, "min", 1.0, complement),
        hand_branch(model_copy, w1, forget_loss, "sam", rho, "max", 1.0, mask),
    )
    assert _max_diff(w2, plain) > 1e-5 and _max_diff(w2, full) > 1e-6
