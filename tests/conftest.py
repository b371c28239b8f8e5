"""Shared fixtures: seeded synthetic predictions with a known miscalibration."""

from __future__ import annotations

import numpy as np
import pytest
import torch


def make_predictions(
    n: int, n_classes: int, seed: int, temperature: float = 1.0, accuracy_boost: float = 2.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits whose argmax is right more often than chance; ``temperature`` < 1 sharpens them."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, n_classes, (n,), generator=generator)
    logits = torch.randn(n, n_classes, generator=generator)
    logits[torch.arange(n), labels] += accuracy_boost
    return logits / temperature, labels


@pytest.fixture
def predictions() -> tuple[torch.Tensor, torch.Tensor]:
    return make_predictions(3000, 10, seed=0, temperature=0.5)


@pytest.fixture
def probs64(predictions: tuple[torch.Tensor, torch.Tensor]) -> np.ndarray:
    logits, _ = predictions
    return torch.softmax(logits.double(), 1).numpy()
