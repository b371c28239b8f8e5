"""Bad input gets an InputError naming the argument, and loses nothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from advcal._core.contract import check_scores, to_log_probs
from advcal.errors import AdvcalError, InputError
from advcal.metrics import CalibrationStats, calibration_report, ece

LOGITS = torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.3, -0.2]])
LABELS = torch.tensor([0, 2])


@pytest.mark.parametrize(
    ("scores", "labels", "kwargs", "match"),
    [
        (torch.tensor([[np.nan, 1.0, 0.0], [0.1, 0.3, -0.2]]), LABELS, {}, "scores: contains NaN"),
        (torch.tensor([[np.inf, 1.0, 0.0], [0.1, 0.3, -0.2]]), LABELS, {}, "scores: contains inf"),
        (torch.tensor([1.0, 2.0]), LABELS, {}, r"scores: expected a 2-D .* shape \(2,\)"),
        (torch.zeros(2, 3, 1), LABELS, {}, "scores: expected a 2-D"),
        (torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), {}, "scores: expected at least one sample"),
        (torch.zeros(2, 1), LABELS, {}, "scores: expected at least 2 class columns"),
        (torch.tensor([[2, -1, 0], [0, 3, -2]]), LABELS, {}, "scores: expected a floating-point dtype"),
        (LOGITS, torch.tensor([0, 3]), {}, "labels: class index 3 is out of range"),
        (LOGITS, torch.tensor([0, -1]), {}, "labels: class index -1 is out of range"),
        (LOGITS, torch.tensor([0.0, 1.0]), {}, "labels: expected integer class indices"),
        (LOGITS, torch.tensor([True, False]), {}, "labels: expected integer class indices"),
        (LOGITS, torch.tensor([0, 1, 2]), {}, r"labels: expected a 1-D array of 2 class indices"),
        (LOGITS, torch.tensor([[0], [1]]), {}, r"labels: expected a 1-D array of 2"),
        ([[1.0, 2.0], [0.0, 1.0]], LABELS, {}, "scores: expected a torch.Tensor or a numpy array"),
        (np.array([["a", "b"]], dtype=object), LABELS, {}, "scores: expected a numeric array"),
        (LOGITS, LABELS, {"inputs": "softmax"}, "inputs: expected one of logits, probs, log_probs"),
        (LOGITS, LABELS, {"n_bins": 0}, "n_bins: expected an integer >= 1"),
        (LOGITS, LABELS, {"n_bins": 2.5}, "n_bins: expected an integer >= 1"),
        (LOGITS, LABELS, {"bootstrap": -1}, "bootstrap: expected an integer >= 0"),
        (LOGITS, LABELS, {"ci": 1.5, "bootstrap": 10}, r"ci: expected a confidence level in \(0, 1\)"),
    ],
)
def test_bad_input_names_the_argument(scores, labels, kwargs, match):
    with pytest.raises(InputError, match=match):
        calibration_report(scores, labels, **kwargs)


def test_softmax_output_passed_as_logits_is_refused():
    probs = torch.softmax(LOGITS, 1)
    with pytest.raises(InputError, match="look like softmax probabilities, not logits"):
        calibration_report(probs, LABELS)
    # Told the truth, the same tensor is accepted and gives the same numbers as the logits.
    assert calibration_report(probs, LABELS, inputs="probs")["nll"] == pytest.approx(
        calibration_report(LOGITS, LABELS)["nll"], abs=1e-6
    )


def test_probabilities_must_sum_to_one():
    with pytest.raises(InputError, match=r"scores: row 1 sums to 0\.5, expected 1"):
        calibration_report(torch.tensor([[0.5, 0.5], [0.25, 0.25]]), torch.tensor([0, 1]), inputs="probs")
    with pytest.raises(InputError, match=r"probabilities must lie in \[0, 1\]"):
        calibration_report(torch.tensor([[1.5, -0.5], [0.5, 0.5]]), torch.tensor([0, 1]), inputs="probs")


def test_log_probs_contract():
    log_probs = torch.log_softmax(LOGITS, 1)
    assert calibration_report(log_probs, LABELS, inputs="log_probs")["nll"] == pytest.approx(
        calibration_report(LOGITS, LABELS)["nll"], abs=1e-6
    )
    with pytest.raises(InputError, match="log-probabilities must be <= 0"):
        calibration_report(LOGITS, LABELS, inputs="log_probs")


def test_numpy_and_torch_give_identical_reports(predictions):
    logits, labels = predictions
    from_torch = calibration_report(logits, labels)
    from_numpy = calibration_report(logits.numpy(), labels.numpy())
    assert from_torch.to_dict() == from_numpy.to_dict()


def test_errors_are_advcal_errors_and_value_errors():
    with pytest.raises(AdvcalError):
        ece(LOGITS, torch.tensor([0, 5]))
    with pytest.raises(ValueError):
        ece(LOGITS, LABELS, norm="l3")


def test_a_bad_batch_leaves_the_statistics_unchanged(predictions):
    logits, labels = predictions
    stats = CalibrationStats().update(logits[:100], labels[:100])
    before = stats.compute().to_dict()
    bad = logits[100:200].clone()
    bad[-1, 0] = float("nan")
    with pytest.raises(InputError):
        stats.update(bad, labels[100:200])
    with pytest.raises(InputError, match="expected 10 class columns"):
        stats.update(logits[100:200, :5], labels[100:200])
    assert stats.n_samples == 100
    assert stats.compute().to_dict() == before


def test_index_must_be_given_always_or_never(predictions):
    logits, labels = predictions
    stats = CalibrationStats().update(logits[:10], labels[:10], index=torch.arange(10))
    with pytest.raises(InputError, match="index: give sample indices with every batch"):
        stats.update(logits[10:20], labels[10:20])
    with pytest.raises(InputError, match="index: expected a 1-D integer array of 10"):
        CalibrationStats().update(logits[:10], labels[:10], index=torch.arange(5))
    with pytest.raises(InputError, match="index: sample index 0 was added more than once"):
        CalibrationStats().update(logits[:10], labels[:10], index=torch.zeros(10, dtype=torch.long))
    first = CalibrationStats().update(logits[:10], labels[:10], index=torch.arange(10))
    with pytest.raises(InputError, match="index: sample index 9 was added more than once"):
        first.update(logits[10:20], labels[10:20], index=torch.arange(9, 19))  # mid-stream, refused
    again = first.update(logits[10:20], labels[10:20], index=torch.arange(10, 20))  # then a good one
    assert again.n_samples == 20
    with pytest.raises(InputError, match="index: sample index 3 was added more than once"):
        (first + CalibrationStats().update(logits[:2], labels[:2], index=torch.tensor([3, 40]))).compute()


def test_empty_statistics_cannot_be_computed():
    with pytest.raises(InputError, match="no samples were added"):
        CalibrationStats().compute()


def test_log_probs_are_float64_and_never_saturate():
    # A float32 softmax would round this confidence to exactly 1.0; float64 keeps the gap.
    logits = torch.tensor([[30.0, 0.0], [0.0, 30.0]], dtype=torch.float32)
    log_probs = to_log_probs(check_scores(logits))
    assert log_probs.dtype == torch.float64
    assert float(torch.softmax(logits, 1)[0, 0]) == 1.0
    assert float(log_probs[0, 0].exp()) < 1.0


def test_flat_predictions_with_many_classes():
    """Every probability below 1/n_bins: the class-wise pass has no entry above bin 0."""
    logits = torch.zeros(50, 100)
    labels = torch.arange(50)
    report = calibration_report(logits, labels)
    assert report["confidence_mean"] == pytest.approx(0.01)
    # Each class: one bin holding all 50 samples, probability mass 0.5 against 1 or 0 hits.
    assert report["sce"] == pytest.approx(0.5 / 50, abs=1e-12)


def _snapshot(stats: CalibrationStats) -> tuple:
    """Everything an update can change, comparable with ==."""
    state = stats.state_dict() if stats.n_samples else {}
    return (stats.n_classes, stats.indexed, stats.n_samples,
            sorted((name, value.tobytes()) for name, value in state.items()))


# (what is wrong, scores, labels, index): each refused before anything changes.
BAD_BATCHES = [
    ("a label out of range", torch.zeros(4, 3), torch.tensor([0, 1, 2, 3]), torch.arange(4)),
    ("a float index", torch.zeros(4, 3), torch.tensor([0, 1, 2, 0]), torch.arange(4).double()),
    ("a negative index", torch.zeros(4, 3), torch.tensor([0, 1, 2, 0]), torch.tensor([0, 1, -2, 3])),
    ("an index of the wrong length", torch.zeros(4, 3), torch.tensor([0, 1, 2, 0]), torch.arange(3)),
    ("labels of the wrong length", torch.zeros(4, 3), torch.tensor([0, 1, 2]), torch.arange(4)),
    ("no index where earlier batches had one", torch.zeros(4, 3), torch.tensor([0, 1, 2, 0]), None),
    ("another number of classes", torch.zeros(4, 5), torch.tensor([0, 1, 2, 0]), torch.arange(4)),
    ("a NaN score", torch.tensor([[0.0, float("nan"), 1.0]] * 4), torch.tensor([0, 1, 2, 0]),
     torch.arange(4)),
]


# Two of them are bad only against an earlier batch; the rest are bad as a first batch too.
ONLY_AFTER = ("no index where earlier batches had one", "another number of classes")
CASES = [(*bad, first) for bad in BAD_BATCHES for first in (True, False)
         if not (first and bad[0] in ONLY_AFTER)]


@pytest.mark.parametrize(("what", "scores", "labels", "index", "first"), CASES,
                         ids=[f"{c[0]}-{'first' if c[4] else 'later'}" for c in CASES])
def test_a_rejected_batch_leaves_the_statistics_exactly_as_they_were(what, scores, labels, index, first):
    good = (torch.randn(6, 3, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 0, 1, 2]))
    stats = CalibrationStats(n_bins=10, bootstrap=4, seed=0)
    if not first:
        stats.update(*good, index=torch.arange(100, 106))
    before = _snapshot(stats)
    with pytest.raises(InputError):
        stats.update(scores, labels, index=index)
    assert _snapshot(stats) == before, what
    stats.update(*good, index=torch.arange(6))  # and the next good batch is taken
    assert stats.n_samples == (6 if first else 12)
