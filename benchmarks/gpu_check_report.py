"""gpu_check.py's table: the ratio of each row's step time to SGD's, the rendered rows (plain text and Markdown)
and the software and device the run had."""

from __future__ import annotations

import platform

import torch


def add_ratios(rows: list[dict]) -> None:
    sgd = {(r["model"], r["precision"]): r["ms_per_step"] for r in rows if r["method"] == "SGD"}
    for r in rows:
        base = sgd.get((r["model"], r["precision"]))
        r["ratio_to_sgd"] = r["ms_per_step"] / base if base and r["ms_per_step"] else None


def number(value: float | None, digits: int = 2) -> str:
    """``value`` with ``digits`` decimals, or a dash when it is missing."""
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
                number(r["ms_per_step"]),
                number(r["ratio_to_sgd"]),
                number(r["images_per_second"], 0),
                number(r["loss_first"], 4),
                number(r["loss_last"], 4),
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
