"""Seeded, shard-independent bootstrap weights and percentile intervals.

advcal uses the Poisson bootstrap: in replicate ``b`` sample ``i`` is counted ``w_bi`` times,
``w_bi ~ Poisson(1)``. Unlike resampling ``N`` indices, the weight of a sample depends only on
``(seed, sample key, b)``, so replicates can be accumulated batch by batch, on any number of
shards, and merged exactly. The weights come from a counter-based 32-bit hash, never from a
global random state, and are produced in blocks of replicates so memory stays bounded.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

# Elements per block of weights (replicates x samples): 8M float64 = 64 MB.
BLOCK_ELEMENTS = 1 << 23

_M1 = np.uint32(0x7FEB352D)
_M2 = np.uint32(0x846CA68B)
_GOLDEN = np.uint32(0x9E3779B9)
# Poisson(1) inverse CDF on 32-bit uniforms: thresholds T_k = floor(P(W <= k) * 2^32).
_THRESHOLDS = np.array(
    [
        math.floor(sum(math.exp(-1) / math.factorial(j) for j in range(k + 1)) * 2**32)
        for k in range(13)
    ],
    dtype=np.uint64,
).clip(max=2**32 - 1).astype(np.uint32)
# A table on the top 16 bits resolves all but the 13 cells that hold a threshold.
_TOP = np.arange(1 << 16, dtype=np.uint64) << np.uint64(16)
_UNRESOLVED = np.uint8(255)
_TABLE = np.where(
    np.searchsorted(_THRESHOLDS, _TOP, side="right")
    == np.searchsorted(_THRESHOLDS, _TOP + np.uint64(0xFFFF), side="right"),
    np.searchsorted(_THRESHOLDS, _TOP, side="right"),
    _UNRESOLVED,
).astype(np.uint8)


def _hash32(x: np.ndarray) -> np.ndarray:
    """A strong 32-bit integer mixer (xorshift-multiply, "lowbias32" constants)."""
    x = x.astype(np.uint32, copy=True)
    x ^= x >> np.uint32(16)
    x *= _M1
    x ^= x >> np.uint32(15)
    x *= _M2
    x ^= x >> np.uint32(16)
    return x


def _poisson_from_bits(bits: np.ndarray) -> np.ndarray:
    weights = np.take(_TABLE, bits >> np.uint32(16))
    fix = weights == _UNRESOLVED
    if fix.any():
        weights[fix] = np.searchsorted(_THRESHOLDS, bits[fix], side="right")
    return weights


def sample_seeds(seed: int, keys: np.ndarray) -> np.ndarray:
    """Per-sample 32-bit seeds from the bootstrap seed and each sample's key (its index)."""
    keys = np.asarray(keys, dtype=np.int64)
    low = _hash32((keys & 0xFFFFFFFF).astype(np.uint32))
    high = _hash32(((keys >> 32) & 0xFFFFFFFF).astype(np.uint32) ^ _GOLDEN)
    return _hash32(low ^ high ^ _hash32(np.array([seed & 0xFFFFFFFF], dtype=np.uint32)))


def poisson_weights(sample_seed: np.ndarray, replicates: range) -> np.ndarray:
    """Poisson(1) multiplicities, shape ``(len(replicates), N)``, as float64.

    Entry ``(b, i)`` depends only on ``sample_seed[i]`` and the replicate number.
    """
    rep = _hash32(np.arange(replicates.start, replicates.stop, dtype=np.uint32) * _GOLDEN + 1)
    bits = _hash32(sample_seed[None, :] ^ rep[:, None])
    return _poisson_from_bits(bits).astype(np.float64)


def weight_blocks(sample_seed: np.ndarray, n_replicates: int) -> Iterator[np.ndarray]:
    """Yield the ``n_replicates`` rows of Poisson weights in blocks of bounded memory."""
    step = max(1, BLOCK_ELEMENTS // max(1, sample_seed.size))
    for start in range(0, n_replicates, step):
        yield poisson_weights(sample_seed, range(start, min(start + step, n_replicates)))


def percentile_interval(replicates: np.ndarray, level: float) -> tuple[float, float]:
    """The central ``level`` percentile interval of bootstrap replicates (NaNs ignored)."""
    finite = replicates[np.isfinite(replicates)]
    if finite.size == 0:
        return (math.nan, math.nan)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(finite, [tail, 1.0 - tail])
    return (float(low), float(high))
