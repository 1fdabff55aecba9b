"""GPU check: step time and loss of SGD, SAM, the cheap SAM, NegGrad+SAM and Sharp MinMax in fp32, bf16 and fp16.

Each configuration trains through hf_unlearn's own Trainers (the code path users run) for ``--warmup`` untimed steps
and then ``--steps`` timed optimizer steps. Models (``--suite``):

- ``small``: timm's resnet18 (built without weights, 10 classes, through transformers' TimmWrapper as hf_unlearn
  loads timm models) at 32x32, batch 256;
- ``realistic``: timm's resnet50 at 224x224, batch 128, channels_last; and a ViT-B/16 built from transformers'
  ``ViTConfig`` (its defaults are ViT-B/16 at 224x224), batch 128;
- ``all``: both.

It prints one table (ms per step, ratio to SGD for the same model and precision, images per second, loss of the
first and the last step, finite / decreasing checks, the dtype the forward passes really computed in) and writes it to
``OUT/gpu_check.json`` and ``OUT/gpu_check.md``.

    python benchmarks/gpu_check.py --suite all --out runs/gpu_check           # on a GPU
    python benchmarks/gpu_check.py --device cpu --steps 3 --out /tmp/gc        # CPU smoke run of the same code path

A benchmark runs where it says or stops: without a visible GPU, ``--device cuda`` (the default) stops with one line
(exit 2) instead of quietly running on the CPU. A precision is labelled only when it was applied: the output dtype
of the model's first convolution / linear layer in the training forward passes is recorded in every row
(``compute``), and a row whose compute dtype is not the requested one fails the check. fp16 needs CUDA (accelerate has no fp16 autocast on the CPU), so the CPU
smoke run offers fp32 and bf16 only.

Methods: SGD = ``pretrain`` (plain SGD, momentum 0.9); SAM = ``pretrain`` with ``sharpness=sam`` (rho 0.05);
SAM every 5 = the same with ``sam_every=5`` (a full SAM step every 5 steps, one-pass LookSAM steps in between: the
timed steps are whole cycles and their *mean* is reported, as the cost per step averages over the cycle);
NegGrad+SAM = ``neggrad`` (alpha 0.99) with ``sharpness=sam``; Sharp MinMax = ``sharp_minmax`` with
``sharpness=asam`` (rho 1.0, alpha 0.95, mask ratio 0.5; the saliency mask is computed before timing). NegGrad and
Sharp MinMax train on (retain, forget) pairs: 10% of the data is the forget set.

Data: ``digits`` (scikit-learn's 1,797 real 8x8 digits, upsampled to the model's size, 3 channels; embedded, no
network) or ``random`` (10 random class templates plus noise: learnable, so the pretrain loss still decreases).

Timing: CUDA is synchronised at the start and the end of every optimizer step (Trainer callbacks), so a step's time
is its forward / backward passes, hf_unlearn's gradient composition and the optimizer step; data loading is outside.
The median over the timed steps is reported (the mean for SAM every 5).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # resnet18 is built from its architecture; nothing is downloaded
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

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


class Items(Dataset):
    """``{"pixel_values", "labels"}`` items of two tensors, with a batched fetch (one indexing op per batch)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"pixel_values": self.x[i], "labels": self.y[i]}

    def __getitems__(self, indices: list[int]) -> list[dict[str, torch.Tensor]]:
        idx = torch.as_tensor(indices)
        return [
            {"pixel_values": x, "labels": y} for x, y in zip(self.x[idx].unbind(0), self.y[idx].unbind(0), strict=False)
        ]


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


def split(x: torch.Tensor, y: torch.Tensor, seed: int) -> tuple[Items, Items, Items]:
    """(all, retain, forget): a random 10% forget set."""
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed + 1))
    n_forget = len(y) // 10
    forget, retain = perm[:n_forget], perm[n_forget:]
    return Items(x, y), Items(x[retain], y[retain]), Items(x[forget], y[forget])


def build_model(spec: ModelSpec, seed: int):
    from hf_unlearn.models import build_model_from_config

    model = build_model_from_config(dict(spec.config), [str(i) for i in range(NUM_CLASSES)], seed)
    if spec.channels_last:  # cuDNN's NHWC convolutions: faster for ResNets under bf16 / fp16 on recent GPUs
        model = model.to(memory_format=torch.channels_last)
    return model


def run_one(spec: ModelSpec, label: str, precision: str, data, args, device: str) -> dict:
    from transformers import TrainerCallback

    from hf_unlearn.args import UnlearnArguments
    from hf_unlearn.trainers import get_trainer_class

    method, settings = METHODS[label]
    everything, retain, forget = data
    warmup, steps = args.warmup, args.steps
    every = settings.get("sam_every", 1)
    if every > 1:  # whole cycles of one full and every - 1 cheap steps, each run starting with a full one
        warmup, steps = -(-warmup // every) * every, -(-steps // every) * every
    total = warmup + steps
    cuda = device == "cuda"
    batch_size = spec.batch_size if args.batch_size is None else args.batch_size

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.start = 0.0

        def on_step_begin(self, a, state, control, **kwargs):
            sync()
            self.start = time.perf_counter()

        def on_step_end(self, a, state, control, **kwargs):
            sync()
            self.times.append(time.perf_counter() - self.start)

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
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size,
        max_steps=total,
        learning_rate=args.lr,
        optim="sgd",
        optim_args="momentum=0.9",
        weight_decay=5e-4,
        lr_scheduler_type="constant",
        max_grad_norm=0.0,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=not cuda,
        report_to="none",
        disable_tqdm=True,
        logging_strategy="no",
        save_strategy="no",
        dataloader_num_workers=0,
        dataloader_drop_last=True,  # digits: 1797 = 7 x 256 + 5; a 5-sample BatchNorm batch makes the loss spike
        dataloader_pin_memory=cuda,
        seed=args.seed,
        **settings,
    )
    timer = StepTimer()
    cls = get_trainer_class(method)
    if method == "pretrain":
        trainer = cls(model=model, args=training_args, retain_dataset=everything, callbacks=[timer])
    else:
        trainer = cls(model=model, args=training_args, retain_dataset=retain, forget_dataset=forget, callbacks=[timer])
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # the end-of-training metrics line; the table says it all
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
    timed = timer.times[warmup:]
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


def add_ratios(rows: list[dict]) -> None:
    sgd = {(r["model"], r["precision"]): r["ms_per_step"] for r in rows if r["method"] == "SGD"}
    for r in rows:
        base = sgd.get((r["model"], r["precision"]))
        r["ratio_to_sgd"] = r["ms_per_step"] / base if base and r["ms_per_step"] else None


def _f(value, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def table(rows: list[dict]) -> list[list[str]]:
    header = ["model", "method", "precision", "compute", "ms/step", "x SGD", "img/s", "loss first", "loss last"]
    out = [[*header, "finite", "decreasing"]]
    for r in rows:
        out.append(
            [
                r["model"],
                r["method"],
                r["precision"],
                "/".join(r["compute_dtypes"]) + ("" if r["precision_applied"] else " (NOT APPLIED)"),
                _f(r["ms_per_step"]),
                _f(r["ratio_to_sgd"]),
                _f(r["images_per_second"], 0),
                _f(r["loss_first"], 4),
                _f(r["loss_last"], 4),
                "yes" if r["finite"] else "NO",
                # Only pretraining minimises a plain loss; unlearning objectives (retain - forget) need not decrease.
                ("yes" if r["decreasing"] else "no") if r["hf_unlearn_method"] == "pretrain" else "n/a",
            ]
        )
    return out


def plain(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(rows: list[list[str]], header: str) -> str:
    lines = [header, "", "| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    return "\n".join(lines) + "\n"


def environment(device: str) -> dict:
    import accelerate
    import timm
    import transformers

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "timm": timm.__version__,
        "device": device,
    }
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
        info["bf16_supported"] = torch.cuda.is_bf16_supported()
        # "fp32" convolutions run in TF32 on Ampere and newer when cuDNN allows it (PyTorch's default).
        info["cudnn_allow_tf32"] = torch.backends.cudnn.allow_tf32
        info["matmul_allow_tf32"] = torch.backends.cuda.matmul.allow_tf32
    else:
        info["cpu_threads"] = torch.get_num_threads()
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--device", choices=["cuda", "cpu"], default="cuda", help="cuda (default; stops if none) or cpu (smoke run)"
    )
    parser.add_argument("--suite", choices=list(SUITES), default="small", help="Models: " + str(SUITES))
    parser.add_argument("--steps", type=int, default=20, help="Timed optimizer steps per configuration.")
    parser.add_argument("--warmup", type=int, default=None, help="Untimed steps first (default: 5 on cuda, 1 on cpu).")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="Default: the model's (256 at 32x32, 128 at 224x224) on cuda, 8 on cpu.",
    )
    parser.add_argument("--data", choices=["digits", "random"], default="digits")
    parser.add_argument(
        "--lr",
        type=float,
        default=0.01,
        help="Learning rate (0.05 made the SGD loss rise over the first 25 steps on the H100).",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads of torch (default: torch's own on cuda, 1 on cpu: the CPU mode is a smoke run of the code "
        "path, not a CPU benchmark, and a single thread avoids OpenMP stalls on a busy machine).",
    )
    parser.add_argument("--methods", default=",".join(METHODS), help="Comma-separated subset of: " + ", ".join(METHODS))
    parser.add_argument(
        "--precisions",
        default=None,
        help="Comma-separated subset of fp32,bf16,fp16 (default: all on cuda, fp32,bf16 on cpu).",
    )
    parser.add_argument("--out", type=Path, required=True, help="Folder for gpu_check.json and gpu_check.md.")
    args = parser.parse_args(argv)

    def stop(message: str) -> int:  # one line, no usage dump, no traceback
        print(f"gpu_check.py: error: {message}", file=sys.stderr)
        return 2

    if args.device == "cuda" and not torch.cuda.is_available():
        return stop("no GPU is visible (torch.cuda.is_available() is False); use --device cpu for a smoke run")
    args.warmup = (5 if args.device == "cuda" else 1) if args.warmup is None else args.warmup
    if args.batch_size is None and args.device == "cpu":
        args.batch_size = 8
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    default_precisions = PRECISIONS if args.device == "cuda" else ("fp32", "bf16")
    precisions = [p.strip() for p in (args.precisions or ",".join(default_precisions)).split(",") if p.strip()]
    for m in methods:
        if m not in METHODS:
            return stop(f"unknown method {m!r}; choose from {', '.join(METHODS)}")
    for p in precisions:
        if p not in PRECISIONS:
            return stop(f"unknown precision {p!r}; choose from {', '.join(PRECISIONS)}")
    if "fp16" in precisions and args.device == "cpu":
        return stop("fp16 needs CUDA (accelerate has no fp16 autocast on the CPU); use --precisions fp32,bf16")
    if "bf16" in precisions and args.device == "cuda" and not torch.cuda.is_bf16_supported():
        return stop("this GPU does not support bf16; use --precisions fp32,fp16")
    if args.device == "cuda":
        torch.backends.cudnn.benchmark = True
    if args.threads is not None or args.device == "cpu":
        torch.set_num_threads(args.threads or 1)
    import transformers

    transformers.logging.set_verbosity_error()
    start = time.perf_counter()
    rows = []
    for name in SUITES[args.suite]:
        spec = MODELS[name]
        batch = spec.batch_size if args.batch_size is None else args.batch_size
        x, y = make_data(args.data, spec.image_size, batch * (args.steps + 2 * args.warmup + 10), args.seed)
        data = split(x, y, args.seed)
        for precision in precisions:
            for label in methods:
                row = run_one(spec, label, precision, data, args, args.device)
                rows.append(row)
                print(
                    f"{name:13s} {label:13s} {precision:5s} ({'/'.join(row['compute_dtypes'])}) "
                    f"{_f(row['ms_per_step']):>9s} ms/step  loss {row['loss_first']:.4f} -> {row['loss_last']:.4f}  "
                    f"(setup {row['setup_seconds']:.1f} s, train {row['train_seconds']:.1f} s)",
                    flush=True,
                )
            if args.device == "cuda":
                torch.cuda.empty_cache()
    add_ratios(rows)
    total = time.perf_counter() - start
    env = environment(args.device)
    rendered = table(rows)
    models = ", ".join(
        f"{MODELS[n].name} (batch {args.batch_size or MODELS[n].batch_size}"
        f"{', channels_last' if MODELS[n].channels_last else ''})"
        for n in SUITES[args.suite]
    )
    header = (
        f"# hf_unlearn gpu_check: {models}; {args.data} data, {args.steps} timed steps after {args.warmup} "
        f"warmup steps\n\n"
        f"device: {env.get('gpu', 'cpu')}; torch {env['torch']}, transformers {env['transformers']}, "
        f"accelerate {env['accelerate']}, timm {env['timm']}; total {total:.0f} s"
    )
    print()
    print(header.replace("# ", "", 1))
    print()
    print(plain(rendered))
    failures = [f"{r['model']} {r['method']} {r['precision']}: non-finite loss" for r in rows if not r["finite"]]
    failures += [
        f"{r['model']} {r['method']} {r['precision']}: computed in {r['compute_dtypes']}, not "
        f"{COMPUTE_DTYPE[r['precision']]}"
        for r in rows
        if not r["precision_applied"]
    ]
    if args.steps + args.warmup >= 10:  # a few smoke-run steps are too noisy to judge
        failures += [
            f"{r['model']} {r['method']} {r['precision']}: pretraining loss did not decrease"
            for r in rows
            if r["hf_unlearn_method"] == "pretrain" and not r["decreasing"]
        ]
    for failure in failures:
        print(f"CHECK FAILED: {failure}")
    args.out.mkdir(parents=True, exist_ok=True)
    record = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "environment": env,
        "total_seconds": total,
        "rows": rows,
        "failures": failures,
    }
    (args.out / "gpu_check.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    (args.out / "gpu_check.md").write_text(markdown(rendered, header), encoding="utf-8")
    print(f"\nWrote {args.out / 'gpu_check.json'} and {args.out / 'gpu_check.md'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
