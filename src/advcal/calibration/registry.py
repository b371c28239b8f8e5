"""Calibrators by name (the ``kind`` saved with each), and reading a saved one back."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file

from advcal._core.errors import InputError
from advcal._core.registry import Registry
from advcal.calibration.base import PARAMS_FILE, TENSORS_FILE, Calibrator
from advcal.calibration.binning import HistogramBinning, IsotonicCalibration
from advcal.calibration.temperature import AdversarialTemperatureScaling, TemperatureScaling
from advcal.calibration.vector import VectorScaling

CALIBRATORS: Registry[type[Calibrator]] = Registry("calibrator")
for _calibrator in (TemperatureScaling, VectorScaling, IsotonicCalibration, HistogramBinning,
                    AdversarialTemperatureScaling):
    CALIBRATORS.add(_calibrator.kind, _calibrator)


def load_calibrator(folder: str | Path) -> Calibrator:
    """A calibrator saved with :meth:`Calibrator.save` (JSON and safetensors only)."""
    folder = Path(folder)
    try:
        params = json.loads((folder / PARAMS_FILE).read_text("utf-8"))
        tensors = load_file(str(folder / TENSORS_FILE))
    except FileNotFoundError as error:
        raise InputError(f"calibrator: {folder} holds no saved calibrator ({error.filename} is missing)"
                         ) from None
    except (OSError, ValueError) as error:
        raise InputError(f"calibrator: cannot read the calibrator in {folder}: {error}") from None
    kind = params.get("kind") if isinstance(params, dict) else None
    if kind not in CALIBRATORS:
        raise InputError(f"calibrator: {folder} holds an unknown calibrator kind {kind!r}")
    calibrator = CALIBRATORS[kind](**params.get("settings", {}))
    calibrator.n_classes = int(params["n_classes"])
    calibrator._restore(tensors)
    return calibrator
