"""Calibrators by name (the ``kind`` saved with each), and reading a saved one back."""

from __future__ import annotations

import json
from pathlib import Path

from advcal._core.errors import AdvcalError, InputError
from advcal._core.registry import Registry
from advcal._core.tensor_files import read_safetensors
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
    missing = [name for name in (PARAMS_FILE, TENSORS_FILE) if not (folder / name).is_file()]
    if missing:
        raise InputError(f"calibrator: {folder} holds no saved calibrator ({folder / missing[0]} is missing)")
    try:
        params = json.loads((folder / PARAMS_FILE).read_text("utf-8"))
    except (OSError, ValueError) as error:
        raise InputError(f"calibrator: cannot read {folder / PARAMS_FILE} as JSON: {error}") from None
    tensors = read_safetensors(folder / TENSORS_FILE, "calibrator")
    kind = params.get("kind") if isinstance(params, dict) else None
    if kind not in CALIBRATORS:
        raise InputError(f"calibrator: {folder} holds an unknown calibrator kind {kind!r}")
    try:  # an edited or foreign folder: its settings or tensors may not fit the kind it names
        calibrator = CALIBRATORS[kind](**params.get("settings", {}))
        calibrator.n_classes = int(params["n_classes"])
        calibrator._restore(tensors)
    except AdvcalError:
        raise
    except (TypeError, KeyError, ValueError, RuntimeError, AttributeError) as error:
        raise InputError(f"calibrator: {folder} does not hold a valid {kind} calibrator: "
                         f"{type(error).__name__}: {error}") from None
    return calibrator
