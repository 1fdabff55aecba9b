"""L1-sparse (Jia et al., NeurIPS 2023, "Model Sparsity Can Simplify Machine Unlearning"): fine-tune on retain with
an L1 penalty on every trainable weight whose weight decays linearly to zero over the run.

    loss_t = CE(f(x_r), y_r) + l1_weight_t * ||theta||_1,   l1_weight_t = l1_weight * (1 - t / T)

``t`` is the number of optimizer steps already taken (0 for the first step) and ``T`` the run's total number of
optimizer steps (``TrainerState.max_steps``): the first step uses the full ``l1_weight``, the last one
``l1_weight / T``, and the weight reaches zero at the end of the run. All micro-batches of one optimizer step
(gradient accumulation) use the same weight.

Differences from the official code (method-spec.md B.2, ``--unlearn FT_prune``):

* the official weight decays per *epoch* (``alpha * (1 - epoch / E)``, constant within an epoch); here it decays
  per optimizer step, the continuous version of the same line, which also works for runs set by ``max_steps``;
* its weight is ``--alpha`` (default 0.99, far too large for an L1 term); here it is its own field ``l1_weight``,
  default 5e-4 as SalUn/RUM used;
* with SAM the official code adds the L1 term only in the perturbed pass (so eps comes from CE alone); here the
  penalty is part of the branch loss and enters both passes, so eps and g1 both see it (one objective, as for
  every method).
"""

from __future__ import annotations

import torch
from torch import nn

from .base import Batch, Branch, UnlearnTrainer, cross_entropy


def l1_weight_schedule(initial: float, step: int, total_steps: int) -> float:
    """``initial * (1 - step / total_steps)``, clipped at 0; ``step`` counts optimizer steps already taken."""
    if total_steps <= 0:
        return initial
    return initial * max(0.0, 1.0 - step / total_steps)


def l1_norm(model: nn.Module) -> torch.Tensor:
    """``sum |theta|`` over the trainable parameters, in float32."""
    return torch.stack([p.abs().sum().float() for p in model.parameters() if p.requires_grad]).sum()


class L1SparseTrainer(UnlearnTrainer):
    """Retain cross-entropy plus a linearly decaying L1 penalty (one branch)."""

    def current_l1_weight(self) -> float:
        return l1_weight_schedule(self.args.l1_weight, self.state.global_step, self.state.max_steps)

    def branches(self, inputs: Batch) -> list[Branch]:
        weight = self.current_l1_weight()

        def loss(model: nn.Module, batch: Batch) -> torch.Tensor:
            ce = cross_entropy(model, batch["retain"])
            return ce if weight == 0.0 else ce + weight * l1_norm(model)

        return [Branch("retain+l1", loss)]
