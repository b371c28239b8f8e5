"""Counter-based randomness keyed by sample: no global state, no dependence on batching.

A random number advcal draws for sample ``i`` is a hash of ``(seed, i, stream, position)``.
The same seed and index give the same numbers whatever the batch size, the shard, or the order
the samples come in (DESIGN invariant 3), and nothing here touches torch's or numpy's global
random state. The mixer is SplitMix64's finaliser, a bijective avalanche on 64-bit integers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MIX1 = np.uint64(0xBF58476D1CE4E5B9)
MIX2 = np.uint64(0x94D049BB133111EB)


def mix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser, elementwise on uint64 (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = z ^ (z >> np.uint64(30))
        z = z * MIX1
        z ^= z >> np.uint64(27)
        z *= MIX2
        z ^= z >> np.uint64(31)
    return z


def sample_keys(seed: int, index: np.ndarray | torch.Tensor, stream: int = 0) -> np.ndarray:
    """One 64-bit key per sample from ``(seed, sample index, stream)``."""
    index = np.asarray(index.cpu() if isinstance(index, torch.Tensor) else index, dtype=np.int64)
    with np.errstate(over="ignore"):
        salt = mix64(mix64(np.array([seed], dtype=np.uint64) * GOLDEN + GOLDEN) ^ np.uint64(stream))
        return mix64(index.astype(np.uint64) * GOLDEN + salt)


def keyed_uniform(
    seed: int, index: np.ndarray | torch.Tensor, shape: tuple[int, ...], stream: int = 0
) -> torch.Tensor:
    """float32 uniforms in [0, 1) of shape ``(len(index), *shape)``, row ``i`` from ``index[i]``."""
    keys = sample_keys(seed, index, stream)
    size = int(np.prod(shape, dtype=np.int64))
    with np.errstate(over="ignore"):
        bits = mix64(keys[:, None] + np.arange(1, size + 1, dtype=np.uint64) * MIX2)
    # The top 24 bits make a float32 in [0, 1) exactly, never rounding up to 1.0.
    uniform = (bits >> np.uint64(40)).astype(np.float32) * np.float32(2.0**-24)
    return torch.from_numpy(uniform.reshape(len(keys), *shape))


@contextmanager
def torch_seeded(seed: int) -> Iterator[None]:
    """Run the block as if torch's global generator were seeded with ``seed``, then give the
    caller back their own random state (CPU and every CUDA device). For code that can only draw
    from the global generator: module initialisation, a third-party model's constructor."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        yield
