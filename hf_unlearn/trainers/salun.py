"""SalUn (Fan et al., ICLR 2024, "SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency").

Random-label training (`RandomLabelTrainer`: one shuffled loader over the forget set, relabelled with a wrong class
per epoch, and the retain set) restricted to the forget-saliency mask: the top ``mask_ratio`` of |sum of forget-loss gradients|, ranked globally
(`hf_unlearn.masks`). The branch's partition is the mask, so its SAM perturbation, the perturbation's norm and its
final gradient all live on the mask.

Weights outside the mask never change, bit for bit. A zero gradient is not enough: decoupled weight decay (AdamW),
L2 weight decay fed into SGD momentum, or momentum from earlier steps would still move them (SalUn's own code fixed
this leak in 2026). `SalUnTrainer` therefore snapshots the weights outside the mask when it builds the optimizer and,
in a post-step hook of that optimizer (``Optimizer.register_step_post_hook``), copies them back and zeroes the
optimizer state (momentum, Adam moments) on those coordinates after every optimizer step. BatchNorm running
statistics are buffers, not weights: train-mode forward passes still update them, as for every method.

``official=True`` reproduces the official Sharp MinMax code's SalUn (``--unlearn RL --path MASK``, method-spec.md
B.4, C.2): the mask marks the *bottom* ``mask_ratio`` (least salient) parameters, the SAM perturbation and its norm
cover every parameter, the mask multiplies only the perturbed gradient g1 (without SAM: the gradient), and nothing
stops weight decay or momentum from moving the weights outside the mask.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .random_label import RandomLabelTrainer


class FreezeOutsideMask:
    """An optimizer post-step hook that restores every parameter element outside ``mask`` to its snapshot.

    It also zeroes the optimizer's per-parameter state tensors (momentum buffers, Adam moments) on those elements,
    so no update is pending there. Built from ``(parameter, bool mask)`` pairs; True = may change.
    """

    def __init__(self, pairs: list[tuple[nn.Parameter, torch.Tensor]]) -> None:
        self.entries = []
        with torch.no_grad():
            for p, trainable in pairs:
                frozen = ~trainable.to(device=p.device, dtype=torch.bool)
                if bool(frozen.any()):
                    self.entries.append((p, frozen, p.detach()[frozen].clone()))

    def __call__(self, optimizer: torch.optim.Optimizer, args: Any = None, kwargs: Any = None) -> None:
        with torch.no_grad():
            for p, frozen, saved in self.entries:
                p[frozen] = saved
                for value in optimizer.state.get(p, {}).values():
                    if torch.is_tensor(value) and value.shape == p.shape:
                        value.masked_fill_(frozen, 0)


class SalUnTrainer(RandomLabelTrainer):
    """Random labels on the forget-saliency mask; weights outside the mask are frozen exactly."""

    def __init__(self, *args: Any, mask: dict | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.set_mask(mask if mask is not None else self.forget_saliency_mask())
        self._hooked_optimizer: torch.optim.Optimizer | None = None  # the optimizer FreezeOutsideMask is on

    def relabel_branch_options(self) -> dict[str, Any]:
        return {"partition": "mask", "mask_g1_only": self.args.official}

    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        optimizer = super().create_optimizer(model)
        if not self.args.official and optimizer is not self._hooked_optimizer:
            if not hasattr(optimizer, "register_step_post_hook"):
                raise TypeError(
                    f"salun needs a torch.optim.Optimizer (with register_step_post_hook) to keep the weights outside "
                    f"the mask fixed; got {type(optimizer).__name__}."
                )
            named = [(n, p) for n, p in (model or self.model).named_parameters() if p.requires_grad]
            optimizer.register_step_post_hook(FreezeOutsideMask([(p, self.mask[n]) for n, p in named]))
            self._hooked_optimizer = optimizer
        return optimizer
