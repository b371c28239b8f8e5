"""Every metric against an independent implementation on the same inputs.

Oracles: torchmetrics (ECE L1/L2/max), netcal (ECE, equal-mass ECE, MCE), relplot (smooth
ECE), scikit-learn (Brier, log-loss, accuracy) and plain loops written here.
"""

from __future__ import annotations

import numpy as np
import pytest
import relplot
import torch
from netcal.metrics import ECE as NetcalECE
from netcal.metrics import MCE as NetcalMCE
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss
from torchmetrics.functional.classification import multiclass_calibration_error

from advcal.metrics import ace, brier, calibration_report, ece, mce, nll, sce, smooth_ece
from conftest import make_predictions, smooth_ece_by_brute_force

CASES = [
    (3000, 10, 0, 0.5),   # over-confident
    (2000, 4, 1, 3.0),    # under-confident
    (1500, 100, 2, 1.0),  # many classes
    (4500, 2, 3, 0.2),    # binary, very sharp
]


@pytest.fixture(params=CASES, ids=lambda c: f"n{c[0]}-c{c[1]}-T{c[3]}")
def case(request):
    n, n_classes, seed, temperature = request.param
    logits, labels = make_predictions(n, n_classes, seed, temperature)
    probs = torch.softmax(logits.double(), 1)
    return logits, labels, probs


def top_label(probs: torch.Tensor, labels: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    confidence, prediction = probs.max(1)
    return confidence.numpy(), (prediction == labels).numpy().astype(np.int64)


@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
def test_ece_matches_torchmetrics(case, norm):
    logits, labels, probs = case
    # torchmetrics accumulates its bins in float32: agreement to 1e-6, not to float64 rounding.
    # Confidences that are 1.0 once cast to float32 (as torchmetrics does) go to its phantom
    # bin (see the dedicated test below): leave them out here.
    keep = probs.max(1).values.float() < 1.0
    logits, labels, probs = logits[keep], labels[keep], probs[keep]
    expected = multiclass_calibration_error(probs, labels, probs.shape[1], n_bins=15, norm=norm)
    # Thousands of float32 confidences near 1.0 summed in one float32 bin drift by ~4e-6.
    tolerance = 1e-5 if float(probs.max(1).values.median()) > 0.999 else 1e-6
    assert ece(logits, labels, n_bins=15, norm=norm) == pytest.approx(float(expected), abs=tolerance)


@pytest.mark.parametrize("n_bins", [10, 15, 20])
def test_ece_matches_netcal(case, n_bins):
    logits, labels, probs = case
    # netcal reads a 2-column matrix as a binary problem (calibration of class 1), so give it
    # the top-label view directly: confidence of the prediction and whether it was right.
    confidence, correct = top_label(probs, labels)
    expected = NetcalECE(bins=n_bins).measure(confidence, correct)
    assert ece(logits, labels, n_bins=n_bins) == pytest.approx(expected, abs=1e-9)
    expected_mce = NetcalMCE(bins=n_bins).measure(confidence, correct)
    assert mce(logits, labels, n_bins=n_bins) == pytest.approx(expected_mce, abs=1e-9)
    if probs.shape[1] > 2:  # netcal's own multiclass top-label path
        expected = NetcalECE(bins=n_bins).measure(probs.numpy(), labels.numpy())
        assert ece(logits, labels, n_bins=n_bins) == pytest.approx(expected, abs=1e-9)


def test_ace_matches_netcal_equal_mass_ece(case):
    logits, labels, probs = case
    n_bins = 15
    n = len(labels) - len(labels) % n_bins  # netcal's quantile bins match ranks when N % bins == 0
    confidence, correct = top_label(probs[:n], labels[:n])
    expected = NetcalECE(bins=n_bins, equal_intervals=False).measure(confidence, correct)
    assert ace(logits[:n], labels[:n], n_bins=n_bins) == pytest.approx(expected, abs=1e-9)


def test_ace_by_hand(case):
    logits, labels, probs = case
    confidence, prediction = probs.max(1)
    correct = (prediction == labels).double()
    order = torch.argsort(confidence, stable=True)
    n_bins, total = 15, 0.0
    for chunk in np.array_split(order.numpy(), n_bins):  # sizes differ by at most one
        total += abs(float(correct[chunk].sum() - confidence[chunk].sum()))
    assert ace(logits, labels, n_bins) == pytest.approx(total / len(labels), abs=1e-9)


def test_sce_and_classwise_by_hand(case):
    logits, labels, probs = case
    p, y = probs.numpy(), np.eye(probs.shape[1])[labels.numpy()]
    edges = np.linspace(0, 1, 16)
    per_class = []
    for c in range(p.shape[1]):
        bins = np.clip(np.searchsorted(edges, p[:, c], side="right") - 1, 0, 14)
        per_class.append(
            sum(abs(p[bins == k, c].sum() - y[bins == k, c].sum()) for k in range(15)) / len(p)
        )
    assert sce(logits, labels) == pytest.approx(np.mean(per_class), abs=1e-12)
    report = calibration_report(logits, labels)
    np.testing.assert_allclose(report.per_class["classwise_ce"], per_class, atol=1e-12)


def test_brier_nll_accuracy_match_scikit_learn(case):
    logits, labels, probs = case
    p, y = probs.numpy(), labels.numpy()
    classes = list(range(p.shape[1]))
    assert brier(logits, labels) == pytest.approx(
        brier_score_loss(y, p, labels=classes, scale_by_half=False), abs=1e-12
    )
    assert nll(logits, labels) == pytest.approx(log_loss(y, p, labels=classes), rel=1e-9)
    report = calibration_report(logits, labels)
    assert report["accuracy"] == accuracy_score(y, p.argmax(1))
    assert report["confidence_mean"] == pytest.approx(p.max(1).mean(), abs=1e-12)
    assert report["confidence_std"] == pytest.approx(p.max(1).std(), abs=1e-12)
    assert report["confidence_gap"] == pytest.approx(p.max(1).mean() - report["accuracy"], abs=1e-12)


def test_smooth_ece_is_the_kernel_integral_at_its_fixed_point(case):
    logits, labels, probs = case
    confidence, correct = top_label(probs[:600], labels[:600])
    value = smooth_ece(logits[:600], labels[:600])
    # The bandwidth is the fixed point sigma* = smECE(sigma*), so value is also sigma*.
    assert smooth_ece_by_brute_force(confidence, correct, value) == pytest.approx(value, abs=1e-6)


def test_smooth_ece_matches_relplot(case):
    logits, labels, probs = case
    confidence, correct = top_label(probs, labels)
    expected = relplot.smECE(confidence, correct.astype(np.float64))
    ours = smooth_ece(logits, labels)
    if np.median(confidence) < 0.999:
        # relplot bisects the bandwidth to 2^-10 and reflects the kernel once; advcal solves
        # the fixed point exactly with infinitely many reflections: they agree to ~1e-3.
        assert ours == pytest.approx(expected, abs=2e-3)
    else:
        # With most confidences piled at 1.0 (saturated outputs), relplot's mesh sum counts
        # the boundary point with full weight and overestimates: 0.069 against the exact
        # integral 0.051 on this case (checked by brute force above).
        assert expected > ours + 0.01
        assert smooth_ece_by_brute_force(confidence, correct, ours) == pytest.approx(ours, abs=1e-6)


def test_reliability_curve_and_slope_by_hand(case):
    logits, labels, probs = case
    confidence, prediction = probs.max(1)
    correct = (prediction == labels).double().numpy()
    confidence = confidence.numpy()
    bins = np.clip(np.searchsorted(np.linspace(0, 1, 16), confidence, side="right") - 1, 0, 14)
    report = calibration_report(logits, labels)
    curve = report.reliability
    filled = [k for k in range(15) if (bins == k).any()]
    assert curve["count"] == [int((bins == k).sum()) for k in range(15)]
    for k in filled:
        assert curve["confidence"][k] == pytest.approx(confidence[bins == k].mean(), abs=1e-12)
        assert curve["accuracy"][k] == pytest.approx(correct[bins == k].mean(), abs=1e-12)
    assert report.histogram["fraction"] == pytest.approx([c / len(labels) for c in curve["count"]])
    if len(filled) > 1:
        x = np.array([curve["confidence"][k] for k in filled])
        y = np.array([curve["accuracy"][k] for k in filled])
        w = np.array([curve["count"][k] for k in filled])
        slope = np.polyfit(x, y, 1, w=np.sqrt(w))[0]  # polyfit weights residuals, not squares
        assert report["reliability_slope"] == pytest.approx(slope, abs=1e-9)


def test_per_class_figures_by_hand(case):
    logits, labels, probs = case
    confidence, prediction = probs.max(1)
    report = calibration_report(logits, labels)
    for c in range(probs.shape[1]):
        mask = labels == c
        if not mask.any():
            continue
        assert report.per_class["count"][c] == int(mask.sum())
        assert report.per_class["accuracy"][c] == pytest.approx(
            float((prediction[mask] == c).double().mean()), abs=1e-12)
        assert report.per_class["confidence"][c] == pytest.approx(
            float(confidence[mask].mean()), abs=1e-12)
        assert report.per_class["ece"][c] == pytest.approx(
            ece(logits[mask], labels[mask]), abs=1e-12)


def test_hand_computed_tiny_example():
    # Four predictions of two classes, computed on paper (no value sits on a bin edge):
    # confidences 0.92 (right), 0.92 (wrong), 0.65 (right), 0.55 (wrong), in 10 bins.
    probs = torch.tensor([[0.92, 0.08], [0.92, 0.08], [0.35, 0.65], [0.55, 0.45]], dtype=torch.float64)
    labels = torch.tensor([0, 1, 1, 1])
    report = calibration_report(probs, labels, n_bins=10, inputs="probs")
    # bin 0.9: conf 0.92, acc 0.5 -> 0.42 * 2/4; bin 0.6: |1 - 0.65| * 1/4; bin 0.5: 0.55 * 1/4
    assert report["ece"] == pytest.approx(0.42 * 0.5 + 0.35 * 0.25 + 0.55 * 0.25)
    assert report["mce"] == pytest.approx(0.55)
    assert report["ece_l2"] == pytest.approx(np.sqrt(0.42**2 * 0.5 + 0.35**2 * 0.25 + 0.55**2 * 0.25))
    assert report["accuracy"] == 0.5
    assert report["brier"] == pytest.approx((0.0128 + 1.6928 + 0.245 + 0.605) / 4)
    assert report["nll"] == pytest.approx(-np.log([0.92, 0.08, 0.65, 0.45]).mean())
    # SCE: class 0 probs 0.92, 0.92, 0.35, 0.55 -> bins 9, 9, 3, 5 with hits 1, 0, 0, 0;
    # class 1 probs 0.08, 0.08, 0.65, 0.45 -> bins 0, 0, 6, 4 with hits 0, 1, 1, 1.
    class0 = abs(1 - 1.84) + 0.35 + 0.55
    class1 = abs(1 - 0.16) + abs(1 - 0.65) + abs(1 - 0.45)
    assert report["sce"] == pytest.approx((class0 + class1) / 4 / 2)
    # Equal-mass, 2 bins: {0.55 wrong, 0.65 right} and {0.92 right, 0.92 wrong}.
    assert calibration_report(probs, labels, n_bins=2, inputs="probs")["ace"] == pytest.approx(
        (abs(1 - 1.2) + abs(1 - 1.84)) / 4)


def test_confidence_of_exactly_one_goes_in_the_last_bin():
    """torchmetrics puts confidence 1.0 in a phantom extra bin (its issue #3510); advcal does not.

    Saturated adversarial outputs hit this often: here half the predictions have confidence
    exactly 1.0 in float64 and are all wrong; the other half are in [0.95, 1) and right.
    """
    n = 200
    logits = torch.zeros(n, 2, dtype=torch.float64)
    logits[: n // 2, 0] = 50.0                                    # softmax = 1.0 exactly, wrong
    logits[n // 2 :, 1] = torch.linspace(3.0, 6.0, n // 2, dtype=torch.float64)  # right
    labels = torch.ones(n, dtype=torch.long)
    probs = torch.softmax(logits, 1)
    assert bool((probs[: n // 2, 0] == 1.0).all())
    confidence = probs.max(1).values
    # By hand: one last bin [14/15, 1] holding everything.
    by_hand = abs(float(confidence.mean()) - 0.5)
    assert ece(logits, labels) == pytest.approx(by_hand, abs=1e-12)
    assert NetcalECE(bins=15).measure(*top_label(probs, labels)) == pytest.approx(by_hand, abs=1e-12)
    phantom = float(multiclass_calibration_error(probs, labels, 2, n_bins=15))
    # torchmetrics scores the two halves as separate bins: each |acc - conf| counted alone.
    separate = 0.5 * 1.0 + 0.5 * abs(1.0 - float(confidence[n // 2 :].mean()))
    assert phantom == pytest.approx(separate, abs=1e-6)
    assert phantom > ece(logits, labels) + 0.01
    # The max-norm shows it starkly: the phantom bin alone has gap 1.0.
    assert float(multiclass_calibration_error(probs, labels, 2, n_bins=15, norm="max")) == 1.0
    assert mce(logits, labels) == pytest.approx(by_hand, abs=1e-12)
