"""Worker of tests/test_distributed.py: one launch of 2 gloo processes runs every multi-process check.

Launched as ``torchrun --nproc_per_node 2 tests/ddp_worker.py OUT_DIR`` (or ``accelerate launch --multi_gpu
--num_processes 2 ...`` with ``use_cpu``). For each job it trains a few steps and, after every optimizer step,
gathers a digest of every parameter and buffer from both processes; rank 0 writes ``OUT_DIR/results.json``
and the final weights of the jobs the test compares with a 1-process run (``OUT_DIR/<job>.pt``).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import conftest  # noqa: E402  (sets HF_HUB_OFFLINE / HF_HOME before transformers is imported)
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch import nn  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from hf_unlearn.trainers import TRAINERS, get_trainer_class  # noqa: E402

STEPS = 3


def tiny_resnet(seed: int) -> nn.Module:
    """A transformers ResNet with BatchNorm (so running statistics must stay identical too)."""
    from transformers import ResNetConfig, ResNetForImageClassification

    torch.manual_seed(seed)
    config = ResNetConfig(num_channels=1, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=3)
    return ResNetForImageClassification(config)


def state_digest(model: nn.Module) -> tuple[str, list[float]]:
    """sha256 over the bytes of every parameter and buffer, and the flat parameters (for diagnostics)."""
    h = hashlib.sha256()
    flat = []
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    for p in model.parameters():
        flat.append(p.detach().reshape(-1).double())
    return h.hexdigest(), torch.cat(flat)


class ReplicaCheck(TrainerCallback):
    """After every optimizer step: are weights and buffers bit-identical on every process?"""

    def __init__(self) -> None:
        self.steps: list[dict] = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        digest, flat = state_digest(model)
        digests = [None] * dist.get_world_size()
        dist.all_gather_object(digests, digest)
        gathered = [torch.zeros_like(flat) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, flat)
        max_diff = max(float((g - gathered[0]).abs().max()) for g in gathered)
        self.steps.append({"step": state.global_step, "identical": len(set(digests)) == 1, "max_abs_diff": max_diff})


def gather_list(values: list) -> list:
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, values)
    return out


def run_job(name: str, method: str, out: Path, *, model: nn.Module, shape, save: bool = False, **overrides) -> dict:
    retain = conftest.make_dataset(16, seed=1, shape=shape)
    forget = conftest.make_dataset(8, seed=2, shape=shape)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = conftest.make_args(
        Path(tempfile.mkdtemp()) / name,
        method=method,
        per_device_train_batch_size=4,
        max_steps=STEPS,
        optim_args="momentum=0.9",
        **overrides,
    )
    check = ReplicaCheck()
    cls = get_trainer_class(method)
    trainer = cls(model=model, args=args, retain_dataset=retain, forget_dataset=forget, callbacks=[check])
    start = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - start
    unwrapped = trainer.accelerator.unwrap_model(trainer.model_wrapped)
    moved = max(float((p.detach() - before[n]).abs().max()) for n, p in unwrapped.named_parameters())
    # Any other module the trainer holds (SCRUB's teacher, a reference model) must not be wrapped in DDP.
    extra_modules = {
        key: type(value).__name__
        for key, value in vars(trainer).items()
        if isinstance(value, nn.Module) and value is not trainer.model and value is not trainer.model_wrapped
    }
    result = {
        "method": method,
        "sharpness": args.sharpness,
        "wrapped": type(trainer.model_wrapped).__name__,
        "distributed_type": str(trainer.accelerator.distributed_type),
        "num_processes": trainer.accelerator.num_processes,
        "steps": check.steps,
        "moved": moved,
        "retain_seen": gather_list(list(retain.accessed)),
        "extra_modules": extra_modules,
        "wall_seconds": wall,
    }
    if save and dist.get_rank() == 0:
        torch.save({n: p.detach().clone() for n, p in unwrapped.named_parameters()}, out / f"{name}.pt")
    return result


def main() -> None:
    out = Path(sys.argv[1])
    torch.set_num_threads(1)
    jobs: dict[str, dict] = {}
    image = (1, 8, 8)
    jobs["finetune_none"] = run_job(
        "finetune_none", "finetune", out, model=conftest.make_model(seed=3), shape=(6,), save=True
    )
    jobs["finetune_sam"] = run_job(
        "finetune_sam", "finetune", out, model=conftest.make_model(seed=3), shape=(6,), save=True,
        sharpness="sam", rho=0.5,
    )
    jobs["neggrad_sam"] = run_job(
        "neggrad_sam", "neggrad", out, model=tiny_resnet(4), shape=image, sharpness="sam", rho=0.1, alpha=0.9
    )
    jobs["sharp_minmax_asam"] = run_job(
        "sharp_minmax_asam", "sharp_minmax", out, model=tiny_resnet(5), shape=image,
        sharpness="asam", rho=1.0, alpha=0.9, mask_ratio=0.5,
    )
    if "scrub" in TRAINERS:
        jobs["scrub_sam"] = run_job(
            "scrub_sam", "scrub", out, model=tiny_resnet(6), shape=image, sharpness="sam", rho=0.1
        )
    if dist.get_rank() == 0:
        with open(out / "results.json", "w", encoding="utf-8") as handle:
            json.dump({"world_size": dist.get_world_size(), "jobs": jobs}, handle, indent=2)
    dist.barrier()


if __name__ == "__main__":
    main()
