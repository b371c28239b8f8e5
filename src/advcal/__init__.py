"""advcal: can a classifier's confidence be trusted under adversarial attack?

advcal measures calibration (ECE, ACE, SCE, Brier, NLL, reliability diagrams, per class) on
clean and adversarial inputs. Start with ``advcal.audit(models, data, epsilons)``,
:func:`advcal.metrics.calibration_report`, or the ``advcal`` command. Every name of
:mod:`advcal.api` is reachable as ``advcal.<name>``.
"""

import importlib

__version__ = "0.1.0"

# The names advcal.api defines, listed here so that `import advcal` loads nothing heavy;
# tests/test_structure.py checks this list against advcal.api.__all__.
_API = (
    "AuditResult", "FixesReport", "IllusionReport", "SuiteResult", "audit",
    "check_illusion", "check_text_illusion", "evaluate_fixes", "evaluate_text_fixes",
    "make_adversarial_set", "report_schema", "run_attack", "run_audit", "run_calibrate", "run_illusion",
    "run_list", "run_metrics", "run_train", "run_zeroshot", "run_zeroshot_suite",
)
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> object:
    # The API loads on first use, so `advcal --version` stays instant.
    if name in _API:
        return getattr(importlib.import_module("advcal.api"), name)
    raise AttributeError(f"module 'advcal' has no attribute {name!r}")
