"""Models: loading from a spec, guards (eval mode, frozen parameters, logits check), wrappers
(normalisation, temperature) and the built-in reference models.

Layer (docs/architecture.md; lint-imports holds it): imports only from _core.
"""

from advcal.models.fingerprint import model_fingerprint
from advcal.models.guard import check_logits, frozen
from advcal.models.loading import BUILTIN_MODELS, load_model, load_weights, new_model, parse_normalize
from advcal.models.reference import DigitsCNN, FashionCNN
from advcal.models.wrappers import Ensemble, Normalized, TemperatureScaled

__all__ = [
    "BUILTIN_MODELS",
    "DigitsCNN",
    "Ensemble",
    "FashionCNN",
    "Normalized",
    "TemperatureScaled",
    "check_logits",
    "frozen",
    "load_model",
    "load_weights",
    "model_fingerprint",
    "new_model",
    "parse_normalize",
]
