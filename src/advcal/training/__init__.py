"""Training recipes with calibration tracked every epoch (``advcal train``), and the core loop
that makes the shipped reference models.

Layer (docs/architecture.md; lint-imports holds it): imports only from analyses and the layers
below it.
"""

from advcal.training.loop import EpochLog, train_classifier
from advcal.training.recipes import CLIP_RECIPES, RECIPES, PreHeadTemperature, Recipe, normalise_gradients
from advcal.training.run import COLUMNS, SCHEDULES, TrainingRun, learning_rate, train

__all__ = [
    "CLIP_RECIPES",
    "COLUMNS",
    "RECIPES",
    "SCHEDULES",
    "EpochLog",
    "PreHeadTemperature",
    "Recipe",
    "TrainingRun",
    "learning_rate",
    "normalise_gradients",
    "train",
    "train_classifier",
]
