"""The smooth-ECE solver: fixed point, quadrature grids, both coefficient routes, batching."""

from __future__ import annotations

import numpy as np
import pytest

from advcal.metrics import smooth
from advcal.metrics.smooth import REPLICATES, SmoothEceSolver, smooth_ece
from conftest import smooth_ece_by_brute_force


def sample(n: int, seed: int, overconfidence: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    confidence = rng.uniform(0.3, 1.0, n)
    correct = (rng.uniform(size=n) < confidence - overconfidence).astype(np.float64)
    return confidence, correct


@pytest.mark.parametrize(("n", "overconfidence"), [(300, 0.0), (300, 0.1), (2000, 0.02), (300, 0.4)])
def test_value_is_the_integral_at_its_own_bandwidth(n, overconfidence):
    confidence, correct = sample(n, seed=n, overconfidence=overconfidence)
    value, width = smooth_ece(confidence, correct)
    assert value == pytest.approx(width, abs=1e-10)  # a fixed point
    assert smooth_ece_by_brute_force(confidence, correct, width) == pytest.approx(value, abs=1e-6)


def test_replicates_match_the_fine_integral_and_do_not_depend_on_their_batch():
    confidence, correct = sample(400, seed=3, overconfidence=0.05)
    weights = np.random.default_rng(4).poisson(1.0, (40, 400)).astype(np.float64)
    solver = SmoothEceSolver(confidence, correct)
    start = smooth_ece(confidence, correct)[1]
    values, widths = solver.solve(weights, REPLICATES, start)
    for row in (0, 17, 39):
        alone, _ = solver.solve(weights[row : row + 1], REPLICATES, start)
        assert alone[0] == pytest.approx(values[row], abs=1e-12)
        assert smooth_ece_by_brute_force(confidence, correct, widths[row], weights[row]) == pytest.approx(
            values[row], abs=5e-6
        )
    assert np.allclose(values, widths, atol=1e-10)


def test_the_grid_route_equals_the_sample_route(monkeypatch):
    confidence, correct = sample(3000, seed=8, overconfidence=0.03)
    weights = np.random.default_rng(9).poisson(1.0, (5, 3000)).astype(np.float64)
    by_samples = SmoothEceSolver(confidence, correct).solve(weights)
    monkeypatch.setattr(smooth, "GRID_ROW_COST", 0)  # the grid route, always
    by_grid = SmoothEceSolver(confidence, correct).solve(weights)
    np.testing.assert_allclose(by_grid[0], by_samples[0], atol=1e-12)


def test_a_narrow_bandwidth_moves_to_a_finer_grid_and_a_calibrated_sample_hits_the_floor():
    rng = np.random.default_rng(5)
    confidence = rng.uniform(0.5, 1.0, 6000)
    correct = (rng.uniform(size=6000) < confidence).astype(np.float64)  # calibrated: tiny smECE
    value, width = smooth_ece(confidence, correct)
    assert width < smooth.POINT.resolution / 1024  # resolved on a grid finer than 1024
    assert smooth_ece_by_brute_force(confidence, correct, width) == pytest.approx(value, abs=1e-6)
    # All residuals zero: the root is below the bandwidth floor, which is returned.
    exact = np.ones(50)
    assert smooth_ece(exact, exact) == (0.0, smooth.MIN_BANDWIDTH)


def test_the_grid_route_accepts_samples_in_any_order(monkeypatch):
    monkeypatch.setattr(smooth, "GRID_ROW_COST", 0)  # the grid route, always
    confidence, correct = sample(3000, seed=10, overconfidence=0.05)
    order = np.argsort(confidence, kind="stable")
    weights = np.random.default_rng(11).poisson(1.0, (3, 3000)).astype(np.float64)
    shuffled = SmoothEceSolver(confidence, correct).solve(weights)
    ranked = SmoothEceSolver(confidence[order], correct[order]).solve(weights[:, order])
    np.testing.assert_allclose(shuffled[0], ranked[0], atol=1e-12)


@pytest.mark.parametrize("overconfidence", [0.0, 0.05, 0.3])
def test_replicate_accuracy_stays_within_the_bootstrap_s_own_precision(overconfidence):
    """REPLICATES trades quadrature points, cosine terms and float64 transforms for speed: each
    replicate stays within 2e-5 of its value at the point estimate's accuracy, and the interval
    ends within 1e-5 (the bootstrap's own Monte Carlo error is near 1e-3)."""
    confidence, correct = sample(500, seed=21, overconfidence=overconfidence)
    weights = np.random.default_rng(22).poisson(1.0, (200, 500)).astype(np.float64)
    start = smooth_ece(confidence, correct)[1]
    fine, _ = SmoothEceSolver(confidence, correct).solve(weights, smooth.POINT, start)
    coarse, _ = SmoothEceSolver(confidence, correct).solve(weights, REPLICATES, start)
    assert np.abs(coarse - fine).max() < 2e-5
    ends = np.quantile(coarse, [0.025, 0.975]) - np.quantile(fine, [0.025, 0.975])
    assert np.abs(ends).max() < 1e-5
