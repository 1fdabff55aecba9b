"""Image classification sources, each returned as a `datasets.Dataset` with `image` and `label` columns.

`digits` is embedded (scikit-learn ships it), so it works without network access; it is the default for tests
and demos. Hub data sets are added to `SOURCES` by name, one line each.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from datasets import ClassLabel, Dataset, Features, Image
from PIL import Image as PILImage

DIGITS_CLASS_NAMES: list[str] = [str(d) for d in range(10)]
# sklearn's digits store ink intensity as integers 0..16 (counts of set pixels in 4x4 blocks).
_DIGITS_MAX_VALUE = 16


def _digits_to_uint8(images: np.ndarray) -> np.ndarray:
    """Rescale 0..16 intensities to the 0..255 range image models and processors expect."""
    scaled = np.rint(images.astype(np.float64) * (255.0 / _DIGITS_MAX_VALUE))
    return np.clip(scaled, 0, 255).astype(np.uint8)


def load_digits_dataset() -> Dataset:
    """scikit-learn's 1,797 real 8x8 grey digit images as a Dataset (offline).

    Columns: `image` (`datasets.Image()`, PIL mode "L", values 0..255) and
    `label` (`ClassLabel` with names "0".."9").
    """
    # Imported here so that importing hf_unlearn.data stays cheap for users who never touch digits.
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels = _digits_to_uint8(bunch.images)
    features = Features({"image": Image(), "label": ClassLabel(names=DIGITS_CLASS_NAMES)})
    return Dataset.from_dict(
        {
            # A 2-D uint8 array becomes a mode "L" image (the `mode=` argument is deprecated in Pillow).
            "image": [PILImage.fromarray(img) for img in pixels],
            "label": [int(y) for y in bunch.target],
        },
        features=features,
    )


# name -> zero-argument loader. Adding a source is one line here.
SOURCES: dict[str, Callable[[], Dataset]] = {
    "digits": load_digits_dataset,
}


def load_source(name: str) -> Dataset:
    """Load a registered source by name; raises ValueError naming the known sources for an unknown one."""
    try:
        loader = SOURCES[name]
    except KeyError:
        known = ", ".join(sorted(SOURCES))
        raise ValueError(
            f"Unknown data source {name!r}. Known sources: {known}. "
            "Pick one of these, or register a loader in hf_unlearn.data.sources.SOURCES."
        ) from None
    return loader()
