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


def rank_order(confidence: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """Indices sorting samples by (confidence, correct): a total order up to identical samples.

    Non-negative float64 values order like their bit patterns read as int64, so one integer
    key carries both fields and one argsort suffices.
    """
    key = (confidence.astype(np.float64).view(np.int64) << 1) | correct.astype(np.int64)
    return np.argsort(key, kind="stable")


def equal_mass_boundaries(n_samples: float | np.ndarray, n_bins: int) -> np.ndarray:
    """Rank boundaries ``R_0 = 0 < ... < R_n = N``: bin ``k`` holds ranks ``[R_k, R_{k+1})``.

    ``n_samples`` may be an array of totals (one per bootstrap replicate): the result then has
    shape ``(len(n_samples), n_bins + 1)``.
    """
    totals = np.asarray(n_samples, dtype=np.float64)
    return np.ceil(totals[..., None] * np.arange(n_bins + 1) / n_bins)


def equal_mass_bin_sums(
    sorted_values: np.ndarray, weights: np.ndarray | None, n_bins: int
) -> np.ndarray:
    """Per-bin sums of ``sorted_values`` (already in rank order) over equal-mass bins.

    ``weights`` are integer multiplicities of shape ``(B, N)`` (bootstrap replicates), or
    ``None`` for one copy of each sample. A sample repeated ``w`` times occupies ``w``
    consecutive ranks and may straddle a bin boundary; its copies are split accordingly.
    ``sorted_values`` has shape ``(N,)`` or ``(F, N)`` for ``F`` fields; the result has shape
    ``(B, F, n_bins)`` (or ``(F, n_bins)`` / ``(n_bins,)`` without weights / fields).
    """
    values = np.atleast_2d(sorted_values)
    if weights is None:
        n = values.shape[1]
        bounds = equal_mass_boundaries(n, n_bins).astype(np.int64)
        prefix = np.concatenate([np.zeros((values.shape[0], 1)), np.cumsum(values, 1)], 1)
        sums = np.diff(prefix[:, bounds], axis=1)
        return sums if sorted_values.ndim == 2 else sums[0]
    cum_weight = np.cumsum(weights, axis=1)  # (B, N): ranks occupied up to and with sample j
    totals = cum_weight[:, -1]
    bounds = equal_mass_boundaries(totals, n_bins)  # (B, n_bins + 1)
    out = np.empty((weights.shape[0], values.shape[0], n_bins))
    for b in range(weights.shape[0]):
        # Sample j holds ranks [cum_weight[j] - w_j, cum_weight[j]); the sum over the first R
        # ranks is the sum over whole samples before the one holding rank R-1, plus part of it.
        holder = np.searchsorted(cum_weight[b], bounds[b], side="left").clip(0, values.shape[1] - 1)
        prefix = np.cumsum(values * weights[b], axis=1)
        before = np.where(holder > 0, prefix[:, holder - 1], 0.0)
        ranks_before = np.where(holder > 0, cum_weight[b][holder - 1], 0)
        partial = (bounds[b] - ranks_before) * values[:, holder]
        out[b] = np.diff(before + partial, axis=1)
    return out if sorted_values.ndim == 2 else out[:, 0]
