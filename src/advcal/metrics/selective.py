"""Selective prediction: would abstaining on low confidence protect the user?

A model that answers only when its top-label confidence reaches a threshold trades coverage
(the fraction of inputs it answers) for risk (the error rate among those answers). The
risk–coverage curve traces that trade over every threshold; its area (AURC, Geifman et al.
2019) is low when errors sit at low confidence. Under attack the question is whether the
threshold chosen on clean data still filters the errors.

Ties in confidence are one step of the curve (all samples at one confidence are kept or
dropped together), so the curve and AURC do not depend on the order of the samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from advcal._core.errors import InputError
from advcal._core.validation import check_fraction


@dataclass(frozen=True)
class RiskCoverage:
    """The risk–coverage curve at every distinct confidence, most confident first.

    ``threshold[k]`` is a confidence; answering only inputs at or above it covers
    ``coverage[k]`` of them with error rate ``risk[k]``.
    """

    threshold: np.ndarray
    coverage: np.ndarray
    risk: np.ndarray
    aurc: float
    eaurc: float

    def to_dict(self, max_points: int = 101) -> dict[str, object]:
        """AURC, excess AURC and the curve thinned to at most ``max_points`` points."""
        keep = _thinned(len(self.coverage), max_points)
        return {
            "aurc": self.aurc,
            "eaurc": self.eaurc,
            "coverage": self.coverage[keep].tolist(),
            "risk": self.risk[keep].tolist(),
        }


def _checked(confidence: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    if confidence.ndim != 1 or confidence.shape != correct.shape or confidence.size == 0:
        raise InputError(
            f"confidence, correct: expected two non-empty 1-D arrays of one length, got shapes "
            f"{confidence.shape} and {correct.shape}"
        )
    if not np.all(np.isfinite(confidence)):
        raise InputError("confidence: expected finite values, got NaN or inf")
    return confidence, correct


def risk_coverage(confidence: np.ndarray, correct: np.ndarray) -> RiskCoverage:
    """The risk–coverage curve, AURC and excess AURC of top-label predictions.

    Args:
        confidence: top-label confidence per sample.
        correct: whether each prediction is right.

    AURC is the mean over samples of the risk at the sample's own step of the curve (the
    usual definition, with tied confidences sharing one step). Excess AURC subtracts the AURC
    of a perfect ranking with the same accuracy, so it is zero when every error is less
    confident than every correct answer.
    """
    confidence, correct = _checked(confidence, correct)
    n = confidence.size
    order = np.argsort(-confidence, kind="stable")
    sorted_conf = confidence[order]
    errors = np.cumsum(~correct[order])
    # The last sample of each run of equal confidences ends that run's step.
    ends = np.flatnonzero(np.append(sorted_conf[1:] != sorted_conf[:-1], True))
    kept = ends + 1
    risk = errors[ends] / kept
    step_sizes = np.diff(np.append(0, kept))
    aurc = float(np.sum(step_sizes * risk) / n)
    return RiskCoverage(
        threshold=sorted_conf[ends],
        coverage=kept / n,
        risk=risk,
        aurc=aurc,
        eaurc=aurc - optimal_aurc(int(correct.sum()), n),
    )


def optimal_aurc(n_correct: int, n: int) -> float:
    """The AURC of a perfect ranking: every correct answer more confident than every error."""
    k = np.arange(n_correct + 1, n + 1, dtype=np.float64)
    return float(np.sum((k - n_correct) / k) / n)


def coverage_threshold(confidence: np.ndarray, coverage: float) -> float:
    """The highest confidence threshold that still answers at least ``coverage`` of inputs."""
    check_fraction(coverage, "coverage", allow_one=True)
    confidence = np.asarray(confidence, dtype=np.float64)
    keep = max(1, int(np.ceil(coverage * confidence.size)))
    return float(np.sort(confidence)[::-1][keep - 1])


def selective_risk(confidence: np.ndarray, correct: np.ndarray, threshold: float) -> tuple[float, float]:
    """(risk, coverage) when answering only inputs whose confidence is at least ``threshold``.

    The risk is NaN when nothing is answered.
    """
    confidence, correct = _checked(confidence, correct)
    answered = confidence >= threshold
    covered = int(answered.sum())
    risk = float(np.sum(~correct[answered]) / covered) if covered else float("nan")
    return risk, covered / confidence.size


def _thinned(length: int, max_points: int) -> np.ndarray:
    """Indices of at most ``max_points`` evenly spread points, always keeping the last."""
    if length <= max_points:
        return np.arange(length)
    return np.unique(np.linspace(0, length - 1, max_points).round().astype(np.int64))
