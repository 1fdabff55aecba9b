"""step_cost.py's settings, model pairs and data: the updates it times, the models (the plain loop's and the
trainer's copy, same initial weights), random in-memory data and a random Sharp MinMax mask."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from benchmarks.common import build_classifier

REPO = Path(__file__).resolve().parents[1]
UPDATES = ("sgd", "sam", "sam_every5", "neggrad", "neggrad_sam", "sharp_minmax")
MODELS = ("digits", "resnet18", "resnet50")
# update -> (hf_unlearn method, sharpness, sam_every)
TRAINER_SETUP = {
    "sgd": ("finetune", "none", 1),
    "sam": ("finetune", "sam", 1),
    "sam_every5": ("finetune", "sam", 5),
    "neggrad": ("neggrad", "none", 1),
    "neggrad_sam": ("neggrad", "sam", 1),
    "sharp_minmax": ("sharp_minmax", "sam", 1),
}
SAM_EVERY = 5  # the cheap SAM's period in ``sam_every5``
# (method, sharpness) settings whose kernel-op counts give issue 12's quantities (benchmarks/kernel_ops.py)
OP_COUNT_SETUPS = (("finetune", "none"), ("finetune", "sam"), ("neggrad", "none"), ("neggrad", "sam"))
OP_COUNT_SETUPS += (("sharp_minmax", "sam"),)
BATCH = 64
LR = 0.01
MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4
ALPHA = 0.95
RHO = 0.05
MASK_RATIO = 0.5
NUM_LABELS = 10
MIB = 2**20


@dataclass
class ModelPair:
    """The plain loop's model and the trainer's model (same architecture, same initial weights)."""

    name: str
    plain: nn.Module
    trainer: nn.Module
    input_shape: tuple[int, ...]
    trainer_prefix: str = ""  # parameter-name prefix of the plain model inside the trainer's model

    def copy(self) -> ModelPair:
        return ModelPair(
            self.name, copy.deepcopy(self.plain), copy.deepcopy(self.trainer), self.input_shape, self.trainer_prefix
        )

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        out = self.plain(x) if self.trainer_prefix else self.plain(pixel_values=x)
        return out if isinstance(out, torch.Tensor) else out.logits


def build_models(name: str) -> ModelPair:
    torch.manual_seed(0)
    if name == "digits":
        import yaml

        recipe = yaml.safe_load((REPO / "recipes" / "digits.yaml").read_text())
        model = build_classifier(recipe["model"]["config"], NUM_LABELS, seed=0)
        return ModelPair(name, model, copy.deepcopy(model), (recipe["data"]["num_channels"], 16, 16))
    if name in ("resnet18", "resnet50"):
        import timm
        from transformers import TimmWrapperConfig, TimmWrapperForImageClassification

        plain = timm.create_model(name, pretrained=False, num_classes=NUM_LABELS)
        wrapper = TimmWrapperForImageClassification(TimmWrapperConfig(architecture=name, num_labels=NUM_LABELS))
        wrapper.timm_model.load_state_dict(plain.state_dict())
        return ModelPair(name, plain, wrapper, (3, 32, 32), trainer_prefix="timm_model.")
    raise ValueError(f"unknown model {name!r}; choose from {MODELS}")


def random_data(n: int, shape: tuple[int, ...], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn((n, *shape), generator=g), torch.randint(NUM_LABELS, (n,), generator=g)


def random_masks(model: nn.Module, device: torch.device) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return [
        (torch.rand(p.shape, generator=g) < MASK_RATIO).to(device=device, dtype=p.dtype)
        for p in model.parameters()
        if p.requires_grad
    ]
