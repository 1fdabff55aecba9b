"""Build, load and save image classifiers: any `AutoModelForImageClassification` (ResNet, ConvNeXt, ViT, Swin ...)
and timm checkpoints through transformers' `TimmWrapperForImageClassification`.

* `load_pretrained_model(hub_id_or_folder, class_names)` resizes the classification head to the data set's labels
  (the old head is dropped: ``ignore_mismatched_sizes``). It works offline from a local folder, and with
  ``HF_HUB_OFFLINE=1`` from the Hugging Face cache.
* `build_model_from_config({"model_type": ..., ...}, class_names, seed)` builds a randomly initialised model; a timm
  architecture is ``{"model_type": "timm_wrapper", "architecture": "resnet18", "model_args": {"in_chans": 1}}``.
* `fresh_model(config, seed)` builds a newly initialised model of a config (the retrained reference's start).
* `save_model(model, folder)` writes safetensors weights and ``config.json``. transformers models are saved with
  ``save_pretrained``; timm models in timm's own layout (``timm.models.save_for_hf``), which both
  ``timm.create_model("hf-hub:<repo>" or "local-dir:<folder>", pretrained=True)`` and
  ``AutoModelForImageClassification.from_pretrained`` load.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForImageClassification, PreTrainedModel

TIMM_MODEL_TYPE = "timm_wrapper"


def label_maps(class_names: list[str]) -> dict[str, dict]:
    """``id2label`` / ``label2id`` for a model config."""
    return {
        "id2label": {i: name for i, name in enumerate(class_names)},
        "label2id": {name: i for i, name in enumerate(class_names)},
    }


def is_timm_model(model: torch.nn.Module) -> bool:
    """Whether ``model`` is a timm model inside transformers' TimmWrapper."""
    return getattr(getattr(model, "config", None), "model_type", None) == TIMM_MODEL_TYPE


STEMS = ("imagenet", "cifar")


def build_model_from_config(
    config: Mapping[str, Any], class_names: list[str], seed: int, stem: str | None = None
) -> PreTrainedModel:
    """A randomly initialised classifier from a config dict with a ``model_type`` (e.g. ``resnet``).

    ``stem="cifar"`` (a recipe's ``model.stem``) gives a transformers ResNet the CIFAR stem (`apply_cifar_stem`).
    """
    settings = dict(config)
    if stem not in (None, "imagenet"):
        if stem not in STEMS:
            raise ValueError(f"model.stem must be one of {', '.join(STEMS)}, got {stem!r}.")
        if settings.get("model_type") != "resnet":
            raise ValueError(
                f"model.stem: cifar needs a transformers ResNet (model.config.model_type: resnet), not "
                f"{settings.get('model_type')!r}."
            )
        settings["stem"] = stem  # recorded in config.json, so a saved model reloads with the same layout
    model_type = settings.pop("model_type", None)
    if model_type is None:
        raise ValueError("model.config needs a 'model_type' (e.g. 'resnet', 'convnext', 'vit', 'timm_wrapper').")
    hf_config = AutoConfig.for_model(model_type, num_labels=len(class_names), **label_maps(class_names), **settings)
    return fresh_model(hf_config, seed)


def fresh_model(config: Any, seed: int, *, trust_remote_code: bool = False) -> PreTrainedModel:
    """A newly initialised model of ``config``, from ``seed``: the architecture's own initialisation, no weights read.

    transformers models get their ``_init_weights``; timm models (TimmWrapper) get timm's own initialisation
    (``timm.create_model(pretrained=False)``), because TimmWrapper's ``_init_weights`` redraws timm's convolution
    and linear layers from ``normal(0, 0.02)``. The same config and seed give the same weights.
    """
    config = copy.deepcopy(config)
    if config.model_type == TIMM_MODEL_TYPE:
        _drop_duplicate_num_classes(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForImageClassification.from_config(config, trust_remote_code=trust_remote_code)
        if getattr(config, "stem", None) == "cifar":
            apply_cifar_stem(model)
        if is_timm_model(model):
            import timm

            native = timm.create_model(
                config.architecture, pretrained=False, num_classes=config.num_labels, **(config.model_args or {})
            )
            model.timm_model.load_state_dict(native.state_dict())
    return model


def apply_cifar_stem(model: PreTrainedModel) -> None:
    """Replace a transformers ResNet's ImageNet stem (7x7 stride-2 convolution, 3x3 stride-2 max-pool) by the CIFAR
    ResNets' stem: a 3x3 stride-1 convolution and no max-pool, so 32x32 inputs keep a 32x32 first feature map.

    The new convolution gets the model's own initialisation (``_init_weights``: Kaiming normal, fan-out).
    """
    embeddings = model.resnet.embedder
    old = embeddings.embedder.convolution
    conv = torch.nn.Conv2d(old.in_channels, old.out_channels, kernel_size=3, stride=1, padding=1, bias=False)
    model._init_weights(conv)
    embeddings.embedder.convolution = conv
    embeddings.pooler = torch.nn.Identity()


def _fix_timm_config(config: Any, class_names: list[str]) -> None:
    """Make a timm checkpoint's config describe the resized head.

    * timm >= 1.0.2x records ``num_classes`` inside ``model_args``; TimmWrapper passes ``num_classes`` itself, so
      the duplicate makes ``timm.create_model`` fail ("got multiple values for keyword argument 'num_classes'").
    * ``label_names`` (timm's label list) survives a ``num_labels`` override and would be saved with the new
      model, so a reload would get the old labels: replace it with the data set's class names.
    """
    _drop_duplicate_num_classes(config)
    config.label_names = list(class_names)


def _drop_duplicate_num_classes(config: Any) -> None:
    """Remove ``num_classes`` from a timm config's ``model_args`` (see `_fix_timm_config`)."""
    if getattr(config, "model_args", None):
        config.model_args = {k: v for k, v in config.model_args.items() if k != "num_classes"}


def load_pretrained_model(
    name_or_path: str, class_names: list[str], *, trust_remote_code: bool = False
) -> PreTrainedModel:
    """Load a Hub id or local folder (transformers or timm checkpoint), resizing the head to ``class_names``."""
    config = AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    labels = label_maps(class_names)
    config.id2label, config.label2id = labels["id2label"], labels["label2id"]  # also sets num_labels
    if config.model_type == TIMM_MODEL_TYPE:
        _fix_timm_config(config, class_names)
    return AutoModelForImageClassification.from_pretrained(
        name_or_path,
        config=config,
        ignore_mismatched_sizes=True,
        trust_remote_code=trust_remote_code,
        use_safetensors=True,  # never unpickle downloaded weights (docs/reliability.md)
    )


def load_saved_model(folder: str) -> PreTrainedModel:
    """Reload a model that hf_unlearn saved (safetensors only, never pickles)."""
    config = AutoConfig.from_pretrained(folder)
    if config.model_type == TIMM_MODEL_TYPE:
        _drop_duplicate_num_classes(config)
    if getattr(config, "stem", None) == "cifar":
        # transformers would build the ImageNet stem; build the saved layout and load its weights into it.
        from safetensors.torch import load_file

        weights = Path(folder) / "model.safetensors"
        if not weights.is_file():
            raise ValueError(f"{folder}: a model with the CIFAR stem needs its weights in model.safetensors.")
        model = fresh_model(config, seed=0)
        model.load_state_dict(load_file(str(weights)))
        return model.eval()
    return AutoModelForImageClassification.from_pretrained(folder, config=config, use_safetensors=True)


def load_reference_model(
    name_or_path: str, class_names: list[str], *, trust_remote_code: bool = False
) -> PreTrainedModel:
    """A reference model given by the user (retrained elsewhere): loaded as it is, its head must fit the data."""
    try:
        config = AutoConfig.from_pretrained(name_or_path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        raise ValueError(
            f"cannot load {name_or_path!r} ({error}); give a folder written by save_pretrained or a reachable Hub id."
        ) from error
    if config.num_labels != len(class_names):
        raise ValueError(
            f"{name_or_path!r} has a {config.num_labels}-class head but the data set has {len(class_names)} classes; "
            "the reference must be retrained on the same classes (without the forget set)."
        )
    if config.model_type == TIMM_MODEL_TYPE:
        _drop_duplicate_num_classes(config)
    try:
        return AutoModelForImageClassification.from_pretrained(
            name_or_path, config=config, trust_remote_code=trust_remote_code, use_safetensors=True
        )
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot load the weights of {name_or_path!r} (safetensors only): {error}") from error


def class_names_of(model: PreTrainedModel) -> list[str]:
    """The label names of a classifier, in class-index order."""
    id2label = model.config.id2label
    return [str(id2label[i]) for i in range(model.config.num_labels)]


def save_model(model: PreTrainedModel, folder: str | Path) -> Path:
    """Save weights (safetensors) and config so that transformers, and for timm models timm too, can load them."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not is_timm_model(model):
        model.save_pretrained(folder)  # safetensors: transformers 5's only format
        return folder
    from timm.models import save_for_hf

    save_for_hf(
        model.timm_model, str(folder), model_config={"label_names": class_names_of(model)}, safe_serialization=True
    )
    # timm's exporter records num_classes in model_args too, which transformers' TimmWrapper cannot load
    # (see _fix_timm_config); timm reads the top-level num_classes, so drop the duplicate.
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if isinstance(config.get("model_args"), dict):
        config["model_args"].pop("num_classes", None)
    config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return folder
