"""Mixed precision: bf16 (autocast) and fp16 (GradScaler) for every method.

fp16 needs an accelerator device in accelerate, so the fp16 tests run the *real* fp16 path on the CPU by
giving the Trainer's Accelerator a CPU `torch.amp.GradScaler` and turning on its native AMP: the model
forward runs under float16 autocast, `accelerator.backward` scales the loss, clipping unscales once, and
`optimizer.step()` goes through `scaler.step` / `scaler.update`, exactly as on a GPU.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import ce_on, hand_branch, make_dataset, make_model, weights_of
from torch import nn

from hf_unlearn.registry import method_settings
from hf_unlearn.sharpness import SharpnessConfig, branch_gradient, perturbation
from hf_unlearn.trainers import TRAINERS, get_trainer_class
from hf_unlearn.trainers.base import Branch, logits_of
from hf_unlearn.trainers.finetune import FinetuneTrainer

LR = 0.1
SCALE = 2.0**12


@pytest.fixture(autouse=True)
def _skip_gc_collect(monkeypatch):
    """The Trainer calls gc.collect() when it frees memory (~0.3 s each with transformers loaded); these
    tests train many tiny models, so skip it."""
    import gc

    monkeypatch.setattr(gc, "collect", lambda *args, **kwargs: 0)


def _with_cpu_grad_scaler(trainer, init_scale: float = SCALE):
    """Turn the Trainer's CPU accelerator into an fp16 one with a real GradScaler (before `train()`)."""
    assert trainer.accelerator.mixed_precision == "fp16"
    trainer.accelerator.native_amp = True  # autocast(float16) on the forward, unscale in clip_grad_norm_
    trainer.accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=init_scale, growth_interval=1000)
    return trainer


def _finite_losses(trainer) -> list[float]:
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert losses, "no loss was logged"
    return losses


# --------------------------------------------------------------------------------- the SAM direction
def test_sam_direction_is_invariant_to_the_loss_scale() -> None:
    g = torch.Generator().manual_seed(0)
    params = [torch.randn(4, 3, generator=g), torch.randn(3, generator=g)]
    grads = [torch.randn(4, 3, generator=g), torch.randn(3, generator=g)]
    for adaptive in (False, True):
        plain = perturbation(params, grads, [None, None], 0.3, adaptive)
        scaled = perturbation(params, [gr * 65536.0 for gr in grads], [None, None], 0.3, adaptive)
        for a, b in zip(plain, scaled, strict=False):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("bad", [math.inf, math.nan])
def test_branch_gradient_keeps_a_non_finite_first_pass_non_finite(bad: float) -> None:
    model = make_model(seed=1)
    params = list(model.parameters())
    data = make_dataset(4, seed=2)
    calls = []

    def backward() -> torch.Tensor:
        calls.append(1)
        loss = torch.nn.functional.cross_entropy(model(pixel_values=data.x).logits, data.y) * bad
        loss.backward()
        return loss.detach()

    before = weights_of(model)
    grads, loss, perturbed = branch_gradient(model, params, [None] * len(params), backward, SharpnessConfig("sam", 0.1))
    # The norm is not checked on the host (no synchronisation): the second pass runs at a non-finite w + eps.
    assert len(calls) == 2 and perturbed is True
    assert not torch.isfinite(loss)
    assert any(
        not torch.isfinite(gr).all() for gr in grads
    )  # the step's gradient stays non-finite: the scaler skips it
    for n, p in model.named_parameters():
        assert torch.equal(p.detach(), before[n])


# ----------------------------------------------------------------------------- fp16 with a GradScaler
@pytest.mark.parametrize("max_grad_norm", [0.0, 100.0], ids=["no-clip", "clip-unscales-once"])
def test_fp16_sam_step_equals_the_unscaled_step(args_factory, max_grad_norm: float) -> None:
    """Scaled first-pass gradients give the same eps; the Trainer unscales exactly once before the step."""
    data = make_dataset(8, seed=11)
    model = make_model(seed=10)
    w = weights_of(model)
    args = args_factory(
        method="finetune",
        sharpness="sam",
        rho=0.5,
        per_device_train_batch_size=8,
        fp16=True,
        max_grad_norm=max_grad_norm,
    )
    trainer = _with_cpu_grad_scaler(get_trainer_class("finetune")(model=model, args=args, retain_dataset=data))
    dtypes = []
    hook = model.fc2.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    trainer.train()
    hook.remove()
    assert dtypes == [torch.float16, torch.float16]  # both SAM passes ran under float16 autocast
    assert trainer.accelerator.scaler.get_scale() == SCALE  # no overflow, no skipped step
    # Expected: one SAM step computed in float32 by hand (float16 autocast of the forward -> loose tolerance).
    expected_grad = hand_branch(make_model(seed=10), w, ce_on(data.x, data.y), "sam", 0.5)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), w[n] - LR * expected_grad[n], rtol=2e-3, atol=2e-3)
    assert max(float((p.detach() - w[n]).abs().max()) for n, p in model.named_parameters()) > 1e-2


class _InfGradient(torch.autograd.Function):
    """Identity forward, infinite gradient backward: an fp16 overflow in the scaled backward pass."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * math.inf


class _OverflowOnce(FinetuneTrainer):
    """Finetune whose very first backward overflows (the loss itself stays finite, as with a too-large scale)."""

    def branches(self, inputs):
        def loss(model, batch):
            self.calls.append(self.state.global_step)
            logits = logits_of(model, batch["retain"])
            if len(self.calls) == 1:
                logits = _InfGradient.apply(logits)
            return torch.nn.functional.cross_entropy(logits, batch["retain"]["labels"])

        return [Branch("retain", loss)]


def test_fp16_overflow_gives_a_non_finite_step_that_the_scaler_skips(args_factory) -> None:
    data = make_dataset(8, seed=21)
    model = make_model(seed=20)
    w = weights_of(model)
    weights_after_step: list[dict[str, torch.Tensor]] = []

    from transformers import TrainerCallback

    class Record(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            weights_after_step.append(weights_of(model))

    args = args_factory(
        method="finetune",
        sharpness="sam",
        rho=0.5,
        per_device_train_batch_size=8,
        fp16=True,
        max_steps=2,
        max_grad_norm=1e6,
    )
    trainer = _OverflowOnce(model=model, args=args, retain_dataset=data, callbacks=[Record()])
    trainer.calls = []
    _with_cpu_grad_scaler(trainer)
    trainer.train()
    # Step 1: the non-finite first-pass gradient gives a non-finite eps, g1 and step gradient (nothing is read
    # back to the host mid-step); the scaler found inf, skipped optimizer.step() and halved the scale; the weights
    # came back from the perturbed pass exactly. Step 2: the usual two SAM passes.
    assert trainer.calls == [0, 0, 1, 1]
    assert trainer.accelerator.scaler.get_scale() == SCALE / 2
    for n in w:
        assert torch.equal(weights_after_step[0][n], w[n]), f"{n} moved in the overflowing step"
    expected_grad = hand_branch(make_model(seed=20), w, ce_on(data.x, data.y), "sam", 0.5)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), w[n] - LR * expected_grad[n], rtol=2e-3, atol=2e-3)


def _run_every_method(args_factory, method: str, precision: str, model: nn.Module, shape, **overrides):
    retain = make_dataset(8, seed=31, shape=shape)
    forget = make_dataset(4, seed=32, shape=shape)
    sharpness = "asam" if method == "sharp_minmax" else "sam"
    args = args_factory(
        method=method,
        sharpness=sharpness,
        rho=0.5 if sharpness == "sam" else 1.0,
        per_device_train_batch_size=4,
        max_steps=2,
        logging_steps=1,
        logging_strategy="steps",
        **method_settings(method, {"alpha": 0.9}),  # NegGrad and Sharp MinMax read alpha
        **{precision: True},
        **overrides,
    )
    trainer = get_trainer_class(method)(model=model, args=args, retain_dataset=retain, forget_dataset=forget)
    if precision == "fp16":
        _with_cpu_grad_scaler(trainer)
    before = weights_of(trainer.model)
    trainer.train()
    losses = _finite_losses(trainer)
    assert all(math.isfinite(x) for x in losses), losses
    after = weights_of(trainer.model)
    assert all(torch.isfinite(t).all() for t in after.values())
    assert max(float((after[n] - before[n]).abs().max()) for n in before) > 0
    return trainer


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("method", sorted(TRAINERS))
def test_every_method_trains_with_sam_in_mixed_precision(args_factory, method: str, precision: str) -> None:
    trainer = _run_every_method(args_factory, method, precision, make_model(seed=30), (6,))
    if precision == "fp16":
        assert trainer.accelerator.scaler.get_scale() > 0


def test_bf16_sharp_minmax_with_batchnorm_has_finite_losses(args_factory) -> None:
    # (bfloat16 convolutions are very slow on CPUs without native bf16, so the BatchNorm model is an MLP.)
    model = make_model(seed=40, batchnorm=True)
    trainer = _run_every_method(args_factory, "sharp_minmax", "bf16", model, (6,))
    assert trainer.accelerator.mixed_precision == "bf16" and trainer.accelerator.native_amp
    # The forward really ran in bfloat16 under Accelerate's autocast.
    seen = []
    hook = model.fc2.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    batch = torch.randn(2, 6)
    trainer.model_wrapped.eval()
    with torch.no_grad():
        trainer.model_wrapped(pixel_values=batch)
    hook.remove()
    assert seen == [torch.bfloat16]
