"""Seeded, shard-independent bootstrap weights and percentile intervals.

advcal uses the Poisson bootstrap: in replicate ``b`` sample ``i`` is counted ``w_bi`` times,
``w_bi ~ Poisson(1)``. Unlike resampling ``N`` indices, the weight of a sample depends only on
``(seed, sample key, b)``, so replicates can be accumulated batch by batch, on any number of
shards, and merged exactly. The weights come from a counter-based hash (:mod:`advcal._core.rng`),
never from a global random state: one 64-bit hash gives four replicates' weights through a
16-bit inverse-CDF table (each Poisson probability exact to within 2^-16).
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from collections.abc import Iterator

import numpy as np

from advcal._core.rng import GOLDEN, MIX2, mix64, sample_keys

# Keeps bootstrap weights independent of attack noise drawn with the same seed.
_BOOTSTRAP_STREAM = 0xB007

# Elements per block of weights (replicates x samples): 4M float64 = 32 MB.
BLOCK_ELEMENTS = 1 << 22
_LANES = 4  # 16-bit uniforms per 64-bit hash
# Recently drawn weight blocks, least recently used first, at most this many bytes in all.
_RECENT: OrderedDict[tuple[bytes, int, int, bool], np.ndarray] = OrderedDict()
_RECENT_BYTES = 32 << 20
_RECENT_LOCK = threading.Lock()


def _poisson_table() -> np.ndarray:
    """Poisson(1) inverse CDF at the midpoints of the 65,536 cells of a 16-bit uniform."""
    cdf = np.cumsum([math.exp(-1) / math.factorial(k) for k in range(20)])
    midpoints = (np.arange(1 << 16) + 0.5) / (1 << 16)
    return np.searchsorted(cdf, midpoints, side="right").astype(np.float64)


_TABLE = _poisson_table()


def sample_seeds(seed: int, keys: np.ndarray) -> np.ndarray:
    """Per-sample 64-bit seeds from the bootstrap seed and each sample's key (its index)."""
    return sample_keys(seed, keys, stream=_BOOTSTRAP_STREAM)


def poisson_weights(
    sample_seed: np.ndarray, replicates: range, samples_first: bool = False
) -> np.ndarray:
    """Poisson(1) multiplicities, as float64, of shape ``(len(replicates), N)``.

    Entry ``(b, i)`` depends only on ``sample_seed[i]`` and the replicate number ``b``. With
    ``samples_first`` the same numbers come laid out as ``(N, len(replicates))``.
    """
    if not _remembered(sample_seed.size * len(replicates)):
        return _draw_weights(sample_seed, replicates, samples_first)
    return _shared_weights(sample_seed, replicates, samples_first).copy()


def _shared_weights(sample_seed: np.ndarray, replicates: range, samples_first: bool) -> np.ndarray:
    """:func:`poisson_weights` of a small block (see :func:`_remembered`), remembered: callers
    must not modify the array returned.

    An audit draws the same weights for each condition of a batch (clean and every ε score
    the same samples), so the last few blocks are kept: a copy costs an eighth of a draw.
    """
    key = (sample_seed.tobytes(), replicates.start, replicates.stop, samples_first)
    with _RECENT_LOCK:
        if key in _RECENT:
            _RECENT.move_to_end(key)
            return _RECENT[key]
    weights = _draw_weights(sample_seed, replicates, samples_first)
    with _RECENT_LOCK:
        _RECENT[key] = weights
        while sum(w.nbytes for w in _RECENT.values()) > _RECENT_BYTES:
            _RECENT.popitem(last=False)
    return weights


def _remembered(n_weights: int) -> bool:
    """Whether a block of ``n_weights`` float64 weights is small enough to keep."""
    return 8 * n_weights <= _RECENT_BYTES // 4


def _draw_weights(sample_seed: np.ndarray, replicates: range, samples_first: bool) -> np.ndarray:
    first, last = replicates.start // _LANES, (replicates.stop + _LANES - 1) // _LANES
    with np.errstate(over="ignore"):
        group = mix64(np.arange(first, last, dtype=np.uint64) * MIX2 + GOLDEN)
        bits = mix64(sample_seed[:, None] ^ group[None, :])  # (N, groups)
    lanes = bits.view(np.uint16).reshape(len(sample_seed), -1)  # (N, groups * lanes)
    if not samples_first:
        lanes = lanes.T
    offset = replicates.start - first * _LANES
    lanes = lanes[offset : offset + len(replicates)] if not samples_first else lanes[
        :, offset : offset + len(replicates)
    ]
    return np.take(_TABLE, lanes)


def weight_blocks(
    sample_seed: np.ndarray, n_replicates: int, order: np.ndarray | None = None
) -> Iterator[np.ndarray]:
    """Yield the ``n_replicates`` rows of Poisson weights in blocks of bounded memory.

    With ``order``, column ``j`` of each block holds the weights of sample ``order[j]``: the
    blocks of several orderings of the same samples (an audit's reports, each in its own rank
    order) share one draw.
    """
    step = max(_LANES, BLOCK_ELEMENTS // max(1, sample_seed.size) // _LANES * _LANES)
    for start in range(0, n_replicates, step):
        replicates = range(start, min(start + step, n_replicates))
        if order is None:
            yield poisson_weights(sample_seed, replicates)
        elif _remembered(sample_seed.size * len(replicates)):
            yield np.take(_shared_weights(sample_seed, replicates, False), order, axis=1)
        else:  # a block too large to keep: drawn in the order asked, not drawn then permuted
            yield _draw_weights(sample_seed[order], replicates, False)


def percentile_interval(replicates: np.ndarray, level: float) -> tuple[float, float]:
    """The central ``level`` percentile interval of bootstrap replicates (NaNs ignored)."""
    low, high = percentile_intervals(replicates[None], level)[0]
    return (float(low), float(high))


def percentile_intervals(replicates: np.ndarray, level: float) -> np.ndarray:
    """:func:`percentile_interval` of each row of ``replicates`` (shape ``(M, B)``), as ``(M, 2)``.

    Each row's finite values, as ``np.quantile`` (its default linear method) would take them:
    one sort of every row (non-finite values moved last) and numpy's interpolation formula,
    rather than a quantile call per row with NaNs, several times faster on audit-sized inputs.
    """
    tail = (1.0 - level) / 2.0
    values = np.array(replicates, dtype=np.float64, ndmin=2)
    finite = np.isfinite(values)
    values[~finite] = np.nan  # sorted last, with the NaNs
    values.sort(axis=1)
    counts = finite.sum(1)
    out = np.full((len(values), 2), np.nan)
    rows = np.flatnonzero(counts)
    if not len(rows):
        return out
    position = (counts[rows, None] - 1) * np.array([tail, 1.0 - tail])  # (rows, 2)
    below = np.floor(position)
    gamma = position - below
    below = below.astype(np.intp)
    above = np.minimum(below + 1, counts[rows, None] - 1)
    low, high = values[rows[:, None], below], values[rows[:, None], above]
    # numpy's _lerp: from the nearer end, so gamma = 1 gives the upper value exactly.
    step = high - low
    out[rows] = np.where(gamma >= 0.5, high - step * (1 - gamma), low + step * gamma)
    return out


def keys_digest(keys: np.ndarray) -> str:
    """sha256 of the sorted sample keys: equal digests mean the same samples were scored."""
    keys = np.ascontiguousarray(keys, dtype=np.int64)
    if keys.size > 1 and not bool((keys[1:] >= keys[:-1]).all()):  # usually already sorted
        keys = np.sort(keys)
    return hashlib.sha256(keys.tobytes()).hexdigest()
