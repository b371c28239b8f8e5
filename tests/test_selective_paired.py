"""Selective prediction (risk–coverage, AURC) and the paired bootstrap test of a change."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from advcal.errors import InputError
from advcal.metrics import CalibrationStats, paired_change, paired_changes, risk_coverage
from advcal.metrics.selective import coverage_threshold, optimal_aurc, selective_risk
from conftest import make_predictions


def brute_force_curve(confidence, correct):
    """Risk and coverage at every distinct threshold, straight from the definition."""
    points = []
    for t in sorted(set(confidence.tolist()), reverse=True):
        kept = confidence >= t
        points.append((kept.mean(), 1 - correct[kept].mean(), kept.sum()))
    return points


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_risk_coverage_matches_the_definition_with_ties(seed):
    rng = np.random.default_rng(seed)
    confidence = rng.choice([0.4, 0.55, 0.7, 0.9, 1.0], size=300)  # many ties
    correct = rng.uniform(size=300) < confidence
    curve = risk_coverage(confidence, correct)
    expected = brute_force_curve(confidence, correct)
    assert np.allclose(curve.coverage, [c for c, _, _ in expected])
    assert np.allclose(curve.risk, [r for _, r, _ in expected])
    # AURC: each sample weighs the risk at its own step.
    sizes = np.diff([0] + [k for _, _, k in expected])
    assert curve.aurc == pytest.approx(sum(s * r for s, (_, r, _) in zip(sizes, expected, strict=True)) / 300)
    # Order of the samples does not matter.
    order = rng.permutation(300)
    assert risk_coverage(confidence[order], correct[order]).aurc == curve.aurc


def test_aurc_without_ties_is_the_mean_running_risk():
    rng = np.random.default_rng(3)
    confidence = rng.uniform(size=500)
    correct = rng.uniform(size=500) < confidence
    order = np.argsort(-confidence)
    running = np.cumsum(~correct[order]) / np.arange(1, 501)
    assert risk_coverage(confidence, correct).aurc == pytest.approx(running.mean(), rel=1e-12)


def test_perfect_ranking_has_zero_excess_aurc_and_a_random_one_does_not():
    correct = np.array([True] * 80 + [False] * 20)
    perfect = risk_coverage(np.linspace(1, 0.1, 100), correct)
    assert perfect.eaurc == pytest.approx(0, abs=1e-15)
    assert perfect.aurc == pytest.approx(optimal_aurc(80, 100))
    inverted = risk_coverage(np.linspace(0.1, 1, 100), correct)
    assert inverted.aurc > 0.5 and inverted.eaurc > 0.4
    flat = risk_coverage(np.full(100, 0.7), correct)  # one step: AURC is the error rate
    assert flat.aurc == pytest.approx(0.2) and len(flat.coverage) == 1


def test_threshold_and_selective_risk():
    confidence = np.array([0.9, 0.8, 0.8, 0.6, 0.5])
    correct = np.array([True, True, False, False, True])
    assert coverage_threshold(confidence, 0.6) == 0.8
    assert selective_risk(confidence, correct, 0.8) == (pytest.approx(1 / 3), 0.6)
    risk, covered = selective_risk(confidence, correct, 0.95)
    assert math.isnan(risk) and covered == 0
    with pytest.raises(InputError, match="coverage"):
        coverage_threshold(confidence, 0)
    with pytest.raises(InputError, match="confidence, correct"):
        risk_coverage(confidence, correct[:3])


def test_curve_serialisation_is_thinned_but_keeps_its_ends():
    rng = np.random.default_rng(4)
    curve = risk_coverage(rng.uniform(size=5000), rng.uniform(size=5000) < 0.8)
    entry = curve.to_dict()
    assert len(entry["coverage"]) <= 101 and entry["coverage"][-1] == 1.0
    assert entry["coverage"][0] == curve.coverage[0]


# ------------------------------------------------------------------------- paired test
def stats_of(logits, labels, seed=0, bootstrap=300):
    stats = CalibrationStats(n_bins=15, bootstrap=bootstrap, seed=seed)
    stats.update(logits, labels, index=torch.arange(len(labels)))
    return stats.compute()


def test_no_change_is_not_significant_and_a_real_change_is():
    logits, labels = make_predictions(2000, 10, seed=0)
    clean = stats_of(logits, labels)
    same = paired_change(clean, stats_of(logits, labels), "ece")
    assert same.delta == 0 and same.ci == (0.0, 0.0) and same.p_value == 1 and not same.significant
    worse = stats_of(logits * 30, labels)  # far over-confident: ECE rises clearly
    change = paired_change(clean, worse, "ece")
    assert change.significant and change.ci[0] > 0 and change.p_value <= 2 / 300
    assert change.delta == pytest.approx(worse["ece"] - clean["ece"])
    assert change.to_dict()["ci"] == list(change.ci)


def test_paired_changes_of_several_metrics_follow_the_definition():
    """One call for several metrics: each interval is np.quantile of the finite replicate
    differences, each p-value twice the smaller side's share, floored at 1/B."""
    logits, labels = make_predictions(800, 10, seed=5)
    clean = stats_of(logits, labels)
    attacked = stats_of(logits * 4 - 1, labels)
    metrics = ["ece", "brier", "nll", "accuracy", "reliability_slope"]
    attacked.replicates["reliability_slope"][[3, 50]] = np.nan  # an undefined slope in two replicates
    changes = paired_changes(clean, attacked, metrics)
    assert list(changes) == metrics
    tail = (1 - 0.95) / 2  # (as the code computes it: 0.025 and a rounding)
    for metric in metrics:
        differences = attacked.replicates[metric] - clean.replicates[metric]
        differences = differences[np.isfinite(differences)]
        share = min(np.mean(differences <= 0), np.mean(differences >= 0))
        change = changes[metric]
        assert change.ci == tuple(np.quantile(differences, [tail, 1 - tail]))
        assert change.p_value == min(1.0, max(2 * share, 1 / differences.size))
        assert change.delta == attacked[metric] - clean[metric]
        assert change == paired_change(clean, attacked, metric)
    assert len(attacked.replicates["reliability_slope"]) == 300


def test_pairing_is_tighter_than_comparing_two_intervals():
    logits, labels = make_predictions(2000, 10, seed=1)
    clean = stats_of(logits, labels)
    noisy = stats_of(logits + 0.05 * torch.randn(logits.shape, generator=torch.Generator().manual_seed(0)),
                     labels)
    paired = paired_change(clean, noisy, "brier")
    unpaired = np.std(noisy.replicates["brier"] - clean.replicates["brier"][::-1])
    assert np.std(noisy.replicates["brier"] - clean.replicates["brier"]) < unpaired / 5
    assert paired.ci[1] - paired.ci[0] < (clean.intervals["brier"][1] - clean.intervals["brier"][0]) / 3


def test_paired_change_refuses_unpaired_reports():
    logits, labels = make_predictions(500, 5, seed=2)
    clean = stats_of(logits, labels)
    with pytest.raises(InputError, match="bootstrap_seed differs"):
        paired_change(clean, stats_of(logits, labels, seed=1), "ece")
    other = CalibrationStats(n_bins=15, bootstrap=300, seed=0)
    other.update(logits, labels, index=torch.arange(500) + 1000)
    with pytest.raises(InputError, match="sample_keys_sha256 differs"):
        paired_change(clean, other.compute(), "ece")
    with pytest.raises(InputError, match="metric"):
        paired_change(stats_of(logits, labels, bootstrap=0), stats_of(logits, labels, bootstrap=0), "ece")
