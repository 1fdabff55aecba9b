"""Penultimate-layer features of any image classifier (method-spec.md E.4), L2-normalised per sample.

The official analysis hooks ``model.avgpool`` (ResNet only). Here the penultimate features are what the
final classification layer reads:

- timm models (plain or inside transformers' ``TimmWrapperForImageClassification``):
  ``forward_head(forward_features(x), pre_logits=True)``, timm's own definition of the pre-logit features;
- every other model (transformers ResNet, ViT, ConvNeXt, Swin, a custom ``nn.Module``...): a forward hook
  on the *input* of the final classifier ``nn.Linear`` -- the last ``nn.Linear`` (in registration order)
  with ``num_labels`` outputs. This is exactly the vector the logits are computed from (ResNet: the pooled,
  flattened feature map; ViT: the layer-normed CLS token), so it needs no per-architecture knowledge;
- ``module="name"``: the output of a named submodule instead (e.g. ``"resnet.pooler"``, the official
  choice for ResNet), flattened per sample.

Features are computed in eval mode under ``torch.no_grad``; every submodule's train/eval flag is restored
and the hook removed afterwards, so the model is left exactly as it was (weights, buffers, modes).
"""

from __future__ import annotations

import inspect
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from .inference import collate_inputs, eval_mode, model_device

Strategy = Literal["auto", "timm", "hook"]


def penultimate_features(
    model: nn.Module,
    data: Any,
    *,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    strategy: Strategy = "auto",
    module: str | None = None,
    normalize: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Penultimate features of ``model`` on ``data``.

    Args:
        model: an image classifier called as ``model(pixel_values=x)`` (transformers, hf_unlearn) or ``model(x)``
            (a plain timm model).
        data: a dataset of ``{"pixel_values", "labels"}`` items, or a tensor of pixel values ``[N, ...]``.
        strategy: ``"timm"`` (pre-logits of a timm model), ``"hook"`` (input of the final classifier Linear) or
            ``"auto"`` (timm when the model is or wraps a timm model, else hook). Ignored when ``module`` is set.
        module: name of a submodule (``dict(model.named_modules())`` key) whose output is used instead.
        normalize: L2-normalise each feature vector (as the official analysis does). A zero vector stays zero.

    Returns:
        ``(features [N, D] float32, labels [N] int64)``; labels are ``None`` when ``data`` is a tensor.
    """
    device = torch.device(device) if device is not None else model_device(model)
    extract = _extractor(model, strategy, module)
    if isinstance(data, torch.Tensor):
        batches = ((chunk, None) for chunk in torch.split(data, batch_size))
    else:
        loader = DataLoader(data, batch_size=batch_size, shuffle=False, collate_fn=collate_inputs)
        batches = ((batch["pixel_values"], batch["labels"]) for batch in loader)

    features: list[torch.Tensor] = []
    labels: list[np.ndarray] = []
    with eval_mode(model), torch.no_grad():
        for pixel_values, batch_labels in batches:
            feats = extract(pixel_values.to(device)).flatten(1).float()
            if normalize:
                feats = torch.nn.functional.normalize(feats, p=2, dim=1)
            features.append(feats.cpu())
            if batch_labels is not None:
                labels.append(torch.as_tensor(batch_labels).reshape(-1).cpu().numpy().astype(np.int64))
    out = torch.cat(features).numpy() if features else np.zeros((0, 0), dtype=np.float32)
    if isinstance(data, torch.Tensor):
        return out, None
    return out, (np.concatenate(labels) if labels else np.zeros((0,), dtype=np.int64))


# ------------------------------------------------------------------------------------------ helpers
def timm_backbone(model: nn.Module) -> nn.Module | None:
    """The timm model inside ``model`` (itself, or ``TimmWrapperForImageClassification.timm_model``), if any."""
    for candidate in (model, getattr(model, "timm_model", None)):
        if (
            candidate is not None
            and callable(getattr(candidate, "forward_features", None))
            and callable(getattr(candidate, "forward_head", None))
        ):
            return candidate
    return None


def classifier_layer(model: nn.Module) -> nn.Linear:
    """The final classifier: the last ``nn.Linear`` with ``num_labels`` outputs (the last Linear if unknown)."""
    num_labels = _num_labels(model)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if num_labels is not None:
        linears = [m for m in linears if m.out_features == num_labels]
    if not linears:
        raise ValueError(
            f"No nn.Linear with {num_labels} outputs found in {type(model).__name__}; "
            "pass module='<submodule name>' to take features from a named layer instead."
        )
    return linears[-1]


def _num_labels(model: nn.Module) -> int | None:
    config = getattr(model, "config", None)
    for value in (getattr(config, "num_labels", None), getattr(model, "num_classes", None)):
        if isinstance(value, int) and value > 0:
            return value
    return None


def call_model(model: nn.Module, pixel_values: torch.Tensor) -> Any:
    """Run the model the way it expects: ``model(pixel_values=x)`` if it accepts it, else ``model(x)``."""
    params = inspect.signature(model.forward).parameters
    accepts_keyword = "pixel_values" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
    return model(pixel_values=pixel_values) if accepts_keyword else model(pixel_values)


def _extractor(model: nn.Module, strategy: Strategy, module: str | None):
    if module is not None:
        modules = dict(model.named_modules())
        if module not in modules:
            raise ValueError(f"{type(model).__name__} has no submodule {module!r}.")
        return _hooked(model, modules[module], take="output")
    if strategy not in ("auto", "timm", "hook"):
        raise ValueError(f"Unknown feature strategy {strategy!r}; use 'auto', 'timm' or 'hook'.")
    backbone = timm_backbone(model) if strategy in ("auto", "timm") else None
    if backbone is not None:
        dtype = next(backbone.parameters()).dtype

        def timm_features(x: torch.Tensor) -> torch.Tensor:
            return backbone.forward_head(backbone.forward_features(x.to(dtype)), pre_logits=True)

        return timm_features
    if strategy == "timm":
        raise ValueError(f"{type(model).__name__} is not a timm model (no forward_features / forward_head).")
    return _hooked(model, classifier_layer(model), take="input")


def _hooked(model: nn.Module, layer: nn.Module, take: Literal["input", "output"]):
    """A feature function that runs the whole model and captures ``layer``'s input or output."""

    def run(x: torch.Tensor) -> torch.Tensor:
        captured: list[torch.Tensor] = []

        def hook(_module: nn.Module, inputs: tuple, output: Any) -> None:
            value = inputs[0] if take == "input" else output
            if not isinstance(value, torch.Tensor):  # e.g. a ModelOutput from a named submodule
                value = value[0]
            captured.append(value.detach())

        handle = layer.register_forward_hook(hook)
        try:
            call_model(model, x)
        finally:
            handle.remove()
        if not captured:
            raise RuntimeError(f"The layer {type(layer).__name__} was not called in the forward pass.")
        return captured[-1]

    return run
