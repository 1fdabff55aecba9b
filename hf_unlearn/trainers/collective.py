"""What a training step needs under DDP, as a mixin of `UnlearnTrainer`: no gradient sync inside the step's
passes, one broadcast of the main process's buffers, one all-reduce of the composed gradient (carrying the
"non-finite loss" flag), the divergence check of every loss, and the refusal of DeepSpeed / FSDP."""

from __future__ import annotations

import contextlib

import torch
import torch.distributed as dist
from accelerate.utils import DistributedType
from torch import nn

from ..errors import DivergenceError


class CollectiveSteps:
    """Mixed into `UnlearnTrainer` (it reads the Trainer's ``accelerator``, ``state`` and ``args``)."""

    def _no_sync(self, model: nn.Module) -> contextlib.AbstractContextManager:
        # Any DDP flavour (MULTI_GPU, MULTI_CPU, MULTI_XPU, ...); DeepSpeed and FSDP are refused at start-up.
        if self.accelerator.num_processes > 1:
            return self.accelerator.no_sync(model)
        return contextlib.nullcontext()

    def _broadcast_buffers_from_main_process(self, model: nn.Module, base_model: nn.Module) -> None:
        """Give every process the main process's buffers (BatchNorm running statistics), once per step.

        DDP broadcasts buffers only in forwards that sync gradients; every hf_unlearn pass runs under
        ``no_sync``, so without this the running statistics of the replicas would drift apart. Rank 0's
        statistics are what plain DDP training keeps too. ``ddp_broadcast_buffers=False`` turns it off.
        """
        if not getattr(model, "broadcast_buffers", True):
            return
        by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
        for buffer in base_model.buffers():
            by_dtype.setdefault(buffer.dtype, []).append(buffer)
        for buffers in by_dtype.values():
            flat = torch.cat([b.detach().reshape(-1) for b in buffers])
            dist.broadcast(flat, src=0)
            offset = 0
            with torch.no_grad():
                for b in buffers:
                    b.copy_(flat[offset : offset + b.numel()].view_as(b))
                    offset += b.numel()

    def _average_gradients_across_processes(self, params: list[torch.Tensor]) -> bool:
        """One all-reduce (mean) of the composed gradient per optimizer step.

        The same all-reduce carries one more element, this process's "saw a non-finite loss" flag; returns
        whether any process saw one (so divergence costs no extra collective).
        """
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flag = 1.0 if self._nonfinite_loss is not None else 0.0
        # One more element per parameter: does it have a gradient here? A parameter no process gave a gradient
        # keeps grad None, so weight decay and momentum skip it as in one process.
        has_grad = [1.0 if p.grad is not None else 0.0 for p in params]
        flat = torch.cat([*(g.reshape(-1) for g in grads), grads[0].new_tensor([*has_grad, flag])])
        dist.all_reduce(flat)
        diverged = bool(flat[-1] > 0)
        used = flat[-1 - len(params) : -1] > 0
        flat = flat[: -1 - len(params)] / self.accelerator.num_processes
        offset = 0
        for p, g, has in zip(params, grads, used.tolist(), strict=True):
            n = g.numel()
            p.grad = flat[offset : offset + n].view_as(g).clone() if has else None
            offset += n
        return diverged

    def _check_loss(self, loss: torch.Tensor) -> None:
        """Note a non-finite loss; with one process stop at once (`DivergenceError`), with several at the
        step's gradient all-reduce, which carries the flag (docs/reliability.md).

        Reading the loss on the host every micro-batch adds no synchronisation worth counting: the Trainer
        already does it for ``logging_nan_inf_filter``.
        """
        if bool(torch.isfinite(loss.detach())):
            return
        if self._nonfinite_loss is None:
            self._nonfinite_loss = (float(loss.detach().float()), self.state.global_step + 1, self.state.epoch)
        if self.accelerator.num_processes == 1:
            self._raise_diverged()

    def _raise_diverged(self) -> None:
        seen = self._nonfinite_loss
        value, step, epoch = seen if seen is not None else (None, self.state.global_step + 1, self.state.epoch)
        self._nonfinite_loss = None
        where = "" if seen is not None else " on another process"
        hint = " or raise alpha" if "alpha" in self.args.own_fields() else ""
        raise DivergenceError(
            f"non-finite training loss ({value}{where}) at step {step} (epoch {epoch or 0:.2f}) of "
            f"{self.method_name}; the run diverged. Lower the learning rate{hint}.",
            step=step,
            epoch=epoch,
            loss=value,
        )

    def _check_distributed_support(self) -> None:
        distributed = self.accelerator.distributed_type
        if distributed not in (DistributedType.DEEPSPEED, DistributedType.FSDP):
            return
        name = "DeepSpeed" if distributed == DistributedType.DEEPSPEED else "FSDP"
        use_instead = (
            "Use DDP instead: accelerate launch --config_file accelerate_configs/multi_gpu.yaml "
            "-m hf_unlearn.cli run RECIPE (see docs/distributed.md)."
        )
        if self.needs_two_pass_support:
            raise ValueError(
                f"{self.method_name} with sharpness={self.args.sharpness!r} is not supported under {name}: "
                "SAM and masked methods need several backward passes per optimizer step over the full, unsharded "
                "gradient (DeepSpeed steps the optimizer inside every backward; FSDP shards the gradient and its "
                f"norm). {use_instead}"
            )
        # Every method composes its step's gradient in p.grad and averages it across processes itself
        # (training_step); DeepSpeed (ZeRO owns the gradients) and FSDP (sharded gradients) break that too.
        raise ValueError(
            f"{self.method_name} is not supported under {name}: hf_unlearn composes each step's gradient in "
            f"p.grad and averages it across processes itself, and {name} owns (and shards) the gradients. "
            f"{use_instead}"
        )

    @property
    def needs_two_pass_support(self) -> bool:
        return self.sharpness_config.enabled or self.uses_mask
