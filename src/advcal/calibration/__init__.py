"""Post-hoc calibration: fitted maps from logits to calibrated probabilities.

>>> from advcal.calibration import TemperatureScaling
>>> calibrator = TemperatureScaling().fit(calibration_logits, calibration_labels)   # doctest: +SKIP
>>> probabilities = calibrator.predict_proba(test_logits)                            # doctest: +SKIP
>>> calibrated_model = calibrator.wrap(model)          # an nn.Module: audit it, attack it  # doctest: +SKIP

Layer (docs/architecture.md; lint-imports holds it): imports only from results, attacks,
metrics, data, models and _core.
"""

from advcal.calibration.adaptive import attack_calibrated
from advcal.calibration.base import CalibratedModel, Calibrator
from advcal.calibration.binning import HistogramBinning, IsotonicCalibration
from advcal.calibration.registry import CALIBRATORS, load_calibrator
from advcal.calibration.temperature import (
    AdversarialTemperatureScaling,
    TemperatureScaling,
    fit_temperature,
    nll_at_temperature,
)
from advcal.calibration.vector import VectorScaling

__all__ = [
    "CALIBRATORS",
    "AdversarialTemperatureScaling",
    "CalibratedModel",
    "Calibrator",
    "HistogramBinning",
    "IsotonicCalibration",
    "TemperatureScaling",
    "VectorScaling",
    "attack_calibrated",
    "fit_temperature",
    "load_calibrator",
    "nll_at_temperature",
]
