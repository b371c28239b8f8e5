"""advcal's public Python API: one import for every analysis the ``advcal`` command runs.

>>> import advcal
>>> result = advcal.audit(model, "digits", epsilons=[0.05, 0.1], attack="pgd")  # doctest: +SKIP
>>> result.save("advcal-report")                                              # doctest: +SKIP

Each ``advcal`` command is a function here too: ``run_audit(AuditConfig(...))`` is ``advcal
audit ...`` (:mod:`advcal.configs` holds every command's options and defaults).

``advcal.<name>`` loads this module on first use, so ``import advcal`` stays instant.

Layer (docs/architecture.md; lint-imports holds it): imports only from training, analyses and
the layers below them.
"""

from advcal.analyses.adversarial_sets import make_adversarial_set
from advcal.analyses.audit import AuditResult, report_schema
from advcal.analyses.fixes import FixesReport, evaluate_fixes
from advcal.analyses.illusion import IllusionReport, check_illusion
from advcal.analyses.text_fixes import evaluate_text_fixes
from advcal.analyses.text_illusion import check_text_illusion
from advcal.analyses.zeroshot import SuiteResult, run_zeroshot_suite
from advcal.api.audit import audit
from advcal.api.runs import (
    run_attack,
    run_audit,
    run_calibrate,
    run_illusion,
    run_list,
    run_metrics,
    run_train,
    run_zeroshot,
)

__all__ = [
    "AuditResult",
    "FixesReport",
    "IllusionReport",
    "SuiteResult",
    "audit",
    "check_illusion",
    "check_text_illusion",
    "evaluate_fixes",
    "evaluate_text_fixes",
    "make_adversarial_set",
    "report_schema",
    "run_attack",
    "run_audit",
    "run_calibrate",
    "run_illusion",
    "run_list",
    "run_metrics",
    "run_train",
    "run_zeroshot",
    "run_zeroshot_suite",
]
