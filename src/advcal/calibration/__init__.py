"""Post-hoc calibration: fitted maps from logits to calibrated probabilities."""

from advcal.calibration.temperature import fit_temperature, nll_at_temperature

__all__ = ["fit_temperature", "nll_at_temperature"]
