"""Count the kernel-launching ATen ops that one ``training_step`` of an hf_unlearn trainer dispatches.

On a GPU every such op is at least one kernel launch of several microseconds, so a step whose bookkeeping grows with
the number of parameter tensors is launch-bound however fast the arithmetic is. The count is taken on any device
(CPU here) with a `TorchDispatchMode`: view ops (``reshape``, ``detach``, ...) and bare allocations (``empty*``)
launch nothing and are left out; a multi-tensor ``_foreach_*`` op counts once, as it launches a constant number of
kernels. ``aten._local_scalar_dense`` (``bool(t)``, ``t.item()``) is a host synchronisation and is counted apart.

Derived quantities, as in issue 12 (all from one step each, warm: the counted step is the second one), from
whole-step counts and, with ``outside_passes``, from the ops outside the model's forward and backward passes (the
bookkeeping alone: constant in the model's depth; the whole-step SAM figure can be negative, since the perturbed
pass skips the BatchNorm running-statistics updates a plain pass makes):

- ``sgd``: ops(finetune, none), a plain step;
- ``sam_bookkeeping``: ops(finetune, sam) - 2 * ops(finetune, none);
- ``compose``: ops(neggrad, none) - 2 * ops(finetune, none) (NegGrad's two losses joined into one gradient);
- ``mask_bookkeeping``: ops(sharp_minmax, sam) - ops(neggrad, sam).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from torch.utils._python_dispatch import TorchDispatchMode

_ALLOCATIONS = {"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "empty_permuted"}
_SYNC = "_local_scalar_dense"


class KernelOpCounter(TorchDispatchMode):
    """Counts dispatched ATen ops by name; ``kernels`` is their total without views and allocations.

    While ``paused`` is true nothing is counted (`count_training_step` pauses inside the model's forward and
    backward passes to count the bookkeeping around them alone).
    """

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()
        self.paused = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if not (self.paused or func.is_view or name in _ALLOCATIONS or name in ("detach", "alias", "lift_fresh")):
            self.ops[name] += 1
        return func(*args, **(kwargs or {}))

    @property
    def syncs(self) -> int:
        return self.ops[_SYNC]

    @property
    def kernels(self) -> int:
        return sum(n for name, n in self.ops.items() if name != _SYNC)


def count_training_step(
    trainer: Any, inputs: dict[str, Any], warm_steps: int = 1, *, outside_passes: bool = False
) -> KernelOpCounter:
    """Run ``warm_steps`` uncounted training steps, then count one more (gradients cleared before each; no
    optimizer step, but ``state.global_step`` advances as in the Trainer's loop).

    ``outside_passes=True`` counts only what runs outside the model's forward passes and outside the backward
    passes (``accelerator.backward``): the loss arithmetic and hf_unlearn's bookkeeping, whatever the model's size.
    """
    model = trainer.model
    trainer.current_gradient_accumulation_steps = 1  # normally set by the Trainer's loop
    for _ in range(warm_steps):
        model.zero_grad(set_to_none=True)
        trainer.training_step(model, inputs)
        trainer.state.global_step += 1  # as the Trainer's loop after an optimizer step (sam_every counts steps)
    model.zero_grad(set_to_none=True)
    counter = KernelOpCounter()
    handles, backward = [], trainer.accelerator.backward
    if outside_passes:

        def paused_backward(*args: Any, **kwargs: Any) -> Any:
            counter.paused = True
            try:
                return backward(*args, **kwargs)
            finally:
                counter.paused = False

        handles = [
            model.register_forward_pre_hook(lambda *_: setattr(counter, "paused", True)),
            model.register_forward_hook(lambda *_: setattr(counter, "paused", False)),
        ]
        trainer.accelerator.backward = paused_backward
    try:
        with counter:
            trainer.training_step(model, inputs)
    finally:
        for handle in handles:
            handle.remove()
        if outside_passes:
            del trainer.accelerator.backward  # the instance attribute; the class's method shows through again
    model.zero_grad(set_to_none=True)
    return counter


def derived_counts(ops: dict[str, int]) -> dict[str, int]:
    """The issue-12 quantities from ``{"finetune/none", "finetune/sam", "neggrad/none", "neggrad/sam",
    "sharp_minmax/sam"}`` op counts."""
    sgd = ops["finetune/none"]
    return {
        "sgd": sgd,
        "sam_bookkeeping": ops["finetune/sam"] - 2 * sgd,
        "compose": ops["neggrad/none"] - 2 * sgd,
        "mask_bookkeeping": ops["sharp_minmax/sam"] - ops["neggrad/sam"],
    }
