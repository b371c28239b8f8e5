"""Calibration metrics as streaming, mergeable statistics, with functional views.

>>> from advcal.metrics import calibration_report
>>> report = calibration_report(logits, labels, n_bins=15)   # doctest: +SKIP
>>> report["ece"], report["ace"], report["sce"], report["brier"], report["nll"]  # doctest: +SKIP

Layer (docs/architecture.md; lint-imports holds it): imports only from _core, data and models.
"""

from advcal.metrics.functional import (
    ace,
    brier,
    calibration_report,
    ece,
    mce,
    nll,
    sce,
    smooth_ece,
)
from advcal.metrics.paired import PairedChange, paired_change, paired_changes
from advcal.metrics.report import CalibrationReport
from advcal.metrics.selective import RiskCoverage, risk_coverage
from advcal.metrics.stats import CalibrationStats

__all__ = [
    "CalibrationReport",
    "CalibrationStats",
    "PairedChange",
    "RiskCoverage",
    "ace",
    "brier",
    "calibration_report",
    "ece",
    "mce",
    "nll",
    "paired_change",
    "paired_changes",
    "risk_coverage",
    "sce",
    "smooth_ece",
]
