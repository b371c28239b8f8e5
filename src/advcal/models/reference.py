"""advcal's built-in reference models: small, fast, shipped with their weights.

The weights are made by ``python scripts/train_reference_models.py`` from a fixed seed on the
training split of their data (see that script for the exact recipes; each model's JSON record
beside its weights holds the recipe and the accuracy measured when it was made).
"""

from __future__ import annotations

import torch
from torch import nn


class DigitsCNN(nn.Module):
    """A small CNN for 1x8x8 digits, with BatchNorm: about 27k parameters, returns logits."""

    def __init__(self, n_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Linear(32 * 4 * 4, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


class FashionCNN(nn.Module):
    """A small CNN for 1x28x28 Fashion-MNIST, with BatchNorm: about 0.2M parameters, returns logits."""

    def __init__(self, n_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.hidden = nn.Sequential(nn.Linear(64 * 7 * 7, 64), nn.ReLU())
        self.head = nn.Linear(64, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.hidden(self.features(x).flatten(1)))
