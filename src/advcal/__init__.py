"""advcal: can a classifier's confidence be trusted under adversarial attack?

advcal measures calibration (ECE, ACE, SCE, Brier, NLL, reliability diagrams, per class) on
clean and adversarial inputs. Start with ``advcal.audit(models, data, epsilons)``,
:func:`advcal.metrics.calibration_report`, or the ``advcal`` command.
"""

import importlib

__version__ = "0.1.0"

__all__ = ["__version__", "audit"]


def __getattr__(name: str) -> object:
    # Heavy subpackages load on first use, so `advcal --version` stays instant.
    if name == "audit":
        return importlib.import_module("advcal.audit")
    raise AttributeError(f"module 'advcal' has no attribute {name!r}")
