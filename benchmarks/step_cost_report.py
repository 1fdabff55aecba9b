"""step_cost.py's summary (medians of paired per-repeat ratios) and printout: one table per model, the
cross-update ratios, and the kernel-op line."""

from __future__ import annotations

import statistics
from typing import Any

from benchmarks.step_cost_runs import Result
from benchmarks.step_cost_setup import MIB


def paired_median(num: list[float], den: list[float]) -> float:
    return statistics.median(a / b for a, b in zip(num, den, strict=True))


def paired_range(num: list[float], den: list[float]) -> list[float]:
    """[min, max] of the per-repeat ratios: the spread that load from other processes left in ``paired_median``."""
    ratios = [a / b for a, b in zip(num, den, strict=True)]
    return [min(ratios), max(ratios)]


def summarize(bench: dict[str, Any], updates: list[str]) -> dict[str, Any]:
    res: dict[str, Result] = bench["results"]
    out: dict[str, Any] = {
        "trainer_over_plain": {u: paired_median(res[u].trainer, res[u].plain) for u in updates},
        "trainer_over_plain_range": {u: paired_range(res[u].trainer, res[u].plain) for u in updates},
        "step_ms": {
            u: {
                "plain": 1e3 * statistics.median(res[u].plain),
                "trainer": 1e3 * statistics.median(res[u].trainer),
                "trainer_gap": 1e3 * statistics.median(res[u].gap),
            }
            for u in updates
        },
        "peak_mib": {u: {"plain": res[u].plain_peak / MIB, "trainer": res[u].trainer_peak / MIB} for u in updates},
    }
    if bench["check"]:
        out["max_rel_grad_diff"] = bench["check"]
    if "sgd" in res and res["sgd"].vanilla:
        out["vanilla_trainer_sgd"] = {
            "step_ms": 1e3 * statistics.median(res["sgd"].vanilla),
            "over_plain": paired_median(res["sgd"].vanilla, res["sgd"].plain),
            "hf_unlearn_over_vanilla": paired_median(res["sgd"].trainer, res["sgd"].vanilla),
        }
    if "sam" in res and "sgd" in res:
        out["sam_over_sgd"] = paired_median(res["sam"].trainer, res["sgd"].trainer)
        out.setdefault("plain", {})["sam_over_sgd"] = paired_median(res["sam"].plain, res["sgd"].plain)
    if "sam_every5" in res and "sgd" in res:
        out["sam_every5_over_sgd"] = paired_median(res["sam_every5"].trainer, res["sgd"].trainer)
        out["sam_every5_over_sgd_range"] = paired_range(res["sam_every5"].trainer, res["sgd"].trainer)
        out.setdefault("plain", {})["sam_every5_over_sgd"] = paired_median(res["sam_every5"].plain, res["sgd"].plain)
    if "sharp_minmax" in res and "neggrad_sam" in res:
        out["sharp_minmax_over_neggrad_sam"] = paired_median(res["sharp_minmax"].trainer, res["neggrad_sam"].trainer)
        out.setdefault("plain", {})["sharp_minmax_over_neggrad_sam"] = paired_median(
            res["sharp_minmax"].plain, res["neggrad_sam"].plain
        )
    return out


def print_table(name: str, summary: dict[str, Any], updates: list[str], memory_method: str) -> None:
    header = ["update", "plain ms", "trainer ms", "trainer/plain", "(min-max)", "gap ms", "peak MiB plain"]
    header.append("peak MiB trainer")
    rows = [header]
    for u in updates:
        ms = summary["step_ms"][u]
        peak = summary["peak_mib"][u]
        rows.append(
            [
                u,
                f"{ms['plain']:.2f}",
                f"{ms['trainer']:.2f}",
                f"{summary['trainer_over_plain'][u]:.3f}",
                "{:.3f}-{:.3f}".format(*summary["trainer_over_plain_range"][u]),
                f"{ms['trainer_gap']:.2f}",
                f"{peak['plain']:.1f}",
                f"{peak['trainer']:.1f}",
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    print(f"\n== {name} ==")
    for i, row in enumerate(rows):
        print("  ".join(c.rjust(w) if j else c.ljust(w) for j, (c, w) in enumerate(zip(row, widths, strict=True))))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    plain = summary.get("plain", {})
    if "sam_over_sgd" in summary:
        print(f"SAM / SGD:                  trainer {summary['sam_over_sgd']:.3f}   plain {plain['sam_over_sgd']:.3f}")
    if "sam_every5_over_sgd" in summary:
        print(
            f"sam_every 5 / SGD:          trainer {summary['sam_every5_over_sgd']:.3f} "
            + "(per-repeat {:.3f}-{:.3f})   ".format(*summary["sam_every5_over_sgd_range"])
            + f"plain {plain['sam_every5_over_sgd']:.3f}  (mean step time over whole 5-step cycles)"
        )
    if "sharp_minmax_over_neggrad_sam" in summary:
        print(
            f"Sharp MinMax / NegGrad+SAM: trainer {summary['sharp_minmax_over_neggrad_sam']:.3f}   "
            f"plain {plain['sharp_minmax_over_neggrad_sam']:.3f}"
        )
    if "vanilla_trainer_sgd" in summary:
        v = summary["vanilla_trainer_sgd"]
        print(
            f"stock transformers.Trainer, same SGD update: {v['step_ms']:.2f} ms, over plain {v['over_plain']:.3f}; "
            f"hf_unlearn sgd over stock Trainer {v['hf_unlearn_over_vanilla']:.3f}"
        )
    if "max_rel_grad_diff" in summary:
        diffs = ", ".join(f"{u} {d:.1e}" for u, d in summary["max_rel_grad_diff"].items())
        print(f"same update check (max |g_trainer - g_plain| / max |g_plain|): {diffs}")
    print(f"peak memory: {memory_method}")


def print_kernel_ops(name: str, ops: dict[str, Any]) -> None:
    k, o = ops["kernel_ops"], ops["kernel_ops_outside_passes"]
    print(
        f"kernel ops per training_step, {name} ({ops['parameter_tensors']} parameter tensors): "
        f"sgd {k['sgd']}, SAM bookkeeping {k['sam_bookkeeping']}, NegGrad composition {k['compose']}, "
        f"Sharp MinMax mask bookkeeping {k['mask_bookkeeping']}; outside the forward/backward passes: "
        f"sgd {o['sgd']}, SAM {o['sam_bookkeeping']}, composition {o['compose']}, masks {o['mask_bookkeeping']}; "
        f"host syncs per step {sorted(set(ops['host_syncs_per_step'].values()))}"
    )
