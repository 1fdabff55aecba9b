"""Every recipe shipped in recipes/ loads and validates as it stands (no data or model is touched)."""

from pathlib import Path

import pytest

from hf_unlearn.recipe import load_recipe

RECIPES = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))


def test_the_shipped_recipes_are_found():
    assert {"digits", "cifar10-cpu", "cifar10-resnet18"} <= set(RECIPES)


@pytest.mark.parametrize("name", RECIPES)
def test_shipped_recipe_validates(name):
    recipe = load_recipe(name)
    assert recipe["unlearn"]["runs"], f"{name} has no unlearning run"
    names = [run["name"] for run in recipe["unlearn"]["runs"]]
    assert len(names) == len(set(names))


def test_cifar10_resnet18_is_the_paper_scale():
    """ResNet-18 layout with the CIFAR stem, the paper's pretraining, forget sets of 3,000 samples."""
    recipe = load_recipe("cifar10-resnet18")
    assert recipe["model"]["stem"] == "cifar"
    assert recipe["model"]["config"]["depths"] == [2, 2, 2, 2]
    assert recipe["model"]["config"]["hidden_sizes"] == [64, 128, 256, 512]
    assert (recipe["pretrain"]["epochs"], recipe["pretrain"]["batch_size"]) == (200, 256)
    assert {spec["size"] for spec in recipe["forget"]} == {3000}
    assert recipe["data"]["augmentation"] == "flip_crop"
