"""Faithful references and method data: retrain's initialisation, RL/SalUn's union loader, per-item draws."""

from __future__ import annotations

import copy
from collections import Counter

import pytest
import torch
from conftest import make_args, make_dataset, make_model

from hf_unlearn.data.pairing import PairedDataset, RelabelledUnion
from hf_unlearn.models import build_model_from_config, fresh_model
from hf_unlearn.trainers import RandomLabelTrainer, RetrainTrainer, SalUnTrainer

VIT = {
    "model_type": "vit",
    "image_size": 8,
    "patch_size": 4,
    "num_channels": 1,
    "hidden_size": 16,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 32,
}
CLASSES = ["a", "b", "c"]


def _trained_copy(model: torch.nn.Module) -> torch.nn.Module:
    """Stands in for a trained original: every tensor moved away from its initial value."""
    trained = copy.deepcopy(model)
    g = torch.Generator().manual_seed(99)
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.5 + torch.rand(p.shape, generator=g))
    return trained


def test_retrain_on_a_vit_starts_from_the_models_own_initialisation(tmp_path) -> None:
    original = _trained_copy(build_model_from_config(VIT, CLASSES, seed=0))
    retain = make_dataset(6, seed=1, shape=(1, 8, 8))
    args = make_args(tmp_path, method="retrain", seed=5)
    reference = RetrainTrainer(model=copy.deepcopy(original), args=args, retain_dataset=retain).model
    fresh = build_model_from_config(VIT, CLASSES, seed=123)  # another draw of the same architecture
    before = dict(original.named_parameters())
    for name, p in reference.named_parameters():
        # No element keeps the original's value (cls_token and position_embeddings included).
        assert not (p.detach() == before[name].detach()).any(), f"{name} keeps values of the original"
        if p.dim() >= 2 and p.numel() >= 64:  # the spread of a freshly built model: ViT's own _init_weights
            ratio = float(p.detach().std() / fresh.get_parameter(name).detach().std())
            assert 0.8 < ratio < 1.25, f"{name}: std {float(p.std()):.4f} is {ratio:.2f}x a fresh model's"
    # Reproducible from the run's seed: the same as a model freshly built from the config with seed 5.
    for name, p in build_model_from_config(VIT, CLASSES, seed=5).named_parameters():
        assert torch.equal(reference.get_parameter(name), p), name


def test_fresh_timm_model_uses_timms_own_initialisation() -> None:
    import timm

    config = {"model_type": "timm_wrapper", "architecture": "resnet18", "model_args": {"in_chans": 1}}
    model = build_model_from_config(config, CLASSES, seed=0)
    torch.manual_seed(0)
    native = timm.create_model("resnet18", pretrained=False, in_chans=1, num_classes=3)
    conv = model.timm_model.layer1[0].conv1.weight
    ratio = float(conv.detach().std() / native.layer1[0].conv1.weight.detach().std())
    assert 0.9 < ratio < 1.1  # TimmWrapper's own _init_weights would give normal(0, 0.02), ~3x narrower
    again = fresh_model(model.config, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(again.parameters(), model.parameters(), strict=True))


def test_pipeline_reference_starts_from_the_originals_initial_weights(tmp_path) -> None:
    from conftest import tiny_resnet_config

    from hf_unlearn.pipeline import Pipeline, Splits
    from hf_unlearn.recipe import validate

    recipe = validate(
        {"model": {"config": tiny_resnet_config()}, "seed": 3, "unlearn": {"runs": [{"method": "finetune"}]}}
    )
    pipeline = Pipeline(recipe, tmp_path)
    splits = Splits(train=None, test=None, class_names=[str(i) for i in range(10)])
    initial = pipeline.runner.new_model(splits)  # what pretraining starts from
    trained = _trained_copy(initial)
    start = pipeline.runner.initial_reference(trained, splits, seed=3)
    for (name, a), b in zip(initial.state_dict().items(), start.state_dict().values(), strict=True):
        assert torch.equal(a, b), f"{name}: the reference does not start where the original started"


# ------------------------------------------------------------------------------- random labels, SalUn
@pytest.mark.parametrize("method", ["random_label", "salun"])
def test_relabelled_methods_draw_each_forget_item_once_per_epoch(tmp_path, method: str) -> None:
    retain, forget = make_dataset(60, seed=1), make_dataset(4, seed=2)
    args = make_args(tmp_path, method=method, max_steps=-1, num_train_epochs=3, per_device_train_batch_size=8)
    cls = RandomLabelTrainer if method == "random_label" else SalUnTrainer
    trainer = cls(model=make_model(seed=3), args=args, retain_dataset=retain, forget_dataset=forget)
    forget.accessed.clear()
    retain.accessed.clear()
    trainer.train()
    # |F| forget draws per epoch (not one per retain item), and one pass over retain.
    assert Counter(forget.accessed) == {i: 3 for i in range(4)}
    assert Counter(retain.accessed) == {i: 3 for i in range(60)}
    assert trainer.state.global_step == 3 * 8  # ceil(64 / 8) steps per epoch: epochs count the union


def test_relabelled_union_redraws_wrong_labels_per_epoch() -> None:
    forget, retain = make_dataset(200, seed=4, num_labels=5), make_dataset(3, seed=5, num_labels=5)
    union = RelabelledUnion(forget, retain, num_labels=5, seed=0)
    labels = []
    for epoch in range(3):
        union.set_epoch(epoch)
        labels.append(torch.stack([union[i]["union"]["labels"] for i in range(200)]))
    for epoch_labels in labels:
        assert torch.all(epoch_labels != forget.y) and torch.all((epoch_labels >= 0) & (epoch_labels < 5))
    assert (labels[0] != labels[1]).float().mean() > 0.5  # redrawn: two wrong classes of four agree 1/4 of the time
    union.set_epoch(0)
    assert torch.equal(torch.stack([union[i]["union"]["labels"] for i in range(200)]), labels[0])
    assert torch.equal(union[200]["union"]["labels"], retain.y[0])  # retain items keep their labels
    official = RelabelledUnion(forget, retain, num_labels=5, seed=0, keep_true_possible=True)
    drawn = torch.stack([official[i]["union"]["labels"] for i in range(200)])
    assert (drawn == forget.y).any()  # uniform over all classes, as the official code


def test_forget_partners_depend_on_seed_epoch_and_item_only() -> None:
    retain, forget = make_dataset(50, seed=6), make_dataset(7, seed=7)
    paired = PairedDataset(retain, partner=forget, seed=11)
    first = paired.draws().clone()
    assert torch.equal(PairedDataset(retain, partner=forget, seed=11).draws(), first)  # any process, any worker
    assert not torch.equal(PairedDataset(retain, partner=forget, seed=12).draws(), first)
    paired.set_epoch(1)
    assert not torch.equal(paired.draws(), first)  # redrawn every epoch
    forget.accessed.clear()
    batch = paired.__getitems__([3, 9])
    assert forget.accessed == [int(paired.draws()[3]), int(paired.draws()[9])]
    assert torch.equal(batch[0]["forget"]["pixel_values"], forget.x[paired.draws()[3]])


def test_training_step_puts_a_schedule_free_style_optimizer_in_train_mode(tmp_path) -> None:
    """Optimizers with train()/eval() (schedule-free) are switched to train mode every step, as the stock Trainer."""
    from hf_unlearn.trainers import FinetuneTrainer

    class ModalSGD(torch.optim.SGD):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.mode, self.modes_at_step = "eval", []

        def train(self) -> None:
            self.mode = "train"

        def eval(self) -> None:
            self.mode = "eval"

        def step(self, closure=None):
            self.modes_at_step.append(self.mode)
            self.eval()  # as an evaluation between steps would
            return super().step(closure)

    model = make_model(seed=8)
    optimizer = ModalSGD(model.parameters(), lr=0.1)
    args = make_args(tmp_path, method="finetune", max_steps=3, per_device_train_batch_size=2)
    FinetuneTrainer(
        model=model, args=args, retain_dataset=make_dataset(6, seed=9), optimizers=(optimizer, None)
    ).train()
    assert optimizer.modes_at_step == ["train"] * 3
