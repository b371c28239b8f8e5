"""Calibrators by name (the ``kind`` saved with each)."""

from __future__ import annotations

from advcal.calibration.base import Calibrator
from advcal.calibration.binning import HistogramBinning, IsotonicCalibration
from advcal.calibration.temperature import AdversarialTemperatureScaling, TemperatureScaling
from advcal.calibration.vector import VectorScaling

CALIBRATORS: dict[str, type[Calibrator]] = {
    cls.kind: cls
    for cls in (TemperatureScaling, VectorScaling, IsotonicCalibration, HistogramBinning,
                AdversarialTemperatureScaling)
}
