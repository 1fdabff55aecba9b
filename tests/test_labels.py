"""Python API: the class count comes from the model or the data sets' ClassLabel; labels outside the head are
refused before training with a message naming the label and the head size."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from conftest import make_dataset, make_model
from torch import nn

from hf_unlearn import get_trainer_class
from hf_unlearn.data.transforms import TensorImageDataset
from hf_unlearn.trainers.labels import num_labels_of


class Headless(nn.Module):
    """Any module returning ``.logits``: no config, no num_labels."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 3)

    def forward(self, pixel_values: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(logits=self.fc(pixel_values.flatten(1)))


def _tensor_set(n: int, seed: int, labels: list[int] | None = None, names: list[str] | None = None):
    g = torch.Generator().manual_seed(seed)
    y = torch.tensor(labels) if labels is not None else torch.randint(3, (n,), generator=g)
    return TensorImageDataset(torch.randn(len(y), 6, generator=g), y, names)


def test_class_count_from_classlabel_when_the_model_has_none(args_factory):
    retain, forget = _tensor_set(8, 1, names=["a", "b", "c"]), _tensor_set(4, 2, names=["a", "b", "c"])
    model = Headless()
    assert num_labels_of(model, retain, forget) == 3
    trainer = get_trainer_class("random_label")(
        model=model, args=args_factory(method="random_label"), retain_dataset=retain, forget_dataset=forget
    )
    before = model.fc.weight.detach().clone()
    trainer.train()
    assert trainer.num_labels == 3 and not torch.equal(before, model.fc.weight)
    assert num_labels_of(Headless(), _tensor_set(4, 3)) == 3  # no ClassLabel: one forward pass measures the head
    with pytest.raises(ValueError, match=r"neither config\.num_labels nor num_labels"):
        num_labels_of(Headless(), [])  # nothing to measure on


def test_bare_module_on_plain_labels_is_refused_before_training(args_factory):
    """A bare module (no config.num_labels) on data without a ClassLabel: one forward pass gives its head's width,
    so label 5 for a 3-wide head gets the named one-line refusal instead of torch's IndexError in the loss."""
    model = Headless()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    retain, forget = _tensor_set(6, 1, labels=[0, 1, 2, 5, 1, 0]), _tensor_set(4, 2)
    trainer = get_trainer_class("finetune")(
        model=model, args=args_factory(method="finetune"), retain_dataset=retain, forget_dataset=forget
    )
    with pytest.raises(ValueError, match=r"^retain_dataset holds label 5 but the model's head has 3 classes"):
        trainer.train()
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())
    assert model.training  # the measuring pass left the module's mode as it was


def test_measured_head_beats_a_wider_classlabel(args_factory):
    """A bare module's head narrower than the data's ClassLabel: the head's measured width decides."""
    names = ["a", "b", "c", "d", "e", "f"]
    retain = _tensor_set(6, 1, labels=[0, 1, 2, 4, 1, 0], names=names)
    trainer = get_trainer_class("finetune")(
        model=Headless(), args=args_factory(method="finetune"), retain_dataset=retain
    )
    with pytest.raises(ValueError, match=r"retain_dataset holds label 4 but the model's head has 3 classes"):
        trainer.train()


def test_label_outside_the_head_is_refused_before_training(args_factory):
    model = make_model(seed=0)  # config.num_labels = 3
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    retain, forget = _tensor_set(6, 1), _tensor_set(4, 2, labels=[0, 1, 5, 2])
    trainer = get_trainer_class("neggrad")(
        model=model, args=args_factory(method="neggrad"), retain_dataset=retain, forget_dataset=forget
    )
    with pytest.raises(ValueError, match=r"forget_dataset holds label 5 but the model's head has 3 classes"):
        trainer.train()
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())


def test_generic_dataset_labels_are_checked_per_batch(args_factory):
    model = make_model(seed=0)
    retain = make_dataset(6, seed=1)
    retain.y[3] = 7  # a plain torch Dataset: its labels are only seen batch by batch
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = get_trainer_class("finetune")(
        model=model, args=args_factory(method="finetune", per_device_train_batch_size=6), retain_dataset=retain
    )
    with pytest.raises(ValueError, match=r"retain_dataset holds label 7 but the model's head has 3 classes"):
        trainer.train()
    assert all(torch.equal(before[n], p) for n, p in model.named_parameters())
