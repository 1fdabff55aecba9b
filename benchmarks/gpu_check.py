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
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/gpu_check.py`: make `benchmarks.*` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # resnet18 is built from its architecture; nothing is downloaded
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch

from benchmarks.gpu_check_report import add_ratios, environment, markdown, number, plain, table
from benchmarks.gpu_check_runs import COMPUTE_DTYPE, METHODS, MODELS, PRECISIONS, SUITES, make_data, run_one, split


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
                    f"{number(row['ms_per_step']):>9s} ms/step  loss {row['loss_first']:.4f} -> {row['loss_last']:.4f}  "
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
