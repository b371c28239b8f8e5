"""Smooth ECE (Błasiok & Nakkiran 2023): a calibration error that needs no binning choice.

The residuals ``r_i = confidence_i - correct_i`` are smoothed with a Gaussian kernel of width
``σ`` reflected at 0 and 1, and ``smECE_σ = (1/N) ∫_0^1 |Σ_i K_σ(t, f_i) r_i| dt``. The
bandwidth is the fixed point ``σ* = smECE_σ*``, which makes the estimator consistent.

advcal places the residual masses on the grid ``j / 8192`` (split linearly between the two
neighbouring points), smooths them exactly in the cosine basis (the Neumann heat kernel on
[0, 1], i.e. infinitely many reflections) and integrates ``|·|`` with the trapezoid rule. The
quadrature grid is the coarsest of 256 ... 8192 intervals that puts a number of points inside
the fixed-point bandwidth (20 for the point estimate, fewer for bootstrap replicates: see
:class:`Accuracy`), so each answer depends on its own weights only, not on which other rows
were solved with it. The fixed point is found by
a Newton iteration safeguarded by bisection, vectorised over bootstrap replicates and started
from the point estimate; ``smECE_σ`` is non-increasing in ``σ``, so ``smECE_σ - σ`` has a
single root. relplot's ``smECE`` (one reflection, bisection to 2^-10) agrees to about 1e-3.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import fft

GRID_INTERVALS = 8192
# relplot's floor on the bandwidth; below it the estimate is dominated by grid resolution.
MIN_BANDWIDTH = 1e-3
QUADRATURE_GRIDS = (256, 512, 1024, 2048, 4096, GRID_INTERVALS)
# Replicates start on the coarsest grid that resolves 1/REPLICATE_MARGIN of the point
# estimate's bandwidth, so few of them (whose bandwidths scatter around it) need a finer one.
REPLICATE_MARGIN = 1.25
# The cosine coefficients come from the samples (a basis of N x terms cosines, grown on demand
# and kept, then a matrix product) or from the masses on the grid (one DCT per row), whichever
# costs less. Costs in multiply-adds of the product, measured on 2 cores (0.025 ns each): a
# new basis entry 4 ns, a grid row (its masses and its DCT) 90 µs.
BASIS_ENTRY_COST = 160
GRID_ROW_COST = 3_600_000
TOLERANCE = 1e-12
MAX_ITERATIONS = 60
# cos(π m / 8192) for m = 0 ... 16383: one period of the cosine basis on the grid.
_COSINES = np.cos(np.pi * np.arange(2 * GRID_INTERVALS) / GRID_INTERVALS)
_PERIOD_MASK = 2 * GRID_INTERVALS - 1


@dataclass(frozen=True)
class Accuracy:
    """How finely one smooth ECE is computed.

    Attributes:
        resolution: quadrature points per bandwidth. The trapezoid error at the kinks of |·|
            grows with the square of the spacing.
        damped_out: cosine terms with ``πkσ`` above this are dropped (their weight is below
            ``exp(-damped_out² / 2)``).
        last_step: a Newton step shorter than this is taken without another evaluation; its
            own error is of the order of its square times the curvature.
        dtype: of the damping factors and the DCTs (sums are taken in float64 either way).
    """

    resolution: int
    damped_out: float
    last_step: float
    dtype: type = np.float64


# The point estimate: quadrature error ~3e-7, terms dropped below e^-40 (float64 rounding).
POINT = Accuracy(resolution=20, damped_out=9.0, last_step=1e-7)
# Bootstrap replicates, whose percentile intervals carry a Monte Carlo error near 1e-3: errors
# of up to 1e-5 per replicate (terms dropped below e^-18, float32 damping and DCTs), measured on the
# default audit's reports to move interval ends by at most 3e-6, in half the time that 8
# points per bandwidth at the point estimate's precision took. A last Newton step of 1e-4 is
# off by ~1e-7 (its square times the curvature): the same errors, one evaluation fewer for
# about a tenth of the replicates.
REPLICATES = Accuracy(resolution=4, damped_out=6.0, last_step=1e-4, dtype=np.float32)


def grid_position(confidence: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Left grid point and fractional offset of each confidence (linear interpolation)."""
    position = np.clip(confidence, 0.0, 1.0) * GRID_INTERVALS
    left = np.minimum(position.astype(np.int64), GRID_INTERVALS - 1)
    return left, position - left


class SmoothEceSolver:
    """Smooth ECE of weighted copies of one sample (the point estimate and its replicates).

    Args:
        confidence: top-label confidence of each sample, shape ``(N,)``.
        correct: 1.0 where the prediction is right, else 0.0, shape ``(N,)``.
    """

    def __init__(self, confidence: np.ndarray, correct: np.ndarray):
        residual = confidence - correct.astype(np.float64)
        self.left, frac = grid_position(confidence)
        self.lower = residual * (1 - frac)  # mass on grid point left_i
        self.upper = residual * frac  # mass on grid point left_i + 1
        self._basis = np.empty((0, len(self.left)))  # rows k = 0, 1, ...: grown on demand
        self._runs: tuple[np.ndarray, np.ndarray] | None = None  # grid cells and where their runs start

    def solve(
        self, weights: np.ndarray, accuracy: Accuracy = POINT, start: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Smooth ECE and its bandwidth for each row of ``weights`` (shape ``(B, N)``).

        Each row takes the coarsest quadrature grid with ``accuracy.resolution`` points per
        bandwidth, searching from the grid that resolves ``start / REPLICATE_MARGIN`` when
        ``start`` (a first guess of the bandwidth: the point estimate's, for replicates) is given.
        """
        weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
        totals = weights.sum(1)
        values, widths = np.full(len(weights), np.nan), np.full(len(weights), np.nan)
        pending = np.arange(len(weights))
        resolution = accuracy.resolution
        first = 0 if start is None else quadrature_grid(start / REPLICATE_MARGIN, resolution)
        for level in QUADRATURE_GRIDS[QUADRATURE_GRIDS.index(first) if first else 0 :]:
            floor = MIN_BANDWIDTH if level == GRID_INTERVALS else resolution / level
            terms = min(level, int(np.ceil(accuracy.damped_out / (np.pi * floor)))) + 1
            coefficients = self._coefficients(weights[pending], terms)
            value, width, below = _fixed_point(coefficients, totals[pending], level, floor, start, accuracy)
            solved = ~below if level < GRID_INTERVALS else np.ones(len(width), bool)
            values[pending[solved]], widths[pending[solved]] = value[solved], width[solved]
            pending = pending[~solved]
            if not len(pending):
                break
            # The rest have roots below this floor: on the next grid, start at its floor, from
            # where Newton's steps on the decreasing convex smECE_σ - σ climb to the root.
            start = 0.0
        return values, widths

    def _coefficients(self, weights: np.ndarray, terms: int) -> np.ndarray:
        """``c_k = Σ_j m_j cos(π k j / 8192)`` for ``k < terms``: cosine coefficients of the masses."""
        n, have = len(self.left), len(self._basis)
        by_samples = n * max(0, terms - have) * BASIS_ENTRY_COST + len(weights) * n * terms
        if by_samples <= len(weights) * GRID_ROW_COST:
            if terms > have:
                # cos(π k j / 8192) depends on k j mod 16384 only: a table lookup, with the
                # argument reduced exactly, instead of a cosine per entry.
                # (k j < 2^31 on this grid: int32 indices, half the memory traffic of int64.)
                k = np.arange(have, terms, dtype=np.int32)[:, None]
                index = k * self.left.astype(np.int32)
                index &= _PERIOD_MASK
                extra = np.take(_COSINES, index)
                extra *= self.lower
                index += k  # k (j + 1): the upper grid point
                index &= _PERIOD_MASK
                upper = np.take(_COSINES, index)
                upper *= self.upper
                extra += upper
                self._basis = np.concatenate([self._basis, extra])
            # In torch, not numpy: numpy's OpenBLAS threads spin for a while after each product
            # and slow the torch passes that the audit runs next on the same few cores.
            basis = torch.from_numpy(self._basis[:terms])
            return (torch.from_numpy(weights) @ basis.T).numpy()
        masses = self._masses(weights)
        masses[:, [0, -1]] *= 2
        return fft.dct(masses, type=1, axis=-1)[:, :terms] / 2

    def _masses(self, weights: np.ndarray) -> np.ndarray:
        size = GRID_INTERVALS + 1
        if self._runs is None and np.all(self.left[1:] >= self.left[:-1]):
            self._runs = np.unique(self.left, return_index=True)
        if self._runs is None:  # samples in any order: one weighted count per row
            return np.stack([np.bincount(self.left, w * self.lower, size)
                             + np.bincount(self.left + 1, w * self.upper, size) for w in weights])
        # Samples in rank order (as the bootstrap passes them): grid cells are runs of samples.
        cells, starts = self._runs
        masses = np.zeros((len(weights), size))
        masses[:, cells] += np.add.reduceat(weights * self.lower, starts, axis=1)
        masses[:, cells + 1] += np.add.reduceat(weights * self.upper, starts, axis=1)
        return masses


def quadrature_grid(bandwidth: float, resolution: int) -> int:
    """The coarsest quadrature grid with ``resolution`` points per ``bandwidth``."""
    return next((g for g in QUADRATURE_GRIDS if bandwidth >= resolution / g), GRID_INTERVALS)


def _smooth_ece_at(
    coefficients: np.ndarray, totals: np.ndarray, grid: int, sigma: np.ndarray, work: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``smECE_σ`` of each row and its derivative in ``σ``, by the trapezoid rule on ``grid`` intervals.

    The smoothed residual density is ``c_0 + 2 Σ_k c_k e^{-(πkσ)²/2} cos(πkt)``; its values on
    the grid are one DCT-I, and so are those of its ``σ``-derivative. ``work`` (at least
    ``2 x rows`` rows of ``grid + 1``, in the DCTs' dtype) holds both transforms in place: the
    same pages serve every evaluation of a solve, rather than fresh ones faulted in each time.
    """
    rows, terms = coefficients.shape
    # In the transforms' dtype throughout (float32 for replicates: half the memory traffic).
    pi_k = np.pi * np.arange(terms, dtype=work.dtype)
    damped = work[: 2 * rows]
    damped[:, terms:] = 0
    exponent = np.multiply.outer(sigma.astype(work.dtype), pi_k)  # πkσ
    slope = exponent * pi_k  # σ (πk)², negated below
    np.square(exponent, out=exponent)
    exponent *= -0.5
    terms_at_sigma = np.exp(exponent, out=exponent)
    terms_at_sigma *= coefficients
    damped[:rows, :terms] = terms_at_sigma
    np.multiply(terms_at_sigma, slope, out=slope)
    np.negative(slope, out=damped[rows:, :terms], casting="same_kind")
    damped[:, grid] *= 2  # DCT-I halves its last term; the series does not
    transformed = fft.dct(damped, type=1, axis=-1, overwrite_x=True)
    density, density_slope = transformed[:rows], transformed[rows:]
    # Sums rather than products with the trapezoid weights: no BLAS call (see _coefficients).
    density_slope *= np.sign(density)
    derivative = _trapezoid(density_slope, grid) / totals
    value = _trapezoid(np.abs(density, out=density), grid) / totals
    return value, derivative


def _trapezoid(values: np.ndarray, grid: int) -> np.ndarray:
    """The trapezoid rule of each row of ``values`` (``grid + 1`` points on [0, 1])."""
    ends = values[:, 0].astype(np.float64) + values[:, -1]
    return (values.sum(1, dtype=np.float64) - 0.5 * ends) / grid


def _fixed_point(
    coefficients: np.ndarray, totals: np.ndarray, grid: int, floor: float, start: float | None,
    accuracy: Accuracy,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Solve ``smECE_σ = σ`` on ``[floor, 1]`` for each row: (values, σ, root below floor).

    A row whose root lies at or below ``floor`` comes back with ``σ = floor`` and its value
    there; every other row's value is its σ (the fixed point).
    """
    rows = len(coefficients)
    lower, upper = np.full(rows, floor), np.ones(rows)
    values, below = np.full(rows, np.nan), np.zeros(rows, bool)
    sigma = np.full(rows, np.clip(0.05 if start is None else start, floor, 1.0))
    active = np.ones(rows, bool)
    work = np.empty((2 * rows, grid + 1), accuracy.dtype)
    coefficients = coefficients.astype(accuracy.dtype, copy=False)
    for _ in range(MAX_ITERATIONS):
        if not active.any():
            break
        now = np.flatnonzero(active)
        s = sigma[now]
        value, derivative = _smooth_ece_at(coefficients[now], totals[now], grid, s, work)
        excess = value - s  # decreasing in σ, with slope derivative - 1 <= -1
        floored = (s <= floor) & (excess <= 0)
        below[now] = floored
        lower[now] = np.where(excess > 0, s, lower[now])
        upper[now] = np.where(excess <= 0, s, upper[now])
        # Newton's step; a root below the floor is tested at the floor, a step out of the
        # bracket is replaced by bisection.
        raw = s - excess / (derivative - 1)
        newton = np.maximum(raw, floor)
        inside = (newton >= lower[now]) & (newton <= upper[now])
        step = np.where(inside, newton, 0.5 * (lower[now] + upper[now]))
        last = inside & (raw >= floor) & (np.abs(raw - s) <= accuracy.last_step)
        done = floored | last | (np.abs(step - s) <= TOLERANCE) | (upper[now] - lower[now] <= TOLERANCE)
        sigma[now] = np.where(done & ~last, s, step)
        values[now] = np.where(last, step, value)
        active[now[done]] = False
    return values, sigma, below


def smooth_ece(confidence: np.ndarray, correct: np.ndarray) -> tuple[float, float]:
    """Smooth ECE of top-label ``confidence`` against ``correct`` (0/1), and its bandwidth."""
    values, widths = SmoothEceSolver(confidence, correct).solve(np.ones((1, len(confidence))))
    return float(values[0]), float(widths[0])
