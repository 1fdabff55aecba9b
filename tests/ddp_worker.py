"""Worker of tests/test_distributed.py: one launch of 2 gloo processes runs every multi-process check.

Launched as ``torchrun --nproc_per_node 2 tests/ddp_worker.py OUT_DIR`` (or ``accelerate launch --multi_gpu
--num_processes 2 ...`` with ``use_cpu``). For each job it trains a few steps and, after every optimizer step,
gathers a digest of every parameter and buffer from both processes; rank 0 writes ``OUT_DIR/results.json``
and the final weights of the jobs the test compares with a 1-process run (``OUT_DIR/<job>.pt``).
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

import conftest  # the tests' helpers: Python puts a script's own folder (tests/) first on sys.path
import torch
import torch.distributed as dist
from torch import nn
from transformers import TrainerCallback

from hf_unlearn.trainers import collective, get_trainer_class, masking

STEPS = 3
ALL_REDUCE_CALLS = [0]


def _counting_all_reduce(tensor, *args, **kwargs):
    """hf_unlearn's own gradient all-reduce, counted (DDP's reducer would not go through here)."""
    ALL_REDUCE_CALLS[0] += 1
    return _all_reduce(tensor, *args, **kwargs)


_all_reduce = dist.all_reduce


def tiny_resnet(seed: int) -> nn.Module:
    """A transformers ResNet with BatchNorm (so running statistics must stay identical too)."""
    from transformers import ResNetConfig, ResNetForImageClassification

    torch.manual_seed(seed)
    config = ResNetConfig(num_channels=1, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=3)
    return ResNetForImageClassification(config)


def state_digest(model: nn.Module) -> tuple[str, torch.Tensor]:
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
        self.all_reduce_seen = ALL_REDUCE_CALLS[0]

    def on_step_end(self, args, state, control, model=None, **kwargs):
        all_reduces = ALL_REDUCE_CALLS[0] - self.all_reduce_seen
        self.all_reduce_seen = ALL_REDUCE_CALLS[0]
        digest, flat = state_digest(model)
        digests = [None] * dist.get_world_size()
        dist.all_gather_object(digests, digest)
        gathered = [torch.zeros_like(flat) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, flat)
        max_diff = max(float((g - gathered[0]).abs().max()) for g in gathered)
        self.steps.append(
            {
                "step": state.global_step,
                "identical": len(set(digests)) == 1,
                "max_abs_diff": max_diff,
                "all_reduces": all_reduces,
            }
        )


def gather_list(values: list) -> list:
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, values)
    return out


# Settings shared with the 1-process comparison in test_distributed.py.
COMMON = {"per_device_train_batch_size": 4, "max_steps": STEPS, "optim_args": "momentum=0.9"}
# Jobs compared with a 1-process run with gradient accumulation 2: name -> (method, model seed, overrides).
COMPARED = {
    "finetune_none": ("finetune", 3, {}),
    "finetune_sam": ("finetune", 3, {"sharpness": "sam", "rho": 0.5}),
    # A parameter no loss uses keeps grad None on every process: weight decay and momentum must not move it.
    "finetune_unused": ("finetune", 3, {"weight_decay": 0.5, "unused_parameter": True}),
}
# Methods with random forget draws or random labels: per-item draws from (seed, epoch) streams, so 2 processes draw
# what 1 process with gradient accumulation 2 draws, with 0 and with 2 DataLoader workers.
for _workers in (0, 2):
    for _method, _extra in (
        ("neggrad", {"alpha": 0.8}),
        ("sharp_minmax", {"alpha": 0.8, "sharpness": "sam", "rho": 0.5, "mask_ratio": 0.5}),
        ("random_label", {}),
        ("salun", {"mask_ratio": 0.5}),
    ):
        COMPARED[f"{_method}_w{_workers}"] = (_method, 7, {**_extra, "dataloader_num_workers": _workers})
TINY_SHAPE = (6,)


def compared_model(seed: int, overrides: dict) -> nn.Module:
    """The model of a COMPARED job (with an extra parameter no loss uses for ``unused_parameter``)."""
    model = conftest.make_model(seed=seed)
    if overrides.get("unused_parameter"):
        model.unused = nn.Parameter(torch.ones(3))
    return model


def mask_broadcast() -> dict:
    """Every process computes a different mask; after `broadcast_mask` all hold process 0's."""
    mask = {"w": torch.arange(6).reshape(2, 3) % (2 + dist.get_rank()) == 0, "b": torch.tensor([dist.get_rank() == 0])}
    got = masking.broadcast_mask(mask)
    return {"masks": gather_list([{k: v.tolist() for k, v in sorted(got.items())}])}


# Evaluation: 13 samples (not a multiple of 2 processes x batch 4), with 0 and 2 DataLoader workers.
EVAL_SIZE = 13


def sharded_evaluation(out: Path) -> dict:
    """`predict_probabilities(distributed=True)`: each process predicts a shard; all get the whole result."""
    from hf_unlearn.metrics import predict_probabilities

    data = conftest.make_dataset(EVAL_SIZE, seed=9, shape=(1, 8, 8))
    model = tiny_resnet(8)
    results = {}
    for workers in (0, 2):
        data.accessed.clear()
        probs, labels = predict_probabilities(model, data, batch_size=4, num_workers=workers, distributed=True)
        results[workers] = {"probs": probs.tolist(), "labels": labels.tolist()}
        if workers == 0:
            seen = gather_list(sorted(data.accessed))
    if dist.get_rank() == 0:
        torch.save(model.state_dict(), out / "evaluation_model.pt")
    return {"results": gather_list([results]), "seen": seen}


def datasets(shape):
    return conftest.make_dataset(16, seed=1, shape=shape), conftest.make_dataset(8, seed=2, shape=shape)


def run_job(name: str, method: str, out: Path, *, model: nn.Module, shape, save: bool = False, **overrides) -> dict:
    retain, forget = datasets(shape)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    initial_digest = state_digest(model)[0]
    args = conftest.make_args(Path(tempfile.mkdtemp()) / name, method=method, **COMMON, **overrides)
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
        key: {
            "type": type(value).__name__,
            "ddp_wrapped": isinstance(value, nn.parallel.DistributedDataParallel),
            "unchanged": state_digest(value)[0] == initial_digest,
            "trainable": any(p.requires_grad for p in value.parameters()),
        }
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
        "forget_seen": gather_list(list(forget.accessed)),
        "extra_modules": extra_modules,
        "wall_seconds": wall,
    }
    if save and dist.get_rank() == 0:
        torch.save({n: p.detach().clone() for n, p in unwrapped.named_parameters()}, out / f"{name}.pt")
    return result


# A whole `hf-unlearn run` under DDP: every process runs the pipeline, only the main one writes stages.
PIPELINE_RECIPE = conftest.tiny_recipe(
    name="ddp",
    forget={"kind": "random", "size": 0.1},
    **{
        "data.transforms": "manual",
        "pretrain.epochs": 1,
        "unlearn.defaults.epochs": 1,
        "unlearn.runs": [{"method": "neggrad", "sharpness": "sam", "rho": 0.1, "alpha": 0.95}],
        "evaluation.mia_shadow_size": 100,
    },
)


def run_pipeline(out: Path) -> dict:
    from hf_unlearn.pipeline import Pipeline
    from hf_unlearn.recipe import validate

    start = time.perf_counter()
    report = Pipeline(validate(PIPELINE_RECIPE), out, use_cpu=True).run()
    text = json.dumps({k: v for k, v in report.items() if k != "models"}, sort_keys=True, default=str)
    accuracies = json.dumps({k: m["accuracy"] for k, m in report["models"].items()}, sort_keys=True)
    return {
        "output_dir": str(out),
        "runs": sorted(report["models"]),
        "reports": gather_list([hashlib.sha256((text + accuracies).encode()).hexdigest()]),
        "wall_seconds": time.perf_counter() - start,
    }


def main() -> None:
    out = Path(sys.argv[1])
    torch.set_num_threads(1)
    collective.dist.all_reduce = _counting_all_reduce  # the step's gradient all-reduce (trainers/collective.py)
    jobs: dict[str, dict] = {}
    image = (1, 8, 8)
    for name, (method, seed, overrides) in COMPARED.items():
        jobs[name] = run_job(
            name,
            method,
            out,
            model=compared_model(seed, overrides),
            shape=TINY_SHAPE,
            save=True,
            **{k: v for k, v in overrides.items() if k != "unused_parameter"},
        )
    jobs["mask_broadcast"] = mask_broadcast()
    jobs["evaluation"] = sharded_evaluation(out)
    jobs["neggrad_sam"] = run_job(
        "neggrad_sam", "neggrad", out, model=tiny_resnet(4), shape=image, sharpness="sam", rho=0.1, alpha=0.9
    )
    jobs["sharp_minmax_asam"] = run_job(
        "sharp_minmax_asam",
        "sharp_minmax",
        out,
        model=tiny_resnet(5),
        shape=image,
        sharpness="asam",
        rho=1.0,
        alpha=0.9,
        mask_ratio=0.5,
    )
    jobs["scrub_sam"] = run_job("scrub_sam", "scrub", out, model=tiny_resnet(6), shape=image, sharpness="sam", rho=0.1)
    jobs["pipeline"] = run_pipeline(out / "pipeline")
    if dist.get_rank() == 0:
        with open(out / "results.json", "w", encoding="utf-8") as handle:
            json.dump({"world_size": dist.get_world_size(), "jobs": jobs}, handle, indent=2)
    dist.barrier()


if __name__ == "__main__":
    main()
