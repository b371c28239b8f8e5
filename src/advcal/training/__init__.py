"""Training recipes. For now the core loop that makes the reference models: standard or
adversarial (any advcal attack) training, deterministic given its seed."""

from advcal.training.loop import EpochLog, train_classifier

__all__ = ["EpochLog", "train_classifier"]
