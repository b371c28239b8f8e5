"""Temperature scaling: one scalar ``T`` that divides the logits, fitted by NLL."""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import optimize

from advcal.errors import InputError, describe

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
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or logits.shape[1] < 2:
        raise InputError(f"logits: expected an (N, classes >= 2) tensor, got {describe(logits)}")
    if not isinstance(labels, torch.Tensor) or labels.shape != logits.shape[:1]:
        raise InputError(f"labels: expected {len(logits)} class indices, got {describe(labels)}")
    logits, labels = logits.detach().cpu().double(), labels.detach().cpu().long()
    result = optimize.minimize_scalar(
        lambda log_t: nll_at_temperature(logits, labels, math.exp(log_t)),
        bounds=LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-6},
    )
    return float(np.exp(result.x))
