"""Training augmentation (data.augmentation) and the CIFAR ResNet stem (model.stem)."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import make_args, make_dataset, make_model, weights_of

from hf_unlearn.data.augment import AugmentedDataset, build_augmentation
from hf_unlearn.data.flip_crop import draw_flip_crop
from hf_unlearn.models import build_model_from_config, load_saved_model
from hf_unlearn.recipe import RecipeError, validate
from hf_unlearn.trainers import PretrainTrainer, SalUnTrainer


def _images(n: int = 6) -> object:
    return make_dataset(n, seed=1, shape=(1, 8, 8))


def test_flip_crop_changes_inputs_across_epochs_and_repeats_for_one_seed() -> None:
    data = _images()
    augmentation = build_augmentation("flip_crop", image_size=8, mean=[0.5], std=[0.5])
    augmented = AugmentedDataset(data, augmentation, seed=0)
    epoch0 = augmented[2]["pixel_values"]
    assert epoch0.shape == (1, 8, 8) and not torch.equal(epoch0, data.x[2])
    augmented.set_epoch(1)
    assert not torch.equal(augmented[2]["pixel_values"], epoch0)  # another crop / flip in another epoch
    again = AugmentedDataset(data, augmentation, seed=0)
    assert torch.equal(again[2]["pixel_values"], epoch0)  # the same seed, the same inputs
    # Padding is black of the raw image: (0 - 0.5) / 0.5 = -1 in the normalised space.
    values = torch.stack([AugmentedDataset(data, augmentation, seed=s)[2]["pixel_values"] for s in range(20)])
    assert (values == -1.0).any()
    assert torch.equal(data[2]["pixel_values"], data.x[2])  # the dataset itself is never changed


@pytest.mark.parametrize("channels, size", [(3, 32), (1, 8)])
def test_batched_flip_crop_is_bit_identical_to_torchvision_item_by_item(channels: int, size: int) -> None:
    mean, std = [0.49, 0.48, 0.45][:channels], [0.25, 0.24, 0.26][:channels]
    augmentation = build_augmentation("flip_crop", image_size=size, mean=mean, std=std, num_channels=channels)
    data = make_dataset(64, seed=5, shape=(channels, size, size))
    augmented = AugmentedDataset(data, augmentation, seed=3, stream="retain")
    for epoch in (0, 1):
        augmented.set_epoch(epoch)
        batch = augmented.__getitems__(list(range(64)))
        seeds = augmented.draws().tolist()
        # The reference: torchvision's v2 transforms, one item at a time under torch's global generator.
        expected = [augmentation(data.x[i], seeds[i]) for i in range(64)]
        assert all(torch.equal(item["pixel_values"], want) for item, want in zip(batch, expected, strict=True))
        assert all(int(item["labels"]) == int(data.y[i]) for i, item in enumerate(batch))
    # Both branches were compared: flipped and unflipped items, several offsets.
    tops, lefts, flips = draw_flip_crop(seeds, (size + 8, size + 8), (size, size))
    assert 0 < int(flips.sum()) < 64 and len(set(tops.tolist())) > 3 and len(set(lefts.tolist())) > 3
    # Items of different sizes cannot be stacked: they go through torchvision one by one.
    mixed = [data.x[0], data.x[1][:, 1:, 1:]]
    assert all(
        map(
            torch.equal,
            augmentation.apply_batch(mixed, seeds[:2]),
            [augmentation(mixed[0], seeds[0]), augmentation(mixed[1], seeds[1])],
        )
    )


def test_augmented_training_is_reproducible_and_differs_from_plain(tmp_path) -> None:
    augmentation = build_augmentation("flip_crop", image_size=8)

    def train(aug) -> dict[str, torch.Tensor]:
        model = build_model_from_config(
            {"model_type": "resnet", "num_channels": 1, "embedding_size": 4, "hidden_sizes": [4], "depths": [1]},
            ["a", "b", "c"],
            seed=0,
        )
        args = make_args(
            tmp_path / "out", method="pretrain", max_steps=-1, num_train_epochs=2, per_device_train_batch_size=4
        )
        PretrainTrainer(model=model, args=args, retain_dataset=_images(8), augmentation=aug).train()
        return weights_of(model)

    first, second, plain = train(augmentation), train(augmentation), train(None)
    assert all(torch.equal(first[n], second[n]) for n in first)
    assert any(not torch.equal(first[n], plain[n]) for n in first)


def test_masks_read_the_deterministic_inputs(tmp_path) -> None:
    retain, forget = make_dataset(6, seed=2, shape=(1, 2, 3)), make_dataset(4, seed=3, shape=(1, 2, 3))
    args = make_args(tmp_path, method="salun", mask_ratio=0.5)
    augmentation = build_augmentation([{"RandomHorizontalFlip": {"p": 1.0}}], image_size=3)
    plain = SalUnTrainer(model=make_model(seed=4), args=args, retain_dataset=retain, forget_dataset=forget)
    augmented = SalUnTrainer(
        model=make_model(seed=4), args=args, retain_dataset=retain, forget_dataset=forget, augmentation=augmentation
    )
    assert all(torch.equal(plain.mask[n], augmented.mask[n]) for n in plain.mask)
    batch = augmented.train_dataset.__getitems__([0])[0]["union"]["pixel_values"]  # index 0: a forget item
    assert torch.equal(batch, forget.x[0].flip(-1))  # while training batches are augmented


@pytest.mark.parametrize(
    "value, message",
    [
        ("flipcrop", "Did you mean 'flip_crop'"),
        ([{"RandomHorizontalFlp": {"p": 0.5}}], "Did you mean 'RandomHorizontalFlip'"),
        ([{"RandomCrop": {"sise": 3}}], "RandomCrop"),
        (3, "expected none, flip_crop, timm or a non-empty list"),
    ],
)
def test_bad_augmentation_is_a_recipe_error(value, message: str) -> None:
    recipe = {"data": {"augmentation": value}, "model": {"config": {"model_type": "resnet"}}}
    recipe["unlearn"] = {"runs": [{"method": "finetune"}]}
    with pytest.raises(RecipeError, match=message):
        validate(recipe)


# ---------------------------------------------------------------------------------------------- timm preset
def _decoded_images(n: int = 5):
    """Images decoded per batch, as `on_the_fly` prepares them (encoded PNGs of several sizes, RGB)."""
    import numpy as np
    from datasets import Dataset, Features, Image, Value
    from PIL import Image as PILImage

    from hf_unlearn.data.transforms import manual_image_transform, on_the_fly

    rng = np.random.default_rng(0)
    images = [PILImage.fromarray(rng.integers(0, 256, (12 + i, 16, 3), dtype=np.uint8)) for i in range(n)]
    source = Dataset.from_dict(
        {"image": images, "label": [i % 3 for i in range(n)]},
        features=Features({"image": Image(), "label": Value("int64")}),
    )
    transform = manual_image_transform(image_size=8, num_channels=3, mean=[0.5], std=[0.5])
    return on_the_fly(source, transform), images


def test_timm_preset_is_timms_training_transform_on_the_decoded_image() -> None:
    import random

    from timm.data import create_transform

    data, images = _decoded_images()
    model = build_model_from_config(
        {**RESNET, "embedding_size": 4, "hidden_sizes": [4], "depths": [1]}, ["a", "b", "c"], seed=0
    )
    augmentation = build_augmentation("timm", image_size=8, mean=[0.5], std=[0.5], num_channels=3).for_model(model)
    augmented = AugmentedDataset(data, augmentation, seed=0, stream="retain")
    item = augmented[2]
    assert item["pixel_values"].shape == (3, 8, 8) and int(item["labels"]) == 2
    # Exactly timm's transform of the decoded image under the item's seed: normalised once, by timm.
    seed = int(augmented.draws()[2])
    random.seed(seed)
    torch.manual_seed(seed)
    expected = create_transform(input_size=(3, 8, 8), mean=(0.5,) * 3, std=(0.5,) * 3, is_training=True)(images[2])
    assert torch.equal(item["pixel_values"], expected)
    values = torch.stack([augmented[i]["pixel_values"] for i in range(len(data))])
    assert values.min() >= -1.0 and values.max() <= 1.0 and values.min() < -0.5  # (x - 0.5) / 0.5 once, not twice
    assert not torch.equal(item["pixel_values"], data[2]["pixel_values"])  # not the deterministic input
    augmented.set_epoch(1)
    assert not torch.equal(augmented[2]["pixel_values"], item["pixel_values"])  # another draw in another epoch
    again = AugmentedDataset(data, augmentation, seed=0, stream="retain")
    assert torch.equal(again[2]["pixel_values"], item["pixel_values"])  # one seed, the same inputs
    state = random.getstate()
    augmented[0]
    assert random.getstate() == state  # Python's global random state is left alone


def test_timm_preset_reads_a_timm_models_data_config() -> None:
    from transformers import TimmWrapperConfig, TimmWrapperForImageClassification

    model = TimmWrapperForImageClassification(TimmWrapperConfig(architecture="resnet18", num_labels=3))
    augmentation = build_augmentation("timm", image_size=8, mean=[0.5], std=[0.5], num_channels=3).for_model(model)
    assert augmentation.config["input_size"] == (3, 224, 224)
    assert augmentation.config["mean"] == (0.485, 0.456, 0.406)  # the model's, not the recipe's 0.5
    data, _ = _decoded_images(2)
    assert AugmentedDataset(data, augmentation, seed=0)[0]["pixel_values"].shape == (3, 224, 224)


def test_timm_preset_needs_decoded_images() -> None:
    augmentation = build_augmentation("timm", image_size=8).for_model(make_model(seed=0))
    with pytest.raises(ValueError, match=r"set data\.precompute: false"):
        AugmentedDataset(_images(), augmentation, seed=0)
    recipe = {"data": {"augmentation": "timm", "precompute": True}, "model": {"config": {"model_type": "resnet"}}}
    recipe["unlearn"] = {"runs": [{"method": "finetune"}]}
    with pytest.raises(RecipeError, match=r"precompute: true cannot go with data\.augmentation: timm"):
        validate(recipe)


# ---------------------------------------------------------------------------------------------- CIFAR stem
RESNET = {"model_type": "resnet", "num_channels": 3, "embedding_size": 8, "hidden_sizes": [8, 16], "depths": [1, 1]}


def _first_feature_map(model, x: torch.Tensor) -> torch.Size:
    return model.resnet.embedder(x).shape


def test_cifar_stem_keeps_a_32x32_first_feature_map(tmp_path) -> None:
    x = torch.randn(2, 3, 32, 32)
    cifar = build_model_from_config(RESNET, ["a", "b"], seed=0, stem="cifar")
    imagenet = build_model_from_config(RESNET, ["a", "b"], seed=0)
    assert _first_feature_map(cifar, x) == (2, 8, 32, 32)
    assert _first_feature_map(imagenet, x) == (2, 8, 8, 8)  # 7x7 stride 2, then max-pool stride 2
    conv = cifar.resnet.embedder.embedder.convolution
    assert conv.kernel_size == (3, 3) and conv.stride == (1, 1)
    assert 0.7 < float(conv.weight.detach().std()) / (2 / (8 * 9)) ** 0.5 < 1.3  # Kaiming fan-out, the model's own
    # Saved and reloaded with the same layout and weights.
    cifar.save_pretrained(tmp_path)
    again = load_saved_model(str(tmp_path))
    with torch.no_grad():
        torch.testing.assert_close(again(pixel_values=x).logits, cifar.eval()(pixel_values=x).logits)
    same = build_model_from_config(RESNET, ["a", "b"], seed=0, stem="cifar")
    assert all(torch.equal(a, b) for a, b in zip(same.parameters(), copy.deepcopy(cifar).parameters(), strict=True))


def test_cifar_stem_needs_a_resnet_built_from_scratch() -> None:
    recipe = {"model": {"name_or_path": "some/model", "stem": "cifar"}, "unlearn": {"runs": [{"method": "finetune"}]}}
    with pytest.raises(RecipeError, match="cifar applies to a ResNet built from scratch"):
        validate(recipe)
