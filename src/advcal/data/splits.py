"""Deterministic stratified splits, and the stratified order that ``limit`` takes a prefix of.

Nothing here touches a global random state. A sample's place is decided by a 64-bit hash of
``(SEED, its position, a stream)`` (:func:`advcal._core.rng.sample_keys`, a bijection on positions, so
no two samples tie), which makes every split a function of the labels alone: the same on every
machine, numpy version and run.
"""

from __future__ import annotations

import numpy as np

from advcal._core.rng import sample_keys

SPLITS = ("train", "calibration", "test")
# Every sample of a source without an official test set (a user's own test folder or file).
WHOLE = "all"
SEED = 0
SPLIT_STREAM = 1
LIMIT_STREAM = 2

# Datasets with an official test set: calibration is this fraction of the official training
# set, at most CALIBRATION_MAX samples; train is the rest.
CALIBRATION_FRACTION = (1, 10)
CALIBRATION_MAX = 5000
# Datasets without one: calibration and test are each this fraction of everything.
HELD_OUT_FRACTION = (1, 5)


def round_fraction(n: int, fraction: tuple[int, int]) -> int:
    """``n * numerator / denominator`` rounded half up, in exact integer arithmetic."""
    numerator, denominator = fraction
    return (2 * n * numerator + denominator) // (2 * denominator)


def allocate(total: int, room: np.ndarray) -> np.ndarray:
    """Spread ``total`` samples over classes in proportion to ``room``, at most ``room[c]`` each.

    Largest-remainder apportionment in integers: each class first gets the floor of its share,
    then the leftover samples go one each to the classes with the largest remainders (ties to
    the lower class). Shares proportional to what is left keep classes balanced when a second
    split is carved after a first.
    """
    room = np.asarray(room, dtype=np.int64)
    available = int(room.sum())
    if not 0 <= total <= available:
        raise ValueError(f"cannot take {total} samples from {available}")
    if total == 0:
        return np.zeros_like(room)
    quota = np.minimum(total * room // available, room)
    order = np.argsort(-(total * room % available), kind="stable")
    left = total - int(quota.sum())
    while left > 0:  # one pass suffices unless a class is full; the guard above ensures an end
        for c in order:
            if left and quota[c] < room[c]:
                quota[c] += 1
                left -= 1
    return quota


def _carve(labels: np.ndarray, totals: dict[str, int], rest: str) -> dict[str, np.ndarray]:
    """Positions of each named part, taken class by class in hash order; ``rest`` gets the rest."""
    positions = np.arange(len(labels))
    _, klass = np.unique(labels, return_inverse=True)
    sizes = np.bincount(klass)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    # Grouped by class, and within a class ordered by the hash of the sample's position.
    order = np.lexsort((sample_keys(SEED, positions, SPLIT_STREAM), klass))
    taken = np.zeros_like(sizes)
    parts: dict[str, np.ndarray] = {}
    for name, total in totals.items():
        quota = allocate(total, sizes - taken)
        chunks = [order[s + t : s + t + q] for s, t, q in zip(starts, taken, quota, strict=True)]
        parts[name] = np.sort(np.concatenate(chunks)) if chunks else positions[:0]
        taken += quota
    chunks = [order[s + t : s + n] for s, t, n in zip(starts, taken, sizes, strict=True)]
    parts[rest] = np.sort(np.concatenate(chunks)) if chunks else positions[:0]
    return parts


def split_official_train(labels: np.ndarray) -> dict[str, np.ndarray]:
    """``train`` and ``calibration`` positions within an official training set.

    Calibration holds round(10% of N), at most 5,000, samples, stratified by class.
    """
    total = min(round_fraction(len(labels), CALIBRATION_FRACTION), CALIBRATION_MAX)
    return _carve(labels, {"calibration": total}, rest="train")


def split_three_way(labels: np.ndarray) -> dict[str, np.ndarray]:
    """``train`` / ``calibration`` / ``test`` positions (60% / 20% / 20%) of a whole dataset."""
    held_out = round_fraction(len(labels), HELD_OUT_FRACTION)
    return _carve(labels, {"calibration": held_out, "test": held_out}, rest="train")


def stratified_order(labels: np.ndarray) -> np.ndarray:
    """A fixed permutation of ``range(len(labels))`` whose every prefix is stratified.

    Within each class the samples are ordered by the hash of their position; the k-th sample
    (k = 0, 1, ...) of a class of n samples gets the key k / n, and the order sorts by key, ties
    by class. The first samples are thus one of each class, and any prefix holds every class in
    proportion to its size, off by less than one sample when classes are balanced (less than the
    number of classes in general).
    """
    positions = np.arange(len(labels))
    _, klass = np.unique(labels, return_inverse=True)
    sizes = np.bincount(klass)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    by_class = np.lexsort((sample_keys(SEED, positions, LIMIT_STREAM), klass))
    rank = np.empty(len(labels), dtype=np.int64)
    rank[by_class] = positions - starts[klass[by_class]]
    # Equal fractions k/n are equal doubles (division is correctly rounded), so ties are exact.
    return np.lexsort((klass, rank / sizes[klass]))
