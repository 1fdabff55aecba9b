"""The image processor an exported model ships with, so that it works on its own (``transformers.pipeline``).

A run records its input transform in ``report.json`` (``preprocessing``, from `hf_unlearn.data.transforms`):

* ``processor``: the model's own image processor was used; the export copies it.
* ``manual``: bilinear resize to ``image_size``, scale to [0, 1], ``(x - mean) / std``. The export writes a
  `ViTImageProcessor` with exactly these steps (tests/test_export_processor.py compares it with the training
  transform), and for a timm model the same size, mean and std in the ``pretrained_cfg`` of its config.json.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def _per_channel(values: list[float], channels: int) -> list[float]:
    return [float(v) for v in values] * channels if len(values) == 1 else [float(v) for v in values]


def manual_processor(preprocessing: dict[str, Any]):
    """A `ViTImageProcessor` doing what the manual transform did (RGB models; see `save_processor`)."""
    from PIL import Image
    from transformers import ViTImageProcessor

    size, channels = int(preprocessing["image_size"]), int(preprocessing["num_channels"])
    return ViTImageProcessor(
        do_resize=True,
        size={"height": size, "width": size},
        resample=Image.Resampling.BILINEAR,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=_per_channel(preprocessing["mean"], channels),
        image_std=_per_channel(preprocessing["std"], channels),
    )


def timm_pretrained_cfg(preprocessing: dict[str, Any]) -> dict[str, Any]:
    """timm's data config for the manual transform: input size, mean, std, bilinear resize, no crop."""
    size, channels = int(preprocessing["image_size"]), int(preprocessing["num_channels"])
    return {
        "input_size": [channels, size, size],
        "mean": _per_channel(preprocessing["mean"], channels),
        "std": _per_channel(preprocessing["std"], channels),
        "interpolation": "bilinear",
        "crop_pct": 1.0,
        "crop_mode": "center",
    }


def save_processor(folder: Path, preprocessing: dict[str, Any] | None, base_model: str | None, timm: bool) -> str:
    """Write ``preprocessor_config.json`` (and, for timm, the pretrained_cfg) into ``folder``; returns its origin.

    The run's own transform decides: the model's processor when the run used it, else one built from the manual
    settings. Reports written before the transform was recorded fall back to the base model's processor.
    """
    from transformers import AutoImageProcessor

    kind = (preprocessing or {}).get("kind")
    if kind == "processor" or (kind is None and base_model):
        source = (preprocessing or {}).get("from") or base_model
        try:
            AutoImageProcessor.from_pretrained(source).save_pretrained(folder)
            return "model"
        except (OSError, ValueError, KeyError) as error:
            if kind == "processor":
                raise ValueError(f"the image processor of {source!r} the run used cannot be loaded: {error}") from error
            logger.info("No image processor found for %s (%s)", source, error)
            return "none"
    if kind != "manual":
        return "none"
    if timm:
        from transformers import TimmWrapperImageProcessor

        config_path = folder / "config.json"
        config = json.loads(config_path.read_text(encoding="utf-8"))
        config["pretrained_cfg"] = {**(config.get("pretrained_cfg") or {}), **timm_pretrained_cfg(preprocessing)}
        config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        TimmWrapperImageProcessor(pretrained_cfg=config["pretrained_cfg"]).save_pretrained(folder)
        return "recipe"
    manual_processor(preprocessing).save_pretrained(folder)
    return "recipe"
