"""The methods of issue 3 (SCRUB, SalUn, L1-sparse, SAM pretraining, the ``official`` switch) against hand
computations or their defining invariants.

As in test_trainers.py: plain SGD (no momentum, no weight decay, constant lr 0.1) and full-batch steps unless a test
says otherwise, and expected values computed with torch.autograd on functional copies of the model, never by
hf_unlearn itself.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import ce_on, hand_branch, hand_saliency, loss_and_grad, make_dataset, make_model, weights_of
from math_helpers import assert_weights as _assert_weights
from math_helpers import max_diff as _max_diff
from math_helpers import random_mask as _random_mask
from math_helpers import sgd_step
from torch import nn
from transformers import TrainerCallback

from hf_unlearn.trainers import get_trainer_class
from hf_unlearn.trainers.l1_sparse import L1SparseTrainer, l1_weight_schedule
from hf_unlearn.trainers.salun import SalUnTrainer
from hf_unlearn.trainers.scrub import PhaseBatchSampler, ScrubTrainer, distill_kl
from hf_unlearn.trainers.sharp_minmax import SharpMinMaxTrainer

LR = 0.1


def _sgd(w: dict[str, torch.Tensor], *grads: dict[str, torch.Tensor], lr: float = LR) -> dict[str, torch.Tensor]:
    return sgd_step(w, *grads, lr=lr)


def _grad_at(model: nn.Module, weights: dict[str, torch.Tensor], loss_fn) -> dict[str, torch.Tensor]:
    """Gradient of ``loss_fn(logits_fn, w)`` (a loss that may also use the weights, e.g. an L1 term)."""
    w = {n: t.detach().clone().requires_grad_(True) for n, t in weights.items()}

    def logits_fn(x: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(model, w, args=(), kwargs={"pixel_values": x}).logits

    grads = torch.autograd.grad(loss_fn(logits_fn, w), list(w.values()))
    return dict(zip(w, grads, strict=True))


def _bn_model_with_stats(seed: int) -> nn.Module:
    """BatchNorm running statistics far from the batch statistics: train and eval mode disagree."""
    model = make_model(seed=seed, batchnorm=True)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        model.bn.running_mean.copy_(torch.randn(model.bn.num_features, generator=g))
        model.bn.running_var.copy_(torch.rand(model.bn.num_features, generator=g) * 3 + 0.2)
    return model


# ------------------------------------------------------------------------------------------------ SCRUB
def test_distill_kl_is_repdistillers_distill_kl() -> None:
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    T = 3.0
    p_t = torch.softmax(t / T, dim=1)
    expected = (p_t * (torch.log(p_t) - torch.log_softmax(s / T, dim=1))).sum() * T**2 / 5
    torch.testing.assert_close(distill_kl(s, t, T), expected)
    batchmean = F.kl_div(torch.log_softmax(s / T, 1), p_t, reduction="batchmean") * T**2
    torch.testing.assert_close(distill_kl(s, t, T), batchmean)
    assert float(distill_kl(t, t, T)) == pytest.approx(0.0, abs=1e-6)


def _scrub(args_factory, model, retain, forget, **overrides) -> ScrubTrainer:
    kwargs = dict(method="scrub", max_steps=-1, num_train_epochs=1, per_device_train_batch_size=4, kd_T=2.0)
    kwargs.update(overrides)
    return ScrubTrainer(model=model, args=args_factory(**kwargs), retain_dataset=retain, forget_dataset=forget)


def test_scrub_max_step_matches_hand_and_lowers_student_teacher_agreement(args_factory) -> None:
    model = _bn_model_with_stats(seed=1)
    retain, forget = make_dataset(6, seed=2), make_dataset(4, seed=3)
    w = weights_of(model)
    T = 2.0
    teacher = copy.deepcopy(model).eval()
    with torch.no_grad():
        t_logits = teacher(pixel_values=forget.x).logits

    def kl_to_teacher(weights) -> torch.Tensor:  # the training objective: student in train mode, on all of F
        student = copy.deepcopy(model).train()
        with torch.no_grad():
            logits = torch.func.functional_call(student, weights, args=(), kwargs={"pixel_values": forget.x}).logits
        return distill_kl(logits, t_logits, T)

    # Only the first step runs: the max pass on the single forget batch (4 items, batch size 4).
    trainer = _scrub(args_factory, model, retain, forget, max_steps=1, kd_T=T, msteps=1)
    seen = _record_phases(trainer)
    trainer.train()
    assert seen == [(0, 0, "forget")] and sorted(forget.accessed) == [0, 1, 2, 3]
    g = _grad_at(copy.deepcopy(model).train(), w, lambda logits_fn, _: -distill_kl(logits_fn(forget.x), t_logits, T))
    expected = _sgd(w, g)
    _assert_weights(trainer.model, expected)
    assert _max_diff(expected, w) > 1e-4
    before, after = kl_to_teacher(w), kl_to_teacher(weights_of(trainer.model))
    assert after > before * 1.05, (before, after)


def _record_phases(trainer: ScrubTrainer) -> list[tuple[int, int, str]]:
    """(epoch, optimizer step, phase) of every micro-batch the trainer trains on."""
    seen: list[tuple[int, int, str]] = []
    original = trainer.branches

    def branches(inputs):
        phase = "forget" if "forget" in inputs else "retain"
        seen.append((trainer.phase_sampler.epoch, trainer.state.global_step, phase))
        return original(inputs)

    trainer.branches = branches
    return seen


def test_scrub_runs_exactly_msteps_max_epochs_and_keeps_the_teacher_frozen(args_factory) -> None:
    model = _bn_model_with_stats(seed=4)
    initial = copy.deepcopy(model.state_dict())
    retain, forget = make_dataset(6, seed=5), make_dataset(4, seed=6)
    trainer = _scrub(
        args_factory,
        model,
        retain,
        forget,
        num_train_epochs=5,
        msteps=2,
        per_device_train_batch_size=2,
        lr_scheduler_type="linear",
        logging_strategy="epoch",
    )
    seen = _record_phases(trainer)
    trainer.train()

    per_epoch = {e: [p for ep, _, p in seen if ep == e] for e in range(5)}
    assert per_epoch[0] == per_epoch[1] == ["forget"] * 2 + ["retain"] * 3  # max pass first, then min pass
    assert per_epoch[2] == per_epoch[3] == per_epoch[4] == ["retain"] * 3  # exactly msteps = 2 max epochs
    assert sorted(forget.accessed) == sorted(list(range(4)) * 2)  # two passes over the forget set
    assert sorted(retain.accessed) == sorted(list(range(6)) * 5)  # one retain pass per epoch
    # The Trainer's step count is the schedule's: 2 * (2 + 3) + 3 * 3 = 19 optimizer steps, linear LR ends at 0.
    assert trainer.state.global_step == trainer.state.max_steps == 19
    assert trainer.lr_scheduler.get_last_lr()[0] == pytest.approx(0.0, abs=1e-12)
    assert [round(log["epoch"]) for log in trainer.state.log_history if "loss" in log] == [1, 2, 3, 4, 5]

    # The teacher: the model as it was before unlearning, frozen, in eval mode, never optimised.
    teacher = trainer.teacher
    assert teacher is not trainer.model and not teacher.training
    assert all(not p.requires_grad for p in teacher.parameters())
    for name, value in teacher.state_dict().items():
        assert torch.equal(value, initial[name]), f"teacher {name} changed"
    optimised = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert not optimised & {id(p) for p in teacher.parameters()}
    assert any(not torch.equal(v, initial[n]) for n, v in trainer.model.state_dict().items())


@pytest.mark.parametrize("msteps, expected_forget_passes", [(0, 0), (7, 3)])
def test_scrub_msteps_bounds(args_factory, msteps: int, expected_forget_passes: int) -> None:
    retain, forget = make_dataset(6, seed=7), make_dataset(4, seed=8)
    trainer = _scrub(args_factory, make_model(seed=9), retain, forget, num_train_epochs=3, msteps=msteps)
    trainer.train()
    assert len(forget.accessed) == 4 * expected_forget_passes
    assert trainer.state.global_step == trainer.state.max_steps == 3 * 2 + expected_forget_passes


def test_scrub_gradient_accumulation_never_mixes_phases(args_factory) -> None:
    retain, forget = make_dataset(5, seed=10), make_dataset(3, seed=11)
    trainer = _scrub(
        args_factory,
        make_model(seed=12),
        retain,
        forget,
        num_train_epochs=2,
        msteps=1,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=2,
    )
    seen = _record_phases(trainer)
    trainer.train()
    steps: dict[int, list[str]] = {}
    for _, step, phase in seen:
        steps.setdefault(step, []).append(phase)
    # forget: 2 micro-batches (1 step); retain: ceil(5/2) = 3 micro-batches, rounded up to 4 (2 steps).
    assert [steps[s] for s in sorted(steps)] == [["forget"] * 2] + [["retain"] * 2] * 4
    assert trainer.state.global_step == trainer.state.max_steps == 5
    assert sorted(retain.accessed) == sorted(list(range(5)) * 2)  # every sample once per pass, spread evenly


def test_phase_batch_sampler_is_deterministic_and_disjoint() -> None:
    sampler = PhaseBatchSampler(num_forget=5, num_retain=7, batch_size=2, max_epochs=1, multiple=2, seed=3)
    first = list(sampler)
    assert list(sampler) == first and len(first) == len(sampler) == 4 + 4
    assert sorted(i for b in first[:4] for i in b) == list(range(5))
    assert sorted(i for b in first[4:] for i in b) == list(range(5, 12))
    sampler.set_epoch(1)
    assert len(sampler) == 4 and sorted(i for b in sampler for i in b) == list(range(5, 12))


def test_scrub_min_step_with_sam_matches_hand_computation(args_factory) -> None:
    model = make_model(seed=13)  # no BatchNorm: student == teacher at w, so only the SAM pass sees the KL term
    retain, forget = make_dataset(4, seed=14), make_dataset(2, seed=15)
    w = weights_of(model)
    gamma, beta, T, rho = 0.7, 0.8, 2.0, 0.5
    with torch.no_grad():
        t_logits = model(pixel_values=retain.x).logits
    trainer = _scrub(
        args_factory,
        model,
        retain,
        forget,
        msteps=0,
        max_steps=1,
        sharpness="sam",
        rho=rho,
        gamma=gamma,
        beta=beta,
        kd_T=T,
    )
    trainer.train()

    def objective(logits_fn):
        logits = logits_fn(retain.x)
        return gamma * F.cross_entropy(logits, retain.y) + beta * distill_kl(logits, t_logits, T)

    model_copy = make_model(seed=13)
    expected = _sgd(w, hand_branch(model_copy, w, objective, "sam", rho))
    _assert_weights(trainer.model, expected)
    without_kl = _sgd(w, hand_branch(model_copy, w, ce_on(retain.x, retain.y, gamma), "sam", rho))
    assert _max_diff(expected, without_kl) > 1e-5


# ------------------------------------------------------------------------------------------------ SalUn
def _salun(args_factory, model, retain, forget, mask=None, **overrides) -> SalUnTrainer:
    kwargs = dict(method="salun", per_device_train_batch_size=len(retain), mask_ratio=0.4)
    kwargs.update(overrides)
    return SalUnTrainer(
        model=model, args=args_factory(**kwargs), retain_dataset=retain, forget_dataset=forget, mask=mask
    )


@pytest.mark.parametrize("official", [False, True])
def test_salun_mask_direction(args_factory, official: bool) -> None:
    model = make_model(seed=20)
    forget = make_dataset(5, seed=21)
    trainer = _salun(args_factory, model, make_dataset(4, seed=22), forget, mask_ratio=0.3, official=official)
    saliency = hand_saliency(make_model(seed=20), forget)  # by autograd, not by hf_unlearn.masks
    assert set(trainer.mask) == set(saliency)
    flat_s = torch.cat([saliency[n].reshape(-1) for n in saliency])
    flat_m = torch.cat([trainer.mask[n].reshape(-1) for n in saliency]).bool()
    k = round(0.3 * flat_s.numel())
    ranked = flat_s.sort(descending=not official).values
    assert ranked[k - 1] != ranked[k]  # no tie at the boundary: the expected mask is unique
    expected = torch.zeros_like(flat_m)
    expected[flat_s.topk(k, largest=not official).indices] = True
    assert torch.equal(flat_m, expected)


@pytest.mark.parametrize("kind", ["none", "sam"])
def test_salun_step_matches_hand_computation(args_factory, kind: str) -> None:
    model = make_model(seed=23)
    retain, forget = make_dataset(4, seed=24), make_dataset(3, seed=25)
    model_copy = copy.deepcopy(model)
    w = weights_of(model)
    mask = _random_mask(w, 0.5, seed=26)
    # One batch holds the whole union (retain + relabelled forget), so one step sees every item once.
    trainer = _salun(
        args_factory, model, retain, forget, mask=mask, sharpness=kind, rho=0.5, per_device_train_batch_size=7
    )
    forget.accessed.clear()
    trainer.train()
    assert sorted(forget.accessed) == [0, 1, 2] and sorted(retain.accessed) == [0, 1, 2, 3]
    wrong = torch.stack([trainer.train_dataset.relabel(i, forget.y[i]) for i in range(3)])  # epoch 0's labels
    assert torch.all(wrong != forget.y)
    x, y = torch.cat([retain.x, forget.x]), torch.cat([retain.y, wrong])
    final = hand_branch(model_copy, w, ce_on(x, y), kind, 0.5, mask=mask)  # eps, norm and final on the mask
    _assert_weights(trainer.model, _sgd(w, final))
    for n, p in trainer.model.named_parameters():
        assert torch.equal(p.detach()[~mask[n]], w[n][~mask[n]]), n


@pytest.mark.parametrize("optim, optim_args", [("adamw_torch", None), ("sgd", "momentum=0.9")])
def test_salun_weights_outside_the_mask_never_change(args_factory, optim: str, optim_args) -> None:
    model = _bn_model_with_stats(seed=27)
    retain, forget = make_dataset(8, seed=28), make_dataset(4, seed=29)
    w = weights_of(model)
    mask = _random_mask(w, 0.4, seed=30)
    settings = dict(
        mask=mask,
        optim=optim,
        optim_args=optim_args,
        weight_decay=0.1,
        max_steps=4,
        per_device_train_batch_size=4,
        sharpness="sam",
        rho=0.3,
    )
    trainer = _salun(args_factory, copy.deepcopy(model), retain, forget, **settings)
    trainer.train()
    for n, p in trainer.model.named_parameters():
        assert torch.equal(p.detach()[~mask[n]], w[n][~mask[n]]), f"{n} moved outside the mask"
        if n != "fc1.bias":  # BatchNorm follows fc1 and cancels its bias: zero gradient, no decay on biases
            assert bool((p.detach()[mask[n]] != w[n][mask[n]]).all()), f"{n} did not train inside the mask"
        for key, value in trainer.optimizer.state[p].items():
            if torch.is_tensor(value) and value.shape == p.shape:
                assert torch.all(value[~mask[n]] == 0), f"{n}: optimizer state {key} outside the mask"
    # The same run with official=True (the mask only multiplies the gradient) lets weight decay and momentum leak.
    leaky = _salun(args_factory, copy.deepcopy(model), retain, forget, official=True, **settings)
    leaky.train()
    assert any(not torch.equal(p.detach()[~mask[n]], w[n][~mask[n]]) for n, p in leaky.model.named_parameters())


# ------------------------------------------------------------------------------------------------ L1-sparse
def test_l1_weight_schedule_decays_linearly_to_zero() -> None:
    assert [l1_weight_schedule(0.2, t, 4) for t in range(5)] == pytest.approx([0.2, 0.15, 0.1, 0.05, 0.0])
    assert l1_weight_schedule(0.2, 9, 4) == 0.0


def _l1(w: dict[str, torch.Tensor]) -> torch.Tensor:
    return sum(t.abs().sum() for t in w.values())


def _ce_l1(logits_fn, w, data, weight: float) -> torch.Tensor:
    return F.cross_entropy(logits_fn(data.x), data.y) + weight * _l1(w)


def test_l1_sparse_steps_match_hand_computation_with_the_decaying_weight(args_factory) -> None:
    model = make_model(seed=31)
    retain = make_dataset(6, seed=32)
    model_copy = copy.deepcopy(model)
    w = weights_of(model)
    l1, steps = 0.05, 4
    trainer = L1SparseTrainer(
        model=model,
        args=args_factory(method="l1_sparse", l1_weight=l1, max_steps=steps, per_device_train_batch_size=6),
        retain_dataset=retain,
    )
    used = []
    original = trainer.current_l1_weight
    trainer.current_l1_weight = lambda: used.append(original()) or used[-1]
    trainer.train()
    assert used == pytest.approx([l1 * (1 - t / steps) for t in range(steps)])

    expected = w
    for weight in used:
        g = _grad_at(model_copy, expected, lambda logits_fn, v, a=weight: _ce_l1(logits_fn, v, retain, a))
        expected = _sgd(expected, g)
    _assert_weights(trainer.model, expected)
    constant = w
    for _ in range(steps):
        g = _grad_at(model_copy, constant, lambda logits_fn, v: _ce_l1(logits_fn, v, retain, l1))
        constant = _sgd(constant, g)
    assert _max_diff(expected, constant) > 1e-4  # the decay matters


def test_l1_sparse_with_sam_puts_the_penalty_in_both_passes(args_factory) -> None:
    model = make_model(seed=33)
    retain = make_dataset(6, seed=34)
    model_copy = copy.deepcopy(model)
    w = weights_of(model)
    l1, rho = 0.05, 0.5
    trainer = L1SparseTrainer(
        model=model,
        args=args_factory(method="l1_sparse", l1_weight=l1, sharpness="sam", rho=rho, per_device_train_batch_size=6),
        retain_dataset=retain,
    )
    trainer.train()

    def loss(logits_fn, v):
        return F.cross_entropy(logits_fn(retain.x), retain.y) + l1 * _l1(v)

    g0 = _grad_at(model_copy, w, loss)
    norm = torch.sqrt(sum((g**2).sum() for g in g0.values()))
    g1 = _grad_at(model_copy, {n: w[n] + rho * g0[n] / norm for n in w}, loss)
    _assert_weights(trainer.model, _sgd(w, g1))


# ------------------------------------------------------------------------------------------ SAM pretraining
@pytest.mark.parametrize("kind", ["sam", "asam"])
def test_pretrain_with_sam_takes_the_sam_path(args_factory, kind: str) -> None:
    model = make_model(seed=40)
    retain, forget = make_dataset(5, seed=41), make_dataset(3, seed=42)
    model_copy = copy.deepcopy(model)
    w = weights_of(model)
    rho = 0.5
    args = args_factory(method="pretrain", sharpness=kind, rho=rho, per_device_train_batch_size=8)
    trainer = get_trainer_class("pretrain")(model=model, args=args, retain_dataset=retain, forget_dataset=forget)
    forwards = []
    model.register_forward_hook(lambda *a: forwards.append(1))
    trainer.train()
    assert len(forwards) == 2  # the clean pass and the perturbed pass
    x, y = torch.cat([retain.x, forget.x]), torch.cat([retain.y, forget.y])  # pretraining sees all training data
    expected = _sgd(w, hand_branch(model_copy, w, ce_on(x, y), kind, rho))
    _assert_weights(trainer.model, expected)
    assert _max_diff(expected, _sgd(w, hand_branch(model_copy, w, ce_on(x, y), "none", rho))) > 1e-4


def test_recipe_pretrains_with_sam(tmp_path) -> None:
    from hf_unlearn.recipe import load_recipe
    from hf_unlearn.steps.plan import arguments_for, original_plan, retrain_plan

    recipe = load_recipe("digits", ["pretrain.sharpness=sam", "pretrain.rho=0.05", "retrain.sharpness=none"])
    args = arguments_for(original_plan(recipe), output_dir=tmp_path, use_cpu=True, seed=0)
    assert (args.method, args.sharpness, args.rho) == ("pretrain", "sam", 0.05)
    retrain = retrain_plan(recipe).settings
    assert retrain["sharpness"] == "none"  # the reference is set separately (it inherits pretrain's otherwise)
    assert retrain["rho"] == 0.05  # ... and every pretraining setting it does not set
    inherited = retrain_plan(load_recipe("digits", ["pretrain.sharpness=asam"]))
    assert inherited.settings["sharpness"] == "asam"


# ------------------------------------------------------------------------------------- the official switch
def _official_branch(model, w, loss_fn, kind, rho, direction, mask):
    """The official code's branch: eps over all parameters, the mask on g1 only, g0 + sign*(g1*m - g0)."""
    _, g0 = loss_and_grad(model, w, loss_fn)
    if kind == "none":
        return {n: g0[n] * mask[n] for n in w}
    t = {n: w[n].abs() if kind == "asam" else torch.ones_like(w[n]) for n in w}
    norm = torch.sqrt(sum(((t[n] * g0[n]) ** 2).sum() for n in w))
    _, g1 = loss_and_grad(model, {n: w[n] + rho * t[n] ** 2 * g0[n] / norm for n in w}, loss_fn)
    sign = 1.0 if direction == "min" else -1.0
    return {n: g0[n] + sign * (g1[n] * mask[n] - g0[n]) for n in w}


def _sharp_minmax(args_factory, model, retain, forget, mask=None, **overrides) -> SharpMinMaxTrainer:
    kwargs = dict(
        method="sharp_minmax",
        sharpness="sam",
        rho=0.5,
        alpha=0.6,
        mask_ratio=0.3,
        per_device_train_batch_size=len(retain),
    )
    kwargs.update(overrides)
    return SharpMinMaxTrainer(
        model=model, args=args_factory(**kwargs), retain_dataset=retain, forget_dataset=forget, mask=mask
    )


@pytest.mark.parametrize("kind", ["none", "sam", "asam"])
def test_official_sharp_minmax_is_two_sequential_updates(args_factory, kind: str) -> None:
    model = make_model(seed=50)
    retain, forget = make_dataset(6, seed=51), make_dataset(3, seed=52)
    model_copy = copy.deepcopy(model)
    w = weights_of(model)
    mask = _random_mask(w, 0.4, seed=53)
    alpha, rho, wd = 0.6, 0.5, 0.05
    trainer = _sharp_minmax(
        args_factory,
        model,
        retain,
        forget,
        mask=mask,
        official=True,
        sharpness=kind,
        alpha=alpha,
        rho=rho,
        weight_decay=wd,
    )
    forget.accessed.clear()
    trainer.train()
    xf, yf = forget.subset(forget.accessed)
    decay = set(trainer.get_decay_parameter_names(trainer.model))
    assert decay == {"fc1.weight", "fc2.weight"}

    def sgd_wd(v, g):  # SGD with L2 weight decay on the decay group, as each of the two optimizers applies it
        return {n: v[n] - LR * (g[n] + (wd * v[n] if n in decay else 0.0)) for n in v}

    complement = {n: ~m for n, m in mask.items()}
    # 1. retain update: final g1 * (1 - m) (SAM) or g0 * (1 - m) (plain).
    w1 = sgd_wd(w, _official_branch(model_copy, w, ce_on(retain.x, retain.y, alpha), kind, rho, "min", complement))
    # 2. forget update at the updated weights: 2 g0 - g1 * m (SAM-max) or g0 * m (plain).
    w2 = sgd_wd(w1, _official_branch(model_copy, w1, ce_on(xf, yf, -(1 - alpha)), kind, rho, "max", mask))
    _assert_weights(trainer.model, w2)
    assert trainer.retain_optimizer is not None and trainer.retain_optimizer is not trainer.optimizer.optimizer
    # Discriminative: the trained weights are not what the forget branch at the old weights gives, nor what weight
    # decay in only one of the two updates gives (each computed from scratch, compared at the tolerance above).
    retain_g = _official_branch(model_copy, w, ce_on(retain.x, retain.y, alpha), kind, rho, "min", complement)
    at_w = sgd_wd(w1, _official_branch(model_copy, w, ce_on(xf, yf, -(1 - alpha)), kind, rho, "max", mask))
    retain_only = _sgd(w1, _official_branch(model_copy, w1, ce_on(xf, yf, -(1 - alpha)), kind, rho, "max", mask))
    w1_plain = _sgd(w, retain_g)
    forget_only = sgd_wd(
        w1_plain, _official_branch(model_copy, w1_plain, ce_on(xf, yf, -(1 - alpha)), kind, rho, "max", mask)
    )
    for alternative in (at_w, retain_only, forget_only):
        with pytest.raises(AssertionError):
            _assert_weights(trainer.model, alternative)


def test_official_forget_branch_moves_weights_outside_the_mask(args_factory) -> None:
    model = make_model(seed=54)
    retain, forget = make_dataset(4, seed=55), make_dataset(3, seed=56)
    w = weights_of(model)
    mask = _random_mask(w, 0.4, seed=57)
    moved = {}
    for official in (False, True):
        # alpha = 0: the retain branch has a zero loss, so only the forget branch moves weights.
        trainer = _sharp_minmax(
            args_factory, copy.deepcopy(model), retain, forget, mask=mask, official=official, alpha=0.0
        )
        trainer.train()
        moved[official] = {n: p.detach() != w[n] for n, p in trainer.model.named_parameters()}
    for n in w:
        assert not moved[False][n][~mask[n]].any(), f"{n}: intended forget branch moved weights outside the mask"
        assert moved[False][n][mask[n]].all()
        assert moved[True][n][~mask[n]].all(), f"{n}: official forget branch (2 g0 outside the mask) did not move it"


@pytest.mark.parametrize("method", ["sharp_minmax", "salun"])
def test_official_mask_keeps_the_least_salient_weights(args_factory, method: str) -> None:
    forget = make_dataset(5, seed=58)
    saliency = hand_saliency(make_model(seed=59), forget)
    masks = {}
    for official in (False, True):
        cls = get_trainer_class(method)
        args = args_factory(method=method, mask_ratio=0.3, official=official)
        masks[official] = cls(
            model=make_model(seed=59), args=args, retain_dataset=make_dataset(4, seed=60), forget_dataset=forget
        ).mask
    flat_s = torch.cat([saliency[n].reshape(-1) for n in saliency])
    top = torch.cat([masks[False][n].reshape(-1) for n in saliency])
    bottom = torch.cat([masks[True][n].reshape(-1) for n in saliency])
    assert int(top.sum()) == int(bottom.sum()) == round(0.3 * flat_s.numel())
    assert flat_s[top].min() > flat_s[bottom].max()


def test_official_sharp_minmax_follows_the_trainer_lr_schedule(args_factory) -> None:
    trainer = _sharp_minmax(
        args_factory,
        make_model(seed=61),
        make_dataset(4, seed=62),
        make_dataset(2, seed=63),
        mask=None,
        official=True,
        max_steps=3,
        lr_scheduler_type="linear",
    )
    lrs = []

    class RetainLearningRate(TrainerCallback):  # the lr the retain update of each step used
        def on_step_end(self, args, state, control, **kwargs):
            lrs.append([g["lr"] for g in trainer.retain_optimizer.param_groups])

    trainer.add_callback(RetainLearningRate())
    trainer.train()
    assert lrs == [[pytest.approx(LR * (1 - t / 3))] * 2 for t in range(3)]


def test_official_sharp_minmax_rejects_gradient_accumulation(args_factory) -> None:
    with pytest.raises(ValueError, match="gradient_accumulation_steps=1"):
        _sharp_minmax(
            args_factory,
            make_model(seed=64),
            make_dataset(4, seed=65),
            make_dataset(2, seed=66),
            official=True,
            gradient_accumulation_steps=2,
        )


# ------------------------------------------------------------------------------------------------ arguments
@pytest.mark.parametrize(
    "field, value",
    [("l1_weight", -1e-4), ("l1_weight", math.nan), ("msteps", -1), ("kd_T", 0.0), ("beta", -0.1), ("gamma", math.inf)],
)
def test_new_arguments_are_validated(args_factory, field: str, value) -> None:
    method = "l1_sparse" if field == "l1_weight" else "scrub"
    with pytest.raises(ValueError, match=f"{field} must be"):
        args_factory(method=method, **{field: value})
