"""Several seeds (aggregate mean / std / 95% t-interval), the analysis section, and benchmarks/claims.py."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from conftest import tiny_recipe

from benchmarks import claims
from benchmarks.claims_analysis import paired_difference, select, verdict
from hf_unlearn.cli import main
from hf_unlearn.recipe import RecipeError, validate
from hf_unlearn.seeds import summary, t_critical

TINY = tiny_recipe(name="tiny-seeds", seeds=[0, 1], analysis={"entanglement": True})


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("seeds")
    recipe = folder / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(TINY))
    assert main(["run", str(recipe), "--output-dir", str(folder / "out"), "--cpu"]) == 0
    return folder / "out"


def test_aggregate_matches_a_hand_computation(two_seeds):
    agg = json.loads((two_seeds / "report.json").read_text())
    assert agg["seeds"] == [0, 1]
    per_seed = [json.loads((two_seeds / f"seed-{s}" / "report.json").read_text()) for s in (0, 1)]
    assert [r["seed"] for r in per_seed] == [0, 1]
    ((_set_name, block),) = agg["forget_sets"].items()
    assert set(block["models"]) == {"original", "retrain", "neggrad_sam"}
    t = 12.706204736174698  # t_{0.975, 1}
    for run in ("neggrad_sam", "original"):
        for metric, get in (
            ("tow", lambda m: m["tow"]),
            ("mia_confidence", lambda m: m["mia"]["confidence"]),
            ("test_accuracy", lambda m: m["accuracy"]["test"]),
            ("forget_accuracy", lambda m: m["accuracy"]["forget"]),
            ("entanglement", lambda m: m["analysis"]["entanglement"]["global"]),
            ("loss_attack_auc", lambda m: m["attacks"]["loss"]["auc"]),
            ("entropy_attack_tpr_at_1pct_fpr", lambda m: m["attacks"]["entropy"]["tpr_at_fpr"]["0.01"]),
        ):
            a, b = (get(r["models"][run]) for r in per_seed)
            stat = block["models"][run][metric]
            mean, std = (a + b) / 2, abs(a - b) / math.sqrt(2)
            assert stat["n"] == 2 and stat["values"] == [a, b]
            assert stat["mean"] == pytest.approx(mean) and stat["std"] == pytest.approx(std)
            half = t * std / math.sqrt(2)
            assert stat["ci95"] == pytest.approx([mean - half, mean + half])
    assert block["models"]["retrain"]["tow"]["mean"] is None  # retrain has no ToW against itself
    md = (two_seeds / "report.md").read_text()
    assert "over 2 seeds" in md and "](tow.png)" in md and "| neggrad_sam |" in md
    assert agg["environment"]["libraries"]["torch"] and "Environment: " in md
    stat = block["models"]["neggrad_sam"]["test_accuracy"]  # cells: mean [interval clipped to 0-1]
    low, high = max(stat["ci95"][0], 0.0), min(stat["ci95"][1], 1.0)
    assert f"{stat['mean']:.3f} [{low:.3f}, {high:.3f}]" in md
    assert "mia_entropy" in block["models"]["neggrad_sam"]
    assert "lira_attack_auc" not in block["models"]["neggrad_sam"]  # no evaluation.lira: no LiRA summary
    auc = block["models"]["neggrad_sam"]["loss_attack_auc"]
    assert "| run | loss | confidence | entropy |" in md
    assert f"| neggrad_sam | {auc['mean']:.3f} [" in md
    assert (two_seeds / "tow.png").read_bytes()[:4] == b"\x89PNG"


def test_analysis_section_writes_entanglement(two_seeds):
    report = json.loads((two_seeds / "seed-0" / "report.json").read_text())
    for _run, entry in report["models"].items():
        ent = entry["analysis"]["entanglement"]
        assert math.isfinite(ent["global"]) and ent["global"] > 0
        assert math.isfinite(ent["classwise"]) and ent["classwise"] > 0
        assert "landscape" not in entry["analysis"]  # off unless asked for
    assert "## Analysis" in (two_seeds / "seed-0" / "report.md").read_text()


def test_summary_and_t_table():
    assert t_critical(5) == pytest.approx(2.776445, abs=1e-6)
    s = summary([1.0, 2.0, 3.0, None, float("nan")])
    assert s["n"] == 3 and s["missing"] == 2 and s["mean"] == 2.0 and s["std"] == pytest.approx(1.0)
    half = 4.302652729911275 / math.sqrt(3)
    assert s["ci95"] == pytest.approx([2.0 - half, 2.0 + half])
    assert summary([0.5])["ci95"] == [0.5, 0.5] and summary([])["mean"] is None


def test_seeds_validation():
    base = {k: v for k, v in TINY.items() if k not in ("seeds", "analysis")}
    assert "seeds" not in validate(dict(base)) and "analysis" not in validate(dict(base))  # single seed unchanged
    with pytest.raises(RecipeError, match="seeds"):
        validate({**base, "seeds": [0, 0]})
    with pytest.raises(RecipeError, match="Did you mean 'landscape'"):
        validate({**base, "analysis": {"landscap": True}})


def test_claims_pure_functions():
    assert verdict([True, True, False]) == "holds here"
    assert verdict([True, False]) == "does not hold here" and verdict([]) == "does not hold here"
    d = paired_difference([0.9, 0.8, None], [0.7, 0.7, 0.5])
    assert d["n"] == 2 and d["mean"] == pytest.approx(0.15)
    table = {"neggrad": ({"method": "neggrad"}, "alpha", [0.9, 0.95])}
    tuning = [
        {"runs": {"s/neggrad__alpha0.9": {"tow": 0.8}, "s/neggrad__alpha0.95": {"tow": 0.9}}},
        {"runs": {"s/neggrad__alpha0.9": {"tow": 0.85}, "s/neggrad__alpha0.95": {"tow": None}}},
    ]
    chosen = select(tuning, "s", table)["neggrad"]  # a diverged run counts as ToW 0: 0.45 < 0.825
    assert chosen["value"] == 0.9 and chosen["settings"] == {"method": "neggrad", "alpha": 0.9}


@pytest.mark.slow
def test_claims_smoke_end_to_end(tmp_path):
    docs = tmp_path / "results.md"
    assert (
        claims.main(
            [
                "--smoke",
                "--root",
                str(tmp_path / "w"),
                "--sets",
                "lowconf",
                "--tune-seeds",
                "0",
                "--eval-seeds",
                "1",
                "--workers",
                "1",
                "--write-docs",
                "--docs",
                str(docs),
            ]
        )
        == 0
    )
    result = json.loads((tmp_path / "w" / "claims.json").read_text())
    assert next(c["claim"] for c in result["claims"]) == "SAM improves NegGrad's ToW" and len(result["claims"]) == 6
    assert all(c["verdict"].startswith(("holds here", "does not hold here")) for c in result["claims"])
    text = docs.read_text()
    assert "## Verdicts" in text and "## Protocol" in text and "sharp_minmax_official_sam" in text
    # Re-rendered against itself as the previous run: every ToW cell is "x -> x" and no cell rose.
    again = tmp_path / "again.md"
    run_json = str(tmp_path / "w" / "claims.json")
    assert claims.main(["--from-json", run_json, "--previous", run_json, "--write-docs", "--docs", str(again)]) == 0
    text = again.read_text()
    tows = [row["tow"]["mean"] for row in result["evaluation"]["lowconf"].values() if row["tow"]["mean"] is not None]
    assert "## What changed since the previous version" in text and tows
    assert all(f"{t:.3f} -> {t:.3f}" in text for t in tows)
    assert f"ToW rose in 0 of {len(tows)} (group, forget set) cells, by +0.000 on average" in text


def test_claims_refuses_a_bad_previous_file_before_training(tmp_path, capsys):
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(SystemExit) as info:
        claims.main(["--previous", str(tmp_path / "bad.json"), "--root", str(tmp_path / "w")])
    assert info.value.code == 2 and "not a claims.json of an earlier run" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()
