"""The audit: calibration on clean and adversarial inputs, its deltas and red flags.

The public entry point is ``advcal.audit(models, data, epsilons)`` (:mod:`advcal.api`), which is
:func:`advcal.analyses.audit.pipeline.audit`.

Layer (docs/architecture.md; lint-imports holds it): part of ``advcal.analyses``; imports the
illusion checks and fixes beside it and the layers below.
"""

from advcal.analyses.audit.flags import PROFILES, Flag, Thresholds, get_profile
from advcal.analyses.audit.pipeline import audit
from advcal.analyses.audit.result import SCHEMA_VERSION, AuditResult, ModelAudit, report_schema

__all__ = ["PROFILES", "SCHEMA_VERSION", "AuditResult", "Flag", "ModelAudit", "Thresholds", "audit",
           "get_profile", "report_schema"]
