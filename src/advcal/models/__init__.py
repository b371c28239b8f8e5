"""Model guards and wrappers: eval mode, frozen parameters, normalisation, temperature."""

from advcal.models.guard import check_logits, frozen
from advcal.models.wrappers import Normalized, TemperatureScaled

__all__ = ["Normalized", "TemperatureScaled", "check_logits", "frozen"]
