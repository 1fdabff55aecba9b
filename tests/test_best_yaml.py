"""`hf-unlearn tune`'s best.yaml: a recipe of its own (``<name>-tuned-<run>``) holding only the tuned run, so
`hf-unlearn run DIR/best.yaml` neither writes into the recipe's run folder nor retrains the runs that were not
tuned."""

from __future__ import annotations

import yaml

from hf_unlearn.recipe import load_recipe, validate
from hf_unlearn.tune.study import best_recipe


def test_best_yaml_carries_its_own_name_and_only_the_tuned_run():
    recipe = load_recipe("digits-all-methods", ["unlearn.defaults.kd_T=3.0", "hub.run=neggrad"])
    assert len(recipe["unlearn"]["runs"]) > 10
    run = next(r for r in recipe["unlearn"]["runs"] if r["method"] == "neggrad" and r["name"] != "neggrad")
    best = best_recipe(recipe, run, {"alpha": 0.9, "learning_rate": 0.004})
    assert best["name"] == f"digits-all-methods-tuned-{run['name']}"
    assert [r["name"] for r in best["unlearn"]["runs"]] == [run["name"]]
    assert best["unlearn"]["runs"][0]["alpha"] == 0.9 and best["unlearn"]["runs"][0]["learning_rate"] == 0.004
    assert "kd_T" not in best["unlearn"]["defaults"]  # only SCRUB reads it: refused in a recipe without SCRUB
    assert best["hub"]["run"] == run["name"]
    reloaded = validate(yaml.safe_load(yaml.safe_dump(best, sort_keys=False)))  # what `hf-unlearn run` reads
    assert reloaded["name"] == best["name"] and len(reloaded["unlearn"]["runs"]) == 1
    assert recipe["name"] == "digits-all-methods" and len(recipe["unlearn"]["runs"]) > 10  # the input is untouched
