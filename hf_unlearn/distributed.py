"""The two questions the pipeline asks about a distributed launch (`accelerate launch` / `torchrun`), answered
without initialising anything: a plain single process is the main process and its barrier is a no-op."""

from __future__ import annotations


def is_main_process() -> bool:
    import torch

    return not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0


def barrier() -> None:
    import torch

    if torch.distributed.is_initialized():
        torch.distributed.barrier()
