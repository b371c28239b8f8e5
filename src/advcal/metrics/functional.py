"""Functional forms of the calibration metrics: thin views over :class:`CalibrationStats`.

Each takes a whole score matrix and its labels at once. For data that arrives in batches,
use :class:`CalibrationStats` directly and call ``compute`` once.
"""

from __future__ import annotations

from advcal._core.errors import InputError
from advcal.metrics.report import CalibrationReport
from advcal.metrics.stats import CalibrationStats

_NORM_KEYS = {"l1": "ece", "l2": "ece_l2", "max": "mce"}


def calibration_report(
    scores: object,
    labels: object,
    n_bins: int = 15,
    inputs: str = "logits",
    *,
    smooth: bool = False,
    bootstrap: int = 0,
    ci: float = 0.95,
    seed: int = 0,
    index: object | None = None,
) -> CalibrationReport:
    """The full calibration report of ``scores`` (``(N, C)``) against integer ``labels``.

    Args:
        scores: logits (default), probabilities or log-probabilities, per ``inputs``;
            a torch tensor or a numpy array.
        labels: true class of each row.
        n_bins: number of equal-width and equal-mass bins.
        inputs: ``"logits"``, ``"probs"`` or ``"log_probs"``.
        smooth: also compute smooth ECE (Błasiok & Nakkiran 2023).
        bootstrap: number of Poisson bootstrap replicates for confidence intervals.
        ci: level of the percentile intervals.
        seed: bootstrap seed (the global random state is never used).
        index: optional sample indices (bootstrap weights are tied to them).

    Returns:
        A :class:`CalibrationReport`: ``report["ece"]``, ``report["ace"]``, ``report["sce"]``,
        ``report["mce"]``, ``report["brier"]``, ``report["nll"]``, ``report["accuracy"]``, ...
    """
    stats = CalibrationStats(n_bins=n_bins, inputs=inputs, bootstrap=bootstrap, seed=seed)
    return stats.update(scores, labels, index=index).compute(smooth=smooth, ci=ci)


def _report(scores: object, labels: object, n_bins: int, inputs: str, classwise: bool,
            smooth: bool = False) -> CalibrationReport:
    stats = CalibrationStats(n_bins=n_bins, inputs=inputs, classwise=classwise)
    return stats.update(scores, labels).compute(smooth=smooth)


def ece(scores: object, labels: object, n_bins: int = 15, norm: str = "l1",
        inputs: str = "logits") -> float:
    """Top-label expected calibration error over equal-width bins (``norm``: l1, l2 or max)."""
    if norm not in _NORM_KEYS:
        raise InputError(f"norm: expected one of l1, l2, max, got {norm!r}")
    return _report(scores, labels, n_bins, inputs, classwise=False)[_NORM_KEYS[norm]]


def mce(scores: object, labels: object, n_bins: int = 15, inputs: str = "logits") -> float:
    """Maximum calibration error: the largest |accuracy - confidence| over non-empty bins."""
    return ece(scores, labels, n_bins, "max", inputs)


def ace(scores: object, labels: object, n_bins: int = 15, inputs: str = "logits") -> float:
    """Adaptive calibration error: top-label ECE (L1) over equal-mass bins."""
    return _report(scores, labels, n_bins, inputs, classwise=False)["ace"]


def sce(scores: object, labels: object, n_bins: int = 15, inputs: str = "logits") -> float:
    """Static (class-wise) calibration error: every class's probability binned, averaged."""
    return _report(scores, labels, n_bins, inputs, classwise=True)["sce"]


def brier(scores: object, labels: object, inputs: str = "logits") -> float:
    """Multiclass Brier score: squared error summed over classes, mean over samples."""
    return _report(scores, labels, 15, inputs, classwise=False)["brier"]


def nll(scores: object, labels: object, inputs: str = "logits") -> float:
    """Mean negative log-likelihood (nats) of the true class, from ``log_softmax``."""
    return _report(scores, labels, 15, inputs, classwise=False)["nll"]


def smooth_ece(scores: object, labels: object, inputs: str = "logits") -> float:
    """Smooth ECE (Błasiok & Nakkiran 2023): no binning choice, consistent."""
    return _report(scores, labels, 15, inputs, classwise=False, smooth=True)["smooth_ece"]
