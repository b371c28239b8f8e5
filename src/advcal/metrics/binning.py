"""Binning rules shared by every binned metric.

Equal-width bins are ``[k/n, (k+1)/n)`` for ``k < n - 1`` and ``[(n-1)/n, 1]`` for the last:
a confidence of exactly 1.0 (common on saturated adversarial outputs) is counted in the last
bin. torchmetrics puts it in a phantom bin of its own instead (its issue #3510); netcal and
numpy's histogram agree with advcal.

Equal-mass (adaptive) bins split the samples sorted by confidence into ``n`` groups whose
sizes differ by at most one: the sample of rank ``r`` (0-based, of ``N``) falls in bin
``floor(r * n / N)``. Ties in confidence are broken by correctness, so the result does not
depend on the order the samples arrived in.
"""

from __future__ import annotations

import numpy as np
import torch


def bin_edges(n_bins: int) -> np.ndarray:
    """The ``n_bins + 1`` edges of equal-width bins on [0, 1], in float64."""
    return np.linspace(0.0, 1.0, n_bins + 1)


def equal_width_bin_index(values: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Bin index in ``[0, n_bins)`` of each value in [0, 1] (1.0 goes to the last bin)."""
    edges = torch.from_numpy(bin_edges(n_bins)).to(values.dtype)
    index = torch.bucketize(values, edges, right=True) - 1
    return index.clamp_(0, n_bins - 1)


def _rank_key(confidence: np.ndarray, correct: np.ndarray) -> np.ndarray:
    # Non-negative float64 values order like their bit patterns read as int64, so one
    # integer key carries both fields and one sort orders by (confidence, correct).
    return (confidence.astype(np.float64).view(np.int64) << 1) | correct.astype(np.int64)


def rank_order(confidence: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """Indices sorting samples by (confidence, correct).

    Samples with equal keys are identical for every binned sum, so their relative order
    (which an unstable sort may change) never changes a result.
    """
    return np.argsort(_rank_key(confidence, correct))


def sorted_by_rank(confidence: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """``[confidence, correct]`` sorted by (confidence, correct), shape ``(2, N)``.

    Sorting the packed keys themselves is several times faster than an argsort.
    """
    key = np.sort(_rank_key(confidence, correct))
    return np.stack([(key >> 1).view(np.float64), (key & 1).astype(np.float64)])


def equal_mass_bin_sums(sorted_values: np.ndarray, n_bins: int) -> np.ndarray:
    """Per-bin sums of ``sorted_values`` (``(F, N)``, already in rank order) over equal-mass bins.

    Bin ``k`` holds ranks ``[ceil(kN/n), ceil((k+1)N/n))``; the result has shape ``(F, n)``.
    """
    n = sorted_values.shape[1]
    bounds = np.ceil(n * np.arange(n_bins + 1) / n_bins).astype(np.int64)
    prefix = np.concatenate([np.zeros((len(sorted_values), 1)), np.cumsum(sorted_values, 1)], 1)
    return np.diff(prefix[:, bounds], axis=1)
