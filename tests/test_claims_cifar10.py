"""benchmarks/claims_cifar10.py's verdicts on a made-up result whose answers are known by construction."""

from __future__ import annotations

from benchmarks.claims_cifar10 import claims, markdown, reading

GROUPS = ("neggrad", "neggrad_sam", "sharp_minmax_sam")


def result(tow: dict[str, list[float]], mia: dict[str, list[float]], params: dict[str, dict]) -> dict:
    """Three seeds; ToW and MIA per group as given (every arm alike), the reference's MIA 0.5 on every seed."""
    seeds = {}
    for i in range(3):
        entries = {"random/retrain": {"accuracy": {"retain": 1.0, "forget": 0.6, "test": 0.6}, "mia": 0.5}}
        entries["random/original"] = {"accuracy": {"retain": 1.0, "forget": 1.0, "test": 0.62}, "mia": 0.05, "tow": 0.6}
        for group in GROUPS:
            for arm in ("defaults", "reference", "reference_free"):
                accuracy = {"retain": 0.99, "forget": 0.9, "test": 0.6}
                entries[f"random/{group}/{arm}"] = {"accuracy": accuracy, "mia": mia[group][i], "tow": tow[group][i]}
        seeds[str(i)] = entries
    chosen = {
        f"random/{g}/{arm}": {"params": params[g], "value": 0.5, "number": 1}
        for g in GROUPS
        for arm in ("reference", "reference_free")
    }
    return {
        "recipe": "cifar10-cpu",
        "sets": ["random"],
        "eval": seeds,
        "chosen": chosen,
        "trials": 4,
        "tune_seeds": [100],
    }


PARAMS = {
    "neggrad": {"alpha": 0.9, "learning_rate": 0.01},
    "neggrad_sam": {"alpha": 0.8, "learning_rate": 0.01, "rho": 0.01},
}
PARAMS["sharp_minmax_sam"] = {"alpha": 0.85}


def test_a_consistent_gain_holds_and_a_loss_does_not():
    tow = {"neggrad": [0.60, 0.62, 0.64], "neggrad_sam": [0.70, 0.73, 0.74], "sharp_minmax_sam": [0.65, 0.60, 0.70]}
    mia = {"neggrad": [0.1, 0.2, 0.15], "neggrad_sam": [0.45, 0.52, 0.48], "sharp_minmax_sam": [0.3, 0.3, 0.3]}
    verdicts = {c["claim"]: c for c in claims(result(tow, mia, PARAMS), "reference")}
    # SAM - SGD = 0.10, 0.11, 0.10: its 95% interval excludes 0.
    assert verdicts["SAM improves NegGrad's ToW"]["verdict"] == "holds here"
    assert "paired difference 0.103" in verdicts["SAM improves NegGrad's ToW"]["evidence"]
    assert verdicts["SAM tolerates a smaller alpha"]["verdict"].startswith("holds here (weakly")  # 0.8 < 0.9
    # Sharp MinMax - NegGrad+SAM = -0.05, -0.13, -0.04: below 0.
    assert verdicts["Sharp MinMax is best"]["verdict"] == "does not hold here"
    # |MIA - 0.5|: NegGrad 0.4, 0.3, 0.35; NegGrad+SAM 0.05, 0.02, 0.02: SAM nearer on every seed.
    assert verdicts["SAM resists MIA"]["verdict"] == "holds here"
    assert "paired NegGrad - NegGrad+SAM 0.320" in verdicts["SAM resists MIA"]["evidence"]


def test_a_gain_inside_the_noise_is_weak_and_the_page_names_what_was_left_out():
    tow = {"neggrad": [0.60, 0.70, 0.65], "neggrad_sam": [0.70, 0.62, 0.70], "sharp_minmax_sam": [0.5, 0.5, 0.5]}
    mia = {g: [0.3, 0.3, 0.3] for g in GROUPS}
    made = result(tow, mia, PARAMS)
    verdicts = {c["claim"]: c for c in claims(made, "defaults")}
    assert verdicts["SAM improves NegGrad's ToW"]["verdict"] == "holds here (weakly: the interval includes 0)"
    assert "SAM tolerates a smaller alpha" not in verdicts  # judged on tuned settings only
    assert verdicts["SAM resists MIA"]["verdict"] == "does not hold here"  # equal distances: no gain
    digits = {"claims": [{"claim": c, "verdict": "does not hold here"} for c in verdicts]}
    digits["claims"].append({"claim": "SAM lowers entanglement", "verdict": "holds here"})
    page = markdown(made, digits, "test machine", "1 min")
    assert "| SAM lowers entanglement | not run" in page and "## What is left out" in page
    assert any("nearly SGD" in note for note in reading(made))  # rho 0.01
