"""Bootstrap intervals: seeded, local randomness only, statistically sound."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from advcal.metrics import CalibrationStats, bootstrap, calibration_report
from advcal.metrics.bootstrap import (
    percentile_interval,
    percentile_intervals,
    poisson_weights,
    sample_seeds,
    weight_blocks,
)
from advcal.metrics.stats import _add_class_cells, _ClassEntries, _empty_cells
from conftest import make_predictions


def test_same_seed_same_intervals_and_no_global_rng_touched(predictions):
    logits, labels = predictions
    # The legacy global numpy state is exactly what must stay untouched.
    torch_state, numpy_state = torch.random.get_rng_state(), np.random.get_state()  # noqa: NPY002
    first = calibration_report(logits, labels, bootstrap=50, seed=11, smooth=True)
    second = calibration_report(logits, labels, bootstrap=50, seed=11, smooth=True)
    assert first.intervals == second.intervals
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert np.random.get_state()[1].tolist() == numpy_state[1].tolist()  # noqa: NPY002
    other = calibration_report(logits, labels, bootstrap=50, seed=12)
    assert other.intervals["ece"] != first.intervals["ece"]


def test_every_scalar_has_an_interval_around_its_value(predictions):
    logits, labels = predictions
    report = calibration_report(logits, labels, bootstrap=200, smooth=True)
    assert set(report.intervals) == set(report)
    for key, (low, high) in report.intervals.items():
        assert low <= high, key
        # Percentile intervals of biased statistics (ECE) may sit beside the estimate, but
        # never far from it.
        assert low - 0.05 <= report[key] <= high + 0.05, key


def test_accuracy_interval_has_the_binomial_width():
    logits, labels = make_predictions(20000, 10, seed=1)
    report = calibration_report(logits, labels, bootstrap=400, seed=0)
    p = report["accuracy"]
    low, high = report.intervals["accuracy"]
    expected = 2 * 1.959964 * math.sqrt(p * (1 - p) / 20000)
    assert high - low == pytest.approx(expected, rel=0.15)


def test_poisson_weights_are_poisson_one_and_tied_to_sample_keys():
    keys = np.arange(200_000)
    weights = np.concatenate(list(weight_blocks(sample_seeds(5, keys), 20)))
    assert weights.shape == (20, 200_000)
    counts = np.bincount(weights.astype(int).ravel(), minlength=6)[:6] / weights.size
    expected = [math.exp(-1) / math.factorial(k) for k in range(6)]
    np.testing.assert_allclose(counts, expected, atol=2e-3)
    assert abs(np.corrcoef(weights[0], weights[1])[0, 1]) < 0.01
    # The weights of samples 1000..1999 do not depend on which other samples are present.
    subset = poisson_weights(sample_seeds(5, keys[1000:2000]), range(3, 9))
    np.testing.assert_array_equal(subset, weights[3:9, 1000:2000])


def test_remembered_weights_are_the_same_numbers_and_cannot_be_corrupted_by_a_caller():
    """Recent weight blocks are kept for the next report of the same samples: each caller
    gets its own array, and a block in another sample order is the same draw, permuted."""
    seeds = sample_seeds(3, np.arange(500))
    first = poisson_weights(seeds, range(40))
    first[:] = -1  # a caller writing into its weights changes nobody else's
    again = poisson_weights(seeds, range(40))
    assert again.min() >= 0
    np.testing.assert_array_equal(again, poisson_weights(sample_seeds(3, np.arange(500)), range(40)))
    np.testing.assert_array_equal(poisson_weights(seeds, range(40), samples_first=True), again.T)
    order = np.random.default_rng(0).permutation(500)
    (permuted,) = weight_blocks(seeds, 40, order)
    np.testing.assert_array_equal(permuted, again[:, order])
    np.testing.assert_array_equal(permuted, poisson_weights(seeds[order], range(40)))


def test_blocks_too_large_to_keep_are_the_same_numbers(monkeypatch):
    """Blocks above the kept size are drawn afresh, in the order asked (a permutation of a
    large kept block would cost more than the draw)."""
    seeds = sample_seeds(4, np.arange(300))
    order = np.random.default_rng(1).permutation(300)
    kept = list(weight_blocks(seeds, 12, order))
    unordered = list(weight_blocks(seeds, 12))
    monkeypatch.setattr(bootstrap, "_RECENT_BYTES", 64)  # nothing is kept
    for small, large in zip(kept, weight_blocks(seeds, 12, order), strict=True):
        np.testing.assert_array_equal(small, large)
    for small, large in zip(unordered, weight_blocks(seeds, 12), strict=True):
        np.testing.assert_array_equal(small, large)
    np.testing.assert_array_equal(poisson_weights(seeds, range(12), samples_first=True),
                                  np.concatenate(unordered).T)


def test_streamed_classwise_replicates_equal_a_direct_weighted_computation():
    logits, labels = make_predictions(300, 4, seed=2)
    stats = CalibrationStats(n_bins=5, bootstrap=7, seed=9)
    for lo in range(0, 300, 64):
        stats.update(logits[lo:lo + 64], labels[lo:lo + 64], index=torch.arange(lo, min(lo + 64, 300)))
    weights = poisson_weights(sample_seeds(9, np.arange(300)), range(7))
    probs = torch.softmax(logits.double(), 1).numpy()
    edges = np.linspace(0, 1, 6)
    for b in range(7):
        for c in range(4):
            bins = np.clip(np.searchsorted(edges, probs[:, c], side="right") - 1, 0, 4)
            for k in range(5):
                mask = bins == k
                np.testing.assert_allclose(
                    float(stats._replicate_cells["class_prob"][b, c, k]),
                    (weights[b] * probs[:, c] * mask).sum(), atol=1e-10)
                np.testing.assert_allclose(
                    float(stats._replicate_cells["class_hits"][b, c, k]),
                    (weights[b] * (labels.numpy() == c) * mask).sum(), atol=1e-10)


def test_unweighted_cells_are_exact_integers():
    cells = _empty_cells(3, 4, torch.int64, ())
    probs = torch.softmax(torch.randn(50, 3, dtype=torch.float64), 1)
    labels = torch.randint(0, 3, (50,))
    total = torch.ones(50, dtype=torch.float64)
    _add_class_cells(cells, _ClassEntries.of(probs, total, labels, 4), probs, total)
    assert cells["class_count"].dtype == torch.int64
    assert cells["class_count"].sum(1).tolist() == [50, 50, 50]
    assert cells["class_hits"].sum().item() == 50


@pytest.mark.parametrize("n_classes", [2, 10])
def test_replicate_path_with_unit_weights_equals_the_point_estimate(n_classes):
    """Replicates use prefix sums in rank order; with weight 1 everywhere they must give the
    point estimate, which is computed the plain way."""
    from advcal.metrics.binning import equal_width_bin_index, sorted_by_rank
    from advcal.metrics.report import _RankedSamples
    from advcal.metrics.smooth import SmoothEceSolver

    logits, labels = make_predictions(1001, n_classes, seed=6, temperature=0.4)
    stats = CalibrationStats(n_bins=15).update(logits, labels)
    point = stats.compute(smooth=True)
    records = stats._records.joined()
    bins = equal_width_bin_index(torch.from_numpy(records["confidence"]), 15).numpy()
    solver = SmoothEceSolver(*sorted_by_rank(records["confidence"], records["correct"]))
    ranked = _RankedSamples(records, bins, 15, smooth=(solver, point["smooth_ece"]))
    cells = {k: v.numpy().astype(np.float64)[None] for k, v in stats._cells.items()}
    replicate = ranked.scalars(np.ones((1, 1001)), cells)
    for key, value in point.items():
        # Replicates integrate smooth ECE on a coarser quadrature grid (see metrics/smooth.py).
        tolerance = 1e-5 if key == "smooth_ece" else 1e-10
        assert replicate[key][0] == pytest.approx(value, abs=tolerance), key


def test_each_replicate_equals_the_point_estimate_of_its_resampled_data():
    """Replicate b weighs sample i by w_bi: its metrics are those of the data with sample i
    repeated w_bi times (equal-mass bins split a repeated sample across a bin boundary)."""
    logits, labels = make_predictions(257, 5, seed=12, temperature=0.5)
    report = calibration_report(logits, labels, bootstrap=6, seed=3, smooth=True)
    weights = poisson_weights(sample_seeds(3, np.arange(257)), range(6))
    for b in range(6):
        repeats = torch.from_numpy(weights[b].astype(np.int64))
        resampled = calibration_report(
            logits.repeat_interleave(repeats, 0), labels.repeat_interleave(repeats), smooth=True
        )
        for key, value in resampled.items():
            # Replicates integrate smooth ECE on a coarser quadrature grid (see metrics/smooth.py).
            tolerance = 1e-5 if key == "smooth_ece" else 1e-10
            assert report.replicates[key][b] == pytest.approx(value, abs=tolerance, nan_ok=True), (b, key)


def test_percentile_intervals_of_many_rows_equal_one_row_at_a_time():
    """Reports take every metric's interval in one sort; rows with NaNs or infinities (an
    undefined reliability slope in some replicates) fall back to their finite values, an
    all-NaN row to (nan, nan). Each end is np.quantile's, to the last bit."""
    rng = np.random.default_rng(0)
    replicates = rng.normal(size=(8, 200))
    replicates[2, [5, 77]] = np.nan
    replicates[3, [1, 9]] = np.inf, -np.inf
    replicates[4] = np.nan
    replicates[5, 1:] = np.nan  # one finite value
    replicates[6] = np.round(replicates[6], 1)  # ties
    for level in (0.9, 0.95, 0.5):
        together = percentile_intervals(replicates, level)
        tail = (1 - level) / 2
        for row, values in enumerate(replicates):
            finite = values[np.isfinite(values)]
            expected = np.quantile(finite, [tail, 1 - tail]) if finite.size else [np.nan, np.nan]
            np.testing.assert_array_equal(together[row], expected)
            np.testing.assert_array_equal(percentile_interval(values, level), together[row])
    assert np.isnan(percentile_interval(np.zeros(0), 0.9)).all()  # no replicates: no interval


def test_replicates_that_drew_no_sample_are_left_out_without_warnings():
    import warnings

    logits = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # 3 samples: some replicates weigh 0
        report = calibration_report(logits, torch.tensor([0, 1, 2]), bootstrap=200, seed=0)
    empty = np.isnan(report.replicates["ece"])
    assert 0 < empty.sum() < 200  # e^-3 of them, about 10
    low, high = report.intervals["ece"]
    assert np.isfinite([low, high]).all() and low <= high  # from the replicates that drew samples
