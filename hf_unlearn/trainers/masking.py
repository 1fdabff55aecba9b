"""Parameter masks of a trainer (a mixin of `UnlearnTrainer`): the forget-saliency mask, installing a mask, and
the per-partition masks a branch's gradient is multiplied by."""

from __future__ import annotations

from typing import Literal

import torch
import torch.distributed as dist

from ..masks import forget_saliency_mask

Partition = Literal["all", "mask", "complement"]


class ParameterMask:
    """Mixed into `UnlearnTrainer` (it reads ``model``, ``forget_dataset``, ``args``, ``mask`` and
    ``_mask_cache``)."""

    def _partition_masks(
        self, partition: Partition, named: list[tuple[str, torch.Tensor]]
    ) -> list[torch.Tensor | None]:
        if partition == "all":
            return [None] * len(named)
        if self.mask is None:
            raise RuntimeError(f"Branch partition {partition!r} needs trainer.mask; build it before training.")
        key = (partition, named[0][1].dtype)
        if key not in self._mask_cache:
            masks = []
            for name, p in named:
                m = self.mask[name].to(p.device)
                masks.append((m if partition == "mask" else ~m).to(p.dtype))
            self._mask_cache[key] = masks
        return self._mask_cache[key]

    def forget_saliency_mask(self) -> dict[str, torch.Tensor]:
        """The top ``mask_ratio`` forget-salient elements (bottom ones with ``official=True``, as the official code).

        Under DDP every process computes it and takes process 0's, so all replicas train on one mask even where
        floating-point ties could rank differently.
        """
        mask = forget_saliency_mask(
            self.model,
            self.forget_dataset,
            self.args.mask_ratio,
            largest=not self.args.official,
            batch_size=self.args.per_device_eval_batch_size,
        )
        return broadcast_mask(mask)

    def set_mask(self, mask: dict[str, torch.Tensor]) -> None:
        """Install a parameter mask (name -> bool tensor, True = forget partition)."""
        names = {n for n, p in self.model.named_parameters() if p.requires_grad}
        missing = names - set(mask)
        if missing:
            raise ValueError(f"The mask lacks {len(missing)} trainable parameters, e.g. {sorted(missing)[:3]}.")
        self.mask = {n: m.bool() for n, m in mask.items()}
        self._mask_cache.clear()


def broadcast_mask(mask: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Process 0's mask on every process (a no-op in one process)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return mask
    names = sorted(mask)
    flat = torch.cat([mask[n].reshape(-1).to(torch.uint8) for n in names])
    if dist.get_backend() == "nccl":
        flat = flat.cuda()
    dist.broadcast(flat, src=0)
    out, offset = {}, 0
    for n in names:
        m = mask[n]
        out[n] = flat[offset : offset + m.numel()].view(m.shape).to(device=m.device, dtype=torch.bool)
        offset += m.numel()
    return out
