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
* A ResNet with the CIFAR stem is `CifarResNetForImageClassification` (`hf_unlearn.remote_code`): its folders carry
  its code, so ``from_pretrained(folder, trust_remote_code=True)`` loads them without hf_unlearn; this module
  registers it with the Auto classes, so hf_unlearn loads them without ``trust_remote_code``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForImageClassification, PreTrainedModel

from .atomic import match_umask
from .remote_code.configuration_cifar_resnet import CifarResNetConfig
from .remote_code.modeling_cifar_resnet import CifarResNetForImageClassification

TIMM_MODEL_TYPE = "timm_wrapper"
# In this process the CIFAR-stem ResNet loads like a built-in model; save_pretrained copies its code into the folder.
AutoConfig.register(CifarResNetConfig.model_type, CifarResNetConfig, exist_ok=True)
AutoModelForImageClassification.register(CifarResNetConfig, CifarResNetForImageClassification, exist_ok=True)
CifarResNetConfig.register_for_auto_class()
CifarResNetForImageClassification.register_for_auto_class("AutoModelForImageClassification")


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

    ``stem="cifar"`` (a recipe's ``model.stem``) gives a transformers ResNet the CIFAR stem
    (`CifarResNetForImageClassification`).
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
        settings["model_type"] = CifarResNetConfig.model_type
        settings["stem"] = stem  # recorded in config.json for its readers; the model type decides the layout
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
    config = cifar_config(config) if _legacy_cifar(config) else copy.deepcopy(config)
    if config.model_type == TIMM_MODEL_TYPE:
        _drop_duplicate_num_classes(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForImageClassification.from_config(config, trust_remote_code=trust_remote_code)
        if is_timm_model(model):
            import timm

            native = timm.create_model(
                config.architecture, pretrained=False, num_classes=config.num_labels, **(config.model_args or {})
            )
            model.timm_model.load_state_dict(native.state_dict())
    return model


def _legacy_cifar(config: Any) -> bool:
    """A config saved before the CIFAR stem had its own model type: ``resnet`` with ``"stem": "cifar"``."""
    return config.model_type == "resnet" and getattr(config, "stem", None) == "cifar"


def cifar_config(config: Any) -> CifarResNetConfig:
    """The `CifarResNetConfig` of a legacy CIFAR-stem ResNet config (same settings and labels)."""
    settings = {k: v for k, v in config.to_dict().items() if k not in ("model_type", "architectures", "auto_map")}
    return CifarResNetConfig.from_dict(settings)


def needs_remote_code(model: torch.nn.Module) -> bool:
    """Whether loading ``model``'s saved folder outside hf_unlearn takes ``trust_remote_code=True``: its class is
    code saved beside the weights (the CIFAR-stem ResNet, or a remote-code model it was loaded from)."""
    config = getattr(model, "config", None)
    return getattr(type(model), "_auto_class", None) is not None or bool(getattr(config, "auto_map", None))


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
    if _legacy_cifar(config):  # transformers would build the ImageNet stem: build the saved layout
        config = cifar_config(config)
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
        match_umask(folder.glob("*.safetensors"))  # safetensors writes 0600 files; config.json follows the umask
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
    match_umask(folder.glob("*.safetensors"))
    return folder
