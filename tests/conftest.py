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


class DigitsCNN(torch.nn.Module):
    """A small CNN for 1x8x8 digits, with BatchNorm (so model-state guards are exercised)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
            torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        )
        self.head = torch.nn.Linear(32 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


@pytest.fixture(scope="session")
def digits_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """scikit-learn's real handwritten digits as 1x8x8 images in [0, 1]: train and test halves."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    return x[:1200], y[:1200], x[1200:], y[1200:]


@pytest.fixture(scope="session")
def digits_model(digits_data) -> DigitsCNN:
    """A DigitsCNN trained for a few seconds (about 97% test accuracy), in eval mode."""
    x_train, y_train, _, _ = digits_data
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = DigitsCNN()
        optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
        for _ in range(15):
            for batch in torch.randperm(len(x_train)).split(64):
                optimiser.zero_grad()
                torch.nn.functional.cross_entropy(model(x_train[batch]), y_train[batch]).backward()
                optimiser.step()
    return model.eval()
