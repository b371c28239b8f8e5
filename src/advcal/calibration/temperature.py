"""Temperature scaling: one scalar ``T`` that divides the logits, fitted by NLL."""

from __future__ import annotations

import math

import numpy as np
import torch

from advcal._core.errors import InputError
from advcal.calibration.base import Calibrator, check_logits_labels

# log T is searched on [log 1e-4, log 1e7]: wide enough for the most saturated or flattened
# served models (the illusion paper serves at 1e-3 ... 1e6), bounded so the search ends.
LOG_T_BOUNDS = (math.log(1e-4), math.log(1e7))


def nll_at_temperature(logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> float:
    """Mean negative log-likelihood of ``softmax(logits / temperature)`` (float64)."""
    scaled = logits.double() / temperature
    return float(torch.nn.functional.cross_entropy(scaled, labels))


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature minimising the NLL of ``softmax(logits / T)`` on (calibration) data.

    The NLL is smooth and unimodal in ``log T`` (it is convex in ``1/T``), so a bounded Brent
    search on ``log T`` finds the optimum to ``1e-6`` relative in a few dozen evaluations, each
    a float64 pass over the logits alone.
    """
    from scipy import optimize  # here: only fitting needs it, not every import of the calibrators

    logits, labels = check_logits_labels(logits, labels)
    result = optimize.minimize_scalar(
        lambda log_t: nll_at_temperature(logits, labels, math.exp(log_t)),
        bounds=LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-6},
    )
    return float(np.exp(result.x))


class TemperatureScaling(Calibrator):
    """``logits / T``, one scalar fitted by NLL on ``log T`` (keeps every prediction).

    The fit is a bounded Brent search on ``log T`` (see :func:`fit_temperature`), not LBFGS:
    the problem is one-dimensional and unimodal, and Brent brackets it on 1e-4 … 1e7 whatever
    the start, where LBFGS from ``T = 1`` can stall on a saturated model's NLL of thousands.
    """

    kind = "temperature"
    preserves_argmax = True

    def __init__(self) -> None:
        super().__init__()
        self.temperature = 1.0

    def _fit(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        self.temperature = fit_temperature(logits, labels)

    def _transform(self, logits: torch.Tensor) -> torch.Tensor:
        return logits / self.temperature

    def _tensors(self) -> dict[str, torch.Tensor]:
        return {"temperature": torch.tensor([self.temperature], dtype=torch.float64)}

    def _restore(self, tensors: dict[str, torch.Tensor]) -> None:
        self.temperature = float(tensors["temperature"][0])


class AdversarialTemperatureScaling(TemperatureScaling):
    """Temperature scaling fitted on clean and adversarial calibration logits together.

    ``fit(logits, labels, adversarial_logits=...)``: the adversarial logits (of the same
    samples, or of a stored adversarial set) are stacked under the clean ones, each with its
    label, so one temperature serves both.
    """

    kind = "adversarial-temperature"

    def fit(
        self, logits: torch.Tensor, labels: torch.Tensor, adversarial_logits: torch.Tensor | None = None,
        adversarial_labels: torch.Tensor | None = None,
    ) -> AdversarialTemperatureScaling:
        if adversarial_logits is None:
            raise InputError("adversarial_logits: adversarial temperature scaling needs adversarial "
                             "calibration logits (from advcal attack or an attack run)")
        adversarial_labels = labels if adversarial_labels is None else adversarial_labels
        adversarial_logits, adversarial_labels = check_logits_labels(adversarial_logits, adversarial_labels)
        logits, labels = check_logits_labels(logits, labels)
        if adversarial_logits.shape[1] != logits.shape[1]:
            raise InputError(f"adversarial_logits: expected {logits.shape[1]} classes as in logits, got "
                             f"{adversarial_logits.shape[1]}")
        super().fit(torch.cat([logits, adversarial_logits]), torch.cat([labels, adversarial_labels]))
        return self
