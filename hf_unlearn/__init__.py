"""hf_unlearn: sharpness-aware machine unlearning for Hugging Face image classifiers.

The public names are imported on first use (`hf_unlearn._lazy`): ``import hf_unlearn`` loads neither torch nor
transformers, and ``hf-unlearn --help`` answers at once.
"""

from typing import TYPE_CHECKING

from ._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "TRAINERS": ".trainers",
    "UnlearnArguments": ".args",
    "UnlearnTrainer": ".trainers",
    "get_trainer_class": ".trainers",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from .args import UnlearnArguments
    from .trainers import TRAINERS, UnlearnTrainer, get_trainer_class

__all__ = ["TRAINERS", "UnlearnArguments", "UnlearnTrainer", "__version__", "get_trainer_class"]
