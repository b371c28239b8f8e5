"""Is a model's robustness genuine, or an illusion made by miscalibration? (arXiv 2402.17509)

Layer (docs/architecture.md; lint-imports holds it): imports only from calibration, clip and the
layers below them.
"""

from advcal.analyses.illusion.detector import VERDICTS, IllusionReport, check_illusion, illusion_fails
from advcal.analyses.illusion.search import TemperatureSearch, log_grid, optimise_temperature

__all__ = [
    "VERDICTS", "IllusionReport", "TemperatureSearch", "check_illusion", "illusion_fails", "log_grid",
    "optimise_temperature",
]
