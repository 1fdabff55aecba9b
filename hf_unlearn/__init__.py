"""hf_unlearn: sharpness-aware machine unlearning for Hugging Face image classifiers."""

from .args import UnlearnArguments
from .trainers import TRAINERS, UnlearnTrainer, get_trainer_class

__version__ = "0.1.0"

__all__ = ["TRAINERS", "UnlearnArguments", "UnlearnTrainer", "__version__", "get_trainer_class"]
