"""GPU check: step time and loss of SGD, SAM, NegGrad+SAM and Sharp MinMax in fp32, bf16 and fp16.

For timm's resnet18 (built without weights, 10 classes, through transformers' TimmWrapper as hf_unlearn loads timm
models) at 32x32 with batch 256, each configuration trains through hf_unlearn's own Trainers (the code path users
run) for ``--warmup`` untimed steps and then ``--steps`` timed optimizer steps. It prints one table (ms per step,
ratio to SGD at the same precision, loss of the first and the last step, finite / decreasing checks) and writes it
to ``OUT/gpu_check.json`` and ``OUT/gpu_check.md``.

    python benchmarks/gpu_check.py --out runs/gpu_check                   # on the GPU (about 1-2 minutes)
    python benchmarks/gpu_check.py --device cpu --steps 3 --out /tmp/gc    # CPU smoke run (batch 32) of the same code

Methods: SGD = ``pretrain`` (plain SGD, momentum 0.9); SAM = ``pretrain`` with ``sharpness=sam`` (rho 0.05);
NegGrad+SAM = ``neggrad`` (alpha 0.99) with ``sharpness=sam``; Sharp MinMax = ``sharp_minmax`` with
``sharpness=asam`` (rho 1.0, alpha 0.95, mask ratio 0.5; the saliency mask is computed before timing). NegGrad and
Sharp MinMax train on (retain, forget) pairs: 10% of the data is the forget set.

Data: ``digits`` (scikit-learn's 1,797 real 8x8 digits, upsampled to 32x32, 3 channels; embedded, no network) or
``random`` (10 random class templates plus noise: learnable, so the pretrain loss still decreases).

Timing: CUDA is synchronised at the start and the end of every optimizer step (Trainer callbacks), so a step's time
is its forward / backward passes, hf_unlearn's gradient composition and the optimizer step; data loading is outside.
The median over the timed steps is reported. On the CPU (a smoke run of the code path, not a CPU benchmark),
accelerate has no fp16 AMP, so the fp16 rows use a CPU GradScaler with float32 compute: the scaled-gradient path
of the GPU (scaled first pass, one unscale, skip on overflow) without CPU float16 kernels, which are very slow.
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
    "NegGrad+SAM": ("neggrad", {"sharpness": "sam", "rho": 0.05, "alpha": 0.99}),
    "Sharp MinMax": ("sharp_minmax", {"sharpness": "asam", "rho": 1.0, "alpha": 0.95, "mask_ratio": 0.5}),
}
PRECISIONS = ("fp32", "bf16", "fp16")
NUM_CLASSES = 10


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


def build_model(seed: int):
    from hf_unlearn.models import build_model_from_config

    return build_model_from_config(
        {"model_type": "timm_wrapper", "architecture": "resnet18"}, [str(i) for i in range(NUM_CLASSES)], seed
    )


def run_one(label: str, precision: str, data, args, device: str) -> dict:
    from transformers import TrainerCallback

    from hf_unlearn.args import UnlearnArguments
    from hf_unlearn.trainers import get_trainer_class

    method, settings = METHODS[label]
    everything, retain, forget = data
    total = args.warmup + args.steps
    cuda = device == "cuda"

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
    model = build_model(args.seed)
    training_args = UnlearnArguments(
        output_dir=tempfile.mkdtemp(prefix="gpu_check_"),
        method=method,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size,
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
    if precision == "fp16" and not cuda:
        # accelerate has no fp16 AMP on the CPU. Smoke-test the GradScaler path (scaled first-pass gradients,
        # unscale once, skip on overflow) with float32 compute: CPU float16 convolutions are ~50x slower.
        from accelerate.utils import AutocastKwargs

        trainer.accelerator.native_amp = True
        trainer.accelerator.autocast_handler = AutocastKwargs(enabled=False)
        trainer.accelerator.scaler = torch.amp.GradScaler("cpu")
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
    setup_seconds = time.perf_counter() - build_start
    train_start = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - train_start
    values = [float(v) for v in torch.stack(losses).float().cpu()]
    timed = timer.times[args.warmup :]
    scaler = trainer.accelerator.scaler
    k = min(3, max(1, len(values) // 2))
    return {
        "method": label,
        "hf_unlearn_method": method,
        "settings": settings,
        "precision": precision,
        "steps_timed": len(timed),
        "ms_per_step": 1000 * statistics.median(timed) if timed else None,
        "ms_per_step_min": 1000 * min(timed) if timed else None,
        "images_per_second": args.batch_size / statistics.median(timed) if timed else None,
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
    sgd = {r["precision"]: r["ms_per_step"] for r in rows if r["method"] == "SGD"}
    for r in rows:
        base = sgd.get(r["precision"])
        r["ratio_to_sgd"] = r["ms_per_step"] / base if base and r["ms_per_step"] else None


def _f(value, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def table(rows: list[dict]) -> list[list[str]]:
    out = [["method", "precision", "ms/step", "x SGD", "img/s", "loss first", "loss last", "finite", "decreasing"]]
    for r in rows:
        out.append(
            [
                r["method"],
                r["precision"],
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
    else:
        info["cpu_threads"] = torch.get_num_threads()
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=20, help="Timed optimizer steps per configuration.")
    parser.add_argument("--warmup", type=int, default=None, help="Untimed steps first (default: 5 on cuda, 1 on cpu).")
    parser.add_argument("--batch-size", type=int, default=None, help="Default: 256 on cuda, 32 on cpu.")
    parser.add_argument("--image-size", type=int, default=32)
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
    parser.add_argument("--precisions", default=",".join(PRECISIONS), help="Comma-separated subset of fp32,bf16,fp16.")
    parser.add_argument("--out", type=Path, required=True, help="Folder for gpu_check.json and gpu_check.md.")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but no GPU is visible; use --device cpu for the smoke run")
    args.warmup = (5 if args.device == "cuda" else 1) if args.warmup is None else args.warmup
    args.batch_size = (256 if args.device == "cuda" else 32) if args.batch_size is None else args.batch_size
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    for m in methods:
        if m not in METHODS:
            parser.error(f"unknown method {m!r}; choose from {', '.join(METHODS)}")
    for p in precisions:
        if p not in PRECISIONS:
            parser.error(f"unknown precision {p!r}; choose from {', '.join(PRECISIONS)}")
    if args.device == "cuda":
        torch.backends.cudnn.benchmark = True
    if args.threads is not None or args.device == "cpu":
        torch.set_num_threads(args.threads or 1)
    import transformers

    transformers.logging.set_verbosity_error()
    start = time.perf_counter()
    x, y = make_data(args.data, args.image_size, args.batch_size * (args.steps + args.warmup), args.seed)
    data = split(x, y, args.seed)
    rows = []
    for precision in precisions:
        for label in methods:
            row = run_one(label, precision, data, args, args.device)
            rows.append(row)
            print(
                f"{label:13s} {precision:5s} {_f(row['ms_per_step']):>9s} ms/step  loss {row['loss_first']:.4f} -> "
                f"{row['loss_last']:.4f}  (setup {row['setup_seconds']:.1f} s, train {row['train_seconds']:.1f} s)",
                flush=True,
            )
    add_ratios(rows)
    total = time.perf_counter() - start
    env = environment(args.device)
    rendered = table(rows)
    header = (
        f"# hf_unlearn gpu_check: timm resnet18, {args.image_size}x{args.image_size}, batch {args.batch_size}, "
        f"{args.data} data, {args.steps} timed steps after {args.warmup} warmup steps\n\n"
        f"device: {env.get('gpu', 'cpu')}; torch {env['torch']}, transformers {env['transformers']}, "
        f"accelerate {env['accelerate']}, timm {env['timm']}; total {total:.0f} s"
    )
    print()
    print(header.replace("# ", "", 1))
    print()
    print(plain(rendered))
    failures = [f"{r['method']} {r['precision']}: non-finite loss" for r in rows if not r["finite"]]
    if args.steps + args.warmup >= 10:  # a few smoke-run steps are too noisy to judge
        failures += [
            f"{r['method']} {r['precision']}: pretraining loss did not decrease"
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
