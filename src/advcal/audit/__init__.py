"""The audit: calibration on clean and adversarial inputs, its deltas and red flags.

``advcal.audit(models, data, epsilons)`` calls :func:`advcal.audit.pipeline.audit`: this
package is itself callable, so the short form in DESIGN.md works while ``advcal.audit.flags``
and friends stay importable.

Layer (docs/architecture.md; lint-imports holds it): imports only from report, illusion and the
layers below them.
"""

import sys
import types

from advcal.audit.flags import PROFILES, Flag, Thresholds, get_profile
from advcal.audit.pipeline import audit
from advcal.audit.result import SCHEMA_VERSION, AuditResult, ModelAudit, report_schema

__all__ = ["PROFILES", "SCHEMA_VERSION", "AuditResult", "Flag", "ModelAudit", "Thresholds", "audit",
           "get_profile", "report_schema"]


class _CallableModule(types.ModuleType):
    def __call__(self, *args: object, **kwargs: object) -> AuditResult:
        return audit(*args, **kwargs)

    __call__.__doc__ = audit.__doc__


sys.modules[__name__].__class__ = _CallableModule
