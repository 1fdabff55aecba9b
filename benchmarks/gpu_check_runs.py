"""gpu_check.py's configurations and one timed run: the methods, precisions and models it benchmarks, the data
(digits or random class templates) and `run_one`, which trains one (model, method, precision) through
hf_unlearn's own Trainers and records its step time, losses and the dtype the forward passes computed in."""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from benchmarks.common import Sync, build_classifier, quiet, sgd_arguments, step_timer, whole_cycles

METHODS = {  # label -> (hf_unlearn method, settings)
    "SGD": ("pretrain", {"sharpness": "none"}),
    "SAM": ("pretrain", {"sharpness": "sam", "rho": 0.05}),
    "SAM every 5": ("pretrain", {"sharpness": "sam", "rho": 0.05, "sam_every": 5}),
    "NegGrad+SAM": ("neggrad", {"sharpness": "sam", "rho": 0.05, "alpha": 0.99}),
    "Sharp MinMax": ("sharp_minmax", {"sharpness": "asam", "rho": 1.0, "alpha": 0.95, "mask_ratio": 0.5}),
}
PRECISIONS = ("fp32", "bf16", "fp16")
COMPUTE_DTYPE = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
NUM_CLASSES = 10


@dataclass(frozen=True)
class ModelSpec:
    """One benchmarked model: its hf_unlearn ``model.config``, input size, GPU batch size and memory format."""

    name: str
    config: dict
    image_size: int
    batch_size: int
    channels_last: bool = False


MODELS = {
    "resnet18-32": ModelSpec("resnet18-32", {"model_type": "timm_wrapper", "architecture": "resnet18"}, 32, 256),
    "resnet50-224": ModelSpec(
        "resnet50-224", {"model_type": "timm_wrapper", "architecture": "resnet50"}, 224, 128, channels_last=True
    ),
    "vit-b16-224": ModelSpec("vit-b16-224", {"model_type": "vit", "image_size": 224, "patch_size": 16}, 224, 128),
}
SUITES = {"small": ["resnet18-32"], "realistic": ["resnet50-224", "vit-b16-224"]}
SUITES["all"] = SUITES["small"] + SUITES["realistic"]


def make_data(kind: str, image_size: int, min_samples: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    if kind == "digits":
        from sklearn.datasets import load_digits

        bunch = load_digits()
        x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
        x = ((x - 0.5) / 0.5).expand(-1, 3, -1, -1).contiguous()
        y = torch.tensor(bunch.target, dtype=torch.long)
    else:
        n = max(min_samples, 2048)
        templates = torch.randn(NUM_CLASSES, 3, image_size, image_size, generator=g)
        y = torch.randint(NUM_CLASSES, (n,), generator=g)
        x = templates[y] + 1.5 * torch.randn(n, 3, image_size, image_size, generator=g)
    return x, y


def split(x: torch.Tensor, y: torch.Tensor, seed: int):
    """(all, retain, forget) as `TensorImageDataset`s: a random 10% forget set."""
    from hf_unlearn.data import TensorImageDataset

    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed + 1))
    n_forget = len(y) // 10
    forget, retain = perm[:n_forget], perm[n_forget:]
    return TensorImageDataset(x, y), TensorImageDataset(x[retain], y[retain]), TensorImageDataset(x[forget], y[forget])


def build_model(spec: ModelSpec, seed: int):
    model = build_classifier(spec.config, NUM_CLASSES, seed)
    if spec.channels_last:  # cuDNN's NHWC convolutions: faster for ResNets under bf16 / fp16 on recent GPUs
        model = model.to(memory_format=torch.channels_last)
    return model


def run_one(spec: ModelSpec, label: str, precision: str, data, args, device: str) -> dict:
    from hf_unlearn.args import UnlearnArguments
    from hf_unlearn.trainers import get_trainer_class

    method, settings = METHODS[label]
    everything, retain, forget = data
    warmup, steps = args.warmup, args.steps
    every = settings.get("sam_every", 1)
    if every > 1:  # whole cycles of one full and every - 1 cheap steps, each run starting with a full one
        warmup, steps = whole_cycles(warmup, every), whole_cycles(steps, every)
    total = warmup + steps
    cuda = device == "cuda"
    batch_size = spec.batch_size if args.batch_size is None else args.batch_size

    build_start = time.perf_counter()
    model = build_model(spec, args.seed)
    # What autocast really applied: the output dtype of the model's first convolution / linear layer in each
    # forward (the logits may be cast back to float32 by the wrapper, so they do not tell).
    compute_dtypes: list[torch.dtype] = []
    first = next(m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    first.register_forward_hook(lambda m, i, out: compute_dtypes.append(out.dtype))
    training_args = UnlearnArguments(
        output_dir=tempfile.mkdtemp(prefix="gpu_check_"),
        method=method,
        **sgd_arguments(
            batch_size=batch_size, max_steps=total, learning_rate=args.lr, use_cpu=not cuda, seed=args.seed
        ),
        per_device_eval_batch_size=batch_size,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        dataloader_drop_last=True,  # digits: 1797 = 7 x 256 + 5; a 5-sample BatchNorm batch makes the loss spike
        dataloader_pin_memory=cuda,
        **settings,
    )
    timer = step_timer(Sync(device))
    cls = get_trainer_class(method)
    if method == "pretrain":
        trainer = cls(model=model, args=training_args, retain_dataset=everything, callbacks=[timer])
    else:
        trainer = cls(model=model, args=training_args, retain_dataset=retain, forget_dataset=forget, callbacks=[timer])
    quiet(trainer)  # the end-of-training metrics line; the table says it all
    losses: list[torch.Tensor] = []
    training_step = trainer.training_step

    def recording_step(*a, **k):
        loss = training_step(*a, **k)
        losses.append(loss.detach())
        return loss

    trainer.training_step = recording_step
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    compute_dtypes.clear()  # the saliency mask's forward passes (eval, no autocast) are not training steps
    setup_seconds = time.perf_counter() - build_start
    train_start = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - train_start
    values = [float(v) for v in torch.stack(losses).float().cpu()]
    timed = timer.durations[warmup:]
    step_time = (statistics.fmean if every > 1 else statistics.median)(timed) if timed else None
    scaler = trainer.accelerator.scaler
    k = min(3, max(1, len(values) // 2))
    seen = sorted({str(d).removeprefix("torch.") for d in compute_dtypes})
    return {
        "model": spec.name,
        "method": label,
        "hf_unlearn_method": method,
        "settings": settings,
        "precision": precision,
        "compute_dtypes": seen,
        "precision_applied": seen == [COMPUTE_DTYPE[precision]],
        "channels_last": spec.channels_last,
        "image_size": spec.image_size,
        "batch_size": batch_size,
        "steps_timed": len(timed),
        "ms_per_step": 1000 * step_time if step_time else None,
        "ms_per_step_min": 1000 * min(timed) if timed else None,
        "images_per_second": batch_size / step_time if step_time else None,
        "loss_first": values[0],
        "loss_last": values[-1],
        "loss_step_20": values[19] if len(values) >= 20 else None,  # the loss of the 20th optimizer step
        "losses": values,
        "finite": all(math.isfinite(v) for v in values),
        # Mean of the last k losses below the mean of the first k (judged only with >= 10 steps: see main).
        "decreasing": statistics.fmean(values[-k:]) < statistics.fmean(values[:k]),
        "fp16_loss_scale": None if scaler is None else float(scaler.get_scale()),
        "peak_memory_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
        "setup_seconds": setup_seconds,
        "train_seconds": train_seconds,
    }
